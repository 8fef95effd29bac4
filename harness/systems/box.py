"""Liquid boxes: molecules packed at a target density in a periodic cubic cell with packmol."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from harness.errors import InputError, ToolError
from harness.systems.composition import Composition
from harness.systems.molecules import MoleculeRegistry
from harness.systems.topology import tag_molecules
from harness.tools import find_executable
from harness.units import volume_for_density_A3

__all__ = ["build_box", "min_intermolecular_distance"]

logger = logging.getLogger(__name__)

#: packmol exits with this status when it cannot satisfy the distance tolerance.
_PACKMOL_IMPERFECT = 173


def min_intermolecular_distance(atoms: Atoms) -> float:
    """Smallest minimum-image distance (Å) between atoms of different molecules (``mol_id``)."""
    from ase.neighborlist import neighbor_list

    mol_id = atoms.arrays["mol_id"]
    cutoff = 4.0
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    inter = mol_id[i] != mol_id[j]
    return float(d[inter].min()) if inter.any() else np.inf


PACKMOL_MAX_SEED = 2**31 - 1  # packmol reads its seed as a default (32-bit) Fortran integer
MIN_TOLERANCE_A = 1.0
MAX_NLOOP = 1_000_000


def build_box(
    composition: Composition,
    density_g_cm3: float,
    *,
    seed: int = 0,
    tolerance_A: float = 2.0,
    registry: MoleculeRegistry | None = None,
    nloop: int = 200,
    packmol: str | None = None,
    timeout_s: float = 600.0,
) -> Atoms:
    """Pack ``composition`` into a cubic periodic cell at ``density_g_cm3``.

    Molecules are rigid copies of each species' MMFF geometry at random positions and orientations
    (packmol, seeded); each molecule is kept whole, its centre of mass inside the cell. No two atoms
    of different molecules are closer than ``tolerance_A`` under the minimum-image convention.

    Parameters
    ----------
    composition
        Molecule counts, placed in this order.
    density_g_cm3
        Target mass density; the cell edge follows exactly from it.
    seed
        packmol's random seed (≥ 0).
    tolerance_A
        Minimum intermolecular atom–atom distance in Å.
    nloop
        packmol's outer-loop limit; a density it cannot reach fails after this many loops.
    packmol
        Path of the packmol executable (else ``$HARNESS_PACKMOL``, then ``PATH``).

    Raises
    ------
    InputError
        Non-positive density, or a density packmol cannot reach at this tolerance.
    ToolError
        packmol missing or crashing.
    """
    registry = registry or MoleculeRegistry()
    if not np.isfinite(density_g_cm3) or density_g_cm3 <= 0:
        raise InputError(f"density must be a positive number of g/cm³, got {density_g_cm3}")
    if isinstance(seed, bool) or not 0 <= seed <= PACKMOL_MAX_SEED:
        raise InputError(f"seed must be an integer in [0, {PACKMOL_MAX_SEED}] (packmol's 32-bit seed), got {seed}")
    if isinstance(tolerance_A, bool) or not np.isfinite(tolerance_A) or tolerance_A < MIN_TOLERANCE_A:
        raise InputError(f"tolerance must be at least {MIN_TOLERANCE_A} Å (closer intermolecular contacts are not a "
                         f"liquid's), got {tolerance_A}")
    if isinstance(nloop, bool) or not 1 <= nloop <= MAX_NLOOP:
        raise InputError(f"nloop must be an integer in [1, {MAX_NLOOP}], got {nloop}")
    mols = [registry[name] for name, _ in composition.counts]
    for m in mols:
        m.validate()
    exe = find_executable("packmol", explicit=packmol, env_var="HARNESS_PACKMOL")
    mass = composition.mass_amu(registry)
    edge = volume_for_density_A3(mass, density_g_cm3) ** (1.0 / 3.0)
    # pack with a small margin so the packed structure satisfies tolerance_A strictly
    # (packmol accepts solutions whose residual is below its own precision).
    margin = 0.1
    with tempfile.TemporaryDirectory(prefix="harness-packmol-") as tmp:
        tmpdir = Path(tmp)
        lines = [
            f"tolerance {tolerance_A + margin:.4f}",
            "filetype xyz",
            "output packed.xyz",
            f"seed {int(seed)}",
            f"nloop {int(nloop)}",
            f"pbc 0. 0. 0. {edge:.6f} {edge:.6f} {edge:.6f}",
        ]
        for (name, count), mol in zip(composition.counts, mols):
            if count == 0:
                continue
            write(tmpdir / f"{name}.xyz", mol.atoms(), format="xyz")
            lines += [f"structure {name}.xyz", f"  number {count}", "end structure"]
        (tmpdir / "pack.inp").write_text("\n".join(lines) + "\n")
        logger.info("packmol: %s in a %.3f Å cube (%.4f g/cm³)", composition, edge, density_g_cm3)
        try:
            with open(tmpdir / "pack.inp") as stdin:
                proc = subprocess.run([exe], stdin=stdin, cwd=tmpdir, capture_output=True, text=True,
                                      timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ToolError(f"packmol did not finish within {timeout_s:.0f} s for {composition} at "
                            f"{density_g_cm3} g/cm³") from None
        if proc.returncode == _PACKMOL_IMPERFECT or (proc.returncode == 0 and not (tmpdir / "packed.xyz").exists()):
            raise InputError(
                f"density {density_g_cm3} g/cm³ cannot be reached by packmol for {composition} "
                f"with a {tolerance_A} Å tolerance in {nloop} loops; lower the density or the tolerance"
            )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
            raise ToolError(f"packmol failed (exit {proc.returncode}) for {composition} at {density_g_cm3} g/cm³, "
                            f"seed {seed}, tolerance {tolerance_A} Å:\n{tail}")  # its folder is gone: not named
        packed = read(tmpdir / "packed.xyz", format="xyz")
    species = [m for (name, count), m in zip(composition.counts, mols) for _ in range(count)]
    atoms = Atoms(symbols=packed.get_chemical_symbols(), positions=packed.positions,
                  cell=[edge, edge, edge], pbc=True)
    expected = [s for m in species for s in m.symbols]
    if atoms.get_chemical_symbols() != expected:
        raise ToolError("packmol returned atoms in an unexpected order; cannot assign molecules")
    tag_molecules(atoms, species)
    # keep each molecule whole with its centre of mass inside the cell
    mol_id = atoms.arrays["mol_id"]
    masses = atoms.get_masses()
    for k in range(len(species)):
        sel = mol_id == k
        com = masses[sel] @ atoms.positions[sel] / masses[sel].sum()
        atoms.positions[sel] -= np.floor(com / edge) * edge
    dmin = min_intermolecular_distance(atoms)
    if dmin < tolerance_A:
        raise InputError(
            f"packmol's packing of {composition} at {density_g_cm3} g/cm³ leaves atoms {dmin:.3f} Å apart "
            f"(< {tolerance_A} Å); lower the density or the tolerance"
        )
    atoms.info["density_g_cm3"] = float(density_g_cm3)
    atoms.info["seed"] = int(seed)
    atoms.info["builder"] = f"packmol tolerance={tolerance_A}A"
    return atoms
