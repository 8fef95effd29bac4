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

__all__ = ["K_B_EV_K", "ArrheniusFit", "arrhenius_fit"]

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


def arrhenius_fit(temperature_K: Sequence[float], D_cm2_s: Sequence[float], D_se_cm2_s: Sequence[float], *,
                  n_samples: int = 200, n_burn: int = 100, seed: int = 0) -> ArrheniusFit:
    """Ea and D0 of D(T) with their 95 % credible intervals (module docstring). At least three temperatures, each
    with a positive D and a positive standard error."""
    import scipp as sc
    from scipy.stats import uniform

    t = np.asarray(temperature_K, float)
    d = np.asarray(D_cm2_s, float)
    se = np.asarray(D_se_cm2_s, float)
    if not (len(t) == len(d) == len(se)):
        raise InputError(f"Arrhenius fit: {len(t)} temperatures, {len(d)} diffusivities, {len(se)} standard errors")
    if len(np.unique(t)) < 3:
        raise InputError(f"Arrhenius fit: needs at least three temperatures, got {sorted(set(t.tolist()))}")
    bad = [f"{tk:g} K" for tk, dk, sk in zip(t, d, se) if not (tk > 0 and dk > 0 and sk > 0 and np.isfinite(dk + sk))]
    if bad:
        raise InputError(f"Arrhenius fit: D and its standard error must be positive and finite (not at {', '.join(bad)})")
    x = 1.0 / (K_B_EV_K * t)
    w = np.sqrt((d / se) ** 2)  # the standard error of ln D is se / D
    coef = np.linalg.lstsq(np.vstack([np.ones_like(x), -x]).T * w[:, None], np.log(d) * w, rcond=None)[0]
    ea0, d00 = max(float(coef[1]), 1e-3), float(np.exp(coef[0]))
    data = sc.DataArray(data=sc.array(dims=["temperature"], values=d, variances=se ** 2, unit="cm^2/s"),
                        coords={"temperature": sc.array(dims=["temperature"], values=t, unit="K")})
    from kinisi.arrhenius import Arrhenius

    state = np.random.get_state()
    np.random.seed(seed)  # kinisi's walkers start from numpy's global generator
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # the optimisers step outside the priors (log-prior -inf) on the way
            fit = Arrhenius(data, priors=[uniform(loc=0.0, scale=3 * ea0), uniform(loc=0.0, scale=20 * d00)])
            fit.max_aposteriori()
            fit.mcmc(n_samples=n_samples, n_burn=n_burn)
    finally:
        np.random.set_state(state)
    ea = np.asarray(fit.activation_energy.values, float)
    d0 = np.asarray(fit.preexponential_factor.values, float)
    (ea_lo, ea_hi), (d0_lo, d0_hi) = np.percentile(ea, [2.5, 97.5]), np.percentile(d0, [2.5, 97.5])
    return ArrheniusFit(float(ea.mean()), float(ea_lo), float(ea_hi), float(d0.mean()), float(d0_lo), float(d0_hi),
                        len(t), tuple(float(v) for v in t), len(ea), tuple(float(v) for v in ea),
                        tuple(float(v) for v in d0))
