"""harness.observables.stats: the standard error of a correlated mean (autocorrelation, statistical inefficiency)."""

import numpy as np
import pytest

from harness.observables.stats import autocorrelation, correlated_mean


def _ar1(phi, n, rng):
    x = np.empty(n)
    x[0] = rng.normal() / np.sqrt(1 - phi**2)
    eps = rng.normal(size=n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    return x


def test_independent_samples_have_unit_inefficiency():
    r = correlated_mean(np.random.default_rng(0).normal(size=20000))
    assert r.inefficiency == pytest.approx(1.0, abs=0.1)
    assert r.sem == pytest.approx(1 / np.sqrt(20000), rel=0.1)


def test_ar1_inefficiency_and_sem_coverage():
    """AR(1) with phi = 0.9: g = (1 + phi)/(1 - phi) = 19 exactly; the SEM predicts the spread of
    the mean over independent realisations within 15 %."""
    rng = np.random.default_rng(1)
    results = [correlated_mean(_ar1(0.9, 5000, rng)) for _ in range(60)]
    g = np.median([r.inefficiency for r in results])
    assert g == pytest.approx(19.0, rel=0.15)
    spread = np.std([r.mean for r in results], ddof=1)
    assert np.median([r.sem for r in results]) == pytest.approx(spread, rel=0.25)


def test_autocorrelation_of_cosine():
    t = np.arange(4000)
    acf = autocorrelation(np.cos(2 * np.pi * t / 100))
    assert acf[0] == 1.0 and acf[50] == pytest.approx(-1.0, abs=0.05) and acf[100] == pytest.approx(1.0, abs=0.05)


def test_too_short():
    with pytest.raises(ValueError):
        correlated_mean([1.0])
