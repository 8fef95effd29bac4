"""Trajectories for analysis: harness H5MD files or anything ASE or MDAnalysis reads.

A ``Trajectory`` holds unwrapped positions with per-frame cells, times, masses and a molecule id per
atom. Harness H5MD files store unwrapped positions; that claim is checked (no atom may move more than
half the cell between frames) and a file that violates it is refused. Other formats (extxyz, LAMMPS
dumps, XTC + topology) are usually wrapped: molecules are found by connectivity on the first frame
(unless ``mol_id`` is present), made whole, and every frame is unwrapped from fractional displacements
with its own cell, which is exact as long as no atom moves more than half a cell between frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import InputError

__all__ = ["Trajectory", "load_trajectory", "unwrap", "max_frame_jump", "molecule_com"]


@dataclass
class Trajectory:
    positions: np.ndarray  # (T, N, 3) Å, unwrapped
    cells: np.ndarray  # (T, 3, 3) Å
    time_ps: np.ndarray  # (T,)
    numbers: np.ndarray  # (N,)
    masses: np.ndarray  # (N,) amu
    mol_id: np.ndarray  # (N,) 0..M-1
    source: str = ""
    periodic: bool = True
    species: list[str] = field(default_factory=list)  # name per molecule

    def __post_init__(self):
        t, n = self.positions.shape[:2] if self.positions.ndim == 3 else (0, 0)
        for name, arr, shape in (("positions", self.positions, (t, n, 3)), ("cells", self.cells, (t, 3, 3)),
                                 ("times", self.time_ps, (t,)), ("species", self.numbers, (n,)),
                                 ("masses", self.masses, (n,)), ("mol_id", self.mol_id, (n,))):
            if np.shape(arr) != shape:
                raise InputError(f"{self.source}: {name} have shape {np.shape(arr)}, expected {shape} (positions are "
                                 f"{np.shape(self.positions)}): the file is inconsistent")
        bad = ~np.isfinite(self.positions).all(axis=(1, 2)) | ~np.isfinite(self.cells).all(axis=(1, 2))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{self.source}: frame {k} (t = {self.time_ps[k]:g} ps) has non-finite positions or cell; "
                             f"{int(bad.sum())} such frame(s) (a run that blew up: analyse it up to its failure)")
        if not self.species:
            from harness.systems.topology import molecule_species_names
            from ase.data import chemical_symbols

            self.species = molecule_species_names([chemical_symbols[z] for z in self.numbers], self.mol_id)

    @property
    def n_frames(self) -> int:
        return len(self.time_ps)

    @property
    def frame_dt_ps(self) -> float:
        """Uniform spacing of the frames; ``InputError`` if the times are not evenly spaced."""
        if self.n_frames < 2:
            raise InputError(f"{self.source}: needs at least two frames, has {self.n_frames}")
        d = np.diff(self.time_ps)
        if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9) or d[0] <= 0:
            raise InputError(f"{self.source}: frame times are not evenly spaced and increasing "
                             f"(spacings {d.min():g}..{d.max():g} ps)")
        return float(d[0])

    def densities_g_cm3(self) -> np.ndarray:
        from harness.units import AMU_PER_A3_TO_G_PER_CM3

        vol = np.abs(np.linalg.det(self.cells))
        return self.masses.sum() / vol * AMU_PER_A3_TO_G_PER_CM3

    def after(self, equilibration_ps: float) -> "Trajectory":
        """The frames at or after ``time_ps[0] + equilibration_ps``."""
        keep = self.time_ps >= self.time_ps[0] + equilibration_ps - 1e-9
        return Trajectory(self.positions[keep], self.cells[keep], self.time_ps[keep], self.numbers, self.masses,
                          self.mol_id, self.source, self.periodic, self.species)


def molecule_com(positions: np.ndarray, masses: np.ndarray, mol_id: np.ndarray) -> np.ndarray:
    """Centre of mass of each molecule: (T, N, 3) → (T, M, 3). Positions must be unwrapped and whole."""
    mol_id = np.asarray(mol_id)
    n_mol = int(mol_id.max()) + 1
    onehot = np.zeros((len(mol_id), n_mol))
    onehot[np.arange(len(mol_id)), mol_id] = masses
    onehot /= onehot.sum(axis=0, keepdims=True)
    return np.einsum("tni,nm->tmi", positions, onehot, optimize=True)


def max_frame_jump(positions: np.ndarray, cells: np.ndarray) -> tuple[float, int, int]:
    """Largest frame-to-frame displacement as a fraction of the cell (fractional coordinates):
    (fraction, frame, atom). Above 0.5 the positions are wrapped (or the frames too far apart)."""
    if len(positions) < 2:
        return 0.0, 0, 0
    frac = np.einsum("tni,tij->tnj", positions, np.linalg.inv(cells))
    d = np.abs(np.diff(frac, axis=0)).max(axis=2)
    t, a = np.unravel_index(np.argmax(d), d.shape)
    return float(d[t, a]), int(t + 1), int(a)


def unwrap(positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Unwrap a periodic trajectory with per-frame cells by the toroidal-view-preserving (TOR) scheme of von
    Bülow, Bullerjahn & Hummer (J. Chem. Phys. 153, 021101, 2020): positions are wrapped into each frame's cell,
    and the unwrapped position advances by the displacement of the wrapped one taken to its nearest image in
    the *new* cell. Under a fluctuating cell (NPT) this adds no displacement that grows with the distance from
    the origin, unlike accumulating fractional displacements or the integrator's affinely scaled positions; for
    a fixed cell it is the usual unwrapping. Frame 0 is kept as given. Shapes (T, N, 3) and (T, 3, 3)."""
    positions = np.asarray(positions, dtype=float)
    inv = np.linalg.inv(cells)
    frac = np.einsum("tni,tij->tnj", positions, inv)
    wrapped = np.einsum("tnj,tji->tni", frac - np.floor(frac), cells)
    d = np.diff(wrapped, axis=0)
    fd = np.einsum("tni,tij->tnj", d, inv[1:])
    d -= np.einsum("tnj,tji->tni", np.round(fd), cells[1:])
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(d, axis=0)])


def _make_whole(positions: np.ndarray, cell: np.ndarray, mol_id: np.ndarray) -> np.ndarray:
    """Move every atom to the image nearest its molecule's first atom (molecules smaller than half a cell)."""
    out = positions.copy()
    inv = np.linalg.inv(cell)
    for m in np.unique(mol_id):
        idx = np.flatnonzero(mol_id == m)
        d = (positions[idx] - positions[idx[0]]) @ inv
        out[idx] = positions[idx[0]] + (d - np.round(d)) @ cell
    return out


def _check_cells(traj: "Trajectory") -> None:
    """Every frame of a periodic trajectory needs a non-singular cell: volumes, densities and the unwrapping divide
    by it (non-finite cells and positions are the Trajectory's own check)."""
    vol = np.abs(np.linalg.det(traj.cells))
    bad = np.flatnonzero(vol < 1e-6)
    if len(bad):
        k = bad[0]
        raise InputError(f"{traj.source}: frame {k} (t = {traj.time_ps[k]:g} ps) has a zero or singular cell "
                         f"({np.round(traj.cells[k], 4).tolist()} Å); a periodic trajectory needs its box in every frame")


def _from_h5md(path: Path) -> Trajectory:
    from harness.h5md import read_h5md

    try:
        d = read_h5md(path)
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: not a readable harness H5MD trajectory ({exc})") from None
    if "mol_id" not in d:
        raise InputError(f"{path}: no particles/all/mol_id; molecules are needed for centre-of-mass analyses")
    traj = Trajectory(d["positions"], d["cells"], d["time_ps"], d["numbers"], d["masses"], d["mol_id"], str(path))
    _check_cells(traj)
    frac, frame, atom = max_frame_jump(traj.positions, traj.cells)
    if frac > 0.5:
        raise InputError(f"{path}: positions look wrapped: atom {atom} moves {frac:.2f} of the cell between frames "
                         f"{frame - 1} and {frame}; harness H5MD must hold unwrapped positions (write frames more "
                         "often, or convert to extxyz and let `harness observe` unwrap it)")
    return traj


def _from_ase(path: Path, dt_ps: float | None, fmt: str | None) -> Trajectory:
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:  # ASE raises many kinds for unreadable files
        raise InputError(f"{path}: ASE cannot read it as a trajectory ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise InputError(f"{path}: no frames")
    n = len(frames[0])
    for k, f in enumerate(frames):
        if len(f) != n:
            raise InputError(f"{path}: frame {k} has {len(f)} atoms, frame 0 has {n}")
    positions = np.array([f.positions for f in frames])
    cells = np.array([f.cell[:] for f in frames])
    periodic = bool(frames[0].pbc.all() and frames[0].cell.rank == 3)
    times = [f.info.get("time_ps") for f in frames]
    if dt_ps is not None:
        time_ps = np.arange(len(frames)) * dt_ps
    elif all(t is not None for t in times):
        time_ps = np.array(times, dtype=float)
    elif len(frames) > 1:
        raise InputError(f"{path}: frames carry no time_ps; give --dt-ps (time between frames)")
    else:
        time_ps = np.zeros(1)
    first = frames[0]
    if "mol_id" not in first.arrays:
        from harness.systems.topology import assign_molecules

        first = assign_molecules(first.copy())
    mol_id = np.asarray(first.arrays["mol_id"], dtype=int)
    if periodic:
        positions[0] = _make_whole(positions[0], cells[0], mol_id)
        positions = unwrap(positions, cells)
    return Trajectory(positions, cells, time_ps, first.numbers.copy(), first.get_masses(), mol_id, str(path),
                      periodic)


def _from_mdanalysis(path: Path, topology: Path, dt_ps: float | None) -> Trajectory:
    import MDAnalysis as mda
    from ase import Atoms

    try:
        u = mda.Universe(str(topology), str(path))
    except Exception as exc:
        raise InputError(f"{path} + {topology}: MDAnalysis cannot read them ({type(exc).__name__}: {exc})") from None
    try:
        symbols = [e.capitalize() for e in u.atoms.elements]
    except Exception:
        from MDAnalysis.topology.guessers import guess_types

        symbols = list(guess_types(u.atoms.names))
    positions, cells, times = [], [], []
    from ase.geometry import cellpar_to_cell

    for ts in u.trajectory:
        positions.append(u.atoms.positions.astype(float))
        cells.append(cellpar_to_cell(ts.dimensions) if ts.dimensions is not None else np.zeros((3, 3)))
        times.append(ts.time)
    positions, cells = np.array(positions), np.array(cells)
    time_ps = np.arange(len(times)) * dt_ps if dt_ps is not None else np.array(times, dtype=float)
    first = Atoms(symbols, positions=positions[0], cell=cells[0], pbc=True)
    from harness.systems.topology import assign_molecules

    mol_id = np.asarray(assign_molecules(first).arrays["mol_id"], dtype=int)
    positions[0] = _make_whole(positions[0], cells[0], mol_id)
    positions = unwrap(positions, cells)
    return Trajectory(positions, cells, time_ps, first.numbers.copy(), first.get_masses(), mol_id, str(path))


def load_trajectory(path: str | Path, *, topology: str | Path | None = None, dt_ps: float | None = None,
                    fmt: str | None = None) -> Trajectory:
    """Read a trajectory for analysis (see the module docstring). ``dt_ps`` overrides stored frame times."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such trajectory")
    if dt_ps is not None and dt_ps <= 0:
        raise InputError(f"--dt-ps must be positive, got {dt_ps}")
    if topology is not None:
        traj = _from_mdanalysis(path, Path(topology), dt_ps)
    elif path.suffix in (".h5md", ".h5") and fmt is None:
        traj = _from_h5md(path)
        if dt_ps is not None:
            traj.time_ps = traj.time_ps[0] + np.arange(traj.n_frames) * dt_ps
    else:
        traj = _from_ase(path, dt_ps, fmt)
    return traj
