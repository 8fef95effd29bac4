"""Arrhenius diffusivity (issue #33 item 4): kinisi's Bayesian fit on synthetic D(T) with a known activation."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import InputError
from harness.observables.arrhenius import K_B_EV_K, arrhenius_fit

T = np.array([400.0, 450.0, 500.0, 550.0, 600.0])
EA, D0 = 0.15, 1.0e-3  # eV, cm²/s: a molecular liquid's range (D(500 K) ~ 3e-5 cm²/s)


def _draw(seed: int, rel: float = 0.05):
    d = D0 * np.exp(-EA / (K_B_EV_K * T))
    rng = np.random.default_rng(seed)
    return d * (1 + rel * rng.normal(size=len(T))), rel * d


def test_the_known_activation_lies_in_its_interval_and_tight_data_pin_it():
    d, se = _draw(0)
    fit = arrhenius_fit(T, d, se)
    assert fit.activation_energy_low_eV < EA < fit.activation_energy_high_eV
    assert fit.prefactor_low_cm2_s < D0 < fit.prefactor_high_cm2_s
    assert 0.005 < fit.activation_energy_high_eV - fit.activation_energy_low_eV < 0.06
    # 0.5 % errors: the interval shrinks about tenfold around the truth
    d, se = _draw(1, rel=0.005)
    tight = arrhenius_fit(T, d, se)
    assert tight.activation_energy_eV == pytest.approx(EA, abs=0.004)
    assert tight.activation_energy_high_eV - tight.activation_energy_low_eV < 0.006
    assert arrhenius_fit(T, d, se) == tight  # a fixed seed: the same samples


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="at least three temperatures"):
        arrhenius_fit([400, 500], [1e-5, 2e-5], [1e-6, 1e-6])
    with pytest.raises(InputError, match="not at 500 K"):
        arrhenius_fit([400, 500, 600], [1e-5, -2e-5, 3e-5], [1e-6, 1e-6, 1e-6])
    with pytest.raises(InputError, match="3 temperatures, 2 diffusivities"):
        arrhenius_fit([400, 500, 600], [1e-5, 2e-5], [1e-6, 1e-6, 1e-6])
