"""Arrhenius diffusivity (issue #33 item 4): D(T) = D0 exp(−Ea / kB T) fitted with kinisi's Bayesian Arrhenius model.

The non-crystalline diffusivity database of SCIENCE.md §10 compares models with the reference by Ea and D0 over
a temperature range; a model can get the structure right and the diffusivity (or its activation) wrong. Given D and
its standard error at each temperature (the per-run estimates the harness already makes), :func:`arrhenius_fit`
returns Ea (eV) and D0 (cm²/s) as posterior means with 95 % credible intervals: a weighted least-squares line through
ln D against 1/kBT starts kinisi's maximum a-posteriori search (uniform priors, Ea in [0, 3 × the line's],
D0 in [0, 20 × the line's]), then an MCMC sample of the posterior (fixed seed: reproducible).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from harness.errors import InputError

__all__ = ["K_B_EV_K", "ArrheniusFit", "arrhenius_fit", "VFTFit", "vft_fit"]

#: Boltzmann's constant (eV/K)
K_B_EV_K = 8.617333262e-5


@dataclass(frozen=True)
class ArrheniusFit:
    """Posterior means and 95 % credible intervals of the Arrhenius parameters."""

    activation_energy_eV: float
    activation_energy_low_eV: float
    activation_energy_high_eV: float
    prefactor_cm2_s: float
    prefactor_low_cm2_s: float
    prefactor_high_cm2_s: float
    n_temperatures: int
    temperatures_K: tuple[float, ...]
    samples: int
    #: the posterior sample of Ea (for differences between fits)
    activation_energy_samples_eV: tuple[float, ...] = field(default=(), repr=False)
    prefactor_samples_cm2_s: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("activation_energy_samples_eV")
        out.pop("prefactor_samples_cm2_s")
        return out

    def ln_D(self, temperature_K) -> np.ndarray:
        """The posterior median of ln D (cm²/s) at each temperature (the curve to draw through the data: the
        posterior means of Ea and D0 taken separately need not lie on it)."""
        t = np.atleast_1d(np.asarray(temperature_K, float))
        ea, d0 = np.asarray(self.activation_energy_samples_eV), np.asarray(self.prefactor_samples_cm2_s)
        return np.median(np.log(d0)[:, None] - ea[:, None] / (K_B_EV_K * t[None, :]), axis=0)


def _checked(temperature_K, D_cm2_s, D_se_cm2_s, what: str, minimum: int):
    t = np.asarray(temperature_K, float)
    d = np.asarray(D_cm2_s, float)
    se = np.asarray(D_se_cm2_s, float)
    if not (len(t) == len(d) == len(se)):
        raise InputError(f"{what} fit: {len(t)} temperatures, {len(d)} diffusivities, {len(se)} standard errors")
    if len(np.unique(t)) < minimum:
        raise InputError(f"{what} fit: needs at least {minimum} temperatures, got {sorted(set(t.tolist()))}")
    bad = [f"{tk:g} K" for tk, dk, sk in zip(t, d, se) if not (tk > 0 and dk > 0 and sk > 0 and np.isfinite(dk + sk))]
    if bad:
        raise InputError(f"{what} fit: D and its standard error must be positive and finite (not at {', '.join(bad)})")
    return t, d, se


def _line(t, d, se) -> tuple[float, float]:
    """Ea (eV, at least 1e-3) and D0 of a weighted least-squares line through ln D against 1/kBT."""
    x = 1.0 / (K_B_EV_K * t)
    w = d / se  # the standard error of ln D is se / D
    coef = np.linalg.lstsq(np.vstack([np.ones_like(x), -x]).T * w[:, None], np.log(d) * w, rcond=None)[0]
    return max(float(coef[1]), 1e-3), float(np.exp(coef[0]))


def _sample(model_cls, t, d, se, priors, n_samples: int, n_burn: int, seed: int, x0=None):
    """kinisi's fit of ``model_cls`` sampled by MCMC from its maximum a-posteriori point, or from ``x0`` (parameter
    values in the model's units) where that search can leave the priors' support (VFT)."""
    import scipp as sc

    data = sc.DataArray(data=sc.array(dims=["temperature"], values=d, variances=se ** 2, unit="cm^2/s"),
                        coords={"temperature": sc.array(dims=["temperature"], values=t, unit="K")})
    state = np.random.get_state()
    np.random.seed(seed)  # kinisi's walkers start from numpy's global generator
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # the optimisers step outside the priors (log-prior -inf) on the way
            fit = model_cls(data, priors=priors)
            if x0 is None:
                fit.max_aposteriori()
                fit.mcmc(n_samples=n_samples, n_burn=n_burn)
            else:
                fit.mcmc(x0=[sc.scalar(float(v), unit=u) for v, u in zip(x0, fit.parameter_units)],
                         n_samples=n_samples, n_burn=n_burn)
    finally:
        np.random.set_state(state)
    return fit


@dataclass(frozen=True)
class VFTFit:
    """Vogel–Fulcher–Tammann D = D0 exp(−Ea / kB(T − T0)): posterior means and 95 % credible intervals; T0's interval
    reaching 0 says the data show no departure from Arrhenius."""

    activation_energy_eV: float
    activation_energy_low_eV: float
    activation_energy_high_eV: float
    T0_K: float
    T0_low_K: float
    T0_high_K: float
    n_temperatures: int

    def as_dict(self) -> dict:
        return asdict(self)


def vft_fit(temperature_K: Sequence[float], D_cm2_s: Sequence[float], D_se_cm2_s: Sequence[float], *,
            n_samples: int = 200, n_burn: int = 100, seed: int = 0) -> VFTFit:
    """The non-Arrhenius alternative with kinisi's VFT model (at least four temperatures: three parameters); uniform
    priors Ea in [0, 3 × the Arrhenius line's], D0 in [0, 20 × the line's], T0 in [0, 0.9 × the lowest T)."""
    from kinisi.arrhenius import VogelFulcherTammann
    from scipy.stats import uniform

    from scipy.optimize import least_squares

    t, d, se = _checked(temperature_K, D_cm2_s, D_se_cm2_s, "VFT", 4)
    ea0, d00 = _line(t, d, se)
    top = 0.9 * float(t.min())
    # the start: a weighted least-squares VFT curve in ln D within the priors' support (kinisi's own maximum
    # a-posteriori search is unbounded and can end outside it, where every walker is stuck)
    res = least_squares(lambda p: (np.log(d) - (p[1] - p[0] / (K_B_EV_K * (t - p[2])))) * d / se,
                        x0=[ea0, np.log(d00), 0.1 * top], bounds=([1e-6, -np.inf, 0.0], [3 * ea0, np.log(20 * d00), top]))
    ea_s, lnd0_s, t0_s = res.x
    x0 = [min(max(ea_s, 0.01 * ea0), 2.99 * ea0), min(np.exp(lnd0_s), 19.9 * d00), min(max(t0_s, 0.01 * top), 0.99 * top)]
    fit = _sample(VogelFulcherTammann, t, d, se, [uniform(loc=0.0, scale=3 * ea0), uniform(loc=0.0, scale=20 * d00),
                                                  uniform(loc=0.0, scale=top)],
                  n_samples, n_burn, seed, x0=x0)
    ea = np.asarray(fit.activation_energy.values, float)
    t0 = np.asarray(fit.T0.values, float)
    (ea_lo, ea_hi), (t0_lo, t0_hi) = np.percentile(ea, [2.5, 97.5]), np.percentile(t0, [2.5, 97.5])
    return VFTFit(float(ea.mean()), float(ea_lo), float(ea_hi), float(t0.mean()), float(t0_lo), float(t0_hi), len(t))


def arrhenius_fit(temperature_K: Sequence[float], D_cm2_s: Sequence[float], D_se_cm2_s: Sequence[float], *,
                  n_samples: int = 200, n_burn: int = 100, seed: int = 0) -> ArrheniusFit:
    """Ea and D0 of D(T) with their 95 % credible intervals (module docstring). At least three temperatures, each
    with a positive D and a positive standard error."""
    from kinisi.arrhenius import Arrhenius
    from scipy.stats import uniform

    t, d, se = _checked(temperature_K, D_cm2_s, D_se_cm2_s, "Arrhenius", 3)
    ea0, d00 = _line(t, d, se)
    fit = _sample(Arrhenius, t, d, se, [uniform(loc=0.0, scale=3 * ea0), uniform(loc=0.0, scale=20 * d00)],
                  n_samples, n_burn, seed)
    ea = np.asarray(fit.activation_energy.values, float)
    d0 = np.asarray(fit.preexponential_factor.values, float)
    (ea_lo, ea_hi), (d0_lo, d0_hi) = np.percentile(ea, [2.5, 97.5]), np.percentile(d0, [2.5, 97.5])
    return ArrheniusFit(float(ea.mean()), float(ea_lo), float(ea_hi), float(d0.mean()), float(d0_lo), float(d0_hi),
                        len(t), tuple(float(v) for v in t), len(ea), tuple(float(v) for v in ea),
                        tuple(float(v) for v in d0))
