"""Errors along a model's own trajectory (paper §4.4, SCIENCE.md §9): frames every Δt of a run relabelled
with the reference method, and the model's energy and force errors on them against time and against the
reference value.

A test set drawn from classical or reference MD says how a model does where the training data are; its
own trajectory goes where the model takes it, so errors there say whether it stays accurate where it
actually runs (paper: MACE ~4 meV/atom and ~25 meV/Å, flat in time; DeePMD several times larger and
growing over the first 100 ps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from harness.errors import InputError

__all__ = ["select_frames", "run_frames", "frame_errors", "force_error_by_reference", "summary"]


def select_frames(time_ps: np.ndarray, every_ps: float, *, t_end_ps: float | None = None,
                  max_frames: int | None = None) -> list[int]:
    """Indices of the frames at Δt, 2Δt, … (the first frame at or after each; never the start, which the
    model did not make), up to ``t_end_ps`` (a failed run: its failure time) and ``max_frames``."""
    if every_ps <= 0:
        raise InputError(f"every_ps must be positive, got {every_ps}")
    t = np.asarray(time_ps, dtype=float)
    end = t[-1] if t_end_ps is None else min(t[-1], t_end_ps)
    out: list[int] = []
    k = 1
    tol = 1e-9 * max(1.0, abs(end))
    while k * every_ps <= end + tol:
        i = int(np.searchsorted(t, k * every_ps - tol))
        if i < len(t) and (not out or i > out[-1]):
            out.append(i)
        k += 1
        if max_frames is not None and len(out) >= max_frames:
            break
    return out


def run_frames(trajectory: str | Path, indices: Sequence[int], *, info: dict[str, Any] | None = None) -> list[Atoms]:
    """Frames ``indices`` of a harness H5MD trajectory as periodic :class:`~ase.Atoms` (positions wrapped
    into the cell, ``mol_id`` kept, ``time_ps``/``frame_index`` and ``info`` in ``atoms.info``)."""
    from harness.h5md import read_h5md

    try:
        d = read_h5md(trajectory)
    except (OSError, KeyError) as exc:
        raise InputError(f"{trajectory}: not a readable harness H5MD trajectory ({exc})") from None
    n = len(d["time_ps"])
    out = []
    for i in indices:
        if not 0 <= i < n:
            raise InputError(f"{trajectory}: no frame {i} (it has {n})")
        a = Atoms(numbers=d["numbers"], positions=d["positions"][i], cell=d["cells"][i], pbc=True)
        a.wrap()
        if "mol_id" in d:
            a.arrays["mol_id"] = np.asarray(d["mol_id"], dtype=int)
        a.info.update({**(info or {}), "time_ps": float(d["time_ps"][i]), "frame_index": int(i)})
        out.append(a)
    return out


def frame_errors(frames: Sequence[Atoms], energies: Sequence[float], forces: Sequence[np.ndarray]) -> list[dict]:
    """Per labelled frame: time, reference energy (eV/atom), energy error (meV/atom) and force-component
    RMSE (meV/Å)."""
    rows = []
    for a, e, f in zip(frames, energies, forces):
        n = len(a)
        df = np.asarray(f) - a.arrays["REF_forces"]
        rows.append({"time_ps": float(a.info.get("time_ps", np.nan)), "n_atoms": n,
                     "energy_ref_eV_atom": float(a.info["REF_energy"]) / n,
                     "energy_error_meV_atom": 1000 * (float(e) - float(a.info["REF_energy"])) / n,
                     "forces_rmse_meV_A": float(1000 * np.sqrt(np.mean(df ** 2)))})
    return rows


def force_error_by_reference(frames: Sequence[Atoms], forces: Sequence[np.ndarray], *,
                             edges_eV_A: Sequence[float] = (0, 0.5, 1, 2, 4, 8, np.inf)) -> list[dict]:
    """Force-component RMSE (meV/Å) binned by the magnitude of the reference component (eV/Å): whether the
    errors sit in the large forces (strained bonds, close contacts) or everywhere."""
    ref = np.concatenate([a.arrays["REF_forces"].ravel() for a in frames]) if frames else np.zeros(0)
    err = np.concatenate([(np.asarray(f) - a.arrays["REF_forces"]).ravel() for a, f in zip(frames, forces)]) \
        if frames else np.zeros(0)
    out = []
    for lo, hi in zip(edges_eV_A[:-1], edges_eV_A[1:]):
        m = (np.abs(ref) >= lo) & (np.abs(ref) < hi)
        if m.any():
            out.append({"ref_low_eV_A": float(lo), "ref_high_eV_A": float(hi), "n": int(m.sum()),
                        "forces_rmse_meV_A": float(1000 * np.sqrt(np.mean(err[m] ** 2)))})
    return out


def summary(rows: Sequence[dict]) -> dict[str, Any]:
    """RMSE over the frames (energy per atom, force components), and the slope of the force RMSE in time
    (meV/Å per ps; a least-squares line, NaN with fewer than 3 frames): flat or growing."""
    if not rows:
        return {"n_frames": 0, "energy_rmse_meV_atom": None, "forces_rmse_meV_A": None,
                "forces_rmse_slope_meV_A_per_ps": None}
    e = np.array([r["energy_error_meV_atom"] for r in rows])
    f = np.array([r["forces_rmse_meV_A"] for r in rows])
    n = np.array([r["n_atoms"] for r in rows])
    t = np.array([r["time_ps"] for r in rows])
    slope = float(np.polyfit(t, f, 1)[0]) if len(rows) >= 3 and np.ptp(t) > 0 else None
    return {"n_frames": len(rows), "energy_rmse_meV_atom": float(np.sqrt(np.mean(e ** 2))),
            # pooled over components: frames weighted by their atom count
            "forces_rmse_meV_A": float(np.sqrt(np.sum(n * f ** 2) / np.sum(n))),
            "forces_rmse_slope_meV_A_per_ps": slope}
