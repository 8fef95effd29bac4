"""Q with its uncertainty (issue #33 item 5): the intervals cover the true value at the stated rate in repeated
synthetic draws, and an interval that ignores what it must carry (the series' correlation, the members' spread)
would not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from harness.observables import uncertainty as U
from harness.observables.density import DensityGrid, KLRule, distribution, finish_distribution, kl_divergence, \
    reference_kl
from harness.quality import committee_interval
from tests.observables_helpers import ar1

GRID = DensityGrid(min_g_cm3=0.8, max_g_cm3=1.2, bin_width_g_cm3=0.005)
RULE = KLRule(bandwidth_g_cm3=0.01)
MU, STD, PHI, N = 1.0, 0.02, 0.9, 800


def _true_d(delta: float) -> float:
    """d = KL − baseline of infinite series: the kernel-smoothed Gaussians on the grid (≈ δ²/(2(σ² + h²))); the
    reference's own baseline is 0."""
    sd = np.hypot(STD, RULE.bandwidth_g_cm3)
    p = finish_distribution(np.diff(ndtr((GRID.edges - MU - delta) / sd)), RULE)
    q = finish_distribution(np.diff(ndtr((GRID.edges - MU) / sd)), RULE)
    return kl_divergence(p, q)


def _density_coverage(reps: int, delta: float, monkeypatch=None, block: int | None = None) -> float:
    if block is not None:
        monkeypatch.setattr(U, "block_length", lambda x: block)
    d_true, hits = _true_d(delta), 0
    for rep in range(reps):
        ref = {f"r{i}": ar1(N, MU, STD, PHI, seed=1000 * rep + i) for i in range(3)}
        m = ar1(N, MU + delta, STD, PHI, seed=1000 * rep + 7)
        rk = reference_kl(ref, GRID, RULE)
        d = kl_divergence(distribution(m, GRID, RULE), rk.pooled) - rk.baseline
        iv = U.density_intervals({"m": m}, ref, {"m": d}, GRID, RULE, level=0.95, n_boot=400, seed=rep)["m"]
        hits += iv.low <= d_true <= iv.high
    return hits / reps


def test_density_term_interval_covers_the_true_d_at_about_the_stated_rate():
    """AR(1) density series (φ = 0.9, 800 samples: ~42 effective), the member shifted by one std: the interval of d
    covers the infinite-sample value in ≥ 88 % of 150 draws (nominal 95 %; measured 92.5 % over 200; binomial sd
    ~2 %) and not in every draw (it is not vacuous)."""
    assert _true_d(STD) == pytest.approx(STD ** 2 / (2 * (STD ** 2 + RULE.bandwidth_g_cm3 ** 2)), rel=0.02)
    cov = _density_coverage(150, STD)
    assert 0.88 <= cov < 1.0, cov


def test_density_interval_resampling_single_samples_undercovers(monkeypatch):
    """The same draws with blocks of one sample (the series treated as independent): coverage collapses (measured
    33 %): the test above would catch an implementation that ignores the correlation."""
    assert _density_coverage(60, STD, monkeypatch, block=1) < 0.6


def test_R_interval_reaches_one_when_the_member_matches_the_reference():
    """A member drawn like the reference (true d = 0, R = 1): R's interval reaches 1 and lies in [0, 1]."""
    ref = {f"r{i}": ar1(N, MU, STD, PHI, seed=i) for i in range(3)}
    m = ar1(N, MU, STD, PHI, seed=9)
    rk = reference_kl(ref, GRID, RULE)
    d = kl_divergence(distribution(m, GRID, RULE), rk.pooled) - rk.baseline
    iv = U.member_intervals({"m": 1.0}, {"m": d}, {"m": None}, {"m": 0.0}, {"m": m}, ref, 1.0, 0.0, GRID, RULE)["m"]
    assert iv.R.high == pytest.approx(1.0) and 0.0 <= iv.R.low < 1.0
    assert iv.V is None and iv.Q.low == pytest.approx(1.0 + iv.R.low) and iv.Q.high == pytest.approx(2.0)


def test_diffusion_term_interval_covers_the_true_V():
    """D_m and D_ref measured with normal errors (se 0.15 and 0.08 Å²/ps around 2.0 and 2.4): V's interval covers
    V_true = 1 − tanh(1/6) in 93–97 % of 2000 draws; and when D_m = D_ref the interval reaches V = 1."""
    rng = np.random.default_rng(0)
    v_true, hits, reps = 1 - np.tanh(0.4 / 2.4), 0, 2000
    for rep in range(reps):
        d_m, d_ref = 2.0 + 0.15 * rng.standard_normal(), 2.4 + 0.08 * rng.standard_normal()
        iv = U.diffusion_intervals({"m": d_m}, {"m": 0.15}, d_ref, 0.08, level=0.95, n_draws=2000, seed=rep)["m"]
        hits += iv.low <= v_true <= iv.high
    assert 0.93 <= hits / reps <= 0.97, hits / reps
    same = U.diffusion_intervals({"m": 2.0}, {"m": 0.1}, 2.0, 0.05, level=0.95)["m"]
    assert same.high == 1.0 and 0.85 < same.low < 0.92  # |x| up to 1.96·sqrt(0.1² + 0.05²)/2 = 0.11


def test_diffusion_se_takes_kinisi_else_inflates_the_overlapping_blocks():
    kin = {"D_weighted_kinisi_low_A2_ps": 1.0, "D_weighted_kinisi_high_A2_ps": 1.392, "species": {}}
    assert U.diffusion_se(kin, 2.0, 0.5) == pytest.approx(0.1)
    blocks = {"species": {"EC": {"n_molecules": 4, "sem_block_A2_ps": 0.3}, "EMC": {"n_molecules": 8,
                                                                                   "sem_block_A2_ps": 0.15}}}
    # weighted sem sqrt((4/12·0.3)² + (8/12·0.15)²) = sqrt(0.02) times sqrt(2/0.5) = 2
    assert U.diffusion_se(blocks, 2.0, 0.5) == pytest.approx(np.sqrt(0.02) * 2)


def test_member_Q_interval_is_the_bonferroni_sum_and_a_failed_run_is_exact():
    """Two uncertain terms: each at 97.5 %, so the Q interval is wider than the sum of 95 % ones; a member whose NPT
    failed (S = 0.3, no R) and whose NVT failed has Q = S exactly."""
    ref = {f"r{i}": ar1(N, MU, STD, PHI, seed=i) for i in range(3)}
    m = ar1(N, MU + STD, STD, PHI, seed=9)
    rk = reference_kl(ref, GRID, RULE)
    d = kl_divergence(distribution(m, GRID, RULE), rk.pooled) - rk.baseline
    both = U.member_intervals({"m": 1.0, "f": 0.3}, {"m": d, "f": None}, {"m": 2.0, "f": None},
                              {"m": 0.1, "f": 0.0}, {"m": m}, ref, 2.2, 0.05, GRID, RULE)
    iv = both["m"]
    assert iv.Q.low == pytest.approx(1.0 + iv.R.low + iv.V.low) and iv.Q.high == pytest.approx(1 + iv.R.high + iv.V.high)
    r95 = U.density_intervals({"m": m}, ref, {"m": d}, GRID, RULE, level=0.95)["m"]
    r975 = U.density_intervals({"m": m}, ref, {"m": d}, GRID, RULE, level=0.975)["m"]
    assert r975.high - r975.low > r95.high - r95.low
    f = both["f"]
    assert f.R is None and f.V is None and (f.Q.low, f.Q.high) == (0.3, 0.3)


def test_committee_interval_covers_the_mean_Q_of_members_at_the_stated_rate():
    """Members' Q drawn from N(1.8, 0.25) with tight measurement intervals: the committee interval (t over 3
    members ∪ the members' intervals) covers 1.8 in 94–98.5 % of 3000 draws; the measurement intervals alone would
    cover it far less often."""
    rng = np.random.default_rng(1)
    hits = narrow = 0
    for _ in range(3000):
        q = 1.8 + 0.25 * rng.standard_normal(3)
        ci = committee_interval(list(q), list(q - 0.02), list(q + 0.02))
        hits += ci.low <= 1.8 <= ci.high
        narrow += np.mean(q - 0.02) <= 1.8 <= np.mean(q + 0.02)
    assert 0.94 <= hits / 3000 <= 0.985 and narrow / 3000 < 0.3
    one = committee_interval([2.1], [1.9], [2.3])
    assert (one.low, one.high) == (1.9, 2.3) and "averaged" in one.basis
    top = committee_interval([2.95, 2.99, 2.9], [2.9, 2.95, 2.85], [3.0, 3.0, 2.95])
    assert top.high == 3.0 and "t interval over 3 members" in top.basis
    with pytest.raises(ValueError):
        committee_interval([], [], [])


def test_an_unknown_member_interval_gives_the_whole_range_not_a_silent_bound():
    ci = committee_interval([2.0, 2.1], [1.8, float("nan")], [2.2, 2.3])
    assert (ci.low, ci.high) == (0.0, 3.0) and "unknown" in ci.basis
