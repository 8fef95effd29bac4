"""Molecule library: carbonate solvents from SMILES, with 3D geometry and a covalent bond graph.

Atom order is RDKit's order of the SMILES with explicit hydrogens added (heavy atoms in SMILES
order, then hydrogens). Every frame the harness builds keeps this order within each molecule, so a
molecule's covalent bonds follow from its species template, never from distances at run time.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
from ase import Atoms

from harness.errors import InputError

__all__ = ["Molecule", "LIBRARY", "get_molecule", "MoleculeRegistry", "parse_molecule_definition"]

#: Built-in species (SCIENCE.md §2). Densities (g/cm³, ~25 °C, pure liquid; EC as supercooled
#: liquid extrapolated/melt at 40 °C) are used only to resolve volume ratios (v/v).
LIBRARY: dict[str, tuple[str, float]] = {
    "EC": ("C1COC(=O)O1", 1.32),  # ethylene carbonate
    "EMC": ("CCOC(=O)OC", 1.01),  # ethyl methyl carbonate
    "DEC": ("CCOC(=O)OCC", 0.975),  # diethyl carbonate
    "PC": ("CC1COC(=O)O1", 1.205),  # propylene carbonate
    "VC": ("C1=COC(=O)O1", 1.355),  # vinylene carbonate
    "DMC": ("COC(=O)OC", 1.07),  # dimethyl carbonate
}


@contextlib.contextmanager
def _quiet_rdkit() -> Iterator[None]:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


@functools.lru_cache(maxsize=None)
def _rdkit_template(smiles: str, name: str, seed: int):
    """Parse, add hydrogens, embed (ETKDG) and MMFF-relax; returns (symbols, positions, bonds)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise InputError(f"invalid SMILES {smiles!r} for molecule {name!r}")
        if Chem.GetFormalCharge(mol) != 0:
            raise InputError(f"molecule {name!r} ({smiles}) is charged; only neutral molecules are supported")
        mol = Chem.AddHs(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise InputError(f"RDKit could not embed a 3D structure for molecule {name!r} ({smiles})")
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        else:
            AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    symbols = tuple(a.GetSymbol() for a in mol.GetAtoms())
    positions = np.array(mol.GetConformer().GetPositions(), dtype=float)
    bonds = tuple(sorted((min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
                         for b in mol.GetBonds()))
    return symbols, positions, bonds


@dataclass(frozen=True)
class Molecule:
    """A neutral molecular species defined by a SMILES string.

    Parameters
    ----------
    name
        Short name used in compositions (``EC``, ``EMC``, ...).
    smiles
        SMILES; hydrogens are added explicitly.
    density_g_cm3
        Pure-liquid density, needed only to resolve volume ratios.
    """

    name: str
    smiles: str
    density_g_cm3: float | None = None

    def _template(self):
        return _rdkit_template(self.smiles, self.name, 0xC0FFEE)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._template()[0]

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def bonds(self) -> tuple[tuple[int, int], ...]:
        """Covalent bonds (i < j) of the molecular graph, 0-based in template order."""
        return self._template()[2]

    @property
    def formula(self) -> str:
        return self.atoms().get_chemical_formula(mode="hill")

    @property
    def mass_amu(self) -> float:
        return float(self.atoms().get_masses().sum())

    def atoms(self) -> Atoms:
        """A fresh copy of the MMFF-relaxed 3D geometry (non-periodic, centred on its COM)."""
        symbols, positions, _ = self._template()
        atoms = Atoms(symbols=list(symbols), positions=positions.copy())
        atoms.positions -= atoms.get_center_of_mass()
        atoms.info["species"] = self.name
        atoms.info["smiles"] = self.smiles
        return atoms

    def validate(self) -> "Molecule":
        """Parse and embed now, so a bad SMILES fails here with a clear message."""
        self._template()
        return self


def parse_molecule_definition(text: str) -> Molecule:
    """Parse a user molecule ``NAME=SMILES`` (as given to ``--molecule``)."""
    name, sep, smiles = text.partition("=")
    name, smiles = name.strip(), smiles.strip()
    if not sep or not name or not smiles:
        raise InputError(f"molecule definition {text!r} must look like NAME=SMILES, e.g. FEC=C1C(F)OC(=O)O1")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"molecule name {name!r} may contain only letters, digits, '-' and '_'")
    return Molecule(name, smiles).validate()


class MoleculeRegistry(Mapping[str, Molecule]):
    """The built-in library plus user-defined molecules; lookup by name (case-sensitive)."""

    def __init__(self, extra: Mapping[str, Molecule] | None = None):
        self._mols = {k: Molecule(k, s, d) for k, (s, d) in LIBRARY.items()}
        for name, mol in (extra or {}).items():
            self._mols[name] = mol

    def __getitem__(self, name: str) -> Molecule:
        try:
            return self._mols[name]
        except KeyError:
            raise InputError(
                f"unknown molecule {name!r}; known: {', '.join(self._mols)} "
                "(define others with NAME=SMILES)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._mols

    def __iter__(self):
        return iter(self._mols)

    def __len__(self) -> int:
        return len(self._mols)

    def with_smiles(self, smiles_by_name: Mapping[str, str]) -> "MoleculeRegistry":
        """A registry that also knows ``smiles_by_name`` (e.g. read back from a frame)."""
        extra = {k: v for k, v in self._mols.items() if k not in LIBRARY}
        for name, smi in smiles_by_name.items():
            if name not in self._mols or self._mols[name].smiles != smi:
                extra[name] = Molecule(name, smi)
        return MoleculeRegistry(extra)


def get_molecule(name: str) -> Molecule:
    """A built-in molecule by name (raises :class:`InputError` for unknown names)."""
    return MoleculeRegistry()[name]
