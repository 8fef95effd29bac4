"""Synthetic trajectories with known answers: Brownian rigid molecules, density series, stand-in runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms

from harness.h5md import H5MDWriter

# a rigid three-atom "molecule" (C, O, O) and its atom offsets from the first atom (Å)
OFFSETS = np.array([[0.0, 0.0, 0.0], [1.16, 0.0, 0.0], [-1.16, 0.0, 0.0]])
NUMBERS = [6, 8, 8]


def brownian_molecules(n_mol: int, n_frames: int, dt_ps: float, D: float | dict, box: float, seed: int,
                       n_species: int = 1, lattice: bool = False):
    """Unwrapped positions (T, 3 n_mol, 3) of rigid molecules whose COMs perform Brownian motion with
    diffusivity D (Å²/ps; a dict per species index for several species). Species k's molecules carry
    k extra H atoms so that they have distinct formulas."""
    rng = np.random.default_rng(seed)
    species = np.arange(n_mol) % n_species
    Ds = np.array([D[k] if isinstance(D, dict) else D for k in species])
    steps = rng.normal(0.0, 1.0, (n_frames, n_mol, 3)) * np.sqrt(2 * Ds * dt_ps)[None, :, None]
    steps[0] = 0.0
    if lattice:  # start on a simple cubic lattice (no overlapping molecules)
        k = int(np.ceil(n_mol ** (1 / 3)))
        start = (np.array(np.meshgrid(*[np.arange(k)] * 3, indexing="ij")).reshape(3, -1).T[:n_mol] + 0.5) * box / k
    else:
        start = rng.uniform(0, box, (n_mol, 3))
    com = start[None] + np.cumsum(steps, axis=0)
    pos, numbers, mol_id = [], [], []
    for m in range(n_mol):
        off = np.vstack([OFFSETS, np.array([[0.0, 1.09 * (h + 1), 0.0] for h in range(species[m])]).reshape(-1, 3)])
        pos.append(com[:, m, None, :] + off[None])
        numbers += NUMBERS + [1] * species[m]
        mol_id += [m] * len(off)
    return np.concatenate(pos, axis=1), np.array(numbers), np.array(mol_id)


def write_h5md(path: Path, positions, numbers, mol_id, cells, dt_ps: float) -> Path:
    atoms = Atoms(numbers=numbers, positions=positions[0], cell=cells[0], pbc=True)
    atoms.arrays["mol_id"] = mol_id
    w = H5MDWriter(path, atoms)
    for t in range(len(positions)):
        atoms.positions = positions[t]
        atoms.cell = cells[t]
        w.write(atoms, t, t * dt_ps)
    w.close()
    return path


def ar1(n: int, mean: float, std: float, phi: float, seed: int) -> np.ndarray:
    """AR(1) series with stationary std ``std`` and lag-1 correlation ``phi``."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = rng.normal()
    e = rng.normal(size=n) * np.sqrt(1 - phi ** 2)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + e[k]
    return mean + std * x


def fake_committee(workspace: Path, arch: str, subset: str, n_members: int) -> Path:
    """A committee directory with ``n_members`` member artifacts (no model files: scoring reads runs only)."""
    from harness.models.base import ModelArtifact

    cdir = workspace / "models" / arch / subset / "mini-0123456789"
    for k in range(n_members):
        d = cdir / f"member-{k}-seed{k}"
        d.mkdir(parents=True)
        ModelArtifact(arch=arch, preset="mini", seed=k, workdir=str(d)).save()
    (cdir / "committee.json").write_text(json.dumps({"arch": arch, "members": n_members}))
    return cdir


def fake_runs(workspace: Path, member: Path, protocol, *, t_npt: float, t_nvt: float, rho_mean: float, D: float,
              seed: int) -> None:
    """Stand-in NPT (density series) and NVT (Brownian molecules) runs of one member, laid out as
    `harness md` writes them, with ``result.json`` carrying the protocol spec."""
    import pandas as pd

    from harness.models.train import model_run_name

    base = workspace / "md" / model_run_name(member) / protocol.name
    dt = 0.01
    for ens, t_stab in (("npt", t_npt), ("nvt", t_nvt)):
        run = base / f"{ens}-r0"
        run.mkdir(parents=True)
        n = int(round(t_stab / dt)) + 1
        if ens == "npt":
            rho = ar1(n, rho_mean, 0.02, 0.5, seed)
            pd.DataFrame({"step": np.arange(n), "time_ps": np.arange(n) * dt, "density_g_cm3": rho}).to_parquet(
                run / "thermo.parquet")
        else:
            pos, numbers, mol_id = brownian_molecules(40, n, dt, D, 15.0, seed, n_species=2)
            write_h5md(run / "trajectory.h5md", pos, numbers, mol_id, np.tile(np.eye(3) * 15.0, (n, 1, 1)), dt)
        failed = t_stab < protocol.horizon_ps
        result = {"ensemble": ens, "t_stab_ps": t_stab, "length_ps": protocol.horizon_ps, "completed": True,
                  "failure": {"detector": "bond_stretch", "time_ps": t_stab, "step": n, "value": 2.0,
                              "threshold": 0.5, "message": "bond 0-1 is 2.0 Å"} if failed else None,
                  "meta": {"protocol": protocol.name, "protocol_spec": protocol.model_dump(mode="json")}}
        (run / "result.json").write_text(json.dumps(result))


def quick_protocol(path: str = "protocols/mini.yaml"):
    """A shipped protocol with kinisi switched off (tests of the scoring logic, not of kinisi)."""
    from harness.md.protocol import load_protocol

    proto = load_protocol(path)
    diff = proto.analysis.diffusion.model_copy(update={"kinisi": False})
    return proto.model_copy(update={"analysis": proto.analysis.model_copy(update={"diffusion": diff})})
