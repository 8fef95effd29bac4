"""Rigid-molecule volume scans (SCIENCE.md §3, config type VS).

A scan scales the molecular centres of mass of one liquid frame isotropically, together with the
cell, while every molecule moves rigidly: all intramolecular distances stay exactly as they were.
One scan = one frame × a density grid, from the dilute limit to beyond the liquid (~2 g/cm³).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from harness.errors import InputError
from harness.systems.topology import Topology
from harness.units import density_g_cm3

__all__ = ["volume_scan", "density_grid"]


def density_grid(low_g_cm3: float, high_g_cm3: float, n: int) -> np.ndarray:
    """``n`` densities spaced evenly in cell edge (i.e. in ρ^(-1/3)) between ``low`` and ``high``."""
    if not (0 < low_g_cm3 < high_g_cm3) or n < 2:
        raise InputError(f"density grid needs 0 < low < high and n >= 2, got {low_g_cm3}, {high_g_cm3}, {n}")
    edges = np.linspace(low_g_cm3 ** (-1 / 3), high_g_cm3 ** (-1 / 3), n)
    return edges ** -3


def volume_scan(atoms: Atoms, densities_g_cm3: Sequence[float], *, scan_id: str | None = None) -> list[Atoms]:
    """Frames of ``atoms`` rescaled to each density, molecules rigid.

    Parameters
    ----------
    atoms
        A periodic frame with molecular topology and whole (unwrapped) molecules.
    densities_g_cm3
        Target densities; each frame's density equals its target to machine precision.
    scan_id
        Tag written to every frame (``scan_id``), with ``scan_index`` and ``scan_scale``.
    """
    if not atoms.pbc.all():
        raise InputError("a volume scan needs a periodic frame")
    topo = Topology.from_atoms(atoms)
    rho0 = density_g_cm3(atoms)
    masses = atoms.get_masses()
    out = []
    for k, rho in enumerate(densities_g_cm3):
        if not rho > 0:
            raise InputError(f"volume scan density must be positive, got {rho}")
        s = (rho0 / rho) ** (1.0 / 3.0)
        frame = atoms.copy()
        frame.calc = None
        frame.set_cell(atoms.cell[:] * s, scale_atoms=False)
        for idx in topo.molecules:
            com = masses[idx] @ atoms.positions[idx] / masses[idx].sum()
            frame.positions[idx] = atoms.positions[idx] + (s - 1.0) * com
        for key in [k for k in frame.info if k.startswith("REF_")] + ["time_ps", "uid"]:
            frame.info.pop(key, None)
        frame.arrays.pop("REF_forces", None)
        frame.info.update({"density_g_cm3": float(density_g_cm3(frame)), "scan_index": k, "scan_scale": float(s)})
        if scan_id is not None:
            frame.info["scan_id"] = scan_id
        out.append(frame)
    return out
