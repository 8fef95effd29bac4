"""Forgetting (SCIENCE.md §11): the *error increase* of a fine-tuned model over the original on labelled held-out
data outside the fine-tuning set (RMSE after − RMSE before; energies with each model's constant offset removed,
since a constant moves no dynamics), beside the *prediction change* (how far its energies and forces moved).
A change towards the labels is learning, not forgetting: only the error increase is called forgetting; held-out
sets without labels give the change alone.

Pure functions over predictions (:class:`harness.models.evaluate.Prediction`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms

__all__ = ["prediction_change", "error_increase", "gain_and_forgetting"]


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


def error_increase(frames: Sequence[Atoms], original: Sequence, tuned: Sequence) -> dict[str, Any]:
    """Force-component RMSE (meV/Å) and energy RMSE per atom with the model's mean offset removed (meV/atom), of
    ``original`` and ``tuned`` against the frames' REF labels, and their increase (tuned − original; positive is
    forgetting)."""
    if not (len(frames) == len(original) == len(tuned)) or not frames:
        raise ValueError("error_increase: frames and both predictions must be non-empty and of one length")
    ref_e = np.array([a.info["REF_energy"] / len(a) for a in frames])
    ref_f = np.concatenate([a.arrays["REF_forces"].ravel() for a in frames])
    out: dict[str, Any] = {}
    for name, preds in (("original", original), ("tuned", tuned)):
        de = np.array([p.energy / len(a) for a, p in zip(frames, preds)]) - ref_e
        df = np.concatenate([np.asarray(p.forces).ravel() for p in preds]) - ref_f
        out[f"forces_rmse_{name}_meV_A"] = float(1000 * np.sqrt(np.mean(df ** 2)))
        out[f"energy_rmse_offset_removed_{name}_meV_atom"] = float(1000 * np.std(de))
    out["forces_error_increase_meV_A"] = out["forces_rmse_tuned_meV_A"] - out["forces_rmse_original_meV_A"]
    out["energy_error_increase_meV_atom"] = (out["energy_rmse_offset_removed_tuned_meV_atom"]
                                             - out["energy_rmse_offset_removed_original_meV_atom"])
    return out


def gain_and_forgetting(target_original: dict[str, float], target_tuned: dict[str, float],
                        changes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """One member's summary: force and energy RMSE on the target before and after (gain = before − after,
    positive is better); forgetting = the mean over labelled held-out sets of the error increase (forces meV/Å,
    energies meV/atom with the offset removed; ``error_increase`` entries), and beside it the mean prediction
    change over every held-out set (``prediction_change`` entries)."""
    out = {"target_forces_rmse_before_meV_A": target_original["forces_rmse_meV_A"],
           "target_forces_rmse_after_meV_A": target_tuned["forces_rmse_meV_A"],
           "target_energy_rmse_before_meV_atom": target_original["energy_rmse_meV_atom"],
           "target_energy_rmse_after_meV_atom": target_tuned["energy_rmse_meV_atom"]}
    out["target_forces_gain_meV_A"] = out["target_forces_rmse_before_meV_A"] - out["target_forces_rmse_after_meV_A"]
    out["target_energy_gain_meV_atom"] = (out["target_energy_rmse_before_meV_atom"]
                                          - out["target_energy_rmse_after_meV_atom"])
    if changes:
        out["prediction_change_forces_meV_A"] = float(np.mean([c["forces_change_rms_meV_A"] for c in changes.values()]))
        out["prediction_change_energy_meV_atom"] = float(np.mean([c["energy_change_rms_meV_atom"]
                                                                  for c in changes.values()]))
        labelled = [c for c in changes.values() if "forces_error_increase_meV_A" in c]
        if labelled:
            out["forgetting_forces_meV_A"] = float(np.mean([c["forces_error_increase_meV_A"] for c in labelled]))
            out["forgetting_energy_meV_atom"] = float(np.mean([c["energy_error_increase_meV_atom"] for c in labelled]))
    return out
