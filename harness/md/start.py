"""Starting configurations: a packed box relaxed and equilibrated with OPLS-AA, or a given frame."""

from __future__ import annotations

import logging

from ase import Atoms

from harness.errors import InputError
from harness.md.protocol import MDProtocol, StartSpec

__all__ = ["equilibrated_frames", "prepare_start", "shared_start", "check_start"]

logger = logging.getLogger(__name__)


def equilibrated_frames(composition: str, start: StartSpec, temperature_K: float, *, seed: int, n: int = 1,
                        stride_ps: float = 0.0, density_g_cm3: float | None = None,
                        threads: int | None = None) -> list[Atoms]:
    """The one start builder: pack ``composition`` (at ``density_g_cm3``, else the start's packing
    density), minimise, equilibrate with OPLS-AA (NVT at ``temperature_K``) and keep ``n`` frames
    ``stride_ps`` apart. Seeded (packing, velocities); one-threaded OpenMM is reproducible."""
    from harness.datasets.classical_md import ClassicalMD
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    rho = density_g_cm3 if density_g_cm3 is not None else start.density_g_cm3
    box = build_box(Composition.parse(composition), rho, seed=seed)
    md = ClassicalMD(box, temperature_K, None, seed=seed, threads=threads, cutoff_nm=start.classical_cutoff_nm)
    md.minimize()
    if start.classical_equilibration_ps > 0:
        md.run_ps(start.classical_equilibration_ps)
    frames = []
    for k in range(n):
        if k:
            md.run_ps(stride_ps)
        f = md.frame()
        f.info.update({"start": "OPLS-AA equilibrated", "start_seed": seed, "start_index": k,
                       "composition": composition})
        frames.append(f)
    return frames


def prepare_start(protocol: MDProtocol, *, density_g_cm3: float | None = None, replica: int = 0,
                  threads: int | None = None) -> Atoms:
    """The protocol's starting liquid (seeded by its system seed and the replica index)."""
    sysm = protocol.system
    return equilibrated_frames(sysm.composition, sysm, protocol.temperature_K, seed=sysm.seed * 1000 + replica,
                               density_g_cm3=density_g_cm3, threads=threads)[0]


def shared_start(protocol: MDProtocol, cache_dir, *, density_g_cm3: float | None = None, replica: int = 0) -> Atoms:
    """:func:`prepare_start`, made once per workspace: every model's run of a protocol and replica starts from
    the same OPLS-AA-equilibrated liquid (SCIENCE.md: the comparison is between models, not starts), so it is
    built once and kept in ``cache_dir`` as ``start-<hash>.extxyz`` (the hash of the system, temperature,
    density and replica), written atomically; every caller gets the frame as read back from that file (one
    precision for all). A sweep's runs of one protocol then pay one classical equilibration, not one each."""
    import hashlib
    import json
    from pathlib import Path

    from harness.io import read_frames, write_frames

    key = {"system": protocol.system.hash_dump(), "temperature_K": protocol.temperature_K,
           "density_g_cm3": None if density_g_cm3 is None else round(float(density_g_cm3), 9), "replica": replica}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"start-{digest}.extxyz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frames(path, [prepare_start(protocol, density_g_cm3=density_g_cm3, replica=replica)])
    return read_frames(path)[0]


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
