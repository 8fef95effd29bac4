"""Small-sample statistics for verdicts (SCIENCE.md §11): censored stability comparisons and Welch intervals.

Stability times are right-censored at the horizon τ: a run that reaches it has t_stab ≥ τ, not = τ. Every test
here treats them so, and every function is exact for the committee sizes the harness uses (3–10 members):

- :func:`gehan_test` — Gehan's generalised Wilcoxon statistic (pairs scored +1 / −1 when one time is certainly
  larger, 0 when undecidable: two censored times, or equal times) with an exact permutation p-value, optionally
  stratified (one stratum per training subset: permutations only within a stratum, the null distribution the
  convolution of the strata's). With a common censoring time τ this is the Mann–Whitney test with ties at τ.
- :func:`ratio_interval` — a distribution-free confidence interval for the ratio of two arms' stability times
  (a shift in log t): order statistics of the pairwise log-ratios at the exact Mann–Whitney quantile
  (Hodges–Lehmann / Moses). A censored time enters as τ, which can only lower a ratio with it in the
  numerator: a lower bound stays valid (conservative) when the numerator arm is censored, an upper bound when
  the denominator arm is; the other bound is then reported as unbounded.
- :func:`welch_interval` — a difference of means with Welch–Satterthwaite degrees of freedom, where each arm's
  variance is the larger of the between-member spread and the members' own within-run uncertainties.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GehanResult", "gehan_test", "RatioInterval", "ratio_interval", "mann_whitney_null",
           "WelchResult", "welch_interval", "censored", "AT_HORIZON"]

#: a t_stab within this fraction of τ counts as reaching the horizon (the runner stops at the last step ≤ τ)
AT_HORIZON = 0.999


def censored(t: np.ndarray, tau: float, failed: np.ndarray | None = None) -> np.ndarray:
    """True where a stability time is censored: the run reached ``tau`` (and, where known, did not fail)."""
    t = np.asarray(t, float)
    c = t >= AT_HORIZON * tau
    if failed is not None:
        c &= ~np.asarray(failed, bool)
    return c


def _gehan_score(x: float, cx: bool, y: float, cy: bool) -> int:
    """+1 if x is certainly larger than y, -1 if certainly smaller, 0 if undecidable."""
    if cx and cy:
        return 0
    if cx:  # x >= its time; larger than y if y's (exact) time is not above it
        return 1 if x >= y else 0
    if cy:
        return -1 if y >= x else 0
    return int(x > y) - int(x < y)


def _gehan_u(x, cx, y, cy) -> int:
    return sum(_gehan_score(a, ca, b, cb) for a, ca in zip(x, cx) for b, cb in zip(y, cy))


def _null_distribution(values: np.ndarray, flags: np.ndarray, m: int, max_exact: int = 200_000,
                       seed: int = 0) -> dict[int, float]:
    """Null distribution of Gehan's U for the first arm of size ``m`` among the pooled ``values``: every split
    (exact) when there are at most ``max_exact``, else 200 000 random splits (seeded)."""
    n = len(values)
    score = np.array([[_gehan_score(values[i], flags[i], values[j], flags[j]) for j in range(n)] for i in range(n)])
    if math.comb(n, m) <= max_exact:
        picks = np.array(list(itertools.combinations(range(n), m)), dtype=int).reshape(-1, m)
    else:
        rng = np.random.default_rng(seed)
        picks = np.array([rng.choice(n, m, replace=False) for _ in range(200_000)])
    member = np.zeros((len(picks), n))
    np.put_along_axis(member, picks, 1.0, axis=1)
    u = np.rint(np.einsum("ki,ij,kj->k", member, score, 1.0 - member)).astype(int)
    values_u, counts = np.unique(u, return_counts=True)
    return {int(k): float(c) / len(picks) for k, c in zip(values_u, counts)}


def _convolve(p: dict[int, float], q: dict[int, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for a, pa in p.items():
        for b, qb in q.items():
            out[a + b] = out.get(a + b, 0.0) + pa * qb
    return out


@dataclass(frozen=True)
class GehanResult:
    u: int                   # observed statistic: pairs where arm x certainly outlives arm y, less the reverse
    p_greater: float         # P(U >= u) under the null: evidence that x outlives y
    p_less: float            # P(U <= u): evidence that y outlives x
    n_x: int
    n_y: int
    informative_pairs: int   # pairs the score can decide (not both censored, not tied)

    def describe(self) -> str:
        return (f"Gehan U = {self.u} over {self.n_x}x{self.n_y} pairs ({self.informative_pairs} decidable), exact "
                f"permutation p = {self.p_greater:.3g} (one-sided)")


def gehan_test(strata: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> GehanResult:
    """Does arm x outlive arm y? ``strata``: per stratum ``(x, x_censored, y, y_censored)``; the statistic is the
    sum of the strata's Gehan U, its null distribution the convolution of the strata's permutation
    distributions (labels exchanged within a stratum only)."""
    dist: dict[int, float] = {0: 1.0}
    u_obs = nx = ny = informative = 0
    for x, cx, y, cy in strata:
        x, y = np.asarray(x, float), np.asarray(y, float)
        cx, cy = np.asarray(cx, bool), np.asarray(cy, bool)
        if not len(x) or not len(y):
            continue
        u_obs += _gehan_u(x, cx, y, cy)
        informative += sum(_gehan_score(a, ca, b, cb) != 0 for a, ca in zip(x, cx) for b, cb in zip(y, cy))
        nx, ny = nx + len(x), ny + len(y)
        dist = _convolve(dist, _null_distribution(np.concatenate([x, y]), np.concatenate([cx, cy]), len(x)))
    eps = 1e-12
    p_greater = min(1.0, sum(p for u, p in dist.items() if u >= u_obs - eps))
    p_less = min(1.0, sum(p for u, p in dist.items() if u <= u_obs + eps))
    return GehanResult(u_obs, p_greater, p_less, nx, ny, informative)


def mann_whitney_null(m: int, n: int) -> np.ndarray:
    """P(U = k), k = 0..m·n, of the Mann–Whitney count (pairs where the first arm is larger) under the null, for
    continuous data (exact, by the counting recursion on partitions)."""
    # number of arrangements with U = k: c(m, n, k) = c(m-1, n, k-n) + c(m, n-1, k)
    table = {}

    def c(a: int, b: int) -> np.ndarray:
        if (a, b) in table:
            return table[(a, b)]
        if a == 0 or b == 0:
            out = np.zeros(a * b + 1)
            out[0] = 1
        else:
            out = np.zeros(a * b + 1)
            left, right = c(a - 1, b), c(a, b - 1)
            out[b:b + len(left)] += left
            out[:len(right)] += right
        table[(a, b)] = out
        return out

    counts = c(m, n)
    return counts / counts.sum()


@dataclass(frozen=True)
class RatioInterval:
    estimate: float     # Hodges–Lehmann: exp(median of the pairwise log-ratios)
    low: float          # lower bound (0 when it cannot be bounded)
    high: float         # upper bound (inf when it cannot be bounded)
    level: float        # coverage of each one-sided bound
    n_x: int
    n_y: int

    def describe(self) -> str:
        hi = "∞" if math.isinf(self.high) else f"{self.high:.3g}"
        return (f"ratio {self.estimate:.3g} (one-sided {100 * self.level:.0f} % bounds {self.low:.3g} … {hi}; "
                f"Hodges–Lehmann with exact Mann–Whitney quantiles, n = {self.n_x}, {self.n_y})")


def ratio_interval(x: np.ndarray, cx: np.ndarray, y: np.ndarray, cy: np.ndarray, *, alpha: float = 0.05,
                   tau: float) -> RatioInterval | None:
    """Bounds on the ratio of stability times x/y (each bound one-sided at 1 − ``alpha``), censoring respected.

    Censored times enter as ``tau`` (their lower limit). The lower bound is the k-th smallest pairwise log-ratio
    with P(U < k) ≤ α; it stays valid when x is censored (the true ratios are larger) but not when y is, so it is
    0 then; symmetrically the upper bound is unbounded when x has censored times. None when no bound is
    possible at this level (too few members: P(U = 0) > α)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    cx, cy = np.asarray(cx, bool), np.asarray(cy, bool)
    if not len(x) or not len(y) or np.any(x <= 0) or np.any(y <= 0):
        return None
    xv = np.where(cx, tau, x)
    yv = np.where(cy, tau, y)
    d = np.sort((np.log(xv)[:, None] - np.log(yv)[None, :]).ravel())
    cdf = np.cumsum(mann_whitney_null(len(x), len(y)))
    # k (1-based): the largest with P(U <= k - 1) <= alpha
    k = int(np.searchsorted(cdf, alpha + 1e-12, side="right"))
    if k < 1:
        return None
    low = 0.0 if cy.any() else float(np.exp(d[k - 1]))
    high = math.inf if cx.any() else float(np.exp(d[len(d) - k]))
    return RatioInterval(float(np.exp(np.median(d))), low, high, 1 - alpha, len(x), len(y))


@dataclass(frozen=True)
class WelchResult:
    difference: float
    se: float
    dof: float
    low: float           # two-sided (1 - 2 alpha) interval, i.e. the one-sided (1 - alpha) bounds
    high: float
    p_greater: float     # one-sided p for difference > 0
    p_less: float
    n_x: int
    n_y: int
    level: float = 0.90  # coverage of [low, high]

    def describe(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        return (f"difference {self.difference:+.3g}{u} ({100 * self.level:.0f} % CI {self.low:+.3g} … "
                f"{self.high:+.3g}; Welch, "
                f"{self.dof:.1f} dof, n = {self.n_x}, {self.n_y})")


def _arm(values: np.ndarray, within_se: np.ndarray | None) -> tuple[float, float, int]:
    """Mean, squared standard error of the mean and n of one arm: the variance of the mean is the larger of the
    between-member spread s²/n and the members' own uncertainties Σ se_i²/n² (a small committee can show a
    spread smaller than each run's own noise)."""
    v = np.asarray(values, float)
    n = len(v)
    between = float(np.var(v, ddof=1)) / n if n > 1 else math.inf
    within = float(np.sum(np.square(within_se))) / n**2 if within_se is not None and len(within_se) else 0.0
    return float(np.mean(v)), max(between, within), n


def welch_interval(x: np.ndarray, y: np.ndarray, *, x_se: np.ndarray | None = None, y_se: np.ndarray | None = None,
                   alpha: float = 0.05) -> WelchResult | None:
    """Mean of x − mean of y with a Welch interval (None with fewer than 2 values on a side)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return None
    mx, vx, nx = _arm(x, x_se)
    my, vy, ny = _arm(y, y_se)
    se = math.sqrt(vx + vy)
    if se == 0:
        se = 1e-300
    dof = (vx + vy) ** 2 / ((vx**2 / (nx - 1) if vx else 0.0) + (vy**2 / (ny - 1) if vy else 0.0) or 1e-300)
    tq = float(stats.t.ppf(1 - alpha, dof))
    diff = mx - my
    tstat = diff / se
    return WelchResult(diff, se, dof, diff - tq * se, diff + tq * se, float(stats.t.sf(tstat, dof)),
                       float(stats.t.cdf(tstat, dof)), nx, ny, 1 - 2 * alpha)
