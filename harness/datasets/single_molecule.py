"""Isolated molecules near equilibrium (SCIENCE.md §3, config type SM).

Gas-phase classical MD (OPLS-AA, no cut-off, non-periodic) of one molecule at several
temperatures, sampled with a stride long enough to decorrelate bond and angle vibrations; frames
are non-periodic (no cell), labelled as isolated molecules by the reference.
"""

from __future__ import annotations

from typing import Sequence

from ase import Atoms

from harness.datasets.classical_md import sample_frames
from harness.systems.molecules import Molecule
from harness.systems.topology import tag_molecules

__all__ = ["sample_isolated"]


def sample_isolated(
    molecule: Molecule,
    n_frames: int,
    temperatures_K: Sequence[float],
    *,
    stride_ps: float = 0.5,
    equilibration_ps: float = 5.0,
    seed: int = 0,
    threads: int | None = None,
) -> list[Atoms]:
    """``n_frames`` gas-phase frames of ``molecule``, split evenly over ``temperatures_K``.

    Each temperature runs its own trajectory (seed ``seed + k``) from the MMFF geometry.
    """
    temps = list(temperatures_K)
    counts = [n_frames // len(temps) + (1 if k < n_frames % len(temps) else 0) for k in range(len(temps))]
    frames: list[Atoms] = []
    for k, (temp, count) in enumerate(zip(temps, counts)):
        if count == 0:
            continue
        start = tag_molecules(molecule.atoms(), [molecule])
        frames += sample_frames(start, ensemble="gas", temperature_K=temp, n_frames=count, stride_ps=stride_ps,
                                equilibration_ps=equilibration_ps, seed=seed + k, threads=threads)
    return frames
