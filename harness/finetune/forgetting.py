"""Forgetting without the pretraining labels (issue #17 item 4): how far a fine-tuned model's energies and forces
moved from the original's on structures outside the fine-tuning data, beside its gain on the target.

Pure functions over predictions (:class:`harness.models.evaluate.Prediction`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms

__all__ = ["prediction_change", "gain_and_forgetting"]


def prediction_change(frames: Sequence[Atoms], original: Sequence, tuned: Sequence) -> dict[str, Any]:
    """RMS change of the energy per atom (meV/atom; after removing the mean shift as well, since a constant
    offset moves no dynamics) and of the force components (meV/Å) from ``original`` to ``tuned`` predictions."""
    if not (len(frames) == len(original) == len(tuned)) or not frames:
        raise ValueError("prediction_change: frames and both predictions must be non-empty and of one length")
    de = np.array([(t.energy - o.energy) / len(a) for a, o, t in zip(frames, original, tuned)])
    df = np.concatenate([(np.asarray(t.forces) - np.asarray(o.forces)).ravel() for o, t in zip(original, tuned)])
    return {"n_frames": len(frames), "n_atoms": int(sum(len(a) for a in frames)),
            "energy_change_rms_meV_atom": float(1000 * np.sqrt(np.mean(de ** 2))),
            "energy_change_mean_meV_atom": float(1000 * np.mean(de)),
            "energy_change_rms_shifted_meV_atom": float(1000 * np.std(de)),
            "forces_change_rms_meV_A": float(1000 * np.sqrt(np.mean(df ** 2)))}


def gain_and_forgetting(target_original: dict[str, float], target_tuned: dict[str, float],
                        changes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """One member's summary: force and energy RMSE on the target before and after (gain = before − after,
    positive is better), and forgetting = the mean over held-out sets of the force change (meV/Å) and of the
    energy change (meV/atom)."""
    out = {"target_forces_rmse_before_meV_A": target_original["forces_rmse_meV_A"],
           "target_forces_rmse_after_meV_A": target_tuned["forces_rmse_meV_A"],
           "target_energy_rmse_before_meV_atom": target_original["energy_rmse_meV_atom"],
           "target_energy_rmse_after_meV_atom": target_tuned["energy_rmse_meV_atom"]}
    out["target_forces_gain_meV_A"] = out["target_forces_rmse_before_meV_A"] - out["target_forces_rmse_after_meV_A"]
    out["target_energy_gain_meV_atom"] = (out["target_energy_rmse_before_meV_atom"]
                                          - out["target_energy_rmse_after_meV_atom"])
    if changes:
        out["forgetting_forces_meV_A"] = float(np.mean([c["forces_change_rms_meV_A"] for c in changes.values()]))
        out["forgetting_energy_meV_atom"] = float(np.mean([c["energy_change_rms_meV_atom"]
                                                           for c in changes.values()]))
    return out
