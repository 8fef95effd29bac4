"""Is a committee's force uncertainty calibrated? (issue #32 item 4)

A committee of K members predicts, per atom i, the mean force F̄_i and the spread
σ_i² = (1/K) Σ_k |F_ik − F̄_i|² (eV²/Å², summed over the three components: the per-atom term whose maximum over
atoms is the AL rule's σ²_F). If the committee is calibrated, the actual error of its mean force has
E|F̄_i − F_i^ref|² = σ_i²: σ_i is the RMS error to expect. On labelled frames (the diagnostics' relabelled frames
of the models' own trajectories, or any labelled set through ``harness evaluate``):

* :func:`calibration_curve` — atoms binned by predicted σ (equal-count bins): RMS predicted σ against RMS actual
  error per bin (the calibration curve; calibrated: on the diagonal);
* :func:`calibration_summary` — the recalibration factor s = sqrt(Σ|e|² / Σσ²) (the single scale that makes the
  predicted variance match the observed one: σ_calibrated = s·σ), the expected normalised calibration error
  ENCE = mean over bins of |RMSE − RMσ| / RMσ (Levi et al. 2022; 0 when calibrated, and ~0.05-0.1 from sampling
  alone at a few hundred atoms per bin), Spearman's rank correlation of σ and |e| (does σ order the errors), and
  what the AL threshold means: σ²_F = 0.5 eV²/Å² — called "10× a typical error" but σ_F = 0.71 eV/Å — flags a
  frame whose worst atom is expected to be off by s × 0.71 eV/Å.

How the AL selection uses s: the rule compares the raw σ²_F with its threshold, so a threshold meant as an
expected error e_max (eV/Å) is ``max_sigma2_F_eV2_A2 = (e_max / s)²`` for that architecture.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import InputError

__all__ = ["AL_THRESHOLD_SIGMA2_F", "calibration_curve", "calibration_summary"]

#: the paper's AL threshold on σ²_F (eV²/Å²)
AL_THRESHOLD_SIGMA2_F = 0.5


def _check(sigma: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sigma, error = np.asarray(sigma, float).ravel(), np.asarray(error, float).ravel()
    if len(sigma) != len(error):
        raise InputError(f"calibration: {len(sigma)} predicted σ for {len(error)} errors")
    ok = np.isfinite(sigma) & np.isfinite(error)
    return sigma[ok], error[ok]


def calibration_curve(sigma: np.ndarray, error: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-count bin of predicted σ (eV/Å): atoms, RMS σ, RMS |error| (eV/Å) and their ratio."""
    sigma, error = _check(sigma, error)
    if len(sigma) == 0:
        return pd.DataFrame(columns=["n", "rms_sigma_eV_A", "rmse_eV_A", "ratio"])
    order = np.argsort(sigma, kind="stable")
    rows = []
    for idx in np.array_split(order, min(n_bins, len(sigma))):
        rms_s = float(np.sqrt(np.mean(sigma[idx] ** 2)))
        rmse = float(np.sqrt(np.mean(error[idx] ** 2)))
        rows.append({"n": len(idx), "rms_sigma_eV_A": rms_s, "rmse_eV_A": rmse,
                     "ratio": rmse / rms_s if rms_s > 0 else np.nan})
    return pd.DataFrame(rows)


def calibration_summary(sigma: np.ndarray, error: np.ndarray, n_bins: int = 10) -> dict:
    """The recalibration factor, ENCE, rank correlation, and the error the AL threshold corresponds to (see the
    module docstring); ``n_atoms`` beside them. NaN where there are fewer than ``n_bins`` atoms."""
    from scipy.stats import spearmanr

    sigma, error = _check(sigma, error)
    n = len(sigma)
    out = {"n_atoms": n, "n_bins": n_bins, "scale": np.nan, "ence": np.nan, "spearman": np.nan,
           "mean_sigma_eV_A": float(sigma.mean()) if n else np.nan,
           "rmse_eV_A": float(np.sqrt(np.mean(error ** 2))) if n else np.nan,
           "al_threshold_sigma_F_eV_A": float(np.sqrt(AL_THRESHOLD_SIGMA2_F)),
           "al_threshold_expected_error_eV_A": np.nan}
    if n < n_bins or not np.any(sigma > 0):
        return out
    scale = float(np.sqrt(np.sum(error ** 2) / np.sum(sigma ** 2)))
    curve = calibration_curve(sigma, error, n_bins)
    good = curve.rms_sigma_eV_A > 0
    ence = float(np.mean(np.abs(curve.rmse_eV_A[good] - curve.rms_sigma_eV_A[good]) / curve.rms_sigma_eV_A[good]))
    out.update(scale=scale, ence=ence, spearman=float(spearmanr(sigma, error).statistic),
               al_threshold_expected_error_eV_A=scale * float(np.sqrt(AL_THRESHOLD_SIGMA2_F)))
    return out
