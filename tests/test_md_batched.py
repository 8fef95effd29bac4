"""Batched MD (harness.md.batched): ensembles, identity with the unbatched path, failures, resume.

A batch advances each trajectory with its own ASE integrator and evaluates the forces of all of them in
one model call per step. Checked here: batched NPT and NVT ideal-gas runs are the unbatched runs bit for bit
(tests/test_md.py checks those against the ideal-gas distributions); a batch of one reproduces ``run_md`` with the model's own calculator (a real MACE
architecture, float64, 100 steps); a batch of several gives each trajectory what it gives alone; a
trajectory that fails or raises leaves the batch and the others finish; an interrupted batch resumes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from scipy import stats

from harness.h5md import read_h5md
from harness.md.batched import BatchJob, EachEvaluator, run_batched
from harness.md.detectors import NonFinite
from harness.md.runner import RunSettings, run_md
from harness.units import ATM_TO_EV_PER_A3
from tests.helpers import IdealGas, mace_pair_and_lj_reference


def _gas(n, volume, seed=0):
    rng = np.random.default_rng(seed)
    edge = volume ** (1 / 3)
    return Atoms(f"Ar{n}", positions=rng.uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)


class Counting:
    """An evaluator wrapper that records the batch sizes it was called with."""

    def __init__(self, inner):
        self.inner, self.name, self.sizes = inner, inner.name, []

    def evaluate(self, frames):
        self.sizes.append(len(frames))
        return self.inner.evaluate(frames)


def test_batched_ideal_gas_runs_are_the_unbatched_runs(tmp_path):
    """NPT (N = 8, the ideal-gas test of tests/test_md.py) and Bussi NVT (N = 50) in one batch, beside a shorter
    NPT replica (another seed: it leaves the batch at 1 ps): every trajectory's thermo rows (volume, kinetic
    energy, temperature) are those of the same run through ``run_md``, bit for bit, so the batched path samples
    the ensembles that tests/test_md.py checks by KS tests on the unbatched one (the statistics there, the
    identity here: a cheaper and stricter check than repeating the KS tests). While all run, one evaluator call
    per step serves all of them; the replicas are independent trajectories (own seeds), not copies."""
    n, temp, p_atm = 8, 300.0, 1000.0
    kT, p = units.kB * temp, p_atm * ATM_TO_EV_PER_A3
    npt = RunSettings("npt", temp, length_ps=10.0, timestep_fs=5.0, pressure_atm=p_atm, tdamp_fs=50, pdamp_fs=500,
                      frame_interval=10**9, thermo_interval=25, checkpoint_interval=10**9)
    short = RunSettings(**{**npt.__dict__, "length_ps": 1.0})
    nvt = RunSettings("nvt", 500.0, length_ps=10.0, timestep_fs=5.0, tdamp_fs=100.0, frame_interval=10**9,
                      thermo_interval=20, checkpoint_interval=10**9)
    cases = [(_gas(n, (n + 1) * kT / p), npt, 1), (_gas(n, (n + 1) * kT / p, seed=1), short, 2),
             (_gas(50, 5000.0, seed=2), nvt, 5)]
    ev = Counting(EachEvaluator(IdealGas()))
    results = run_batched([BatchJob(a, s, tmp_path / f"b{k}", seed=seed) for k, (a, s, seed) in enumerate(cases)],
                          [ev])
    assert all(r.completed and r.failure is None for r in results)
    assert ev.sizes == [3] * (short.n_steps + 1) + [2] * (npt.n_steps - short.n_steps)
    for k, (a, s, seed) in enumerate(cases):
        alone = run_md(a, IdealGas(), s, outdir=tmp_path / f"a{k}", seed=seed)
        assert alone.completed and alone.n_steps == s.n_steps == results[k].n_steps
        ta, tb = pd.read_parquet(tmp_path / f"a{k}" / "thermo.parquet"), pd.read_parquet(tmp_path / f"b{k}" / "thermo.parquet")
        assert len(ta) == 1 + s.n_steps // s.thermo_interval
        pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    v0 = pd.read_parquet(tmp_path / "b0" / "thermo.parquet")["volume_A3"].to_numpy()
    v1 = pd.read_parquet(tmp_path / "b1" / "thermo.parquet")["volume_A3"].to_numpy()
    assert np.ptp(v0) > 0.1 * v0[0] and not np.allclose(v0[1:9], v1[1:9])  # the box breathes, independently


@pytest.fixture(scope="module")
def random_mace(tmp_path_factory):
    """A real MACE architecture (2 interactions, 8x0e, H/C/O, float64) with its initial weights, saved as
    a model file: deterministic forces of the right kind; training is not the subject here."""
    from harness.models.mace import untrained_model

    arch = {"num_channels": 8, "max_L": 0, "r_max": 4.0, "num_interactions": 2, "correlation": 2, "max_ell": 2,
            "num_radial_basis": 6}
    return untrained_model(tmp_path_factory.mktemp("mace") / "random.model", arch)


def _mace_calc(path):
    from harness.models.mace import MACETrainer

    return MACETrainer().load_file(path, dtype="float64")


def _same_trajectory(a_dir, b_dir, atol):
    a, b = read_h5md(a_dir / "trajectory.h5md"), read_h5md(b_dir / "trajectory.h5md")
    assert np.array_equal(a["time_ps"], b["time_ps"])
    assert np.allclose(a["positions"], b["positions"], rtol=0, atol=atol)
    assert np.allclose(a["cells"], b["cells"], rtol=0, atol=atol)
    ta, tb = pd.read_parquet(a_dir / "thermo.parquet"), pd.read_parquet(b_dir / "thermo.parquet")
    assert list(ta["step"]) == list(tb["step"])
    assert np.allclose(ta["potential_eV"], tb["potential_eV"], rtol=1e-12, atol=0)
    return a, b


@pytest.mark.parametrize("ensemble", ["npt", "nvt"])
def test_batch_of_one_reproduces_the_unbatched_mace_trajectory(small_box, random_mace, tmp_path, ensemble):
    """100 steps of a 160-atom EC:EMC cell with a MACE model: batched (MACEBatch, one graph) and unbatched
    (MACECalculator) agree to 1e-9 Å in every frame and 1e-12 relative in every energy."""
    from harness.models.batch import MACEBatch, batch_evaluator

    s = RunSettings(ensemble, 500.0, length_ps=0.05, timestep_fs=0.5, frame_interval=10, thermo_interval=5,
                    checkpoint_interval=40)
    calc = _mace_calc(random_mace)
    ev = batch_evaluator(calc)
    assert isinstance(ev, MACEBatch)
    alone = run_md(small_box, calc, s, outdir=tmp_path / "alone", seed=7)
    (batched,) = run_batched([BatchJob(small_box, s, tmp_path / "batched", seed=7)], [ev])
    assert alone.n_steps == batched.n_steps == 100 and alone.failure is None and batched.failure is None
    a, _ = _same_trajectory(tmp_path / "alone", tmp_path / "batched", atol=1e-9)
    assert np.ptp(a["positions"][-1] - a["positions"][0]) > 0.01  # it moved
    assert batched.meta["batch"] == {"size": 1, "slot": 0, "evaluator": "MACE(batched)"}
    assert batched.meta["calculator"] == "MACE(batched)"


def test_a_batch_gives_each_trajectory_what_it_gives_alone(small_box, random_mace, tmp_path):
    """Three trajectories of two different liquids (160 and 104 atoms) in one MACE batch, NPT and NVT mixed:
    each equals its own unbatched run to 1e-8 Å over 40 steps (the batched graph sums in another order)."""
    from harness.models.batch import batch_evaluator
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    other = build_box(Composition.parse("EC=6,EMC=4"), 1.2, seed=1)
    npt = RunSettings("npt", 500.0, length_ps=0.02, timestep_fs=0.5, frame_interval=20, thermo_interval=10)
    nvt = RunSettings("nvt", 500.0, length_ps=0.02, timestep_fs=0.5, frame_interval=20, thermo_interval=10)
    cases = [(small_box, npt, 1), (small_box, nvt, 2), (other, npt, 3)]
    ev = Counting(batch_evaluator(_mace_calc(random_mace)))
    jobs = [BatchJob(a, s, tmp_path / f"b{k}", seed=seed) for k, (a, s, seed) in enumerate(cases)]
    assert all(r.failure is None for r in run_batched(jobs, [ev]))
    assert set(ev.sizes) == {3}
    calc = _mace_calc(random_mace)
    for k, (a, s, seed) in enumerate(cases):
        run_md(a, calc, s, outdir=tmp_path / f"a{k}", seed=seed)
        _same_trajectory(tmp_path / f"a{k}", tmp_path / f"b{k}", atol=1e-8)


class Restraint(Calculator):
    """Harmonic restraint to the start geometry (20 eV/Å²); NaN forces or an error from a given call of a
    structure whose first atom is tagged ``trouble`` (so only that trajectory is hit)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, ref_by_tag, *, nan_from=None, raise_from=None):
        super().__init__()
        self.ref_by_tag, self.calls = ref_by_tag, {}
        self.nan_from, self.raise_from = nan_from, raise_from

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        tag = int(self.atoms.get_tags()[0])
        self.calls[tag] = self.calls.get(tag, 0) + 1
        d = self.atoms.positions - self.ref_by_tag[tag]
        forces = -20.0 * d
        if tag == 9 and self.raise_from is not None and self.calls[tag] >= self.raise_from:
            raise RuntimeError("model exploded on this structure")
        if tag == 9 and self.nan_from is not None and self.calls[tag] >= self.nan_from:
            forces[0, 0] = np.nan
        self.results = {"energy": float(10.0 * np.sum(d**2)), "forces": forces, "stress": np.zeros(6)}


class AllOrNothing:
    """A batched evaluator that raises for the whole call when any structure raises (as a real batched model
    call would): the coordinator must find the culprit one structure at a time."""

    name = "all-or-nothing"

    def __init__(self, calc):
        self.each = EachEvaluator(calc)

    def evaluate(self, frames):
        return self.each.evaluate(frames)


def _tagged(small_box, tag):
    a = small_box.copy()
    a.set_tags(np.full(len(a), tag))
    return a


@pytest.mark.parametrize("trouble", ["nan", "raise"])
def test_a_failed_trajectory_leaves_the_batch_and_the_others_finish(small_box, tmp_path, trouble):
    refs = {t: small_box.positions.copy() for t in (1, 2, 9)}
    calc = Restraint(refs, **({"nan_from": 30} if trouble == "nan" else {"raise_from": 30}))
    ev = Counting(AllOrNothing(calc))
    s = RunSettings("nvt", 300.0, length_ps=0.05, timestep_fs=0.5, frame_interval=20, thermo_interval=10)
    jobs = [BatchJob(_tagged(small_box, t), s, tmp_path / f"t{t}", seed=t, detectors=[NonFinite()])
            for t in (1, 9, 2)]
    r1, bad, r2 = run_batched(jobs, [ev])
    assert r1.failure is None and r2.failure is None and r1.n_steps == r2.n_steps == 100
    assert bad.failure is not None
    if trouble == "nan":
        assert bad.failure["detector"] == "non_finite" and bad.n_steps == 29  # the start is call 1
    else:
        assert bad.failure["detector"] == "calculator_error" and "exploded" in bad.failure["message"]
        assert bad.n_steps == 29
    # three structures per call until the failure (a raising call is retried one structure at a time), two after
    retry = [3, 1, 1, 1] if trouble == "raise" else [3]
    assert ev.sizes[:29 + len(retry)] == [3] * 29 + retry and set(ev.sizes[29 + len(retry):]) == {2}
    assert (tmp_path / "t1" / "result.json").exists() and (tmp_path / "t9" / "result.json").exists()


def test_an_interrupted_batch_resumes_every_trajectory_to_the_uninterrupted_result(small_box, tmp_path):
    """Interrupted after 37 steps (checkpoints every 25), then rerun: every trajectory's frames and thermo
    rows equal an uninterrupted batch's, bit for bit; a finished batch is returned as it is."""
    from ase.calculators.lj import LennardJones

    atoms = Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                  cell=[11.4] * 3, pbc=True)
    s = RunSettings("npt", 90.0, length_ps=0.2, timestep_fs=2.0, frame_interval=10, thermo_interval=5,
                    checkpoint_interval=25, pressure_atm=100.0)

    def evs():
        return [EachEvaluator(LennardJones(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True))]

    def jobs(root):
        return [BatchJob(atoms, s, root / f"r{r}", seed=5 + r) for r in range(3)]

    whole = run_batched(jobs(tmp_path / "whole"), evs())
    part = run_batched(jobs(tmp_path / "part"), evs(), stop_after_steps=37)
    assert not any(p.completed for p in part)
    resumed = run_batched(jobs(tmp_path / "part"), evs())
    for r in range(3):
        assert resumed[r].completed and resumed[r].n_frames == whole[r].n_frames == 11
        a = read_h5md(tmp_path / "whole" / f"r{r}" / "trajectory.h5md")
        b = read_h5md(tmp_path / "part" / f"r{r}" / "trajectory.h5md")
        assert np.array_equal(a["positions"], b["positions"]) and np.array_equal(a["cells"], b["cells"])
    again = run_batched(jobs(tmp_path / "whole"), evs())
    assert [a.wall_s for a in again] == [w.wall_s for w in whole]


def test_bad_input_in_one_job_is_reported_for_that_job_only(small_box, tmp_path):
    s = RunSettings("nvt", 300.0, length_ps=0.01, timestep_fs=0.5, frame_interval=10, thermo_interval=10)
    (tmp_path / "blocked").write_text("a file where a run directory should be")
    ev = EachEvaluator(Restraint({0: small_box.positions.copy()}))
    good, bad = run_batched([BatchJob(small_box, s, tmp_path / "ok"), BatchJob(small_box, s, tmp_path / "blocked")],
                            [ev])
    assert good.completed and isinstance(bad, Exception)
    with pytest.raises(ValueError, match="evaluator 1"):
        run_batched([BatchJob(small_box, s, tmp_path / "x", evaluator=1)], [ev])


def test_md_batch_tasks_in_a_validation_plan_give_the_unbatched_runs(random_mace, tmp_path):
    """A validation plan with ``md_batch`` 2: the two MACE runs of each ensemble (two members) go to one batch
    task, the LJ reference runs alone; every run's t_stab, failure and frames equal
    those of the unbatched plan (keys of unbatched runs unchanged), and a rerun finds everything cached."""
    from harness.md.protocol import load_protocol
    from harness.validation.context import PlanContext, PlanInputs
    from harness.validation.plan import model_tasks, plan_validation
    from harness.workflow.execute import execute
    from harness.workflow.store import Store

    ROOT = Path(__file__).resolve().parents[1]

    ci = load_protocol(ROOT / "protocols" / "ci.yaml")  # 50 steps per ensemble here
    proto = ci.model_copy(update={"npt": ci.npt.model_copy(update={"length_ps": 0.025}),
                                  "nvt": ci.nvt.model_copy(update={"length_ps": 0.025}), "horizon_ps": 0.025})
    committees, sources = mace_pair_and_lj_reference(random_mace, tmp_path)

    def plan(ws, md_batch):
        members = {cid: model_tasks(committees[cid], srcs) for cid, srcs in sources.items()}
        ctx = PlanContext(workspace=str(ws), threads=1, device="cpu", inputs=PlanInputs(), protocol=proto)
        validation = plan_validation(members, committees, "model:lj", ctx, replicas=1, md_batch=md_batch)
        # scores left out: the stand-in reference does not survive the horizon (Q is not the subject here)
        return [t for m in members.values() for t in m] + [t for t in validation.tasks if t.kind != "score"]

    plans = {n: plan(tmp_path / f"ws{n}", n) for n in (1, 2)}
    batches = [t for t in plans[2] if t.kind == "md_batch"]
    assert [len(t.params.runs) for t in batches] == [2, 2]
    assert {t.params.ensemble for t in batches} == {"npt", "nvt"}
    md1 = {t.label: t for t in plans[1] if t.kind == "md"}
    md3 = {t.label: t for t in plans[2] if t.kind == "md"}
    assert set(md1) == set(md3) and not any(t.kind == "md_batch" for t in plans[1])
    lj = [label for label in md3 if "model:lj" in label]
    assert all(not md3[label].deps.get("batch") for label in lj)
    assert all(md3[label].deps["batch"] for label in md3 if "model:mace" in label)
    results = {}
    for n, tasks in plans.items():
        store = Store(tmp_path / f"ws{n}" / "harness.sqlite")
        counts = execute(tasks, store)
        assert counts["failed"] == counts["skipped"] == 0, counts
        results[n] = {t.label: store.get(t.key)["result"] for t in tasks if t.kind == "md"}
        assert execute(tasks, store)["cached"] == len(tasks)
    for label, r1 in results[1].items():
        r3 = results[2][label]
        assert r3["t_stab_ps"] == r1["t_stab_ps"] and r3["failure"] == r1["failure"], label
        a = read_h5md(Path(r1["run_dir"]) / "trajectory.h5md")["positions"]
        b = read_h5md(Path(r3["run_dir"]) / "trajectory.h5md")["positions"]
        assert a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-8), label
    for label in md3:
        meta = json.loads((Path(results[2][label]["run_dir"]) / "result.json").read_text())["meta"]
        assert ("batch" in meta) == ("model:mace" in label)
        if "batch" in meta:
            assert meta["batch"]["size"] == 2 and meta["calculator"] == "MACE(batched)"
