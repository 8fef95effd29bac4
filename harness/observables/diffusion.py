"""Centre-of-mass self-diffusivity per molecular species (SCIENCE.md §6).

Two estimators, both from unwrapped molecular centres of mass with the system's centre-of-mass drift
removed:

- ``block``: the paper's scheme and the one that enters Q. After the equilibration cut, blocks of
  ``block_ps`` whose origins are ``block_stride_ps`` apart; within a block the MSD is averaged over all
  time origins (FFT, O(L log L)); lags below ``skip_ps`` (ballistic) are dropped; D = slope/6 of a
  least-squares line. Reported as the mean over blocks with the paper's error bar std/sqrt(n_blocks),
  which is too small because overlapping blocks are correlated.
- ``kinisi``: the Bayesian generalised-least-squares estimator of kinisi (posterior mean and 95 %
  credible interval), which models the correlation between MSD points: the honest uncertainty.

Units: Å²/ps inside; ``A2_PER_PS_TO_1E6_CM2_PER_S`` = 100 converts to the 1e-6 cm²/s of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, model_validator

from harness.config import HarnessModel
from harness.errors import InputError
from harness.observables.trajectory import Trajectory, molecule_com
from harness.units import A2_PER_PS_TO_1E6_CM2_PER_S

__all__ = ["DiffusionSpec", "msd_fft", "msd_naive", "block_diffusivity", "kinisi_diffusivity",
           "species_diffusivity", "weighted_diffusivity", "local_exponent", "yeh_hummer", "A2_PER_PS_TO_1E6_CM2_PER_S",
           "DIFFUSIVE_BETA", "XI_CUBIC", "diffusive_verdict", "BETA_BOOTSTRAP"]

#: below this local exponent over the fit window the MSD is not yet linear in t (SCIENCE.md §11)
DIFFUSIVE_BETA = 0.9
#: molecule-bootstrap resamples behind β's 95 % interval (fixed seed: the interval is reproducible)
BETA_BOOTSTRAP = 1000
#: the Madelung-like constant of the Yeh-Hummer correction for a cubic periodic cell
XI_CUBIC = 2.837297



class DiffusionSpec(HarnessModel):
    """The block scheme's lengths (paper: 100 ps blocks, origins 10 ps apart, first 10 ps dropped)."""

    block_ps: float = Field(100.0, gt=0, description="length of each MSD block")
    block_stride_ps: float = Field(10.0, gt=0, description="time between block origins")
    skip_ps: float = Field(10.0, ge=0, description="ballistic lags dropped before the linear fit")
    kinisi: bool = Field(True, description="also run kinisi's Bayesian estimator")
    viscosity_mPa_s: float | None = Field(None, gt=0, description="shear viscosity of the liquid at the run's "
                                          "state point, for the Yeh-Hummer finite-size correction (reported, not "
                                          "applied to Q); without it only the correction's coefficient is given")
    kinisi_max_intervals: int = Field(100, ge=4, description="frames are thinned so that at most this many "
                                      "consecutive intervals up to block_ps go to kinisi")
    kinisi_samples: int = Field(1000, ge=100, description="MCMC samples per walker")
    seed: int = Field(0, ge=0, description="kinisi MCMC seed")

    @model_validator(mode="after")
    def _lengths(self):
        if self.skip_ps >= self.block_ps:
            raise ValueError(f"skip_ps ({self.skip_ps}) must be shorter than block_ps ({self.block_ps})")
        return self


def msd_fft(x: np.ndarray, per_particle: bool = False) -> np.ndarray:
    """MSD(lag) averaged over all time origins and particles, for x of shape (L, P, 3), lags 0..L-1
    (``per_particle``: averaged over time origins only, shape (L, P)).

    MSD(m) = S1(m) - 2 S2(m) with S2 the position autocorrelation (FFT, zero-padded) and S1 from
    cumulative sums of |r|² (the algorithm of Calandrini et al. 2011, also used by tidynamics),
    vectorised over particles.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    f = np.fft.rfft(flat, 2 * n, axis=0)
    s2 = np.fft.irfft(f * np.conj(f), 2 * n, axis=0)[:n].sum(axis=1)
    if per_particle:
        s2 = np.fft.irfft(f * np.conj(f), 2 * n, axis=0)[:n].reshape(n, -1, 3).sum(axis=2)
        d = np.sum(x.reshape(n, -1, 3) ** 2, axis=2)
        cs = np.concatenate([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
        m = np.arange(n)
        s1 = cs[n - m] + (cs[n] - cs[m])
        return (s1 - 2 * s2) / (n - m)[:, None]
    s2 = np.fft.irfft(f * np.conj(f), 2 * n, axis=0)[:n].sum(axis=1)
    d = np.sum(flat ** 2, axis=1)
    cs = np.concatenate([[0.0], np.cumsum(d)])
    m = np.arange(n)
    s1 = cs[n - m] + (cs[n] - cs[m])
    n_particles = flat.shape[1] / 3
    return (s1 - 2 * s2) / (n - m) / n_particles


def msd_naive(x: np.ndarray) -> np.ndarray:
    """The O(L²) reference: for each lag, the mean over origins and particles of |r(t+m) - r(t)|²."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    out = np.zeros(n)
    for m in range(1, n):
        out[m] = np.mean(np.sum((x[m:] - x[:-m]) ** 2, axis=-1))
    return out


@dataclass(frozen=True)
class BlockResult:
    """Block-scheme diffusivity of one species in one trajectory (Å²/ps); ``beta``: the local exponent
    d ln MSD / d ln t over the fit window of the block-averaged MSD (1 when diffusive), ``beta_low`` /
    ``beta_high`` its 95 % interval from a bootstrap over the species' molecules (NaN below 2 molecules)."""

    D_blocks: tuple[float, ...]
    n_molecules: int
    beta: float = float("nan")
    beta_low: float = float("nan")
    beta_high: float = float("nan")

    @property
    def diffusive(self) -> bool | None:
        """True when β's whole interval is ≥ 0.9, False when it is wholly below, None (undetermined) when it
        straddles 0.9 or there is no interval."""
        return diffusive_verdict(self.beta_low, self.beta_high)

    @property
    def D(self) -> float:
        return float(np.mean(self.D_blocks))

    @property
    def sem(self) -> float:
        """The paper's error bar, std/sqrt(n_blocks) (optimistic: blocks overlap)."""
        n = len(self.D_blocks)
        return float(np.std(self.D_blocks, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


@dataclass(frozen=True)
class KinisiResult:
    """kinisi posterior of D (Å²/ps): mean and 95 % credible interval."""

    D: float
    low: float
    high: float
    samples: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))


def _block_grid(traj: Trajectory, spec: DiffusionSpec) -> tuple[float, int, int, int]:
    dt = traj.frame_dt_ps
    length = round(spec.block_ps / dt)
    stride = max(1, round(spec.block_stride_ps / dt))
    skip = int(np.ceil(spec.skip_ps / dt - 1e-9))
    if length + 1 > traj.n_frames:
        raise InputError(f"{traj.source}: {traj.n_frames} frames ({(traj.n_frames - 1) * dt:g} ps after the "
                         f"equilibration cut) are fewer than one MSD block of {spec.block_ps:g} ps; shorten "
                         "block_ps or run longer")
    if length - skip < 2:
        raise InputError(f"{traj.source}: a block of {spec.block_ps:g} ps minus {spec.skip_ps:g} ps skipped leaves "
                         f"{length - skip} lags at {dt:g} ps per frame; need at least 2")
    return dt, length, stride, skip


def _com_by_species(traj: Trajectory) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Drift-free molecular COMs (T, M, 3) and the molecule indices of each species."""
    com = molecule_com(traj.positions, traj.masses, traj.mol_id)
    if np.ptp(traj.cells, axis=0).max() > 0:
        # a fluctuating cell (NPT): the integrator's positions scale with the cell, which adds displacements that
        # grow with the distance from the origin; TOR-unwrap the centres of mass (SCIENCE.md §11)
        from harness.observables.trajectory import unwrap

        com = unwrap(com, traj.cells)
    mol_mass = np.bincount(traj.mol_id, weights=traj.masses)
    drift = np.einsum("tmi,m->ti", com, mol_mass / mol_mass.sum())
    com = com - drift[:, None, :]
    groups: dict[str, list[int]] = {}
    for k, name in enumerate(traj.species):
        groups.setdefault(name, []).append(k)
    return com, {k: np.array(v) for k, v in groups.items()}


def diffusive_verdict(beta_low: float, beta_high: float) -> bool | None:
    """The diffusive-regime verdict from β's 95 % interval: True when it lies wholly at or above 0.9, False
    when wholly below, None (undetermined) otherwise (SCIENCE.md §11)."""
    if not (np.isfinite(beta_low) and np.isfinite(beta_high)):
        return None
    if beta_low >= DIFFUSIVE_BETA:
        return True
    if beta_high < DIFFUSIVE_BETA:
        return False
    return None


def block_diffusivity(com: np.ndarray, dt_ps: float, length: int, stride: int, skip: int,
                      groups: dict[str, np.ndarray], msd=msd_fft) -> dict[str, BlockResult]:
    """The block scheme over COM positions (T, M, 3); ``length``, ``stride``, ``skip`` in frames.

    β is fitted on the MSD averaged over blocks and molecules; its interval resamples the molecules (each
    molecule's MSD averaged over the blocks) with replacement, ``BETA_BOOTSTRAP`` times with a fixed seed.
    """
    origins = range(0, com.shape[0] - length, stride)
    lags = np.arange(skip, length + 1) * dt_ps
    t_c = lags - lags.mean()
    out: dict[str, list[float]] = {k: [] for k in groups}
    per_mol = {k: np.zeros((len(lags), len(idx))) for k, idx in groups.items()}
    for o in origins:
        block = com[o:o + length + 1]
        for name, idx in groups.items():
            if msd is msd_fft:
                ym = msd_fft(block[:, idx], per_particle=True)[skip:]
                y = ym.mean(axis=1)
                per_mol[name] += ym
            else:
                y = msd(block[:, idx])[skip:]
                per_mol[name] += y[:, None]
            slope = float(np.dot(t_c, y - y.mean()) / np.dot(t_c, t_c))
            out[name].append(slope / 6.0)
    res = {}
    for k, v in out.items():
        lo, hi = _beta_interval(lags, per_mol[k]) if msd is msd_fft else (float("nan"),) * 2
        res[k] = BlockResult(tuple(v), len(groups[k]), local_exponent(lags, per_mol[k].mean(axis=1)), lo, hi)
    return res


def _beta_interval(lags: np.ndarray, per_mol: np.ndarray) -> tuple[float, float]:
    """95 % percentile interval of β from resampling the molecules (columns of ``per_mol``, (lags, M))."""
    n_mol = per_mol.shape[1]
    ok = lags > 0
    if n_mol < 2 or ok.sum() < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, n_mol, n_mol), minlength=n_mol)
                       for _ in range(BETA_BOOTSTRAP)])
    curves = counts @ per_mol[ok].T / n_mol  # (B, lags)
    x = np.log(lags[ok])
    xc = x - x.mean()
    with np.errstate(all="ignore"):  # a resample with MSD 0 (molecules at rest) gives a non-finite β, dropped
        y = np.log(curves)
        betas = (y - y.mean(axis=1, keepdims=True)) @ xc / np.dot(xc, xc)
    betas = betas[np.isfinite(betas)]
    if len(betas) < BETA_BOOTSTRAP // 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(betas, [2.5, 97.5])
    return float(lo), float(hi)


def local_exponent(lags: np.ndarray, msd: np.ndarray) -> float:
    """β = d ln MSD / d ln t over the window: the least-squares slope of ln MSD against ln t (lags > 0, MSD > 0);
    1 for diffusion, below 1 for sub-diffusive (caged) motion, up to 2 for ballistic."""
    lags, msd = np.asarray(lags, float), np.asarray(msd, float)
    ok = (lags > 0) & (msd > 0)
    if ok.sum() < 2:
        return float("nan")
    x, y = np.log(lags[ok]), np.log(msd[ok])
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def yeh_hummer(temperature_K: float, cell_length_A: float, viscosity_mPa_s: float | None = None) -> float:
    """The Yeh-Hummer finite-size correction ΔD = k_B T ξ / (6π η L) (Å²/ps) for a cubic cell of edge L:
    D(∞) = D(L) + ΔD. Without a viscosity, the coefficient k_B T ξ / (6π L) in Å²/ps·mPa s (ΔD = it / η)."""
    from ase.units import kB  # eV/K
    import math

    eta = 1.0 if viscosity_mPa_s is None else viscosity_mPa_s
    # kB T in J; eta in Pa s (1 mPa s = 1e-3 Pa s); L in m; m²/s -> Å²/ps is 1e8
    kT_J = kB * temperature_K * 1.602176634e-19
    return kT_J * XI_CUBIC / (6 * math.pi * eta * 1e-3 * cell_length_A * 1e-10) * 1e8


def kinisi_diffusivity(com: np.ndarray, cells: np.ndarray, dt_ps: float, spec: DiffusionSpec,
                       length: int, skip: int) -> KinisiResult:
    """kinisi's Bayesian GLS fit of one species' COM MSD (Å²/ps): posterior mean and 95 % interval."""
    import scipp as sc
    from ase import Atoms
    from kinisi.analyze import DiffusionAnalyzer

    # kinisi's covariance model wants consecutive intervals: thin the frames instead of the intervals
    k = max(1, int(np.ceil(length / spec.kinisi_max_intervals)))
    com, cells, dt = com[::k], cells[::k], dt_ps * k
    n_int = length // k
    first = max(1, int(np.ceil(skip / k - 1e-9)))
    n_mol = com.shape[1]
    frames = [Atoms(f"He{n_mol}", positions=com[t], cell=cells[t], pbc=True) for t in range(com.shape[0])]
    dts = sc.array(dims=["time interval"], values=np.arange(1, n_int + 1) * dt, unit="ps")
    # only the species' molecules are given, so kinisi's own framework-drift correction is off;
    # the system drift was removed before.
    ana = DiffusionAnalyzer.from_ase(frames, specie="He", time_step=sc.scalar(dt, unit="ps"),
                                     step_skip=sc.scalar(1), dt=dts, progress=False)
    ana.diffusion(start_dt=sc.scalar(first * dt, unit="ps"), n_samples=spec.kinisi_samples, progress=False,
                  random_state=np.random.RandomState(spec.seed))
    d = sc.to_unit(ana.D, "angstrom**2/ps").values
    lo, hi = np.percentile(d, [2.5, 97.5])
    return KinisiResult(float(np.mean(d)), float(lo), float(hi), d)


@dataclass(frozen=True)
class SpeciesDiffusivity:
    name: str
    n_molecules: int
    block: BlockResult
    kinisi: KinisiResult | None


def species_diffusivity(traj: Trajectory, spec: DiffusionSpec, *,
                        equilibration_ps: float = 0.0) -> dict[str, SpeciesDiffusivity]:
    """Per-species COM self-diffusivity of an NVT (or NPT) trajectory, after ``equilibration_ps``."""
    if not traj.periodic:
        raise InputError(f"{traj.source}: diffusivity needs a periodic trajectory")
    t = traj.after(equilibration_ps)
    dt, length, stride, skip = _block_grid(t, spec)
    com, groups = _com_by_species(t)
    blocks = block_diffusivity(com, dt, length, stride, skip, groups)
    out = {}
    for name, idx in groups.items():
        kin = kinisi_diffusivity(com[:, idx], t.cells, dt, spec, length, skip) if spec.kinisi else None
        out[name] = SpeciesDiffusivity(name, len(idx), blocks[name], kin)
    return out


def weighted_diffusivity(values: dict[str, float], counts: dict[str, int]) -> float:
    """Composition-weighted D = sum_s n_s D_s / sum_s n_s (molecule-count weights)."""
    total = sum(counts[k] for k in values)
    return float(sum(counts[k] * values[k] for k in values) / total)
