"""Q with its uncertainty (SCIENCE.md §7, §11): an interval for each term of a member's Q and for Q itself.

What each term's interval carries:

- **S** = min(1, t_stab,NPT/τ) needs none: it is exact for a censored run (a run that reached τ has S = 1
  whatever its true failure time), so censoring passes through it unchanged.
- **R** = 1 − tanh(max(0, d)), d = D_KL(P_m || P_ref) − baseline: a non-overlapping block bootstrap of the
  member's NPT density series *and* of every reference member's (blocks of twice the series' statistical
  inefficiency, so neighbouring blocks are nearly independent) redraws P_m, the pooled P_ref and the baseline
  together; the interval is d̂ ± t(k − 1) · sd* · sqrt(k/(k − 1)), sd* the resamples' spread and k the fewest
  blocks of any series (a bootstrap of k blocks understates the variance by (k − 1)/k, and the blocks' spread is
  itself estimated from k of them). The baseline subtraction cancels most of the finite-sample bias of each KL.
  Measured on AR(1) series (φ = 0.9, 800 samples, 21 blocks; tests/test_uncertainty.py): ≈ 0.92 coverage at
  the nominal 0.95 (a percentile interval: 0.89; resampling single samples, as if independent: 0.33). Mapped
  through R (decreasing in d).
- **V** = 1 − tanh(|x|), x = (D_m − D_ref)/D_ref: D_m and D_ref drawn from normals with their own standard
  errors — kinisi's 95 % credible interval / 3.92 when it ran, else the overlapping-block standard error
  inflated by sqrt(block/stride) (the paper's std/sqrt(n_blocks) counts overlapping blocks as independent) —
  the percentile interval of x, mapped through V (1 at x = 0 when the interval straddles it).
- **Q_m** = S + R + V: the sum of the uncertain terms' intervals, each at level 1 − α/k for k uncertain terms
  (Bonferroni): it covers Q_m at ≥ 1 − α.

A member whose run did not reach τ has R (or V) = 0 exactly. The committee's interval
(:func:`harness.quality.committee_interval`) adds the spread between members. Fixed seeds: every interval is
reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.observables.density import DensityGrid, KLRule, block_masses, finish_distribution
from harness.observables.stats import correlated_mean

__all__ = ["TermInterval", "MemberInterval", "density_intervals", "diffusion_se", "diffusion_intervals",
           "member_intervals", "LEVEL", "BOOTSTRAP", "SEED"]

#: the level of every interval the score reports
LEVEL = 0.95
#: bootstrap resamples of the density series
BOOTSTRAP = 1000
SEED = 0


@dataclass(frozen=True)
class TermInterval:
    low: float
    high: float


@dataclass(frozen=True)
class MemberInterval:
    R: TermInterval | None  # None: exact (the run did not reach τ, R = 0)
    V: TermInterval | None
    Q: TermInterval


def _R(d):
    return 1.0 - np.tanh(np.maximum(0.0, d))


def _V(x):
    return 1.0 - np.tanh(np.abs(x))


def block_length(x: np.ndarray) -> int:
    """Twice the statistical inefficiency (samples), at least 1: blocks that far apart are nearly independent."""
    return max(1, math.ceil(2 * correlated_mean(x).inefficiency)) if len(x) > 1 else 1


def _resampled(x: np.ndarray, grid: DensityGrid, rule: KLRule, n: int,
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``n`` block-bootstrap distributions of series ``x``, shape (n, bins), and the number of blocks."""
    m = block_masses(x, grid, rule, block_length(x))
    k = m.shape[0]
    counts = np.zeros((n, k))
    idx = rng.integers(0, k, size=(n, k))
    np.add.at(counts, (np.repeat(np.arange(n), k), idx.ravel()), 1.0)
    return finish_distribution(counts @ m, rule), k


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise D_KL(p || q) of normalised, positive-where-needed masses (inf where q = 0 < p)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return terms.sum(axis=-1)


def density_intervals(members: dict[str, np.ndarray], reference: dict[str, np.ndarray], d_hat: dict[str, float],
                      grid: DensityGrid, rule: KLRule, *, level: float, n_boot: int = BOOTSTRAP,
                      seed: int = SEED) -> dict[str, TermInterval]:
    """The basic-bootstrap interval of d = D_KL(P_m || P_ref) − baseline for each member (its estimate ``d_hat``),
    the member's and the reference members' series resampled together (see the module docstring)."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(seed)
    names = sorted(reference)
    drawn = [_resampled(np.asarray(reference[k], float), grid, rule, n_boot, rng) for k in names]
    ref = np.stack([p for p, _ in drawn])
    pooled = ref.mean(axis=0)
    pairs = [_kl_rows(ref[i], ref[j]) for i in range(len(names)) for j in range(len(names)) if i != j]
    baseline = np.mean(pairs, axis=0)
    out = {}
    for name in sorted(members):
        p, k = _resampled(np.asarray(members[name], float), grid, rule, n_boot, rng)
        draws = _kl_rows(p, pooled) - baseline
        draws = draws[np.isfinite(draws)]
        if draws.size < n_boot // 2:
            raise ValueError(f"{name}: the density distribution's resamples leave the reference's support")
        blocks = min([k, *(kk for _, kk in drawn)])
        if blocks < 2:
            out[name] = TermInterval(-math.inf, math.inf)  # one block: the series cannot say its own error
            continue
        half = float(student_t.ppf(0.5 + level / 2, blocks - 1)) * float(np.std(draws, ddof=1)) \
            * math.sqrt(blocks / (blocks - 1))
        out[name] = TermInterval(d_hat[name] - half, d_hat[name] + half)
    return out


def diffusion_se(diffusion: dict, block_ps: float, stride_ps: float) -> float:
    """The composition-weighted D's standard error (Å²/ps): kinisi's 95 % credible interval / 3.92 when it ran;
    else the block scheme's weighted standard error inflated by sqrt(block/stride) for the blocks' overlap."""
    lo, hi = diffusion.get("D_weighted_kinisi_low_A2_ps"), diffusion.get("D_weighted_kinisi_high_A2_ps")
    if lo is not None and hi is not None:
        return (hi - lo) / 3.92
    species = diffusion["species"]
    n = sum(v["n_molecules"] for v in species.values())
    sem = math.sqrt(sum((v["n_molecules"] / n * v["sem_block_A2_ps"]) ** 2 for v in species.values()))
    return sem * math.sqrt(max(1.0, block_ps / stride_ps))


def diffusion_intervals(D: dict[str, float], se: dict[str, float], D_ref: float, se_ref: float, *, level: float,
                        n_draws: int = BOOTSTRAP, seed: int = SEED) -> dict[str, TermInterval]:
    """The interval of V for each member: the percentile interval of x = (D_m − D_ref)/D_ref under normal draws of
    D_m and D_ref (one D_ref draw shared by every member in a draw), mapped through V = 1 − tanh(|x|)."""
    rng = np.random.default_rng(seed + 1)
    ref = np.maximum(D_ref + se_ref * rng.standard_normal(n_draws), 1e-12 * abs(D_ref))
    a = (1 - level) / 2
    out = {}
    for name in sorted(D):
        x = (D[name] + se[name] * rng.standard_normal(n_draws) - ref) / ref
        lo, hi = np.quantile(x, [a, 1 - a])
        v_lo, v_hi = float(_V(lo)), float(_V(hi))
        out[name] = TermInterval(min(v_lo, v_hi), 1.0 if lo <= 0 <= hi else max(v_lo, v_hi))
    return out


def member_intervals(S: dict[str, float], d_hat: dict[str, float | None], D: dict[str, float | None],
                     se: dict[str, float], density: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                     D_ref: float, se_ref: float, grid: DensityGrid, rule: KLRule, *,
                     level: float = LEVEL) -> dict[str, MemberInterval]:
    """Every member's R, V and Q interval. ``d_hat``/``D`` are None for a member whose NPT/NVT run did not reach
    τ (that term is 0 exactly); ``density``: the NPT density series of those that did."""
    alpha = 1 - level
    k = {m: (d_hat[m] is not None) + (D[m] is not None) for m in S}
    # each member's terms at 1 - alpha/k: computed at the two levels that can occur, each member taking its own
    levels = {1: 1 - alpha, 2: 1 - alpha / 2}
    r_iv, v_iv = {}, {}
    for kk, lev in levels.items():
        chosen = [m for m in S if k[m] == kk]
        dens = {m: density[m] for m in chosen if d_hat[m] is not None}
        if dens:
            r_iv.update({m: TermInterval(float(_R(iv.high)), float(_R(iv.low)))
                         for m, iv in density_intervals(dens, reference, {m: d_hat[m] for m in dens}, grid, rule,
                                                        level=lev).items()})
        diff = {m: D[m] for m in chosen if D[m] is not None}
        if diff:
            v_iv.update(diffusion_intervals(diff, {m: se[m] for m in diff}, D_ref, se_ref, level=lev))
    out = {}
    for m in S:
        r, v = r_iv.get(m), v_iv.get(m)
        low = S[m] + (r.low if r else 0.0) + (v.low if v else 0.0)
        high = S[m] + (r.high if r else 0.0) + (v.high if v else 0.0)
        out[m] = MemberInterval(r, v, TermInterval(low, high))
    return out
