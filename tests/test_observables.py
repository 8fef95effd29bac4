"""Observables against analytic answers: KL of Gaussians, Brownian diffusion, unwrapping, RDF of an ideal gas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from scipy.stats import norm

from harness.errors import InputError
from harness.observables.density import DensityGrid, KLRule, distribution, kl_divergence, reference_kl
from harness.observables.diffusion import DiffusionSpec, msd_fft, msd_naive, species_diffusivity
from harness.observables.trajectory import Trajectory, load_trajectory, max_frame_jump, molecule_com, unwrap
from tests.observables_helpers import brownian_molecules, write_h5md


def gaussian_kl(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


def binned(grid, m, s):
    """Exact bin masses of N(m, s²), from the survival function above the mean (no cancellation)."""
    e = grid.edges
    lower, upper = np.diff(norm.cdf(e, m, s)), -np.diff(norm.sf(e, m, s))
    return np.where(e[:-1] >= m, upper, lower)


GRID = DensityGrid(min_g_cm3=0.5, max_g_cm3=1.5, bin_width_g_cm3=0.002)
# binned Gaussians are positive on this grid (tails within ~10 sigma do not underflow)
NARROW = DensityGrid(min_g_cm3=0.75, max_g_cm3=1.25, bin_width_g_cm3=0.002)


@pytest.mark.parametrize("p, q", [((1.0, 0.03), (1.02, 0.04)), ((1.0, 0.04), (1.02, 0.03)), ((0.95, 0.02), (1.0, 0.05))])
def test_kl_of_discretised_gaussians_matches_closed_form(p, q):
    exact = gaussian_kl(*p, *q)
    got = kl_divergence(binned(NARROW, *p), binned(NARROW, *q))
    assert got == pytest.approx(exact, rel=0.05)


def test_kl_is_zero_for_identical_and_asymmetric_otherwise():
    a, b = binned(NARROW, 1.0, 0.03), binned(NARROW, 1.0, 0.06)
    assert kl_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    ab, ba = kl_divergence(a, b), kl_divergence(b, a)
    assert ab == pytest.approx(gaussian_kl(1.0, 0.03, 1.0, 0.06), rel=0.05)
    assert ba == pytest.approx(gaussian_kl(1.0, 0.06, 1.0, 0.03), rel=0.05)
    assert ba > 2 * ab  # the asymmetry is kept, not symmetrised away


def test_kde_rule_from_samples_matches_gaussian_kl():
    """A KDE of Gaussian samples is Gaussian with variance s² + h²: KL from samples vs the closed form."""
    rng = np.random.default_rng(0)
    h = 0.01
    rule = KLRule(method="kde", bandwidth_g_cm3=h)
    x, y = rng.normal(1.0, 0.03, 20000), rng.normal(1.03, 0.04, 20000)
    got = kl_divergence(distribution(x, GRID, rule), distribution(y, GRID, rule))
    assert got == pytest.approx(gaussian_kl(1.0, math.hypot(0.03, h), 1.03, math.hypot(0.04, h)), rel=0.05)


def test_empty_bin_rules():
    x = np.full(50, 0.9) + np.linspace(0, 0.01, 50)
    y = np.full(50, 1.1) + np.linspace(0, 0.01, 50)
    strict = KLRule(method="strict")
    assert kl_divergence(distribution(x, GRID, strict), distribution(y, GRID, strict)) == math.inf
    pc = kl_divergence(distribution(x, GRID, KLRule(method="pseudocount")), distribution(y, GRID, KLRule(method="pseudocount")))
    kde = kl_divergence(distribution(x, GRID, KLRule()), distribution(y, GRID, KLRule()))
    assert math.isfinite(pc) and pc > 0.1
    assert math.isfinite(kde) and kde > 10  # 0.2 g/cm³ apart with a 0.01 g/cm³ kernel: far apart
    assert KLRule(method="pseudocount").describe() == {"method": "pseudocount", "pseudocount": 0.5}


def test_distribution_refuses_samples_outside_the_grid_and_empty_input():
    with pytest.raises(ValueError, match="outside the grid"):
        distribution([0.3, 1.0], GRID, KLRule())
    with pytest.raises(ValueError, match="no density samples"):
        distribution([], GRID, KLRule())
    with pytest.raises(ValueError, match="more than one bin"):
        DensityGrid(min_g_cm3=1.0, max_g_cm3=1.001, bin_width_g_cm3=0.005)


def test_reference_baseline_is_mean_over_ordered_pairs():
    rng = np.random.default_rng(1)
    rule = KLRule()
    members = {f"m{k}": rng.normal(1.0 + 0.01 * k, 0.03, 3000) for k in range(3)}
    ref = reference_kl(members, GRID, rule)
    d = {k: distribution(v, GRID, rule) for k, v in members.items()}
    pairs = [kl_divergence(d[i], d[j]) for i in d for j in d if i != j]
    assert ref.pairs == 6 and ref.baseline == pytest.approx(np.mean(pairs))
    assert ref.pooled.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least two reference members"):
        reference_kl({"m0": members["m0"]}, GRID, rule)


# ---- diffusion -------------------------------------------------------------------------------------

def test_fft_msd_equals_naive_and_tidynamics():
    tidynamics = pytest.importorskip("tidynamics")
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(300, 7, 3)), axis=0)
    fft, naive = msd_fft(x), msd_naive(x)
    tidy = np.mean([tidynamics.msd(x[:, i]) for i in range(7)], axis=0)
    np.testing.assert_allclose(fft, naive, atol=1e-8)
    np.testing.assert_allclose(fft, tidy, atol=1e-8)


def test_constant_velocity_gives_ballistic_msd():
    t = np.arange(200) * 0.1
    v = np.array([[0.3, -0.2, 0.1], [0.0, 0.5, 0.0]])
    x = t[:, None, None] * v[None]
    msd = msd_fft(x)
    np.testing.assert_allclose(msd, np.mean(np.sum(v ** 2, axis=1)) * t ** 2, rtol=1e-9, atol=1e-9)


def _brownian_traj(D, seed, n_mol=200, n_frames=2000, dt=0.1, box=30.0, n_species=1, lattice=False):
    pos, numbers, mol_id = brownian_molecules(n_mol, n_frames, dt, D, box, seed, n_species=n_species, lattice=lattice)
    cells = np.tile(np.eye(3) * box, (n_frames, 1, 1))
    return pos, numbers, mol_id, cells


def test_block_estimator_recovers_brownian_D_from_h5md(tmp_path):
    """Rigid 3-atom molecules with COM diffusivity 0.3 Å²/ps (30e-6 cm²/s) written as unwrapped H5MD."""
    pos, numbers, mol_id, cells = _brownian_traj({0: 0.3, 1: 0.1}, seed=3, n_species=2)
    path = write_h5md(tmp_path / "bm.h5md", pos, numbers, mol_id, cells, 0.1)
    traj = load_trajectory(path)
    assert sorted(set(traj.species)) == ["CHO2", "CO2"]
    spec = DiffusionSpec(block_ps=20, block_stride_ps=2, skip_ps=2, kinisi=False)
    res = species_diffusivity(traj, spec, equilibration_ps=10.0)
    assert res["CO2"].block.D == pytest.approx(0.3, rel=0.05)
    assert res["CHO2"].block.D == pytest.approx(0.1, rel=0.05)
    assert len(res["CO2"].block.D_blocks) == (1900 - 200 - 1) // 20 + 1 and res["CO2"].n_molecules == 100
    assert 0 < res["CO2"].block.sem < 0.02


def test_block_fit_skips_the_ballistic_part():
    """Ballistic at short times, diffusive later: fitting after skip_ps recovers the long-time D."""
    rng = np.random.default_rng(4)
    dt, n, M = 0.01, 4000, 100
    # Ornstein-Uhlenbeck velocities, correlation time 0.1 ps: D = <v²> tau (per dimension)
    tau, v2 = 0.1, 1.0
    v = np.zeros((n, M, 3))
    a = math.exp(-dt / tau)
    for k in range(1, n):
        v[k] = a * v[k - 1] + math.sqrt(v2 * (1 - a * a)) * rng.normal(size=(M, 3))
    x = np.cumsum(v, axis=0) * dt
    traj = Trajectory(x, np.tile(np.eye(3) * 50.0, (n, 1, 1)), np.arange(n) * dt, np.full(M, 18),
                      np.full(M, 40.0), np.arange(M))
    res = species_diffusivity(traj, DiffusionSpec(block_ps=5, block_stride_ps=0.5, skip_ps=1.0, kinisi=False))
    assert res["Ar"].block.D == pytest.approx(v2 * tau * (1 - 1 / M), rel=0.1)


def test_kinisi_interval_covers_true_D_once():
    pos, numbers, mol_id, cells = _brownian_traj(0.3, seed=5, n_mol=60, n_frames=1000)
    traj = Trajectory(pos, cells, np.arange(len(pos)) * 0.1, numbers, np.array([12.0, 16.0, 16.0] * 60), mol_id)
    res = species_diffusivity(traj, DiffusionSpec(block_ps=20, block_stride_ps=2, skip_ps=2, kinisi_samples=300))
    k = res["CO2"].kinisi
    assert k.low < k.D < k.high
    assert k.low < 0.3 < k.high


@pytest.mark.slow
def test_kinisi_95_interval_covers_true_D_in_at_least_90_percent_of_trials():
    D, covered = 0.3, 0
    for seed in range(40):
        pos, numbers, mol_id, cells = _brownian_traj(D, seed=100 + seed, n_mol=60, n_frames=1000)
        traj = Trajectory(pos, cells, np.arange(len(pos)) * 0.1, numbers, np.array([12.0, 16.0, 16.0] * 60), mol_id)
        spec = DiffusionSpec(block_ps=20, block_stride_ps=2, skip_ps=2, kinisi_samples=300, seed=seed)
        k = species_diffusivity(traj, spec)["CO2"].kinisi
        covered += k.low <= D <= k.high
    assert covered >= 36, f"kinisi's 95 % interval covered the true D in {covered}/40 trials"


def test_too_short_trajectory_is_a_clear_error():
    pos, numbers, mol_id, cells = _brownian_traj(0.3, seed=6, n_mol=10, n_frames=50)
    traj = Trajectory(pos, cells, np.arange(50) * 0.1, numbers, np.array([12.0, 16.0, 16.0] * 10), mol_id, "short.h5md")
    with pytest.raises(InputError, match="short.h5md: 50 frames .* fewer than one MSD block of 100 ps"):
        species_diffusivity(traj, DiffusionSpec(kinisi=False))


# ---- wrapping ------------------------------------------------------------------------------------------

def test_wrapped_h5md_is_refused(tmp_path):
    pos, numbers, mol_id, cells = _brownian_traj(2.0, seed=7, n_mol=30, n_frames=200, box=10.0)
    wrapped = pos - np.floor(pos / 10.0) * 10.0
    path = write_h5md(tmp_path / "wrapped.h5md", wrapped, numbers, mol_id, cells, 0.1)
    assert max_frame_jump(wrapped, cells)[0] > 0.5
    with pytest.raises(InputError, match="positions look wrapped"):
        load_trajectory(path)


def test_wrapped_extxyz_with_varying_cell_is_unwrapped_exactly(tmp_path):
    """An NPT-like trajectory: fractional COM random walk, cell breathing, written wrapped to extxyz
    without mol_id: molecules come from connectivity and positions come back unwrapped by TOR — every step
    advances by the nearest-image displacement of the wrapped positions in the new cell — so they stay within
    the cell's breathing (2 %) of the affinely scaled positions instead of tracking them exactly."""
    import ase.io

    n_frames, n_mol = 60, 12
    pos, numbers, mol_id, _ = _brownian_traj(0.5, seed=8, n_mol=n_mol, n_frames=n_frames, box=12.0, lattice=True)
    pos = pos + np.array([1.5, 0.0, 0.0])  # molecules straddle the cell boundary at the start
    scale = 1.0 + 0.02 * np.sin(np.arange(n_frames) / 5.0)
    cells = np.array([np.diag([12.0, 13.0, 14.0]) * s for s in scale])
    cells[:, 1, 0] = 1.0 * scale  # triclinic
    frac = np.einsum("tni,ij->tnj", pos, np.linalg.inv(cells[0]))
    true = np.einsum("tnj,tji->tni", frac, cells)
    wrapped = np.einsum("tnj,tji->tni", frac - np.floor(frac), cells)
    assert max_frame_jump(wrapped, cells)[0] > 0.5  # the input really is wrapped
    frames = []
    for t in range(n_frames):
        a = Atoms(numbers=numbers, positions=wrapped[t], cell=cells[t], pbc=True)
        a.info["time_ps"] = 0.1 * t
        frames.append(a)
    path = tmp_path / "wrapped.extxyz"
    ase.io.write(path, frames)
    traj = load_trajectory(path)
    assert traj.mol_id.max() + 1 == n_mol and traj.time_ps[-1] == pytest.approx(5.9)
    # TOR: each step is the nearest image, in the new cell, of the displacement of the wrapped positions
    step = np.diff(traj.positions, axis=0)
    d = np.diff(wrapped, axis=0)
    fd = np.einsum("tni,tij->tnj", d, np.linalg.inv(cells[1:]))
    want = d - np.einsum("tnj,tji->tni", np.round(fd), cells[1:])
    # (atoms reordered? connectivity keeps the file's order, so the rows correspond)
    np.testing.assert_allclose(step, want, atol=1e-6)
    com_true = molecule_com(true, traj.masses, mol_id)
    com = molecule_com(traj.positions, traj.masses, traj.mol_id)
    # same molecules up to a whole-cell shift of the starting image, and displacements within the breathing
    shift = com[0] - com_true[0]
    frac_shift = shift @ np.linalg.inv(cells[0])
    np.testing.assert_allclose(frac_shift, np.round(frac_shift), atol=1e-6)
    dev = (com - com[:1]) - (com_true - com_true[:1])
    assert np.abs(dev).max() < 0.04 * 14.0 * 2


def test_unwrap_is_identity_on_unwrapped_input():
    pos, _, _, cells = _brownian_traj(0.2, seed=9, n_mol=10, n_frames=100, box=20.0)
    np.testing.assert_allclose(unwrap(pos, cells), pos, atol=1e-9)


def test_missing_time_needs_dt(tmp_path):
    import ase.io

    a = Atoms("CO2", positions=[[0, 0, 0], [1.16, 0, 0], [-1.16, 0, 0]], cell=[10, 10, 10], pbc=True)
    ase.io.write(tmp_path / "t.extxyz", [a, a])
    with pytest.raises(InputError, match="give --dt-ps"):
        load_trajectory(tmp_path / "t.extxyz")
    assert load_trajectory(tmp_path / "t.extxyz", dt_ps=0.5).frame_dt_ps == 0.5


# ---- RDF -----------------------------------------------------------------------------------------------

def test_com_rdf_of_ideal_gas_is_one():
    from harness.observables.rdf import com_rdfs

    rng = np.random.default_rng(10)
    n_frames, n_mol, box = 50, 100, 20.0
    com = rng.uniform(0, box, (n_frames, n_mol, 3))
    pos = (com[:, :, None, :] + np.array([[0.0, 0, 0], [1.16, 0, 0], [-1.16, 0, 0]])).reshape(n_frames, -1, 3)
    traj = Trajectory(pos, np.tile(np.eye(3) * box, (n_frames, 1, 1)), np.arange(n_frames) * 1.0,
                      np.array([6, 8, 8] * n_mol), np.array([12.0, 16.0, 16.0] * n_mol), np.repeat(np.arange(n_mol), 3))
    g = com_rdfs(traj, bin_width=0.5)["CO2-CO2"]
    assert g.r[-1] < box / 2
    assert np.mean(g.g[g.r > 3]) == pytest.approx(1.0, abs=0.03)


# ---- discriminating checks: KL direction in Q, composition weighting, drift removal ------------------------

def test_score_uses_kl_of_the_model_from_the_reference_not_the_reverse(tmp_path):
    """Reference members with density std 0.02 g/cm³, a model member with 0.045: the score's KL must be
    D_KL(P_model || P_ref) (computed here from the same distributions with numpy), which differs from the
    reverse direction by far more than the tolerance."""
    import pandas as pd

    from harness.models.train import model_run_name
    from harness.observables.analysis import RunSet, observe_run, score
    from tests.observables_helpers import ar1, fake_committee, fake_runs, quick_protocol

    proto = quick_protocol()
    ws = tmp_path / "ws"
    ref, model = fake_committee(ws, "gap", "Full", 2), fake_committee(ws, "mace", "OPLS", 1)
    refs = sorted(ref.glob("member-*"))
    for k, m in enumerate(refs):
        fake_runs(ws, m, proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.92, D=0.3, seed=k)
    member = next(model.glob("member-*"))
    fake_runs(ws, member, proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.92, D=0.3, seed=5)
    npt = ws / "md" / model_run_name(member) / proto.name / "npt-r0"
    th = pd.read_parquet(npt / "thermo.parquet")
    th["density_g_cm3"] = ar1(len(th), 0.92, 0.045, 0.5, seed=6)  # wider than the reference
    th.to_parquet(npt / "thermo.parquet")

    def runs(m):
        base = ws / "md" / model_run_name(m) / proto.name
        return RunSet(m.name, base / "npt-r0", base / "nvt-r0")

    spec, eq, tau = proto.analysis, proto.equilibration_ps, proto.horizon_ps
    res = score([runs(member)], [runs(m) for m in refs], spec, tau_ps=tau, equilibration_ps=eq)

    def dist(run):
        return distribution(observe_run(run, spec, equilibration_ps=eq, tau_ps=tau)["density_samples"],
                            spec.density_grid, spec.kl)

    p_model = dist(npt)
    p_ref = np.mean([dist(runs(m).npt) for m in refs], axis=0)  # the pooled reference
    p, q = p_model / p_model.sum(), p_ref / p_ref.sum()
    assert p.min() > 0 and q.min() > 0  # the KDE rule's floor keeps every bin positive
    forward, reverse = float(np.sum(p * np.log(p / q))), float(np.sum(q * np.log(q / p)))
    assert res["members"][0]["kl"] == pytest.approx(forward, rel=1e-6)
    assert abs(forward - reverse) > 0.2 * forward, (forward, reverse)


def _drop_molecules(pos, numbers, mol_id, keep):
    """Keep only the molecules ``keep`` (renumbered 0..len(keep)-1)."""
    atoms = np.flatnonzero(np.isin(mol_id, keep))
    renumber = {m: k for k, m in enumerate(keep)}
    return pos[:, atoms], numbers[atoms], np.array([renumber[m] for m in mol_id[atoms]])


def test_weighted_diffusivity_weights_species_by_molecule_count():
    """20 molecules of species A (D = 0.6 Å²/ps) and 40 of B (0.1): the composition-weighted D is the
    molecule-count average (20 D_A + 40 D_B)/60 = 0.267, not the species average 0.35 (SCIENCE.md §6;
    what `score` puts in Q)."""
    from harness.observables.analysis import AnalysisSpec, trajectory_observables

    pos, numbers, mol_id = brownian_molecules(80, 1000, 0.1, {0: 0.6, 1: 0.1}, 40.0, seed=11, n_species=2)
    keep = [m for m in range(80) if m % 2 == 1] + [m for m in range(80) if m % 2 == 0][:20]  # 40 B, 20 A
    pos, numbers, mol_id = _drop_molecules(pos, numbers, mol_id, sorted(keep))
    traj = Trajectory(pos, np.tile(np.eye(3) * 40.0, (len(pos), 1, 1)), np.arange(len(pos)) * 0.1, numbers,
                      np.array([{1: 1.008, 6: 12.011, 8: 15.999}[z] for z in numbers]), mol_id)
    spec = AnalysisSpec(diffusion=DiffusionSpec(block_ps=20, block_stride_ps=5, skip_ps=2, kinisi=False))
    d = trajectory_observables(traj, spec, equilibration_ps=0.0, rdf=False)["diffusion"]
    a, b = d["species"]["CO2"], d["species"]["CHO2"]
    assert (a["n_molecules"], b["n_molecules"]) == (20, 40)
    count_weighted = (20 * a["D_block_A2_ps"] + 40 * b["D_block_A2_ps"]) / 60
    assert d["D_weighted_block_A2_ps"] == pytest.approx(count_weighted, rel=1e-12)
    assert d["D_weighted_block_A2_ps"] == pytest.approx((20 * 0.6 + 40 * 0.1) / 60, rel=0.1)
    assert abs(d["D_weighted_block_A2_ps"] - (a["D_block_A2_ps"] + b["D_block_A2_ps"]) / 2) > 0.05


def test_drift_of_every_molecule_is_removed_before_the_msd():
    """A uniform drift of 0.2 Å/ps on every molecule (the whole liquid flowing) must not change D: the
    estimator removes the system's centre-of-mass motion. Without removal the MSD gains v² t², which on
    20 ps blocks fitted from 2 ps biases D by ~ v² (2 + 20)/6 = 0.15 Å²/ps, half of D = 0.3."""
    from harness.observables.diffusion import block_diffusivity
    from harness.observables.trajectory import molecule_com

    D, v = 0.3, np.array([0.2, 0.0, 0.0])
    pos, numbers, mol_id, cells = _brownian_traj(D, seed=12, n_mol=200, n_frames=1000)
    t = np.arange(len(pos)) * 0.1
    masses = np.array([12.0, 16.0, 16.0] * 200)
    spec = DiffusionSpec(block_ps=20, block_stride_ps=2, skip_ps=2, kinisi=False)
    drifting = Trajectory(pos + t[:, None, None] * v, cells, t, numbers, masses, mol_id)
    got = species_diffusivity(drifting, spec)["CO2"].block.D
    # removing the system COM also removes its own Brownian motion: D (1 - 1/M) with M = 200 molecules
    assert got == pytest.approx(D * (1 - 1 / 200), rel=0.05)
    # the same blocks on the raw molecular COMs (no drift removal) are off by far more than the tolerance
    com = molecule_com(drifting.positions, masses, mol_id)
    raw = block_diffusivity(com, 0.1, 200, 20, 20, {"CO2": np.arange(200)})["CO2"].D
    assert raw > 1.3 * D


# -- honest diffusion (issue #28 item 3) ---------------------------------------------------------------------------

def _traj_from_com(com: np.ndarray, cells: np.ndarray, dt_ps: float):
    """A Trajectory of rigid three-atom molecules whose COMs follow ``com`` (T, M, 3)."""
    from tests.observables_helpers import NUMBERS, OFFSETS
    from harness.observables.trajectory import Trajectory
    from ase.data import atomic_masses

    n_t, n_mol, _ = com.shape
    pos = (com[:, :, None, :] + OFFSETS[None, None]).reshape(n_t, 3 * n_mol, 3)
    numbers = np.tile(NUMBERS, n_mol)
    return Trajectory(pos, cells, np.arange(n_t) * dt_ps, numbers, atomic_masses[numbers],
                      np.repeat(np.arange(n_mol), 3), "synthetic")


def test_a_caged_ornstein_uhlenbeck_trajectory_is_not_diffusive():
    """Molecules bound harmonically to their sites (OU, relaxation 0.2 ps): the MSD plateaus, the local
    exponent over a 0.5-4 ps window is far below 0.9 and the fit is flagged; free Brownian motion gives β ≈ 1."""
    from harness.observables.diffusion import DiffusionSpec, species_diffusivity

    rng = np.random.default_rng(4)
    n_t, n_mol, dt, relax, D = 2001, 40, 0.01, 0.2, 0.5
    a = np.exp(-dt / relax)
    noise = rng.normal(size=(n_t, n_mol, 3)) * np.sqrt(D * relax * (1 - a * a))
    x = np.zeros((n_t, n_mol, 3))
    for t in range(1, n_t):
        x[t] = a * x[t - 1] + noise[t]
    sites = rng.uniform(0, 30, (n_mol, 3))
    cells = np.tile(np.eye(3) * 30.0, (n_t, 1, 1))
    spec = DiffusionSpec(block_ps=4.0, block_stride_ps=1.0, skip_ps=0.5, kinisi=False)
    caged = species_diffusivity(_traj_from_com(sites + x, cells, dt), spec)
    (r,) = caged.values()
    assert r.block.beta < 0.3 and r.block.beta_high < 0.9 and r.block.diffusive is False
    free = sites + np.cumsum(rng.normal(size=(n_t, n_mol, 3)) * np.sqrt(2 * D * dt), axis=0)
    (f,) = species_diffusivity(_traj_from_com(free, cells, dt), spec).values()
    assert 0.9 <= f.block.beta_low < 1 < f.block.beta_high <= 1.1 and f.block.diffusive is True
    assert f.block.D == pytest.approx(D, rel=0.15)


def test_beta_interval_covers_brownian_motion_and_leaves_short_runs_undetermined():
    """β's 95 % molecule-bootstrap interval: over 20 independent Brownian trajectories (20 molecules, 8 ps, true
    β = 1) it covers 1 at least 17 times (binomial(20, 0.95) gives ≥ 17 with probability 0.98); at this length
    most intervals reach below 0.9, so the verdict is undetermined (None) even where the point β is ≥ 0.9 —
    the point estimate alone would have called them diffusive."""
    from harness.observables.diffusion import DiffusionSpec, species_diffusivity

    spec = DiffusionSpec(block_ps=4.0, block_stride_ps=1.0, skip_ps=0.5, kinisi=False)
    n_t, n_mol, dt, D = 801, 20, 0.01, 0.5
    cells = np.tile(np.eye(3) * 30.0, (n_t, 1, 1))
    covered, undetermined_above = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.uniform(0, 30, (n_mol, 3)) + np.cumsum(rng.normal(size=(n_t, n_mol, 3)) * np.sqrt(2 * D * dt), axis=0)
        (b,) = (r.block for r in species_diffusivity(_traj_from_com(x, cells, dt), spec).values())
        assert b.beta_low < b.beta < b.beta_high
        covered += b.beta_low <= 1.0 <= b.beta_high
        undetermined_above += b.beta >= 0.9 and b.diffusive is None
    assert covered >= 17
    assert undetermined_above >= 5


def test_the_diffusive_verdict_reads_the_whole_interval():
    from harness.observables.diffusion import diffusive_verdict

    assert diffusive_verdict(0.92, 1.05) is True
    assert diffusive_verdict(0.9, 1.0) is True
    assert diffusive_verdict(0.5, 0.89) is False
    assert diffusive_verdict(0.85, 1.05) is None
    assert diffusive_verdict(float("nan"), 1.0) is None


def test_per_particle_msd_averages_to_the_pooled_msd():
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(60, 5, 3)), axis=0)
    per = msd_fft(x, per_particle=True)
    assert per.shape == (60, 5)
    np.testing.assert_allclose(per.mean(axis=1), msd_fft(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(per[:, 3], msd_naive(x[:, 3:4]), rtol=1e-9, atol=1e-9)


def test_tor_unwrapping_removes_the_barostat_scaling_of_far_images():
    """NPT: molecules at rest in fractional coordinates, one of them ten cells away from the origin in its
    unwrapped coordinate, the cell edge fluctuating by 2 %. The integrator's affinely scaled positions show a
    spurious MSD growing with the distance from the origin; TOR-unwrapped centres of mass show at most the
    in-box scaling (von Bülow et al. 2020)."""
    from harness.observables.diffusion import _com_by_species
    from harness.observables.trajectory import unwrap

    rng = np.random.default_rng(2)
    n_t, L0 = 200, 20.0
    edge = L0 * (1 + 0.02 * np.sin(np.linspace(0, 20, n_t)))
    cells = edge[:, None, None] * np.eye(3)[None]
    frac = np.array([[0.3, 0.4, 0.5], [10.3, 0.6, 0.2], [0.7, 0.2, 0.9]])
    affine = np.einsum("mj,tji->tmi", frac, cells)  # what a scaling barostat does to unwrapped positions
    com, _ = _com_by_species(_traj_from_com(affine, cells, 0.01))
    disp = np.abs(com - com[0]).max()
    assert disp < 0.02 * L0 * 1.0 + 1e-9  # bounded by the in-box scaling (< one box of 2 %)
    raw = np.abs(affine[:, 1] - affine[0, 1]).max()
    assert raw > 4.0  # the naive positions moved by ~ 10 x 2 % x 20 Å
    # for a fixed cell TOR is ordinary unwrapping: wrapped Brownian positions come back exactly
    fixed = np.tile(np.eye(3) * 15.0, (300, 1, 1))
    walk = np.cumsum(rng.normal(size=(300, 5, 3)) * 0.3, axis=0) + 7.0
    wrapped = walk - np.floor(walk / 15.0) * 15.0
    np.testing.assert_allclose(unwrap(wrapped, fixed), wrapped[0] + walk - walk[0], atol=1e-9)


def test_yeh_hummer_correction_value():
    """ΔD = k_B T ξ / (6 π η L): 500 K, η = 0.3 mPa s, L = 13 Å gives 0.2666 Å²/ps (26.7e-6 cm²/s, comparable
    to D itself in the 160-atom cell); 300 K, 1 mPa s, 30 Å (water-like) gives 0.0208 Å²/ps."""
    from harness.observables.diffusion import yeh_hummer

    assert yeh_hummer(500.0, 13.0, 0.3) == pytest.approx(1.380649e-23 * 500 * 2.837297 / (6 * np.pi * 0.3e-3 * 13e-10)
                                                           * 1e8, rel=1e-6)
    assert yeh_hummer(500.0, 13.0, 0.3) == pytest.approx(0.2666, rel=1e-3)
    assert yeh_hummer(300.0, 30.0, 1.0) == pytest.approx(0.02080, rel=1e-3)
    assert yeh_hummer(300.0, 30.0) == pytest.approx(yeh_hummer(300.0, 30.0, 1.0))  # the coefficient (η = 1)


# -- honest density (issue #28 item 4) -----------------------------------------------------------------------------

def test_a_density_transient_is_flagged_and_a_stationary_series_is_not():
    """AR(1) density (σ 0.01 g/cm³, φ 0.95) with the barostat's relaxation from a packed start (+0.1 g/cm³
    decaying over 300 samples) is flagged; the same series without it is not. Rates over 100 seeds: the flag
    catches ≥ 85 % of such transients and fires on ≤ 12 % of stationary series (measured: 93 %, 6-10 %)."""
    from harness.observables.stats import stationarity
    from tests.observables_helpers import ar1

    t = np.arange(1000)
    flagged = [not stationarity(ar1(1000, 1.0, 0.01, 0.95, s) + 0.1 * np.exp(-t / 300)).stationary for s in range(100)]
    false = [not stationarity(ar1(1000, 1.0, 0.01, 0.95, s)).stationary for s in range(100)]
    assert np.mean(flagged) >= 0.85 and np.mean(false) <= 0.12
    r = stationarity(ar1(1000, 1.0, 0.01, 0.95, 1) + 0.1 * np.exp(-t / 300))
    assert not r.stationary and r.mser_truncation > 100 and "MSER-5" in r.rule
    short = stationarity(np.ones(10))
    assert short.stationary is None and short.as_dict()["halves_p"] is None  # too short to check: not "stationary"


def test_R_is_uninformative_when_the_reference_baseline_hides_density_errors():
    """δ_min = σ sqrt(2 baseline): two reference members of width 0.01 g/cm³ whose means differ by 0.03 have a
    baseline of ~4.5 nats, hiding shifts below ~0.03 g/cm³ (> 0.02): R uninformative; members that agree
    (baseline ~0) resolve shifts far below it."""
    from harness.observables.analysis import kl_resolution

    rng = np.random.default_rng(0)
    apart = {"a": rng.normal(1.00, 0.01, 4000), "b": rng.normal(1.03, 0.01, 4000)}
    r = kl_resolution(apart, 4.5)
    assert r["delta_min_g_cm3"] == pytest.approx(0.01 * math.sqrt(9.0), rel=0.05) and not r["informative"]
    assert "hides density shifts" in r["why"]
    close = {"a": rng.normal(1.00, 0.01, 4000), "b": rng.normal(1.00, 0.01, 4000)}
    r = kl_resolution(close, 0.01)
    assert r["informative"] and r["delta_min_g_cm3"] < 0.002
    few = {"a": np.repeat(rng.normal(1.0, 0.01, 5), 200), "b": np.repeat(rng.normal(1.0, 0.01, 5), 200)}
    assert not kl_resolution(few, 0.01)["informative"]  # 5 independent values in 1000 samples
