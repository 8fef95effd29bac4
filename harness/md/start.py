"""Starting configurations: a packed box relaxed and equilibrated with OPLS-AA, or a given frame."""

from __future__ import annotations

import logging

from ase import Atoms

from harness.errors import InputError
from harness.md.protocol import MDProtocol

__all__ = ["prepare_start", "check_start"]

logger = logging.getLogger(__name__)


def prepare_start(protocol: MDProtocol, *, density_g_cm3: float | None = None, replica: int = 0,
                  threads: int | None = None) -> Atoms:
    """Pack the protocol's system (at ``density_g_cm3`` or the protocol's packing density),
    minimise and equilibrate it classically (OPLS-AA, NVT at the run temperature). Seeded by the
    protocol's system seed and the replica index."""
    from harness.datasets.classical_md import ClassicalMD
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    sysm = protocol.system
    rho = density_g_cm3 if density_g_cm3 is not None else sysm.density_g_cm3
    seed = sysm.seed * 1000 + replica
    box = build_box(Composition.parse(sysm.composition), rho, seed=seed)
    md = ClassicalMD(box, protocol.temperature_K, None, seed=seed, threads=threads, cutoff_nm=sysm.classical_cutoff_nm)
    md.minimize()
    if sysm.classical_equilibration_ps > 0:
        md.run_ps(sysm.classical_equilibration_ps)
    frame = md.frame()
    frame.info.update({"start": "OPLS-AA equilibrated", "start_seed": seed})
    return frame


def check_start(atoms: Atoms, *, where: str, species: tuple[str, ...] | None = None) -> None:
    """Refuse starting frames the detectors or the model cannot handle, before any step runs."""
    from harness.systems.topology import Topology

    if "mol_id" not in atoms.arrays:
        raise InputError(f"{where}: start frame has no per-atom mol_id (bond detectors need the molecules)")
    Topology.from_atoms(atoms, frame=where)
    if not atoms.pbc.all():
        raise InputError(f"{where}: start frame must be periodic in all directions")
    if species is not None:
        extra = set(atoms.get_chemical_symbols()) - set(species)
        if extra:
            raise InputError(f"{where}: the model was trained without element(s) {', '.join(sorted(extra))}")
