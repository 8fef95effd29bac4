"""Density distributions P(rho) on a shared grid and the Kullback-Leibler divergence between them.

A comparison (one reference committee and the models scored against it) uses one ``DensityGrid``
and one ``KLRule`` so that every distribution lives on the same bins. KL needs a rule for bins where
the second distribution is empty and the first is not; the rule is a parameter, recorded with every
result (``KLRule.describe()``):

- ``kde`` (default): each distribution is a Gaussian kernel density estimate with a fixed bandwidth
  shared by the comparison, integrated over the bins (exact bin masses from the normal CDF), then
  floored at ``floor`` (relative to the largest bin) and renormalised. Every bin is positive, so KL is
  finite; a model whose density is far from the reference gets a large KL, as it should.
- ``pseudocount``: histogram counts plus ``pseudocount`` in every bin of the grid (0.5: the Jeffreys /
  Krichevsky-Trofimov prior), normalised. Finite everywhere; the prior's weight shrinks as 1/n_samples.
- ``strict``: plain normalised histograms; KL is ``inf`` when the model puts mass where the reference
  has none. Useful for checking, not for scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from harness.config import HarnessModel
from harness.observables.stats import correlated_mean

__all__ = ["block_masses", "finish_distribution", "DensityGrid", "KLRule", "distribution", "kl_divergence", "density_summary", "reference_kl"]


class DensityGrid(HarnessModel):
    """Bins of the density distribution, shared by every model of a comparison (g/cm³)."""

    min_g_cm3: float = Field(0.2, ge=0, description="lower edge (the NPT failure window's lower bound)")
    max_g_cm3: float = Field(2.0, gt=0, description="upper edge")
    bin_width_g_cm3: float = Field(0.005, gt=0)

    @model_validator(mode="after")
    def _order(self):
        if self.max_g_cm3 <= self.min_g_cm3 + self.bin_width_g_cm3:
            raise ValueError(f"max_g_cm3 ({self.max_g_cm3}) must exceed min_g_cm3 ({self.min_g_cm3}) by more "
                             f"than one bin ({self.bin_width_g_cm3})")
        return self

    @property
    def edges(self) -> np.ndarray:
        n = int(round((self.max_g_cm3 - self.min_g_cm3) / self.bin_width_g_cm3))
        return np.linspace(self.min_g_cm3, self.min_g_cm3 + n * self.bin_width_g_cm3, n + 1)

    @property
    def centres(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])


class KLRule(HarnessModel):
    """How P(rho) is made positive where KL needs it (see the module docstring)."""

    method: Literal["kde", "pseudocount", "strict"] = "kde"
    bandwidth_g_cm3: float = Field(0.01, gt=0, description="kde: Gaussian kernel width, shared by the comparison")
    pseudocount: float = Field(0.5, ge=0, description="pseudocount: added to every bin's count")
    floor: float = Field(1e-12, ge=0, lt=1, description="kde: smallest bin mass relative to the largest")

    def describe(self) -> dict:
        if self.method == "kde":
            return {"method": "kde", "bandwidth_g_cm3": self.bandwidth_g_cm3, "floor": self.floor}
        if self.method == "pseudocount":
            return {"method": "pseudocount", "pseudocount": self.pseudocount}
        return {"method": "strict"}


def distribution(samples, grid: DensityGrid, rule: KLRule) -> np.ndarray:
    """Probability mass per bin of ``grid`` (sums to 1) of density samples, made positive by ``rule``.

    Samples outside the grid are not dropped silently: the grid must cover them (the NPT detector's
    window is the natural grid), otherwise ``ValueError`` names how many fell outside.
    """
    x = _checked(samples, grid)
    mass = sum(_masses(x[i:i + _CHUNK], grid, rule).sum(axis=0) for i in range(0, x.size, _CHUNK))
    return finish_distribution(mass, rule)


_CHUNK = 4096  # samples per (samples, bins) array


def _checked(samples, grid: DensityGrid) -> np.ndarray:
    x = np.asarray(samples, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("no density samples (is the trajectory shorter than the equilibration cut?)")
    if not np.all(np.isfinite(x)):
        raise ValueError("non-finite density samples")
    edges = grid.edges
    outside = int(np.sum((x < edges[0]) | (x > edges[-1])))
    if outside:
        raise ValueError(f"{outside} of {x.size} density samples lie outside the grid "
                         f"[{edges[0]:g}, {edges[-1]:g}] g/cm³; widen the analysis grid")
    return x


def _masses(x: np.ndarray, grid: DensityGrid, rule: KLRule) -> np.ndarray:
    edges = grid.edges
    if rule.method == "kde":
        from scipy.special import ndtr

        return np.diff(ndtr((edges[None, :] - x[:, None]) / rule.bandwidth_g_cm3), axis=1)
    out = np.zeros((x.size, len(edges) - 1))
    out[np.arange(x.size), np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)] = 1.0
    return out


def block_masses(samples, grid: DensityGrid, rule: KLRule, block: int) -> np.ndarray:
    """Each block of ``block`` consecutive samples' mass per bin of ``grid``, before ``rule`` makes it positive:
    the summed kernel masses over the bins (kde) or counts (histograms), shape (blocks, bins); a last, shorter block
    is dropped. A distribution is linear in its samples, so that of a block bootstrap's resample (block counts
    ``c``) is :func:`finish_distribution` of ``c @ block_masses``."""
    x = _checked(samples, grid)
    block = max(1, min(int(block), x.size))
    x = x[:(x.size // block) * block]
    step = block * max(1, _CHUNK // block)
    bins = len(grid.edges) - 1
    return np.concatenate([_masses(x[i:i + step], grid, rule).reshape(-1, block, bins).sum(axis=1)
                           for i in range(0, x.size, step)])


def finish_distribution(mass, rule: KLRule) -> np.ndarray:
    """Summed sample masses (bins on the last axis) made positive by ``rule`` and normalised to 1."""
    p = np.array(mass, dtype=float)
    if rule.method == "kde":
        p = np.maximum(p, rule.floor * p.max(axis=-1, keepdims=True))
    elif rule.method == "pseudocount":
        p = p + rule.pseudocount
    return p / p.sum(axis=-1, keepdims=True)


def kl_divergence(p, q) -> float:
    """D_KL(p || q) = sum_x p(x) log(p(x)/q(x)) in nats, for probability masses on the same bins.

    Bins with p = 0 contribute 0; a bin with q = 0 < p makes the result ``inf`` (use a ``KLRule`` that
    keeps q positive). Asymmetric: ``kl_divergence(p, q) != kl_divergence(q, p)`` in general.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distributions on different grids: {p.shape} vs {q.shape}")
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("negative probability mass")
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return float("inf")
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


@dataclass(frozen=True)
class DensitySummary:
    """Mean, std and autocorrelation-corrected SEM of a density series (g/cm³)."""

    mean: float
    std: float
    sem: float
    n: int
    n_eff: float


def density_summary(samples) -> DensitySummary:
    cm = correlated_mean(np.asarray(samples, dtype=float))
    return DensitySummary(cm.mean, cm.std, cm.sem, cm.n, cm.n_eff)


@dataclass(frozen=True)
class ReferenceKL:
    """The reference side of the density term: pooled P_ref and the committee's own KL baseline."""

    pooled: np.ndarray
    baseline: float
    pairs: int
    members: tuple[str, ...]


def reference_kl(member_samples: dict[str, np.ndarray], grid: DensityGrid, rule: KLRule) -> ReferenceKL:
    """Pooled reference P(rho) (mean of the members' distributions, each member weighted equally) and the
    baseline: mean D_KL(P_ref,i || P_ref,j) over ordered pairs i != j of reference members."""
    names = tuple(sorted(member_samples))
    if len(names) < 2:
        raise ValueError(f"the KL baseline needs at least two reference members with NPT density samples, "
                         f"got {len(names)}")
    dists = {k: distribution(member_samples[k], grid, rule) for k in names}
    pooled = np.mean([dists[k] for k in names], axis=0)
    kls = [kl_divergence(dists[i], dists[j]) for i in names for j in names if i != j]
    return ReferenceKL(pooled, float(np.mean(kls)), len(kls), names)
