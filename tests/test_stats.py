"""harness.stats: exact censored rank tests, distribution-free ratio bounds and Welch intervals, checked against
closed forms, scipy and their coverage in repeated draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import censored, gehan_test, mann_whitney_null, ratio_interval, welch_interval


def test_mann_whitney_null_matches_closed_forms():
    for m, n in [(3, 3), (5, 5), (3, 7), (1, 4)]:
        p = mann_whitney_null(m, n)
        assert p.sum() == pytest.approx(1.0)
        assert p[0] == pytest.approx(1 / math.comb(m + n, m)) == pytest.approx(p[-1])  # symmetric
        assert np.dot(np.arange(m * n + 1), p) == pytest.approx(m * n / 2)


def test_gehan_exact_p_and_censoring():
    out = np.array([5.0, 5.0, 5.0]), np.ones(3, bool)
    failed = np.array([0.01, 0.02, 0.015]), np.zeros(3, bool)
    r = gehan_test([(*out, *failed)])
    assert r.p_greater == pytest.approx(1 / 20) and r.p_less == pytest.approx(1.0) and r.u == 9
    # both censored: nothing decidable, p = 1 both ways
    r = gehan_test([(*out, *out)])
    assert r.informative_pairs == 0 and r.p_greater == pytest.approx(1.0) and r.p_less == pytest.approx(1.0)
    # a censored time below a failure is undecidable (the run stopped earlier than the other failed)
    r = gehan_test([(np.array([1.0]), np.array([True]), np.array([2.0]), np.array([False]))])
    assert r.u == 0
    # without censoring Gehan is Mann-Whitney: the same exact one-sided p as scipy's
    rng = np.random.default_rng(3)
    x, y = rng.exponential(2.0, 5), rng.exponential(1.0, 6)
    r = gehan_test([(x, np.zeros(5, bool), y, np.zeros(6, bool))])
    want = stats.mannwhitneyu(x, y, alternative="greater", method="exact").pvalue
    assert r.p_greater == pytest.approx(want, rel=1e-9)


def test_stratified_gehan_is_the_convolution_of_strata():
    a = (np.array([5.0] * 3), np.ones(3, bool), np.array([0.1, 0.2, 0.3]), np.zeros(3, bool))
    r = gehan_test([a, a])
    assert r.p_greater == pytest.approx((1 / 20) ** 2)


def test_ratio_bounds_cover_at_their_level_and_censoring_stays_conservative():
    """Log-normal stability times with a true ratio of 30: each one-sided 95 % bound covers >= 95 % of 2000
    draws (within binomial noise), also when the numerator arm is censored at a horizon."""
    rng = np.random.default_rng(11)
    tau, true = 2.0, 30.0
    miss_low = miss_high = miss_cens = 0
    draws = 2000
    for _ in range(draws):
        y = np.exp(rng.normal(np.log(0.02), 0.6, 5))
        x = np.exp(rng.normal(np.log(0.02 * true), 0.6, 5))
        r = ratio_interval(x, np.zeros(5, bool), y, np.zeros(5, bool), tau=1e9)
        miss_low += r.low > true
        miss_high += r.high < true
        xc = np.minimum(x, tau)
        rc = ratio_interval(xc, x >= tau, y, np.zeros(5, bool), tau=tau)
        miss_cens += rc.low > true
        assert rc.low <= r.low + 1e-12  # censoring can only lower the bound
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)
    assert miss_low / draws <= limit and miss_high / draws <= limit and miss_cens / draws <= limit
    assert miss_low / draws > 0.01  # not trivially wide


def test_ratio_bounds_refuse_what_they_cannot_bound():
    c = np.ones(3, bool)
    r = ratio_interval(np.array([1.0, 2, 3]), np.zeros(3, bool), np.array([5.0] * 3), c, tau=5.0)
    assert r.low == 0.0 and math.isfinite(r.high)  # a censored denominator: no lower bound
    assert ratio_interval(np.array([1.0, 2]), np.zeros(2, bool), np.array([3.0, 4]), np.zeros(2, bool), tau=9) is None


def test_welch_matches_scipy_and_the_within_run_floor():
    rng = np.random.default_rng(5)
    x, y = rng.normal(1.0, 0.02, 4), rng.normal(1.03, 0.05, 6)
    w = welch_interval(x, y)
    t = stats.ttest_ind(x, y, equal_var=False)
    assert w.p_less == pytest.approx(t.pvalue / 2 if t.statistic < 0 else 1 - t.pvalue / 2)
    assert w.dof == pytest.approx(t.df)
    # the members' own uncertainties set a floor on the variance of the mean
    tight = welch_interval([1.0, 1.0001, 0.9999], [1.0, 1.0001, 0.9999], x_se=[0.05] * 3, y_se=[0.05] * 3)
    assert tight.high - tight.low > 0.05
    assert welch_interval([1.0], [1.0, 2.0]) is None


def test_censored_flags():
    assert censored(np.array([5.0, 4.999, 1.0]), 5.0).tolist() == [True, True, False]
    assert censored(np.array([5.0]), 5.0, np.array([True])).tolist() == [False]  # a failure at the last check
