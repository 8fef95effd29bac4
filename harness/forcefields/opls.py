"""OPLS-AA typing of carbonate molecules and OpenMM systems for their liquids and gases.

No PyPI package types these molecules correctly, so the harness owns the parameters
(``opls_aa_carbonates.yaml``, with sources) and a rule-based typer for organic carbonates:
cyclic saturated (EC, PC: Soetens et al. types opls_771-779), linear (EMC, DEC, DMC: opls_465-469,
opls_490, opls_135, opls_140) and vinylene carbonate (VC_* types). Atoms outside these chemistries
raise :class:`TypingError` naming the molecule and atom.

Non-bonded interactions: Coulomb through ``NonbondedForce`` (PME when periodic), Lennard-Jones with
*geometric* mixing through a ``CustomNonbondedForce`` with the long-range dispersion correction
(OpenMM's ``NonbondedForce`` mixes sigma arithmetically). 1-2 and 1-3 pairs are excluded; 1-4
pairs are scaled by 0.5 as exceptions.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
from ase import Atoms

from harness.config import parse_yaml
from harness.errors import HarnessError
from harness.systems.molecules import Molecule
from harness.systems.topology import Topology

__all__ = ["OPLSParameters", "TypingError", "type_molecule", "build_system", "BondedTerms"]


class TypingError(HarnessError):
    """An atom of a molecule has no OPLS-AA type or a bonded term has no parameters."""


@dataclass(frozen=True)
class OPLSParameters:
    """The parameter tables, keyed by atom type and by atom classes."""

    types: dict[str, tuple[str, float, float, float]]
    bonds: dict[tuple[str, str], tuple[float, float]]
    angles: dict[tuple[str, str, str], tuple[float, float]]
    torsions: dict[tuple[str, str, str, str], tuple[float, ...]]
    rules: dict[str, float | str]

    @classmethod
    @functools.lru_cache(maxsize=1)
    def default(cls) -> "OPLSParameters":
        table = files("harness.forcefields").joinpath("opls_aa_carbonates.yaml")
        data = parse_yaml(table.read_text(), source=str(table))
        bonds, angles, torsions = {}, {}, {}
        for a, b, r0, k in data["bonds"]:
            bonds[(a, b)] = bonds[(b, a)] = (float(r0), float(k))
        for a, b, c, t0, k in data["angles"]:
            angles[(a, b, c)] = angles[(c, b, a)] = (float(t0), float(k))
        for row in data["rb_torsions"]:
            key, coeffs = tuple(row[:4]), tuple(float(x) for x in row[4:])
            torsions[key] = torsions[key[::-1]] = coeffs
        types = {k: (v[0], float(v[1]), float(v[2]), float(v[3])) for k, v in data["types"].items()}
        return cls(types, bonds, angles, torsions, data["rules"])


def _rdkit_mol(molecule: Molecule):
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles(molecule.smiles))
    assert tuple(a.GetSymbol() for a in mol.GetAtoms()) == molecule.symbols
    return mol


def type_molecule(molecule: Molecule) -> tuple[str, ...]:
    """OPLS-AA atom types of ``molecule`` in template order.

    Raises
    ------
    TypingError
        If an atom is outside the carbonate chemistries the parameters cover.
    """
    mol = _rdkit_mol(molecule)
    atoms = list(mol.GetAtoms())
    types: list[str | None] = [None] * len(atoms)

    def fail(i: int, why: str) -> TypingError:
        return TypingError(f"OPLS-AA typing of {molecule.name} ({molecule.smiles}): atom {i} "
                           f"({atoms[i].GetSymbol()}) {why}")

    def heavy(atom):
        return [n for n in atom.GetNeighbors() if n.GetSymbol() != "H"]

    # find carbonate groups O=C(O-)(O-) and classify each as cyclic, vinylene (VC) or linear
    kind_of_atom: dict[int, str] = {}
    for a in atoms:
        if a.GetSymbol() != "C":
            continue
        nbrs = list(a.GetNeighbors())
        oxy = [n for n in nbrs if n.GetSymbol() == "O"]
        if len(nbrs) != 3 or len(oxy) != 3:
            continue
        dbl = [n for n in oxy if mol.GetBondBetweenAtoms(a.GetIdx(), n.GetIdx()).GetBondTypeAsDouble() == 2.0]
        if len(dbl) != 1:
            continue
        ester = [n for n in oxy if n is not dbl[0]]
        if a.IsInRing():
            ring_atoms = next(set(r) for r in mol.GetRingInfo().AtomRings() if a.GetIdx() in r)
            unsat = any(mol.GetBondBetweenAtoms(i, j) is not None
                        and mol.GetBondBetweenAtoms(i, j).GetBondTypeAsDouble() >= 1.5
                        for i in ring_atoms for j in ring_atoms if i < j and a.GetIdx() not in (i, j))
            kind = "vc" if unsat else "cyclic"
        else:
            kind = "linear"
        types[a.GetIdx()] = {"cyclic": "opls_772", "vc": "VC_C2", "linear": "opls_465"}[kind]
        types[dbl[0].GetIdx()] = {"cyclic": "opls_771", "vc": "VC_O2", "linear": "opls_466"}[kind]
        for o in ester:
            types[o.GetIdx()] = {"cyclic": "opls_773", "vc": "VC_OS", "linear": "opls_467"}[kind]
            kind_of_atom[o.GetIdx()] = kind
        kind_of_atom[a.GetIdx()] = kind
    # carbons next to ester oxygens, then the rest
    for a in atoms:
        i = a.GetIdx()
        if a.GetSymbol() != "C" or types[i] is not None:
            continue
        o_nbrs = [n for n in a.GetNeighbors() if n.GetIdx() in kind_of_atom and n.GetSymbol() == "O"]
        n_h = a.GetTotalNumHs(includeNeighbors=True)
        if o_nbrs:
            kind = kind_of_atom[o_nbrs[0].GetIdx()]
            if kind == "vc":
                if a.GetHybridization().name != "SP2":
                    raise fail(i, "is an sp3 carbon in a vinylene carbonate ring (no parameters)")
                types[i] = "VC_CM"
            elif kind == "cyclic":
                c_out = [n for n in heavy(a) if n.GetSymbol() == "C" and not n.IsInRing()]
                types[i] = "opls_775" if c_out else "opls_774"
            else:  # linear: methoxy CH3 or ethoxy CH2
                types[i] = {3: "opls_468", 2: "opls_490"}.get(n_h) or "?"
                if types[i] == "?":
                    raise fail(i, f"is an O-bound carbon with {n_h} H (no parameters)")
        elif a.GetHybridization().name == "SP3" and n_h == 3 and len(heavy(a)) == 1:
            c = heavy(a)[0]
            types[i] = "opls_776" if c.IsInRing() else "opls_135"
        else:
            raise fail(i, "is not part of a carbonate, an alkoxy group or a terminal methyl")
    for a in atoms:
        i = a.GetIdx()
        if a.GetSymbol() == "H":
            parent = types[a.GetNeighbors()[0].GetIdx()]
            h = {"opls_774": "opls_777", "opls_775": "opls_778", "opls_776": "opls_779", "opls_468": "opls_469",
                 "opls_490": "opls_469", "opls_135": "opls_140", "VC_CM": "VC_HC"}.get(parent or "")
            if h is None:
                raise fail(i, f"is bonded to an atom of type {parent} (no hydrogen type)")
            types[i] = h
        elif types[i] is None:
            raise fail(i, "is not part of a carbonate group")
    return tuple(t for t in types)  # type: ignore[misc]


@dataclass(frozen=True)
class BondedTerms:
    """Bonded terms of one molecule (template indices) with their parameters."""

    bonds: tuple[tuple[int, int, float, float], ...]
    angles: tuple[tuple[int, int, int, float, float], ...]
    torsions: tuple[tuple[int, int, int, int, tuple[float, ...]], ...]
    impropers: tuple[tuple[int, int, int, int], ...]
    pairs14: tuple[tuple[int, int], ...]
    excluded: tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=None)
def bonded_terms(molecule: Molecule) -> BondedTerms:
    """Enumerate every bond, angle, proper torsion and carbonyl improper and look up parameters.

    Raises
    ------
    TypingError
        If any term's classes are missing from the tables (names the classes).
    """
    params = OPLSParameters.default()
    types = type_molecule(molecule)
    cls = [params.types[t][0] for t in types]
    n = molecule.n_atoms
    nbr: list[set[int]] = [set() for _ in range(n)]
    for i, j in molecule.bonds:
        nbr[i].add(j)
        nbr[j].add(i)

    def need(table, key, what):
        if key not in table:
            raise TypingError(f"OPLS-AA: no {what} parameters for classes {'-'.join(key)} in {molecule.name}")
        return table[key]

    bonds = tuple((i, j, *need(params.bonds, (cls[i], cls[j]), "bond")) for i, j in molecule.bonds)
    angles, torsions = [], []
    for j in range(n):
        for i in nbr[j]:
            for k in nbr[j]:
                if i < k:
                    angles.append((i, j, k, *need(params.angles, (cls[i], cls[j], cls[k]), "angle")))
    for j, k in molecule.bonds:
        for i in nbr[j] - {k}:
            for l in nbr[k] - {j}:
                if i == l:
                    continue  # three-membered ring
                torsions.append((i, j, k, l, need(params.torsions, (cls[i], cls[j], cls[k], cls[l]), "torsion")))
    impropers = []
    for c in range(n):
        if types[c] in ("opls_772", "opls_465", "VC_C2"):
            o_dbl = next(x for x in nbr[c] if cls[x] in ("O", "O_2"))
            a, b = sorted(nbr[c] - {o_dbl})
            impropers.append((a, b, c, o_dbl))  # central atom third (AMBER order)
    # topological distances for exclusions (1-2, 1-3) and 1-4 pairs (shortest path exactly 3)
    excluded, pairs14 = [], []
    for s in range(n):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            if dist[u] == 3:
                continue
            for v in nbr[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        for t, d in dist.items():
            if t > s and d in (1, 2):
                excluded.append((s, t))
            elif t > s and d == 3:
                pairs14.append((s, t))
    return BondedTerms(bonds, tuple(angles), tuple(torsions), tuple(impropers), tuple(pairs14), tuple(excluded))


def build_system(
    atoms: Atoms,
    *,
    topology: Topology | None = None,
    cutoff_nm: float = 0.6,
    ewald_tolerance: float = 5e-4,
):
    """An OpenMM ``System`` for a harness frame (periodic liquid or isolated molecules).

    Parameters
    ----------
    atoms
        A frame with ``mol_id``/``mol_species`` (see :mod:`harness.systems.topology`); periodic
        frames get PME electrostatics and cut-off LJ with the long-range correction, isolated
        ones no cut-off.
    cutoff_nm
        Real-space cut-off; must be below half the shortest cell width.

    Returns
    -------
    openmm.System
    """
    import openmm
    from openmm import unit as u

    params = OPLSParameters.default()
    topology = topology or Topology.from_atoms(atoms)
    periodic = bool(atoms.pbc.all())
    if periodic and 2 * cutoff_nm * 10 > min(atoms.cell.cellpar()[:3]) + 1e-9:
        raise HarnessError(f"OPLS-AA cut-off {cutoff_nm} nm exceeds half the cell ({atoms.cell.cellpar()[0] / 10:.3f} nm)")
    system = openmm.System()
    if periodic:
        cell_nm = np.asarray(atoms.cell[:]) / 10.0
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) * u.nanometer for row in cell_nm])
    for m in atoms.get_masses():
        system.addParticle(float(m))
    bond_f = openmm.HarmonicBondForce()
    angle_f = openmm.HarmonicAngleForce()
    rb_f = openmm.RBTorsionForce()
    imp_f = openmm.PeriodicTorsionForce()
    coul = openmm.NonbondedForce()
    lj = openmm.CustomNonbondedForce("4*eps*((sig/r)^12-(sig/r)^6); sig=sqrt(sig1*sig2); eps=sqrt(eps1*eps2)")
    lj.addPerParticleParameter("sig")
    lj.addPerParticleParameter("eps")
    if periodic:
        coul.setNonbondedMethod(openmm.NonbondedForce.PME)
        coul.setCutoffDistance(cutoff_nm)
        coul.setEwaldErrorTolerance(ewald_tolerance)
        coul.setUseDispersionCorrection(False)
        lj.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        lj.setCutoffDistance(cutoff_nm)
        lj.setUseLongRangeCorrection(True)
    else:
        coul.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
        lj.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    rules = params.rules
    k_imp = float(rules["improper_k_kJ_mol"])
    n_imp = int(rules["improper_periodicity"])
    phase = math.radians(float(rules["improper_phase_deg"]))
    s_lj, s_q = float(rules["scale14_lj"]), float(rules["scale14_coulomb"])
    per_atom = [None] * len(atoms)
    for name, idx in zip(topology.species, topology.molecules):
        mol = topology.registry[name]
        for local, t in enumerate(type_molecule(mol)):
            per_atom[idx[local]] = params.types[t]
    for cls_, q, sig, eps in per_atom:  # type: ignore[misc]
        coul.addParticle(q, 1.0, 0.0)
        lj.addParticle([sig, eps])
    for name, idx in zip(topology.species, topology.molecules):
        terms = bonded_terms(topology.registry[name])
        g = [int(x) for x in idx]
        for i, j, r0, k in terms.bonds:
            bond_f.addBond(g[i], g[j], r0, k)
        for i, j, k, t0, kk in terms.angles:
            angle_f.addAngle(g[i], g[j], g[k], math.radians(t0), kk)
        for i, j, k, l, c in terms.torsions:
            rb_f.addTorsion(g[i], g[j], g[k], g[l], *c)
        for i, j, k, l in terms.impropers:
            imp_f.addTorsion(g[i], g[j], g[k], g[l], n_imp, phase, k_imp)
        for i, j in terms.excluded:
            coul.addException(g[i], g[j], 0.0, 1.0, 0.0)
            lj.addExclusion(g[i], g[j])
        for i, j in terms.pairs14:
            _, qi, si, ei = per_atom[g[i]]  # type: ignore[misc]
            _, qj, sj, ej = per_atom[g[j]]  # type: ignore[misc]
            coul.addException(g[i], g[j], s_q * qi * qj, math.sqrt(si * sj), s_lj * math.sqrt(ei * ej))
            lj.addExclusion(g[i], g[j])
    for f in (bond_f, angle_f, rb_f, imp_f, coul, lj):
        system.addForce(f)
    return system


def total_charge(molecule: Molecule) -> float:
    params = OPLSParameters.default()
    return float(sum(params.types[t][1] for t in type_molecule(molecule)))


