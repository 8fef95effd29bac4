"""Time-series statistics: the standard error of a correlated mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CorrelatedMean", "correlated_mean", "autocorrelation"]


@dataclass(frozen=True)
class CorrelatedMean:
    """Mean of a correlated series with its autocorrelation-corrected standard error.

    ``inefficiency`` g = 1 + 2 sum_k rho(k) (twice the integrated autocorrelation time, in samples;
    1 for independent samples); ``n_eff`` = n / g; ``sem`` = std / sqrt(n_eff).
    """

    mean: float
    std: float
    sem: float
    inefficiency: float
    n: int
    n_eff: float


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation function of ``x`` (FFT, zero-padded), lags 0..n-1."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    n = len(x)
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    return acf / acf[0] if acf[0] > 0 else np.zeros(n)


def correlated_mean(x) -> CorrelatedMean:
    """Mean, std and SEM of a time series with the integrated autocorrelation time.

    tau_int = 1/2 + sum_{k>=1} rho(k), summed with Sokal's automatic window (stop at the first lag
    k >= 5 tau_int), which is robust to the noisy tail of the estimated autocorrelation.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 2:
        raise ValueError("need at least two samples")
    rho = autocorrelation(x)
    tau = 0.5
    for k in range(1, n):
        tau += rho[k]
        if k >= 5 * tau:
            break
    tau = max(tau, 0.5)
    n_eff = n / (2 * tau)
    std = float(np.std(x, ddof=1))
    return CorrelatedMean(float(np.mean(x)), std, std / np.sqrt(max(n_eff, 1.0)), 2 * tau, n, n_eff)
