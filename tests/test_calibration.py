"""Committee calibration (issue #32 item 4): synthetic committees whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from harness.diagnostics.calibration import calibration_curve, calibration_summary
from harness.errors import InputError


def _committee(n_atoms, k_over, seed=0):
    """Per atom a predicted σ (log-uniform 0.05-1 eV/Å) and an error vector drawn with per-component standard
    deviation k_over·σ/√3, so E|e|² = k_over²·σ²: k_over = 1 is a calibrated committee, 2 an overconfident one."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(1.0), n_atoms))
    e = rng.normal(size=(n_atoms, 3)) * (k_over * sigma / np.sqrt(3))[:, None]
    return sigma, np.linalg.norm(e, axis=1)


def test_a_calibrated_committee_has_slope_one_and_an_overconfident_one_its_factor():
    s, e = _committee(20000, 1.0)
    got = calibration_summary(s, e)
    assert got["scale"] == pytest.approx(1.0, abs=0.03) and got["ence"] < 0.05 and got["spearman"] > 0.5
    curve = calibration_curve(s, e)
    assert len(curve) == 10 and curve.n.sum() == 20000
    assert np.allclose(curve.ratio, 1.0, atol=0.08)  # every bin on the diagonal
    s2, e2 = _committee(20000, 2.0, seed=1)
    over = calibration_summary(s2, e2)
    assert over["scale"] == pytest.approx(2.0, abs=0.06) and over["ence"] == pytest.approx(1.0, abs=0.1)
    assert over["al_threshold_expected_error_eV_A"] == pytest.approx(2.0 * np.sqrt(0.5), rel=0.04)


def test_a_sigma_that_does_not_order_the_errors_is_seen():
    """Errors drawn at one scale whatever σ says: the overall factor can be ~1 while each bin is off, which ENCE
    (not the factor) shows, and the rank correlation is ~0."""
    rng = np.random.default_rng(2)
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(1.0), 20000))
    rms = np.sqrt(np.mean(sigma ** 2))
    e = np.linalg.norm(rng.normal(size=(20000, 3)) * rms / np.sqrt(3), axis=1)
    got = calibration_summary(sigma, e)
    assert got["scale"] == pytest.approx(1.0, abs=0.05) and got["ence"] > 0.5 and abs(got["spearman"]) < 0.05


def test_too_few_atoms_and_mismatched_inputs():
    got = calibration_summary(np.ones(5), np.ones(5))
    assert np.isnan(got["scale"]) and got["n_atoms"] == 5
    with pytest.raises(InputError, match="3 predicted σ for 4 errors"):
        calibration_summary(np.ones(3), np.ones(4))
