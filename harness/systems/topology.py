"""Molecular topology of a frame: which atoms form which molecule, and its covalent bonds.

Frames built by the harness carry

* ``atoms.arrays["mol_id"]`` – 0-based molecule index of every atom;
* ``atoms.info["mol_species"]`` – comma-separated species name of every molecule, by ``mol_id``;
* ``atoms.info["species_smiles"]`` – ``NAME=SMILES;...`` for every species present;
* ``atoms.info["composition"]`` – e.g. ``EC=16,EMC=32``.

Bonds come from each species' molecular graph (RDKit), matched to the frame by atom order within
the molecule, never guessed from distances at run time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from harness.errors import InputError
from harness.systems.molecules import Molecule, MoleculeRegistry

__all__ = ["Topology", "tag_molecules", "assign_molecules", "molecule_species_names", "equilibrium_bond_lengths"]

logger = logging.getLogger(__name__)


def tag_molecules(atoms: Atoms, species: Sequence[Molecule]) -> Atoms:
    """Label ``atoms`` whose atoms are the molecules ``species`` back to back, in template order."""
    n = sum(m.n_atoms for m in species)
    if n != len(atoms):
        raise InputError(f"frame has {len(atoms)} atoms but the listed molecules have {n}")
    mol_id = np.repeat(np.arange(len(species)), [m.n_atoms for m in species])
    atoms.arrays["mol_id"] = mol_id.astype(int)
    atoms.info["mol_species"] = ",".join(m.name for m in species)
    seen: dict[str, str] = {}
    counts: dict[str, int] = {}
    for m in species:
        seen.setdefault(m.name, m.smiles)
        counts[m.name] = counts.get(m.name, 0) + 1
    atoms.info["species_smiles"] = ";".join(f"{k}={v}" for k, v in seen.items())
    atoms.info["composition"] = ",".join(f"{k}={v}" for k, v in counts.items())
    return atoms


@dataclass(frozen=True)
class Topology:
    """Molecules and covalent bonds of one frame.

    Attributes
    ----------
    mol_id
        Molecule index per atom.
    species
        Species name per molecule.
    molecules
        Atom indices (into the frame) of each molecule, in template order.
    bonds
        ``(n_bonds, 2)`` global atom indices of covalent bonds.
    bond_species
        For each bond, ``(species name, template bond index)``, to look up equilibrium lengths.
    """

    mol_id: np.ndarray
    species: tuple[str, ...]
    molecules: tuple[np.ndarray, ...]
    bonds: np.ndarray
    bond_species: tuple[tuple[str, int], ...]
    registry: MoleculeRegistry

    @classmethod
    def from_atoms(cls, atoms: Atoms, *, frame: str = "frame", registry: MoleculeRegistry | None = None) -> "Topology":
        """Read the topology stored on a harness frame.

        Raises
        ------
        InputError
            If ``mol_id``/``mol_species`` are missing or inconsistent with the atoms; the message
            names ``frame``.
        """
        if "mol_id" not in atoms.arrays:
            raise InputError(f"{frame}: no per-atom 'mol_id' array (build frames with `harness box` or tag molecules)")
        if "mol_species" not in atoms.info:
            raise InputError(f"{frame}: no 'mol_species' entry in the frame info")
        registry = registry or MoleculeRegistry()
        smiles = {}
        for item in str(atoms.info.get("species_smiles", "")).split(";"):
            if "=" in item:
                k, _, v = item.partition("=")
                smiles[k] = v
        if smiles:
            registry = registry.with_smiles(smiles)
        species = tuple(s for s in str(atoms.info["mol_species"]).split(",") if s)
        mol_id = np.asarray(atoms.arrays["mol_id"], dtype=int)
        if mol_id.min(initial=0) < 0 or (len(mol_id) and mol_id.max() >= len(species)):
            raise InputError(f"{frame}: mol_id values must lie in 0..{len(species) - 1} (one per listed molecule)")
        symbols = atoms.get_chemical_symbols()
        molecules, bonds, bond_species = [], [], []
        for k, name in enumerate(species):
            mol = registry[name]
            idx = np.flatnonzero(mol_id == k)
            got = [symbols[i] for i in idx]
            if got != list(mol.symbols):
                raise InputError(
                    f"{frame}: molecule {k} ({name}) has atoms {''.join(got) or 'none'}, "
                    f"expected {''.join(mol.symbols)} in template order"
                )
            molecules.append(idx)
            for b, (i, j) in enumerate(mol.bonds):
                bonds.append((idx[i], idx[j]))
                bond_species.append((name, b))
        return cls(mol_id, species, tuple(molecules), np.array(bonds, dtype=int).reshape(-1, 2),
                   tuple(bond_species), registry)

    def bond_lengths(self, atoms: Atoms) -> np.ndarray:
        """Current lengths (Å) of the bonds, using unwrapped positions (molecules whole)."""
        d = atoms.positions[self.bonds[:, 1]] - atoms.positions[self.bonds[:, 0]]
        return np.linalg.norm(d, axis=1)

    def equilibrium_lengths(self, *, method: str = "gfn2") -> np.ndarray:
        """Reference equilibrium length (Å) of every bond (see :func:`equilibrium_bond_lengths`)."""
        table = {name: equilibrium_bond_lengths(self.registry[name], method=method) for name in set(self.species)}
        return np.array([table[name][b] for name, b in self.bond_species], dtype=float)


def _relax(atoms: Atoms, method: str) -> Atoms:
    from ase.optimize import BFGS

    if method == "gfn2":
        from harness.reference.xtb import XTBOracle

        atoms.calc = XTBOracle().make_calculator()
    elif method == "mmff":
        return atoms  # the template is already MMFF-relaxed
    else:
        raise InputError(f"unknown bond-length method {method!r}; use gfn2 or mmff")
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=500)
    return atoms


def equilibrium_bond_lengths(molecule: Molecule, *, method: str = "gfn2") -> np.ndarray:
    """Bond lengths (Å, template bond order) of the relaxed isolated molecule, cached on disk.

    Parameters
    ----------
    molecule
        The species.
    method
        ``gfn2`` relaxes with GFN2-xTB (the default reference, fmax 1e-3 eV/Å); ``mmff`` uses the
        RDKit MMFF94 geometry (no xTB needed).
    """
    from harness.reference.xtb import tblite_version

    version = tblite_version() if method == "gfn2" else "rdkit-mmff94"
    key = hashlib.sha256(json.dumps([molecule.smiles, method, version]).encode()).hexdigest()[:16]
    from harness.io import cache_dir

    path = cache_dir() / "bond-lengths" / f"{molecule.name}-{method}-{key}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            lengths = np.array(data["lengths_A"], dtype=float)
            if len(lengths) == len(molecule.bonds):
                return lengths
        except (ValueError, KeyError):
            logger.warning("ignoring corrupt bond-length cache %s", path)
    atoms = _relax(molecule.atoms(), method)
    b = np.array(molecule.bonds, dtype=int)
    lengths = np.linalg.norm(atoms.positions[b[:, 1]] - atoms.positions[b[:, 0]], axis=1)
    from harness.errors import InputError
    from harness.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"species": molecule.name, "smiles": molecule.smiles, "method": method,
                                       "version": version, "bonds": b.tolist(), "lengths_A": lengths.tolist()},
                                      indent=1))
    except InputError as exc:  # a cache that cannot be written costs a relaxation next time, nothing else
        logger.warning("bond-length cache not written: %s", exc)
    return lengths


def molecule_species_names(symbols: Sequence[str], mol_id: np.ndarray,
                           registry: MoleculeRegistry | None = None) -> list[str]:
    """Name of each molecule (``mol_id`` 0..M-1): the library species with the same formula when exactly
    one has it, else the fragment's Hill formula."""
    registry = registry or MoleculeRegistry()
    by_formula: dict[str, list[str]] = {}
    for name in registry:
        by_formula.setdefault(registry[name].formula, []).append(name)
    mol_id = np.asarray(mol_id)
    names = []
    for k in range(int(mol_id.max()) + 1):
        frag = Atoms([symbols[x] for x in np.flatnonzero(mol_id == k)]).get_chemical_formula(mode="hill")
        match = by_formula.get(frag, [])
        names.append(match[0] if len(match) == 1 else frag)
    return names


def assign_molecules(atoms: Atoms, *, mult: float = 1.2, registry: MoleculeRegistry | None = None) -> Atoms:
    """Find molecules by covalent connectivity for frames that lack ``mol_id`` (imported data).

    Bonds: atoms closer than ``mult`` × the sum of their covalent radii (minimum image in periodic
    cells). An isolated atom is its own molecule. Each fragment is named after the library species
    with the same formula when there is one (else its Hill formula) to form ``composition``;
    ``mol_species``/``species_smiles`` are set only when every fragment also has its species'
    template atom order, so the bond graph can later come from the template.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    registry = registry or MoleculeRegistry()
    n = len(atoms)
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=mult))
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # number molecules in order of their first atom
    order = {lab: k for k, lab in enumerate(dict.fromkeys(labels.tolist()))}
    mol_id = np.array([order[lab] for lab in labels], dtype=int)
    atoms.arrays["mol_id"] = mol_id
    symbols = atoms.get_chemical_symbols()
    names = molecule_species_names(symbols, mol_id, registry)
    templated = all(names[k] in registry and tuple(symbols[x] for x in np.flatnonzero(mol_id == k))
                    == registry[names[k]].symbols for k in range(len(names)))
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    atoms.info["composition"] = ",".join(f"{k}={v}" for k, v in counts.items())
    if templated:
        atoms.info["mol_species"] = ",".join(names)
        atoms.info["species_smiles"] = ";".join(f"{k}={registry[k].smiles}" for k in counts)
    return atoms
