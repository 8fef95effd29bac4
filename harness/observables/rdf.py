"""Radial distribution functions: molecular centre-of-mass pairs per species pair, and element pairs.

g(r) is normalised per frame with that frame's volume (valid in NPT), distances by the minimum image
of each frame's cell (triclinic allowed), r up to half the smallest perpendicular cell width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import InputError
from harness.observables.trajectory import Trajectory, molecule_com

__all__ = ["RDF", "rdf", "com_rdfs", "element_rdfs"]


@dataclass(frozen=True)
class RDF:
    pair: tuple[str, str]
    r: np.ndarray  # bin centres, Å
    g: np.ndarray

    def first_peak(self) -> tuple[float, float]:
        k = int(np.argmax(self.g))
        return float(self.r[k]), float(self.g[k])


def _half_width(cell: np.ndarray) -> float:
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return 0.5 * min(widths)


def rdf(positions: np.ndarray, cells: np.ndarray, a: np.ndarray, b: np.ndarray, *, pair=("A", "B"),
        r_max: float | None = None, bin_width: float = 0.05) -> RDF:
    """g_ab(r) over frames of ``positions`` (T, N, 3) for index sets ``a`` and ``b`` (may be equal)."""
    from ase.geometry import get_distances

    if len(positions) == 0:
        raise InputError("no frames for the RDF")
    limit = min(_half_width(c) for c in cells)
    r_max = limit if r_max is None else r_max
    if r_max > limit + 1e-9:
        raise InputError(f"RDF r_max {r_max:g} Å exceeds half the smallest cell width ({limit:.2f} Å)")
    edges = np.arange(0.0, r_max + 1e-12, bin_width)
    hist = np.zeros(len(edges) - 1)
    same = np.array_equal(a, b)
    norm = 0.0
    for pos, cell in zip(positions, cells):
        _, d = get_distances(pos[a], pos[b], cell=cell, pbc=True)
        if same:
            d = d[np.triu_indices(len(a), k=1)]
            n_pairs = len(a) * (len(a) - 1) / 2
        else:
            d = d.ravel()
            n_pairs = len(a) * len(b)
        hist += np.histogram(d, bins=edges)[0]
        norm += n_pairs / abs(np.linalg.det(cell))
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return RDF(tuple(pair), 0.5 * (edges[1:] + edges[:-1]), hist / (shell * norm))


def _frames(traj: Trajectory, max_frames: int) -> np.ndarray:
    return np.unique(np.linspace(0, traj.n_frames - 1, min(max_frames, traj.n_frames)).round().astype(int))


def com_rdfs(traj: Trajectory, *, max_frames: int = 200, bin_width: float = 0.1) -> dict[str, RDF]:
    """Centre-of-mass g(r) for every pair of molecular species ("EC-EMC", ...)."""
    idx = _frames(traj, max_frames)
    com = molecule_com(traj.positions[idx], traj.masses, traj.mol_id)
    names = sorted(set(traj.species))
    sp = np.array(traj.species)
    out = {}
    for i, s in enumerate(names):
        for t in names[i:]:
            a, b = np.flatnonzero(sp == s), np.flatnonzero(sp == t)
            if s == t and len(a) < 2:
                continue
            out[f"{s}-{t}"] = rdf(com, traj.cells[idx], a, b, pair=(s, t), bin_width=bin_width)
    return out


def element_rdfs(traj: Trajectory, pairs: list[tuple[str, str]], *, max_frames: int = 100,
                 bin_width: float = 0.05) -> dict[str, RDF]:
    """Atom-pair g(r) for element pairs such as ("O", "H"), intra- and intermolecular pairs alike."""
    from ase.data import atomic_numbers

    idx = _frames(traj, max_frames)
    out = {}
    for s, t in pairs:
        for e in (s, t):
            if e not in atomic_numbers:
                raise InputError(f"RDF pair {s}-{t}: unknown element {e!r}")
        a = np.flatnonzero(traj.numbers == atomic_numbers[s])
        b = np.flatnonzero(traj.numbers == atomic_numbers[t])
        if len(a) == 0 or len(b) == 0:
            raise InputError(f"RDF pair {s}-{t}: the trajectory has no {s if len(a) == 0 else t} atoms")
        out[f"{s}-{t}"] = rdf(traj.positions[idx], traj.cells[idx], a, b, pair=(s, t), bin_width=bin_width)
    return out
