"""The TorchSim engine (harness.md.torchsim, issue #34) on CPU: what it adopts and refuses, and a batch's bookkeeping.

- the integrator table: the harness settings TorchSim can run correctly are run, the others refused with the
  measured reason; the slow tests re-measure every verdict (an adopted integrator samples each trajectory's own
  ensemble; a refused one still fails as recorded — a newer TorchSim that fixes it fails the test, and the table
  is updated, not silently kept);
- the bookkeeping of a batch (outputs in run_md's layout, a failure leaving the batch, a raising structure,
  an interrupted batch resuming, a finished one returned as it is);
- a batch of one against the ASE path (the integrators differ: agreement within the statistics).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms, units
from ase.build import bulk
from scipy import stats

pytest.importorskip("torch_sim")

from harness.h5md import read_h5md  # noqa: E402
from harness.md.batched import BatchJob, EachEvaluator  # noqa: E402
from harness.md.detectors import NonFinite  # noqa: E402
from harness.md.runner import RunSettings, run_md  # noqa: E402
from harness.md.torchsim import (INTEGRATORS, MEASURED_OTHERS, EngineRefused, EvaluatorModel,  # noqa: E402
                                 build_integrator, integrator_for, run_torchsim)
from tests.helpers import IdealGas, mace_pair_and_lj_reference  # noqa: E402
from tests.test_ensembles import PairLJ  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _argon(seed: int = 0, jitter: float = 0.02) -> Atoms:
    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)  # 32 atoms
    a.positions += np.random.default_rng(seed).normal(0, jitter, a.positions.shape)
    return a


def _nvt(temp: float = 40.0, steps: int = 200, **kw) -> RunSettings:
    return RunSettings("nvt", temp, length_ps=steps * 10e-3, timestep_fs=10.0, thermostat="langevin",
                       **{"friction_per_ps": 1.0, "frame_interval": 50, "thermo_interval": 10,
                                               "checkpoint_interval": 60, **kw})


def _model(calc=None):
    return EvaluatorModel(EachEvaluator(calc or PairLJ()))


# -- what is adopted and refused ------------------------------------------------------------------------------

def test_the_default_protocol_settings_are_refused_with_the_measured_reason():
    """The harness's NVT default (Bussi) has no TorchSim integrator; its NPT (MTK) is refused with what was
    measured; Langevin NVT is adopted; heating ramps stay on the ASE path. Refusals are input errors (exit 2)."""
    assert integrator_for(_nvt()).name == "nvt_langevin"
    with pytest.raises(EngineRefused, match="no integrator for NVT with the bussi thermostat"):
        integrator_for(RunSettings("nvt", 500.0, 1.0))
    with pytest.raises(EngineRefused, match="npt_nose_hoover .* refused: one thermostat chain"):
        integrator_for(RunSettings("npt", 500.0, 1.0))
    with pytest.raises(EngineRefused, match="ramps"):
        integrator_for(RunSettings("nvt", 300.0, 1.0, thermostat="langevin", final_temperature_K=400.0))
    from harness.errors import InputError

    assert issubclass(EngineRefused, InputError)
    adopted = {k for k, v in INTEGRATORS.items() if v is not None and v.adopted}
    assert adopted == {("nvt", "langevin")}


def test_settings_that_differ_beyond_the_temperature_cannot_share_a_batch(tmp_path):
    jobs = [BatchJob(_argon(), _nvt(40.0), tmp_path / "a"), BatchJob(_argon(), _nvt(40.0, steps=300), tmp_path / "b")]
    with pytest.raises(ValueError, match="job 1"):
        run_torchsim(jobs, _model())


# -- a batch's bookkeeping -----------------------------------------------------------------------------------

def test_a_batch_writes_each_trajectory_as_run_md_does(tmp_path):
    """Two trajectories (40 and 60 K) of 200 steps: each has run_md's outputs — result.json (completed, 200 steps,
    the engine and integrator in its meta), thermo rows every 10 steps with run_md's columns, frames every 50 — and
    its own temperature; a second call returns the finished results as they are."""
    jobs = [BatchJob(_argon(k), _nvt(t, friction_per_ps=20.0), tmp_path / f"t{k}", seed=k)
            for k, t in enumerate((40.0, 60.0))]
    res = run_torchsim(jobs, _model())
    assert [r.completed and r.failure is None and r.n_steps == 200 for r in res] == [True, True]
    assert res[0].meta["engine"] == "torchsim" and res[0].meta["integrator"] == "nvt_langevin"
    ase_dir = tmp_path / "ase"
    run_md(_argon(), PairLJ(), RunSettings("nvt", 40.0, 0.1, timestep_fs=10.0, thermo_interval=10), outdir=ase_dir)
    cols = set(pd.read_parquet(ase_dir / "thermo.parquet").columns)
    temps = []
    for k in range(2):
        th = pd.read_parquet(tmp_path / f"t{k}" / "thermo.parquet")
        assert set(th.columns) == cols and list(th["step"]) == list(range(0, 201, 10))
        traj = read_h5md(tmp_path / f"t{k}" / "trajectory.h5md")
        assert list(np.round(traj["time_ps"], 6)) == [0.0, 0.5, 1.0, 1.5, 2.0]
        assert not (tmp_path / f"t{k}" / "checkpoint.pkl").exists()
        saved = json.loads((tmp_path / f"t{k}" / "result.json").read_text())
        assert saved["n_steps"] == 200 and saved["meta"]["seed"] == k
        temps.append(th["temperature_K"].iloc[5:].mean())
    assert 34 < temps[0] < 46 and 51 < temps[1] < 69, temps  # strong friction: at its target within ~0.5 ps
    again = run_torchsim(jobs, _model())
    assert [a.wall_s for a in again] == [r.wall_s for r in res]


class _Breaks:
    """Lennard-Jones argon; the structures of ``n_bad`` atoms get NaN forces (or raise) from the ``after``-th call
    on (the others are untouched): only that trajectory is hit."""

    name = "breaks"

    def __init__(self, n_bad: int, after: int, how: str):
        self.each, self.n_bad, self.after, self.how, self.calls, self.sizes = EachEvaluator(PairLJ()), n_bad, after, how, 0, []

    def evaluate(self, frames):
        self.calls += 1
        self.sizes.append(len(frames))
        out = self.each.evaluate(frames)
        for a, r in zip(frames, out):
            if len(a) == self.n_bad and self.calls >= self.after:
                if self.how == "raise":
                    raise RuntimeError("model exploded on this structure")
                r["forces"] = r["forces"].copy()
                r["forces"][0, 0] = np.nan
        return out


@pytest.mark.parametrize("how", ["nan", "raise"])
def test_a_failed_trajectory_leaves_the_batch_and_the_others_finish(tmp_path, how):
    """Three trajectories; the 31-atom one breaks from the 30th model call (NaN forces: the non-finite detector
    fires at its next check; an exception: a calculator_error at that step, found by stepping the structures one by
    one); the two others run their 200 steps in a batch of two from then on."""
    small = _argon(2)
    del small[-1]
    jobs = [BatchJob(a, _nvt(40.0), tmp_path / f"t{k}", seed=k, detectors=[NonFinite()])
            for k, a in enumerate((_argon(0), small, _argon(1)))]
    ev = _Breaks(31, 30, how)
    r0, bad, r2 = run_torchsim(jobs, EvaluatorModel(ev))
    assert r0.failure is None and r2.failure is None and r0.n_steps == r2.n_steps == 200
    assert bad.completed and bad.failure is not None and (tmp_path / "t1" / "result.json").exists()
    if how == "nan":
        assert bad.failure["detector"] == "non_finite" and bad.n_steps == 30  # call 1 is the start; checks every 10
    else:
        assert bad.failure["detector"] == "calculator_error" and "exploded" in bad.failure["message"]
        assert bad.n_steps == 29
    assert ev.sizes[:20] == [3] * 20 and ev.sizes[-1] == 2


def test_an_interrupted_batch_resumes_each_trajectory_from_its_checkpoint(tmp_path):
    """Stopped after 130 steps (checkpoints every 60: at 120), then rerun: every trajectory ends at step 200
    with thermo rows 0..200 once each and frames 0..2 ps once each, and records where it resumed."""
    jobs = [BatchJob(_argon(k), _nvt(40.0 + 20 * k), tmp_path / f"t{k}", seed=k) for k in range(2)]
    part = run_torchsim(jobs, _model(), stop_after_steps=130)
    assert [p.completed for p in part] == [False, False] and [p.n_steps for p in part] == [130, 130]
    done = run_torchsim(jobs, _model())
    for k, r in enumerate(done):
        assert r.completed and r.n_steps == 200 and r.meta["resumed_at_steps"] == [130]
        th = pd.read_parquet(tmp_path / f"t{k}" / "thermo.parquet")
        assert list(th["step"]) == list(range(0, 201, 10))
        assert list(np.round(read_h5md(tmp_path / f"t{k}" / "trajectory.h5md")["time_ps"], 6)) == [0, .5, 1, 1.5, 2]


def test_a_walltime_checkpoints_the_batch(tmp_path, monkeypatch):
    """A deadline already past: every trajectory checkpoints after its first step and comes back unfinished."""
    import time

    from harness.deadline import ENV

    monkeypatch.setenv(ENV, repr(time.time() - 1))
    jobs = [BatchJob(_argon(k), _nvt(40.0), tmp_path / f"t{k}", seed=k) for k in range(2)]
    res = run_torchsim(jobs, _model())
    assert [(r.completed, r.n_steps) for r in res] == [(False, 1), (False, 1)]
    assert all((tmp_path / f"t{k}" / "checkpoint.pkl").exists() for k in range(2))


# -- the ensembles, re-measured (slow: make ci-ensembles) ----------------------------------------------------

def _kinetic_series(name: str, frames, temps, s: RunSettings, steps: int, every: int, calc, scalar_kT=False,
                    with_potential=False):
    import torch
    import torch_sim as ts

    torch.manual_seed(0)
    it = MEASURED_OTHERS.get(name) or next(v for v in INTEGRATORS.values() if v is not None and v.name == name)
    model = _model(calc)
    state = ts.initialize_state(frames, device=torch.device("cpu"), dtype=torch.float64)
    kT = torch.tensor([units.kB * t for t in temps], dtype=torch.float64)
    init, update = build_integrator(it, model, s, kT[0] if scalar_kT else kT)
    st = init(state)
    ke, vol, pe = [], [], []
    for k in range(steps):
        st = update(st)
        if k % every == 0 and k >= steps // 10:
            e = 0.5 * (st.momenta ** 2).sum(-1) / st.masses
            ke.append(torch.zeros(len(frames), dtype=e.dtype).index_add(0, st.system_idx, e).numpy())
            vol.append(torch.linalg.det(st.cell).numpy())
            pe.append(st.energy.detach().numpy().copy())
    if with_potential:
        return np.array(ke), np.array(vol), np.array(pe)
    return np.array(ke), np.array(vol)


@pytest.mark.slow
def test_nvt_langevin_samples_each_trajectory_at_its_own_temperature():
    """Two argon crystals at 40 and 44 K in ONE TorchSim batch, 40 000 steps of 10 fs:

    - KS (every 100 steps): each kinetic energy follows Gamma(3N/2, k T_i) (p > 0.01) — the integrator's own
      degrees of freedom (per-atom noise: no fixed centre of mass) — and neither Gamma((3N - 3)/2, k T_i) nor its
      neighbour's temperature (p < 1e-4);
    - physical_validation (Merz & Shirts 2018, as tests/test_ensembles.py applies it to the ASE path; every 20
      steps): each kinetic-energy distribution passes with 3N degrees of freedom (read as 3N - 3: rejected, > 4
      standard errors) and the two potential-energy distributions pass the ensemble check (within 3)."""
    import io
    from contextlib import redirect_stdout

    from tests.test_ensembles import _data, _pv

    temps, n = (40.0, 44.0), 32
    ke, _, pe = _kinetic_series("nvt_langevin", [_argon(0, 0.0), _argon(1, 0.0)], temps, _nvt(), 40000, 20,
                                PairLJ(), with_potential=True)
    for i, t in enumerate(temps):
        kT, every100 = units.kB * t, ke[::5, i]
        assert stats.kstest(every100, stats.gamma(3 * n / 2, scale=kT).cdf).pvalue > 0.01
        assert stats.kstest(every100, stats.gamma((3 * n - 3) / 2, scale=kT).cdf).pvalue < 1e-4
        other = units.kB * temps[1 - i]
        assert stats.kstest(every100, stats.gamma(3 * n / 2, scale=other).cdf).pvalue < 1e-4
    pv = _pv()

    def data(i, dof_removed=0):
        frame = pd.DataFrame({"kinetic_eV": ke[:, i], "potential_eV": pe[:, i]})
        d = _data(pv, frame, n, "nvt", temps[i])
        d.system = pv.data.SystemData(natoms=n, nconstraints=0, ndof_reduction_tra=dof_removed, ndof_reduction_rot=0)
        return d

    with redirect_stdout(io.StringIO()):
        for i in range(2):
            d_mean, d_width = pv.kinetic_energy.distribution(data(i), strict=False, verbosity=0)
            assert abs(d_mean) < 3 and abs(d_width) < 3, (i, d_mean, d_width)
        w_mean, _ = pv.kinetic_energy.distribution(data(0, 3), strict=False, verbosity=0)
        q = pv.ensemble.check(data(0), data(1), verbosity=0)
    assert abs(w_mean) > 4, w_mean
    assert all(abs(x) < 3 for x in np.atleast_1d(q)), q


@pytest.mark.slow
@pytest.mark.parametrize("name", ["npt_nose_hoover", "nvt_nose_hoover"])
def test_the_nose_hoover_integrators_still_fail_in_a_batch(name):
    """TorchSim 0.3's Nose-Hoover chains are one for the whole batch: a batch of two at one temperature raises
    (the recorded reason of their refusal)."""
    if name == "npt_nose_hoover":
        frames, s, calc = [_gas(0), _gas(1)], _npt(), IdealGas()
    else:
        frames, s, calc = [_argon(0, 0.0), _argon(1, 0.0)], _nvt(), PairLJ()
    with pytest.raises(RuntimeError):
        _kinetic_series(name, frames, (300.0, 300.0), s, 50, 10, calc, scalar_kT=True)


def _npt() -> RunSettings:
    return RunSettings("npt", 300.0, 1.0, timestep_fs=5.0, pressure_atm=1000.0, tdamp_fs=50, pdamp_fs=500)


def _gas(seed: int, temp: float = 300.0, n: int = 8) -> Atoms:
    from harness.units import ATM_TO_EV_PER_A3

    edge = ((n + 1) * units.kB * temp / (1000.0 * ATM_TO_EV_PER_A3)) ** (1 / 3)
    return Atoms(f"Ar{n}", positions=np.random.default_rng(seed).uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)


@pytest.mark.slow
def test_npt_langevin_still_misses_the_ideal_gas_volume_distribution():
    """TorchSim 0.3's Langevin piston: ideal gas (N = 8) at 300 and 450 K, 1000 atm, in one batch, 20 000 steps of
    5 fs: the volumes are not Gamma(N + 1, kT/P) (KS p < 1e-4), the measured reason of its refusal (measured over
    40 000 steps: p 2e-8 and 2e-29)."""
    from harness.units import ATM_TO_EV_PER_A3

    temps = (300.0, 450.0)
    _, vol = _kinetic_series("npt_langevin", [_gas(0), _gas(1, 450.0)], temps, _npt(), 20000, 50, IdealGas())
    p = 1000.0 * ATM_TO_EV_PER_A3
    pvals = [stats.kstest(vol[:, i], stats.gamma(9, scale=units.kB * t / p).cdf).pvalue for i, t in enumerate(temps)]
    assert min(pvals) < 1e-4, pvals


@pytest.mark.slow
def test_a_batch_of_one_agrees_with_the_ase_path_within_the_statistics(tmp_path):
    """Langevin NVT (5/ps) of argon at 40 K, 120 ps, TorchSim (BAOAB) and the ASE path (ASE's Langevin, centre of
    mass fixed), the first 10 ps dropped: the mean potential energies agree within 4 combined standard errors
    (10 blocks of 11 ps) and each mean kinetic temperature is 40 K within 4 of its standard errors. The test can
    tell: 4 combined standard errors are under half the potential-energy shift of a 4 K error ((3N/2) k 4 K for
    this harmonic-like crystal)."""
    s = _nvt(40.0, steps=12000, friction_per_ps=5.0, thermo_interval=10, frame_interval=1000,
             checkpoint_interval=10**6)
    (ts_res,) = run_torchsim([BatchJob(_argon(0), s, tmp_path / "ts", seed=3)], _model())
    run_md(_argon(0), PairLJ(), s, outdir=tmp_path / "ase", seed=3)

    def blocks(x):
        bm = np.array([b.mean() for b in np.array_split(x, 10)])
        return bm.mean(), bm.std(ddof=1) / np.sqrt(len(bm))

    pe = []
    for d in ("ts", "ase"):
        th = pd.read_parquet(tmp_path / d / "thermo.parquet").iloc[100:]
        pe.append(blocks(th["potential_eV"].to_numpy()))
        t_mean, t_se = blocks(th["temperature_K"].to_numpy())
        assert abs(t_mean - 40.0) < 4 * t_se, (d, t_mean, t_se)
    combined = np.hypot(pe[0][1], pe[1][1])
    assert abs(pe[0][0] - pe[1][0]) < 4 * combined, pe
    assert 4 * combined < 0.5 * 1.5 * 32 * units.kB * 4.0, combined
    assert ts_res.meta["integrator"] == "nvt_langevin"


def test_mace_runs_on_torchsims_own_model_with_the_calculators_energies(tmp_path):
    """A real MACE architecture (initial weights, float64) through TorchSim's MaceModel: two 160-atom EC:EMC
    trajectories in one batch; the potential energy of each start equals the MACE ASE calculator's to 1e-8 eV."""
    import torch
    from torch_sim.models.mace import MaceModel

    from harness.io import read_frames
    from harness.models.mace import MACETrainer, untrained_model

    arch = {"num_channels": 8, "max_L": 0, "r_max": 4.0, "num_interactions": 2, "correlation": 2, "max_ell": 2,
            "num_radial_basis": 6}
    calc = MACETrainer().load_file(untrained_model(tmp_path / "random.model", arch), dtype="float64")
    model = MaceModel(model=calc.models[0], device=torch.device("cpu"), dtype=torch.float64, compute_stress=True)
    starts = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[:2]
    s = RunSettings("nvt", 500.0, 0.005, timestep_fs=0.5, thermostat="langevin", frame_interval=5, thermo_interval=5)
    res = run_torchsim([BatchJob(a, s, tmp_path / f"r{k}", seed=k) for k, a in enumerate(starts)], model)
    assert [(r.n_steps, r.failure) for r in res] == [(10, None), (10, None)]
    for k, a in enumerate(starts):
        e0 = pd.read_parquet(tmp_path / f"r{k}" / "thermo.parquet")["potential_eV"].iloc[0]
        b = a.copy()
        b.calc = calc
        assert abs(e0 - b.get_potential_energy()) < 1e-8


class _Scaled:
    """Lennard-Jones argon with energies and forces scaled by ``factor``: a second model for routing tests."""

    def __init__(self, factor: float):
        self.each, self.factor, self.name = EachEvaluator(PairLJ()), factor, f"lj x{factor:g}"

    def evaluate(self, frames):
        out = []
        for r in self.each.evaluate(frames):
            out.append({k: (v * self.factor if k in ("energy", "forces", "stress") else v) for k, v in r.items()})
        return out


def test_a_routed_batch_gives_each_trajectory_its_own_model_after_others_leave(tmp_path):
    """Three trajectories, models [LJ, LJ x 3 (NaN for the 31-atom structure from call 20), LJ]: the middle one
    fails and leaves; at the end each remaining trajectory's recorded potential energy is its own model's energy
    of its last frame (a routing that did not follow the batch would give the third trajectory the x3 model)."""
    from harness.md.torchsim import routed_model

    small = _argon(2)
    del small[-1]
    starts = [_argon(0), small, _argon(1)]

    class _ScaledBreaks(_Scaled):
        calls = 0

        def evaluate(self, frames):
            self.calls += 1
            out = super().evaluate(frames)
            if self.calls >= 20:
                for a, r in zip(frames, out):
                    if len(a) == 31:
                        r["forces"] = r["forces"].copy()
                        r["forces"][0, 0] = np.nan
            return out

    models = [EvaluatorModel(EachEvaluator(PairLJ())), EvaluatorModel(_ScaledBreaks(3.0))]
    jobs = [BatchJob(a, _nvt(40.0), tmp_path / f"t{k}", seed=k, evaluator=o, detectors=[NonFinite()])
            for k, (a, o) in enumerate(zip(starts, (0, 1, 0)))]
    r0, bad, r2 = run_torchsim(jobs, routed_model(models, [j.evaluator for j in jobs]))
    assert bad.failure is not None and r0.failure is None and r2.failure is None and r2.n_steps == 200
    for k in (0, 2):
        th = pd.read_parquet(tmp_path / f"t{k}" / "thermo.parquet")
        traj = read_h5md(tmp_path / f"t{k}" / "trajectory.h5md")
        last = Atoms("Ar32", positions=traj["positions"][-1], cell=traj["cells"][-1], pbc=True)
        own = PairLJ()
        last.calc = own
        assert abs(th["potential_eV"].iloc[-1] - last.get_potential_energy()) < 1e-9


def test_a_sweep_with_engine_torchsim_runs_the_adopted_ensemble_on_it_and_says_why_not_the_other(tmp_path):
    """A validation plan with ``engine: torchsim`` (md_batch 2, two MACE members, the ci protocol with a Langevin
    NVT): the NVT batch runs on TorchSim (each run's meta names it and the integrator), the NPT batch falls back to
    the ASE path with the measured reason in the batch's result; the engine is in the batch task's key only when
    it is torchsim; a sweep spec asking for torchsim without batches is refused."""
    from harness.md.protocol import load_protocol
    from harness.models.mace import untrained_model
    from harness.validation.context import PlanContext, PlanInputs
    from harness.validation.plan import model_tasks, plan_validation
    from harness.workflow.execute import execute
    from harness.workflow.store import Store

    arch = {"num_channels": 8, "max_L": 0, "r_max": 4.0, "num_interactions": 2, "correlation": 2, "max_ell": 2,
            "num_radial_basis": 6}
    random = untrained_model(tmp_path / "random.model", arch)
    ci = load_protocol(ROOT / "protocols" / "ci.yaml")
    proto = ci.model_copy(update={"npt": ci.npt.model_copy(update={"length_ps": 0.01}),
                                  "nvt": ci.nvt.model_copy(update={"length_ps": 0.01, "thermostat": "langevin"}),
                                  "horizon_ps": 0.01, "equilibration_ps": 0.0})
    committees, sources = mace_pair_and_lj_reference(random, tmp_path)
    members = {cid: model_tasks(committees[cid], srcs) for cid, srcs in sources.items()}
    keys = {}
    for engine in ("ase", "torchsim"):
        ctx = PlanContext(workspace=str(tmp_path / engine), threads=1, device="cpu", inputs=PlanInputs(),
                          protocol=proto, engine=engine)
        v = plan_validation(members, committees, "model:lj", ctx, replicas=1, md_batch=2)
        keys[engine] = {t.params.ensemble: t for t in v.tasks if t.kind == "md_batch"}
    assert "engine" not in keys["ase"]["nvt"].params_json() and keys["torchsim"]["nvt"].params_json()["engine"] == "torchsim"
    assert keys["ase"]["nvt"].key != keys["torchsim"]["nvt"].key
    tasks = [t for m in members.values() for t in m] + [t for t in v.tasks if t.kind in ("md", "md_batch", "ref_density",
                                                                                         "observe")]
    store = Store(tmp_path / "torchsim" / "harness.sqlite")
    counts = execute(tasks, store)
    assert counts["failed"] == 0, counts
    nvt, npt = (store.get(keys["torchsim"][e].key)["result"] for e in ("nvt", "npt"))
    assert nvt["engine"] == "torchsim" and nvt["engine_note"] is None
    assert npt["engine"] == "ase" and "npt_nose_hoover" in npt["engine_note"] and "refused" in npt["engine_note"]
    for run in nvt["runs"]:
        meta = json.loads((Path(run["run_dir"]) / "result.json").read_text())["meta"]
        assert meta["engine"] == "torchsim" and meta["integrator"] == "nvt_langevin" and run["completed"]

    from harness.sweep.spec import SweepSpec

    with pytest.raises(ValueError, match="md_batch"):
        SweepSpec.model_validate({"name": "x", "dataset": "d.yaml", "subsets": ["Full"], "architectures": ["mace"],
                                  "protocol": "p.yaml", "reference": {"arch": "gap", "subset": "Full"},
                                  "engine": "torchsim"})
