"""MD ensembles against analytic distributions, detectors on constructed failures, restart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.lj import LennardJones
from scipy import stats

from harness.md.detectors import BondStretch, CommitteeVariance, DensityWindow, NonFinite, validation_detectors
from harness.md.runner import RunSettings, run_md
from harness.h5md import read_h5md
from harness.units import ATM_TO_EV_PER_A3, EV_PER_A3_TO_GPA
from tests.helpers import IdealGas


def _gas(n, volume, seed=0):
    rng = np.random.default_rng(seed)
    edge = volume ** (1 / 3)
    return Atoms(f"Ar{n}", positions=rng.uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)


def test_npt_ideal_gas_volume_distribution_and_kinetic_temperature(tmp_path):
    """MTK NPT on an ideal gas of N = 8 samples P(V) ∝ V^N exp(-PV/kT), i.e. Gamma(N + 1, kT/P), and
    its kinetic temperature (3N - 3 degrees of freedom: the total momentum stays zero) averages T.

    16 000 steps of 5 fs (no forces, so a long step is exact for positions), volume every 25 steps.
    Measured: KS p = 0.98 for shape N + 1, p < 1e-10 for shapes N and N + 2. ASE's thermostat alone
    targets 3N kT, i.e. a mean kinetic temperature of 3N/(3N - 3) T = 1.14 T here.
    """
    n, temp, p_atm = 8, 300.0, 1000.0
    kT, p = units.kB * temp, p_atm * ATM_TO_EV_PER_A3
    s = RunSettings("npt", temp, length_ps=80.0, timestep_fs=5.0, pressure_atm=p_atm, tdamp_fs=50, pdamp_fs=500,
                    frame_interval=10**9, thermo_interval=25, checkpoint_interval=10**9)
    run_md(_gas(n, (n + 1) * kT / p), IdealGas(), s, outdir=tmp_path, seed=1)
    thermo = pd.read_parquet(tmp_path / "thermo.parquet").iloc[20:]
    v = thermo["volume_A3"].to_numpy()
    assert stats.kstest(v, stats.gamma(n + 1, scale=kT / p).cdf).pvalue > 0.01
    for wrong in (n, n + 2):
        assert stats.kstest(v, stats.gamma(wrong, scale=kT / p).cdf).pvalue < 1e-4
    # 620 samples of relative std sqrt(2/(3N - 3)) = 0.31, 125 fs apart: standard error of the mean ~1.5 %
    assert thermo["temperature_K"].mean() == pytest.approx(temp, rel=0.05)
    # the thermo pressure is the instantaneous total pressure 2K/(3V) (no configurational part here): momenta
    # and volume independent, <K> = (3N - 3) kT / 2 and <1/V> = P / (N kT) for Gamma(N + 1, kT/P), so
    # <2K/(3V)> = (N - 1)/N P = 0.875 P; the configurational part alone (what it was before) is 0. Its sample
    # is noisier than T's (1/V correlated over the barostat's 500 fs): within 8 % (~2.5 standard errors)
    p_gpa = p_atm * ATM_TO_EV_PER_A3 * EV_PER_A3_TO_GPA
    assert thermo["pressure_GPa"].mean() == pytest.approx((n - 1) / n * p_gpa, rel=0.08)


@pytest.mark.parametrize("thermostat", ["langevin", "bussi"])
def test_nvt_kinetic_energy_distribution(tmp_path, thermostat):
    """NVT of 8 free particles: K ~ Gamma((3N - 3)/2, kT) (centre of mass fixed), and a thermostat that targeted
    3N degrees of freedom (K ~ Gamma(3N/2, kT), a mean 14 % higher) is rejected: with N = 8 the two targets are
    ~8 standard errors apart over ~430 samples 200 fs apart (twice the coupling time, so the KS test's
    independence holds roughly), so a wrong 3N target cannot pass by chance (with N = 50 they were 2 % apart and
    a 3N target passed about one time in six). Measured over seeds 0-3: right target KS p 0.06-0.89, 3N target
    p < 3e-8."""
    n, temp = 8, 500.0
    s = RunSettings("nvt", temp, length_ps=90.0, timestep_fs=5.0, thermostat=thermostat, friction_per_ps=5.0,
                    tdamp_fs=100.0, frame_interval=10**9, thermo_interval=40, checkpoint_interval=10**9)
    run_md(_gas(n, 5000.0), IdealGas(), s, outdir=tmp_path, seed=3)
    df = pd.read_parquet(tmp_path / "thermo.parquet").iloc[25:]
    assert df["temperature_K"].mean() == pytest.approx(temp, rel=0.05)
    k = df["kinetic_eV"].to_numpy()
    assert stats.kstest(k, stats.gamma((3 * n - 3) / 2, scale=units.kB * temp).cdf).pvalue > 0.01
    assert stats.kstest(k, stats.gamma(3 * n / 2, scale=units.kB * temp).cdf).pvalue < 1e-4


class Scripted(Calculator):
    """Harmonic restraints to the start geometry, plus scripted trouble from a given call on.

    Stiff (20 eV/Å²): thermal displacements at 300 K are ~0.04 Å per coordinate, so a healthy run never
    comes near the 0.5 Å bond limit once the thermostat has equilibrated it."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, ref, *, nan_from=None, raise_from=None, sigma_from=None):
        super().__init__()
        self.ref, self.calls = ref.copy(), 0
        self.nan_from, self.raise_from, self.sigma_from = nan_from, raise_from, sigma_from

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        d = self.atoms.positions - self.ref
        forces = -20.0 * d
        if self.raise_from is not None and self.calls >= self.raise_from:
            raise RuntimeError("model exploded")
        energy = float(10.0 * np.sum(d**2))
        if self.nan_from is not None and self.calls >= self.nan_from:
            forces[0, 0] = np.nan
        self.results = {"energy": energy, "forces": forces, "stress": np.zeros(6)}
        if self.sigma_from is not None:
            self.results["sigma2_F"] = 1.0 if self.calls >= self.sigma_from else 0.01


SHORT = RunSettings("nvt", 300.0, length_ps=0.5, timestep_fs=0.5, frame_interval=50, thermo_interval=10,
                    checkpoint_interval=200)


def test_healthy_run_fires_nothing(small_box, tmp_path):
    r = run_md(small_box, Scripted(small_box.positions), SHORT, outdir=tmp_path,
               detectors=validation_detectors(False, interval=10, bond_length_method="mmff"))
    assert r.failure is None and r.t_stab_ps == pytest.approx(0.5) and r.n_steps == 1000
    traj = read_h5md(tmp_path / "trajectory.h5md")
    assert len(traj["positions"]) == 1 + 1000 // 50 and np.array_equal(traj["mol_id"], small_box.arrays["mol_id"])


def test_bond_detector_fires_at_the_right_step(small_box, tmp_path):
    """Every atom is pulled away from the molecule's centre at 0.6 Å/ps; C-H bonds (~1.09 Å) exceed
    equilibrium + 0.5 Å after ~0.83 ps: the detector (interval 10 steps) fires at the first check past it."""

    class Expand(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}

    atoms = small_box.copy()
    det = BondStretch(interval=10, max_stretch_A=0.5, bond_length_method="mmff")
    det.reset(atoms)
    # Langevin with negligible friction: the scripted velocities are kept (Bussi would rescale them to 1 K)
    s = RunSettings("nvt", 1.0, length_ps=2.0, timestep_fs=1.0, thermostat="langevin", friction_per_ps=1e-9,
                    frame_interval=100, thermo_interval=10, checkpoint_interval=10**9)
    # zero temperature start: give every atom a radial velocity from its molecule's centre
    from harness.md import runner

    orig = runner.make_dynamics

    def with_velocities(a, settings, rng):
        masses = a.get_masses()
        v = np.zeros_like(a.positions)
        for idx in det.topology.molecules:
            com = masses[idx] @ a.positions[idx] / masses[idx].sum()
            r = a.positions[idx] - com
            v[idx] = 0.3 * r / np.linalg.norm(r, axis=1, keepdims=True) / (1000 * units.fs)
        a.set_velocities(v)
        return orig(a, settings, rng)

    runner.make_dynamics = with_velocities
    try:
        r = run_md(atoms, Expand(), s, outdir=tmp_path, detectors=[det])
    finally:
        runner.make_dynamics = orig
    assert r.failure["detector"] == "bond_stretch"
    # relative velocity of bonded atoms <= 0.6 Å/ps, so no bond can fail before 0.5/0.6 ps
    assert 0.5 / 0.6 - 0.01 <= r.t_stab_ps <= 1.2
    assert r.failure["step"] % 10 == 0 and r.failure["value"] > r.failure["threshold"]


def test_bond_detector_measures_from_the_equilibrium_length_not_the_start():
    """An EC molecule starts with a C-H bond already 0.3 Å longer than equilibrium (MMFF template length,
    taken here from the template itself, independent of the detector). A further 0.25 Å (r_eq + 0.55 Å)
    must fire the validation rule r > r_eq + 0.5 Å; a limit measured from the start (r_0 + 0.5 = r_eq +
    0.8 Å) would not. At r_eq + 0.45 Å nothing fires."""
    from harness.systems.molecules import MoleculeRegistry
    from harness.systems.topology import Topology, tag_molecules

    ec = MoleculeRegistry()["EC"]
    template = tag_molecules(ec.atoms(), [ec])
    template.set_cell([20.0] * 3)
    topo = Topology.from_atoms(template)
    r_eq = topo.bond_lengths(template)  # the MMFF template is the mmff method's equilibrium geometry
    symbols = template.get_chemical_symbols()
    k = next(b for b, (i, j) in enumerate(topo.bonds) if symbols[j] == "H" or symbols[i] == "H")
    heavy, h = topo.bonds[k] if symbols[topo.bonds[k][1]] == "H" else topo.bonds[k][::-1]
    unit = (template.positions[h] - template.positions[heavy]) / r_eq[k]

    def stretched(extra_A):
        a = template.copy()
        a.positions[h] = a.positions[heavy] + (r_eq[k] + extra_A) * unit
        return a

    det = BondStretch(interval=1, max_stretch_A=0.5, bond_length_method="mmff")
    det.reset(stretched(0.3))
    assert det.check(stretched(0.3), 1, 0.0) is None and det.check(stretched(0.45), 2, 0.0) is None
    ev = det.check(stretched(0.55), 3, 0.0)
    assert ev is not None and ev.detector == "bond_stretch"
    assert ev.value == pytest.approx(r_eq[k] + 0.55, abs=1e-9)


def test_density_detector_on_an_expanding_cell(small_box):
    det = DensityWindow(density_window_g_cm3=(0.2, 2.0))
    det.reset(small_box)
    assert det.check(small_box, 10, 0.005) is None
    big = small_box.copy()
    big.set_cell(small_box.cell[:] * 2.0, scale_atoms=True)  # 1.1 -> 0.1375 g/cm³
    ev = det.check(big, 20, 0.01)
    assert ev.detector == "density" and ev.value == pytest.approx(1.1 / 8, rel=1e-6) and ev.step == 20


def test_nan_force_and_calculator_error_and_committee_variance(small_box, tmp_path):
    r = run_md(small_box, Scripted(small_box.positions, nan_from=40), SHORT, outdir=tmp_path / "nan",
               detectors=[NonFinite()])
    assert r.failure["detector"] == "non_finite" and "forces" in r.failure["message"]
    assert r.failure["step"] == 39  # call 1 is step 0; call 40 is after step 39
    r = run_md(small_box, Scripted(small_box.positions, raise_from=30), SHORT, outdir=tmp_path / "err")
    assert r.failure["detector"] == "calculator_error" and "model exploded" in r.failure["message"]
    assert (tmp_path / "err" / "thermo.parquet").exists()
    r = run_md(small_box, Scripted(small_box.positions, sigma_from=101), SHORT, outdir=tmp_path / "sig",
               detectors=[CommitteeVariance(interval=10, patience=2)])
    # sigma2_F exceeds 0.5 from step 100; checks every 10 steps, two strikes -> step 110
    assert r.failure["detector"] == "committee_variance" and r.failure["step"] == 110


def test_failure_at_the_last_step_is_recorded_and_does_not_reach_the_horizon(small_box, tmp_path):
    """sigma2_F exceeds the threshold from the last step on (call 1001 is after step 1000): the check at the
    final step fires, so t_stab equals the run length but the run failed and did not reach tau = length."""
    from harness.observables.analysis import AnalysisSpec, observe_run

    r = run_md(small_box, Scripted(small_box.positions, sigma_from=1001), SHORT, outdir=tmp_path,
               detectors=[CommitteeVariance(interval=10)])
    assert r.completed and r.n_steps == 1000 and r.t_stab_ps == pytest.approx(SHORT.length_ps)
    assert r.failure["detector"] == "committee_variance" and r.failure["step"] == 1000
    obs = observe_run(tmp_path, AnalysisSpec(), equilibration_ps=0.0, tau_ps=SHORT.length_ps)
    assert obs["t_stab_ps"] == pytest.approx(SHORT.length_ps) and obs["reached_tau"] is False
    assert "diffusion" not in obs


class StatelessLJ(LennardJones):
    """ASE's LJ with its neighbour list rebuilt at every call. The stock calculator keeps the list it built
    (and updates it only past its skin), so a restarted calculator sums the same pairs in another order:
    forces then differ in the last bit (1e-15 Å after 100 steps, measured) and the bitwise test below
    would test ASE's neighbour-list history instead of the harness's checkpoint."""

    def calculate(self, *args, **kwargs):
        self.nl = None
        super().calculate(*args, **kwargs)


@pytest.mark.parametrize("ensemble", ["nvt", "npt"])
def test_restart_reproduces_an_uninterrupted_run(tmp_path, ensemble):
    atoms = Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                  cell=[11.4] * 3, pbc=True)

    def calc():
        return StatelessLJ(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True)

    s = RunSettings(ensemble, 90.0, length_ps=0.6, timestep_fs=2.0, frame_interval=20, thermo_interval=10,
                    checkpoint_interval=50, pressure_atm=100.0)
    whole = run_md(atoms, calc(), s, outdir=tmp_path / "whole", seed=5)
    part = run_md(atoms, calc(), s, outdir=tmp_path / "part", seed=5, stop_after_steps=137)
    assert not part.completed
    resumed = run_md(atoms, calc(), s, outdir=tmp_path / "part", seed=5)
    assert resumed.completed and resumed.n_frames == whole.n_frames == 1 + 300 // 20
    # stopped at step 137: resumed from the checkpoint of step 100, and the result says so
    assert resumed.meta["resumed_at_steps"] == [100] and "resumed_at_steps" not in whole.meta
    a, b = read_h5md(tmp_path / "whole" / "trajectory.h5md"), read_h5md(tmp_path / "part" / "trajectory.h5md")
    assert np.array_equal(a["time_ps"], b["time_ps"]) and np.array_equal(a["positions"], b["positions"])
    assert np.array_equal(a["cells"], b["cells"])
    ta, tb = pd.read_parquet(tmp_path / "whole" / "thermo.parquet"), pd.read_parquet(tmp_path / "part" / "thermo.parquet")
    assert list(ta["step"]) == list(tb["step"]) and np.array_equal(ta["kinetic_eV"], tb["kinetic_eV"])
    # a finished run is never rerun
    again = run_md(atoms, calc, s, outdir=tmp_path / "whole", seed=5)
    assert again.wall_s == whole.wall_s


def test_thermo_pressure_is_ases_total_pressure_and_a_resumed_run_keeps_its_meaning(tmp_path):
    """thermo_pressure_GPa: -tr(sigma)/3 of ASE's stress with the ideal-gas term (Voigt or 3x3 alike); a run
    records it with the kinetic term and says so in meta.pressure; a run resumed from a checkpoint written
    before the change (no `kinetic_pressure` key) keeps the configurational pressure, and says that."""
    import pickle

    from harness.md.runner import PRESSURE_MEANING, thermo_pressure_GPa

    atoms = Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                  cell=[11.4] * 3, pbc=True)
    atoms.set_momenta(np.random.default_rng(0).normal(0, 0.5, (27, 3)))
    atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True)
    total = -np.mean(atoms.get_stress(include_ideal_gas=True)[:3]) * EV_PER_A3_TO_GPA
    config = -np.mean(atoms.get_stress()[:3]) * EV_PER_A3_TO_GPA
    ekin, vol = atoms.get_kinetic_energy(), atoms.get_volume()
    assert thermo_pressure_GPa(atoms.get_stress(), ekin, vol) == pytest.approx(total, rel=1e-12)
    assert thermo_pressure_GPa(atoms.get_stress(voigt=False), ekin, vol) == pytest.approx(total, rel=1e-12)
    assert thermo_pressure_GPa(atoms.get_stress(), ekin, vol, kinetic=False) == pytest.approx(config, rel=1e-12)
    assert abs(total - config) > 0.1 * abs(config)

    s = RunSettings("npt", 90.0, length_ps=0.2, timestep_fs=2.0, frame_interval=20, thermo_interval=10,
                    checkpoint_interval=50, pressure_atm=100.0)
    lj = lambda: LennardJones(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True)  # noqa: E731
    start = atoms.copy()
    assert run_md(start, lj(), s, outdir=tmp_path / "new", seed=1).meta["pressure"] == PRESSURE_MEANING[True]
    run_md(start, lj(), s, outdir=tmp_path / "old", seed=1, stop_after_steps=60)
    ck_path = tmp_path / "old" / "checkpoint.pkl"
    ck = pickle.loads(ck_path.read_bytes())
    assert ck.pop("kinetic_pressure") is True
    ck_path.write_bytes(pickle.dumps(ck))  # as an older harness wrote it
    old = run_md(start, lj(), s, outdir=tmp_path / "old", seed=1)
    assert old.meta["pressure"] == PRESSURE_MEANING[False] and old.meta["resumed_at_steps"] == [50]
    new, resumed = (pd.read_parquet(tmp_path / d / "thermo.parquet") for d in ("new", "old"))
    kin = 2 * new["kinetic_eV"] / (3 * new["volume_A3"]) * EV_PER_A3_TO_GPA
    after = resumed["step"] > 50
    assert np.allclose(resumed["pressure_GPa"][after], (new["pressure_GPa"] - kin)[after], rtol=1e-6, atol=1e-9)


def test_h5md_opens_in_mdanalysis(small_box, tmp_path):
    import MDAnalysis as mda

    run_md(small_box, Scripted(small_box.positions), SHORT, outdir=tmp_path)
    u = mda.Universe.empty(len(small_box), trajectory=True)
    u.load_new(str(tmp_path / "trajectory.h5md"), format="H5MD")
    assert len(u.trajectory) == 21
    u.trajectory[3]
    ref = read_h5md(tmp_path / "trajectory.h5md")
    assert np.allclose(u.atoms.positions, ref["positions"][3], atol=1e-4)
    assert u.trajectory.ts.dimensions[0] == pytest.approx(small_box.cell[0, 0], rel=1e-5)


# ---- NVT thermostat: global (Bussi) by default, Langevin an option (SCIENCE.md §5) -----------------

def test_nvt_thermostat_defaults_to_bussi_everywhere():
    from ase.md.bussi import Bussi
    from ase.md.langevin import Langevin

    from harness.md.protocol import NVTSpec, load_protocol
    from harness.md.runner import make_dynamics

    assert RunSettings("nvt", 300.0, 1.0).thermostat == "bussi"
    assert NVTSpec(length_ps=1.0).thermostat == "bussi"
    for name in ("mini", "demo", "ci", "paper-500K"):
        assert load_protocol(f"protocols/{name}.yaml").settings("nvt").thermostat == "bussi", name
    atoms = _gas(10, 1000.0)
    atoms.set_velocities(np.random.default_rng(0).normal(0.0, 0.01, (10, 3)))
    assert isinstance(make_dynamics(atoms, RunSettings("nvt", 300.0, 1.0), np.random.default_rng(0)), Bussi)
    lang = make_dynamics(atoms, RunSettings("nvt", 300.0, 1.0, thermostat="langevin"), np.random.default_rng(0))
    assert isinstance(lang, Langevin)


LJ_SIGMA_A, LJ_EPSILON_EV = 3.405, 0.0104  # argon


class ForceShiftedLJ(Calculator):
    """Vectorised force-shifted Lennard-Jones (cubic box, minimum image, all pairs): a fast simple fluid.

    U(r) = u(r) - u(r_c) - (r - r_c) u'(r_c) for r < r_c, so energy and force are continuous at the cut-off
    and velocity Verlet conserves energy (NVE reference)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, rc_A: float = 2.5 * LJ_SIGMA_A):
        super().__init__()
        self.rc_A = rc_A

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        i, j = np.triu_indices(n, 1)
        box = self.atoms.cell[0, 0]
        d = self.atoms.positions[i] - self.atoms.positions[j]
        d -= box * np.round(d / box)
        r2 = np.einsum("ij,ij->i", d, d)
        near = r2 < self.rc_A ** 2
        i, j, d, r2 = i[near], j[near], d[near], r2[near]
        r, s6 = np.sqrt(r2), (LJ_SIGMA_A ** 2 / r2) ** 3
        rc, c6 = self.rc_A, (LJ_SIGMA_A / self.rc_A) ** 6
        f_c = 24 * LJ_EPSILON_EV * (2 * c6 * c6 - c6) / rc  # -u'(r_c)
        energy = 4 * LJ_EPSILON_EV * (s6 * s6 - s6 - c6 * c6 + c6) + (r - rc) * f_c
        f = (24 * LJ_EPSILON_EV * (2 * s6 * s6 - s6) / r2 - f_c / r)[:, None] * d
        forces = np.stack([np.bincount(i, f[:, k], n) - np.bincount(j, f[:, k], n) for k in range(3)], axis=1)
        self.results = {"energy": float(energy.sum()), "forces": forces}


def _lj_fluid(rho_reduced: float) -> Atoms:
    """108 argon atoms on an fcc lattice at reduced density rho* = N sigma³ / V; each atom its own molecule."""
    box = (108 / rho_reduced) ** (1 / 3) * LJ_SIGMA_A
    cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.array(np.meshgrid(*[np.arange(3)] * 3, indexing="ij")).reshape(3, -1).T
    atoms = Atoms("Ar108", positions=(grid[:, None] + cell[None]).reshape(-1, 3) * box / 3, cell=[box] * 3, pbc=True)
    atoms.arrays["mol_id"] = np.arange(108)
    return atoms


def _com_diffusivity(dyn, atoms, n_steps: int, dt_ps: float, every: int = 10) -> tuple[float, float, float]:
    """(D, standard error, mean total energy) of ``n_steps`` of ``dyn`` with the harness's block estimator on
    non-overlapping 4 ps blocks (independent, so std/sqrt(blocks) is an honest standard error)."""
    from harness.observables.diffusion import DiffusionSpec, species_diffusivity
    from harness.observables.trajectory import Trajectory

    pos, e_tot = [], []

    def sample():
        pos.append(atoms.positions.copy())  # ASE integrators do not wrap: unwrapped positions
        e_tot.append(atoms.get_kinetic_energy() + atoms.get_potential_energy())

    dyn.attach(sample, interval=every)
    dyn.run(n_steps)
    n = len(pos)
    traj = Trajectory(np.array(pos), np.tile(atoms.cell[:], (n, 1, 1)), np.arange(n) * every * dt_ps,
                      atoms.numbers, atoms.get_masses(), atoms.arrays["mol_id"])
    spec = DiffusionSpec(block_ps=4.0, block_stride_ps=4.0, skip_ps=1.0, kinisi=False)
    block = species_diffusivity(traj, spec)["Ar"].block
    return block.D, block.sem, float(np.mean(e_tot))


def test_default_nvt_thermostat_keeps_the_nve_diffusivity_and_langevin_slows_it():
    """Centre-of-mass self-diffusivity of a Lennard-Jones fluid (108 argon atoms, rho* = 0.5, T = 180 K,
    T* = 1.49) under the default NVT thermostat equals its NVE value; Langevin friction on every atom
    lowers it (D -> kT / (m gamma) at large friction).

    Statistics: 2400 steps of 15 fs (36 ps) per run, D from 9 non-overlapping 4 ps blocks (1 ps of
    ballistic lags dropped; the velocity correlation time is ~0.4 ps) gives ~3 % standard error per run.
    Measured (seed 0): D_NVE = 1.65 ± 0.05, D_Bussi = 1.61 ± 0.05 Å²/ps (0.7 combined standard errors
    apart); Langevin 1 ps⁻¹ (the old default) 0.96 ± 0.04, 11 combined standard errors below NVE, so the
    first assertion fails for it; Langevin 10 ps⁻¹: 0.24 ± 0.02. About 13 s of CPU.
    """
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    from harness.md.runner import make_dynamics

    temp, dt_fs, n_steps = 180.0, 15.0, 2400
    dt_ps = dt_fs / 1000
    atoms = _lj_fluid(0.5)
    atoms.calc = ForceShiftedLJ()
    rng = np.random.default_rng(0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
    Stationary(atoms)
    make_dynamics(atoms, RunSettings("nvt", temp, 1.0, timestep_fs=dt_fs, thermostat="bussi", tdamp_fs=50.0),
                  rng).run(600)  # melt and equilibrate (9 ps)

    def clone(src):
        a = src.copy()
        a.set_momenta(src.get_momenta(), apply_constraint=False)
        a.calc = ForceShiftedLJ()
        return a

    # the default NVT thermostat of the harness
    a = clone(atoms)
    d_default, se_default, e_mean = _com_diffusivity(
        make_dynamics(a, RunSettings("nvt", temp, 1.0, timestep_fs=dt_fs), rng), a, n_steps, dt_ps)
    # NVE from the last frame, kinetic energy set so the total energy is the canonical mean: same temperature
    b = clone(a)
    b.set_momenta(b.get_momenta() * np.sqrt((e_mean - b.get_potential_energy()) / b.get_kinetic_energy()))
    d_nve, se_nve, _ = _com_diffusivity(VelocityVerlet(b, dt_fs * units.fs), b, n_steps, dt_ps)
    # Langevin with a large friction (10 ps⁻¹): half as long a run suffices for a large effect
    c = clone(atoms)
    lang = RunSettings("nvt", temp, 1.0, timestep_fs=dt_fs, thermostat="langevin", friction_per_ps=10.0)
    d_lang, se_lang, _ = _com_diffusivity(make_dynamics(c, lang, rng), c, n_steps // 2, dt_ps)

    se = np.hypot(se_default, se_nve)
    assert abs(d_default - d_nve) < 3 * se, (d_default, se_default, d_nve, se_nve)
    assert d_nve - d_lang > 5 * np.hypot(se_nve, se_lang) and d_lang < 0.5 * d_nve, (d_lang, se_lang, d_nve)


@pytest.fixture
def start_calls(monkeypatch):
    """The ci protocol, and the replica index of every OPLS-AA start built (``prepare_start`` counted)."""
    from pathlib import Path

    import harness.md.start as start
    from harness.md.protocol import load_protocol

    calls = []
    real = start.prepare_start

    def counting(*args, **kwargs):
        calls.append(kwargs.get("replica", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(start, "prepare_start", counting)
    return load_protocol(Path(__file__).resolve().parents[1] / "protocols" / "ci.yaml"), calls


def test_runs_of_a_workspace_share_one_start(tmp_path, start_calls):
    """Every model's run of a protocol and replica starts from the same OPLS-AA liquid, built once per
    workspace (not once per run); another replica or NVT density gets its own; the runs' own start files
    equal the shared one."""
    from harness.io import read_frames
    from harness.md.launch import prepare_run

    proto, calls = start_calls
    a = prepare_run(proto, "npt", "model-a", workspace=tmp_path)
    b = prepare_run(proto, "npt", "model-b", workspace=tmp_path)
    assert calls == [0]
    assert (a.atoms.positions == b.atoms.positions).all()
    assert (read_frames(b.outdir / "start.extxyz")[0].positions == a.atoms.positions).all()
    prepare_run(proto, "npt", "model-a", workspace=tmp_path, replica=1)
    prepare_run(proto, "nvt", "model-a", workspace=tmp_path, nvt_density=1.0)
    assert calls == [0, 1, 0] and len(list((tmp_path / "md" / "starts").glob("start-*.extxyz"))) == 3
    # each member draws its own MD seed (velocities, thermostat noise); a rerun of a member gets its own back
    assert a.seed != b.seed
    assert prepare_run(proto, "npt", "model-a", workspace=tmp_path).seed == a.seed
    assert prepare_run(proto, "npt", "model-a", workspace=tmp_path, replica=1).seed not in (a.seed, b.seed)


def test_per_member_starts(tmp_path, start_calls):
    """``system.starts: per_member``: each member's runs start from a liquid of their own (built once per
    member and replica), distinct from the shared starts and from each other."""
    from harness.md.launch import prepare_run, start_index

    proto, calls = start_calls
    proto = proto.model_copy(update={"system": proto.system.model_copy(update={"starts": "per_member"})})
    a = prepare_run(proto, "npt", "model-a", workspace=tmp_path)
    b = prepare_run(proto, "npt", "model-b", workspace=tmp_path)
    assert calls == [start_index("model-a", 0), start_index("model-b", 0)] and min(calls) >= 1000
    assert not np.allclose(a.atoms.positions, b.atoms.positions)
    prepare_run(proto, "npt", "model-a", workspace=tmp_path / "other")  # the member's start is cached per workspace
    assert len(calls) == 3 and calls[2] == calls[0]


def test_thermo_table_appends_parts_and_truncates(tmp_path):
    """Checkpoints write only new rows (earlier parts untouched); resume reads the parts, drops rows after the
    checkpoint (rewriting parts only then); close writes the whole table; an old single-file table is read."""
    from harness.h5md import ThermoTable

    path = tmp_path / "thermo.parquet"
    t = ThermoTable(path)
    for k in range(10):
        t.append({"step": k, "x": float(k)})
    t.flush()
    first = (t.parts / "part-000000.parquet").read_bytes()
    for k in range(10, 15):
        t.append({"step": k, "x": float(k), "extra": 1.0})  # a column that appears later
    t.flush()
    t.flush()  # nothing new: no empty part
    assert [p.name for p in t._part_files()] == ["part-000000.parquet", "part-000001.parquet"]
    assert (t.parts / "part-000000.parquet").read_bytes() == first
    assert len(pd.read_parquet(t.parts / "part-000001.parquet")) == 5 and not path.exists()
    again = ThermoTable(path)  # a resumed run
    assert [r["step"] for r in again.rows] == list(range(15))
    again.truncate_after(12)  # the checkpoint was at step 12: flushed rows 13, 14 go
    assert [r["step"] for r in ThermoTable(path).rows] == list(range(13))
    again.append({"step": 13, "x": 13.0})
    again.close()
    df = pd.read_parquet(path)
    assert list(df["step"]) == list(range(14)) and np.isnan(df["extra"].iloc[0]) and df["extra"].iloc[12] == 1.0
    assert not again.parts.exists()  # the file holds every row: a run keeps no parts once closed
    piece = ThermoTable(path)  # the next piece: from the file, its first flush writes everything as one part
    piece.truncate_after(11)
    piece.append({"step": 12, "x": 0.5})
    piece.flush()
    assert [p.name for p in piece._part_files()] == ["part-000000.parquet"]
    assert [r["step"] for r in ThermoTable(path).rows] == list(range(13))  # parts win over the stale file
    again.reset()
    assert not path.exists() and not again.parts.exists() and ThermoTable(path).rows == []
    pd.DataFrame({"step": [0, 10], "x": [0.0, 1.0]}).to_parquet(path)  # written before the parts
    old = ThermoTable(path)
    old.append({"step": 20, "x": 2.0})
    old.close()
    assert list(pd.read_parquet(path)["step"]) == [0, 10, 20]
    assert list(ThermoTable(path).rows[i]["step"] for i in range(3)) == [0, 10, 20]


def test_full_disk_leaves_no_corrupt_artifact(tmp_path, monkeypatch):
    """A write that fails half-way (ENOSPC, simulated by a write hook) leaves the previous thermo table, part and
    frames file as they were, and no temporary file."""
    import errno
    from pathlib import Path

    from ase.build import molecule

    from harness.h5md import ThermoTable
    from harness.io import read_frames, write_frames

    t = ThermoTable(tmp_path / "thermo.parquet")
    t.rows = [{"step": k, "x": float(k)} for k in range(5)]
    t.close()
    before = (tmp_path / "thermo.parquet").read_bytes()
    write_frames(tmp_path / "f.extxyz.gz", [molecule("H2O")])
    frames_before = (tmp_path / "f.extxyz.gz").read_bytes()

    def full_disk(self, path, *a, **k):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    t.append({"step": 5, "x": 5.0})
    with pytest.raises(OSError):
        t.flush()
    with pytest.raises(OSError):
        t.close()
    import gzip

    def full_gzip(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", full_gzip)
    with pytest.raises(OSError):
        write_frames(tmp_path / "f.extxyz.gz", [molecule("CH4")])
    monkeypatch.undo()
    assert (tmp_path / "thermo.parquet").read_bytes() == before
    assert (tmp_path / "f.extxyz.gz").read_bytes() == frames_before
    assert read_frames(tmp_path / "f.extxyz.gz")[0].get_chemical_formula() == "H2O"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and not list(t.parts.glob("*.parquet"))
    assert [r["step"] for r in ThermoTable(tmp_path / "thermo.parquet").rows] == list(range(5))


def test_trajectory_parts_survive_a_kill_and_assemble(tmp_path):
    """The H5MD writer: a checkpoint writes the frames since the last one as an atomic part (earlier parts
    untouched); a writer dropped without closing (a killed run) leaves only whole parts, read by read_h5md and
    resumed from; truncation back to a checkpoint cuts inside a part; close assembles one trajectory.h5md that
    MDAnalysis-style readers read, and removes the parts; an assembled file left beside its parts (a kill inside
    close) yields to them; an unreadable file (an in-place writer killed mid-write) is dropped, not trusted."""
    from ase.build import molecule

    from harness.h5md import H5MDWriter, read_h5md

    atoms = molecule("H2O", vacuum=4.0, pbc=True)
    path = tmp_path / "trajectory.h5md"

    def frame(k):
        a = atoms.copy()
        a.positions += 0.01 * k
        return a

    w = H5MDWriter(path, atoms, observables=("sigma2_F",))
    for k in range(4):
        w.write(frame(k), 10 * k, 0.005 * k, {"sigma2_F": float(k)} if k == 2 else None)
    w.flush()
    first = (w.parts / "part-000000000.h5").read_bytes()
    for k in range(4, 7):
        w.write(frame(k), 10 * k, 0.005 * k)
    w.flush()
    w.write(frame(7), 70, 0.035)  # not flushed: lost with the killed run
    del w
    assert sorted(p.name for p in (tmp_path / "trajectory.parts").iterdir()) == ["part-000000000.h5", "part-000000004.h5"]
    assert (tmp_path / "trajectory.parts" / "part-000000000.h5").read_bytes() == first
    assert not path.exists()
    peek = read_h5md(path)  # a run under way: its parts
    assert list(peek["step"]) == [0, 10, 20, 30, 40, 50, 60] and peek["observables"]["sigma2_F"][2] == 2.0
    again = H5MDWriter(path, atoms, observables=("sigma2_F",))
    assert again.n_frames == 7
    again.truncate(5)  # the checkpoint held 5 frames: the second part is cut to one frame
    assert again.n_frames == 5 and list(read_h5md(path)["step"]) == [0, 10, 20, 30, 40]
    again.write(frame(5), 50, 0.025)
    again.close()
    again.close()  # a second close (the runner's finally) changes nothing
    d = read_h5md(path)
    assert list(d["step"]) == [0, 10, 20, 30, 40, 50] and not (tmp_path / "trajectory.parts").exists()
    assert np.allclose(d["positions"][5], frame(5).positions) and d["cells"].shape == (6, 3, 3)
    assert np.isnan(d["observables"]["sigma2_F"][0]) and d["observables"]["sigma2_F"][2] == 2.0
    # a later piece: the whole file becomes its first part; a close killed before removing the parts
    piece = H5MDWriter(path, atoms, observables=("sigma2_F",))
    assert piece.n_frames == 6 and not path.exists()
    piece.write(frame(6), 60, 0.03)
    piece.flush()
    path.write_bytes(b"an assembled copy")  # stands for a close killed between its rename and the rmtree
    resumed = H5MDWriter(path, atoms, observables=("sigma2_F",))
    assert resumed.n_frames == 7 and not path.exists()
    resumed.close()
    assert len(read_h5md(path)["step"]) == 7
    with pytest.raises(ValueError, match="without the per-frame observables"):
        H5MDWriter(path, atoms, observables=("sigma2_F", "other"))
    (tmp_path / "trajectory.parts").mkdir(exist_ok=True)
    for p in (tmp_path / "trajectory.parts").iterdir():
        p.unlink()
    (tmp_path / "trajectory.parts").rmdir()
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # what a kill mid-write leaves of an in-place file
    broken = H5MDWriter(path, atoms)
    assert broken.n_frames == 0 and not path.exists()


def test_a_run_whose_trajectory_was_lost_starts_again(tmp_path):
    """A checkpoint whose trajectory file is unreadable (an older in-place writer killed mid-write) is not
    resumed from: the run starts again from step 0 and ends as an uninterrupted run does."""
    atoms = Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                  cell=[11.4] * 3, pbc=True)
    s = RunSettings("nvt", 90.0, length_ps=0.2, timestep_fs=2.0, frame_interval=20, thermo_interval=10,
                    checkpoint_interval=50)
    calc = lambda: StatelessLJ(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True)  # noqa: E731
    whole = run_md(atoms, calc(), s, outdir=tmp_path / "whole", seed=5)
    part = run_md(atoms, calc(), s, outdir=tmp_path / "part", seed=5, stop_after_steps=60)
    assert not part.completed
    import shutil

    shutil.rmtree(tmp_path / "part" / "trajectory.parts", ignore_errors=True)
    (tmp_path / "part" / "trajectory.h5md").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    redone = run_md(atoms, calc(), s, outdir=tmp_path / "part", seed=5)
    assert redone.completed and "resumed_at_steps" not in redone.meta
    a, b = read_h5md(tmp_path / "whole" / "trajectory.h5md"), read_h5md(tmp_path / "part" / "trajectory.h5md")
    assert np.array_equal(a["positions"], b["positions"]) and np.array_equal(a["step"], b["step"])
