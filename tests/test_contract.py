"""The task contract, one MD configuration, uncertainty through the committee calculator, the layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from harness.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_one_architecture_list_and_one_package_list():
    from harness.models.base import ARCHITECTURES, MODEL_SUFFIXES, TRAINERS
    from harness.provenance import CORE_PACKAGES, MLIP_GROUPS, PACKAGES, packages

    assert ARCHITECTURES == tuple(TRAINERS) == tuple(MODEL_SUFFIXES) == MLIP_GROUPS
    assert set(packages("mace")) == {"mace-torch", "torch", "e3nn"} and len(CORE_PACKAGES) == len(set(CORE_PACKAGES))
    assert set(CORE_PACKAGES) == {p for g in PACKAGES.values() for p in g}
    with pytest.raises(KeyError, match="unknown package group"):
        packages("nope")


def test_diffusivity_unit_helper():
    from harness.units import A2_PER_PS_TO_1E6_CM2_PER_S, diffusivity_1e6_cm2_s

    # 1 Å²/ps = 1e-16 cm² / 1e-12 s = 1e-4 cm²/s = 100 x 1e-6 cm²/s
    assert A2_PER_PS_TO_1E6_CM2_PER_S == pytest.approx(100.0)
    assert diffusivity_1e6_cm2_s(0.48) == pytest.approx(48.0) and diffusivity_1e6_cm2_s(None) is None


# -- typed tasks ----------------------------------------------------------------------------------------------

def _ci_protocol():
    from harness.md.protocol import load_protocol

    return load_protocol(ROOT / "protocols" / "ci.yaml")


def test_md_worker_refuses_a_stale_protocol_hash(tmp_path):
    from harness.md.protocol import protocol_hash
    from harness.validation.contract import MDParams
    from harness.validation.tasks import md

    proto = _ci_protocol()
    good = protocol_hash(proto)
    stale = MDParams(workspace=str(tmp_path), threads=1, device="cpu", protocol=proto, protocol_hash="0" * 12,
                     ensemble="npt", replica=0)
    with pytest.raises(InputError, match=f"hash {good} differs from the {'0' * 12} this task was planned with"):
        md(stale, {"member": []})
    assert not (tmp_path / "md").exists()  # refused before any work


def test_typed_params_are_validated_when_planned_and_roles_are_checked(tmp_path):
    from pydantic import ValidationError

    import harness.validation.tasks  # noqa: F401  (registers the workers, as a planner does; the test alone passes)
    from harness.validation.contract import MDParams, ObserveParams

    proto = _ci_protocol()
    with pytest.raises(ValidationError, match="ensemble"):
        MDParams(workspace=str(tmp_path), threads=1, device="cpu", protocol=proto, protocol_hash="x", ensemble="nve",
                 replica=0)
    obs = ObserveParams(analysis=proto.analysis, equilibration_ps=0.0, tau_ps=1.0)
    with pytest.raises(ValueError, match="unknown dependency role"):
        obs.task({"member": [obs.task()]})
    with pytest.raises(ValueError, match="takes"):
        obs.task({"run": [obs.task()]})  # an observe task is not an md task


def test_a_stored_result_of_another_schema_is_recomputed(tmp_path):
    from harness.workflow.execute import execute
    from harness.workflow.store import Store
    from tests.sweep_helpers import ToyParams

    store = Store(tmp_path / "harness.sqlite")
    a = ToyParams(dir=str(tmp_path), name="a", value=1).task(label="a")
    b = ToyParams(dir=str(tmp_path), name="b", value=2).task({"inputs": [a]}, "b")
    assert execute([a, b], store) == {"cached": 0, "done": 2, "failed": 0, "skipped": 0}
    assert store.get(b.key)["result"] == {"schema": "toy/1", "value": 3}
    assert execute([a, b], store)["cached"] == 2
    # a result written by an older harness (no schema) is not reused: b runs again, a stays cached
    row = store.get(b.key)
    store.mark_done(b.key, {"value": 3}, row["outputs"], 0.0)
    assert execute([a, b], store) == {"cached": 1, "done": 1, "failed": 0, "skipped": 0}
    assert (tmp_path / "executions.log").read_text().split() == ["a", "b", "b"]


def test_failures_metrics_and_observables_are_typed_in_stored_results():
    """A run's failure, a member's metrics and a run's observables are validated types, not free dicts (issue #31
    item 3): what the MD runner, ``evaluate`` and ``observe_run`` write goes through the store's JSON and back
    unchanged (a calculator error's NaN
    value, a density window's two-sided threshold), and a misspelt or missing key is refused on read instead of
    reaching the report as a silent NaN."""
    import json
    import math

    from pydantic import ValidationError

    from harness.md.detectors import Failure, FailureEvent
    from harness.validation.contract import MemberResult, RunResult, TrainMetrics

    def stored(result):  # as the executor writes a result and the store reads it back
        return type(result).model_validate(json.loads(json.dumps(result.model_dump(mode="json"))))

    base = dict(committee="mace/OPLS", arch="mace", member=0, run_dir="/r", ensemble="npt", t_stab_ps=0.2)
    crash = FailureEvent("calculator_error", 40, 0.02, math.nan, 0.0, "model exploded")
    window = FailureEvent("density_window", 80, 0.04, 0.15, (0.2, 2.0))
    for event in (crash, window):
        back = stored(RunResult(**base, failure=event.as_dict())).failure
        assert isinstance(back, Failure) and back.detector == event.detector and back.step == event.step
        assert back.threshold == event.threshold and (back.value == event.value or math.isnan(back.value))
    with pytest.raises(ValidationError, match="detector"):
        RunResult(**base, failure={k: v for k, v in window.as_dict().items() if k != "detector"})
    with pytest.raises(ValidationError, match="atom"):
        RunResult(**base, failure={**window.as_dict(), "atom": 3})

    metrics = {"train_forces_rmse_meV_A": 92.0, "train_n_frames": 40, "valid_forces_rmse_meV_A": 101.5,
               "valid_energy_rmse_meV_atom": 1.3, "valid_n_frames": 23, "valid_stress_rmse_meV_A3": 0.8,
               "valid_n_stress_frames": 23}
    member = MemberResult(committee="mace/OPLS", arch="mace", member=0, model={"kind": "member", "path": "/m"},
                          run_name="m", metrics=metrics)
    assert isinstance(member.metrics, TrainMetrics) and member.metrics.valid_forces_rmse_meV_A == 101.5
    assert member.model_dump(mode="json")["metrics"] == metrics  # stored with the keys evaluate() gave, no others
    assert stored(member).metrics == member.metrics
    with pytest.raises(ValidationError, match="valid_force_rmse_meV_A"):
        TrainMetrics(valid_force_rmse_meV_A=101.5)

    # an observed NVT run's diffusion as observe_run writes it (no kinisi, no viscosity) comes back as written
    from harness.validation.contract import Diffusion, ObserveResult

    species = {"n_molecules": 4, "D_block_A2_ps": 0.05, "sem_block_A2_ps": 0.01, "n_blocks": 3, "beta": 0.97,
               "beta_low": 0.9, "beta_high": 1.04, "diffusive": True}
    diffusion = {"species": {"EC": species, "EMC": {**species, "n_molecules": 8, "beta_low": None, "diffusive": None}},
                 "D_weighted_block_A2_ps": 0.05, "diffusive": None, "beta_threshold": 0.9, "cell_length_A": 12.1,
                 "yeh_hummer": {"temperature_K": 500.0, "viscosity_mPa_s": None, "coefficient_A2_ps_mPa_s": 0.02,
                                "delta_D_A2_ps": None}}
    obs = ObserveResult(committee="mace/OPLS", arch="mace", member=0, run="/r", ensemble="nvt", t_stab_ps=0.5,
                        length_ps=0.5, equilibration_ps=0.1, tau_ps=0.5, analysis_hash="h", reached_tau=True,
                        diffusion=diffusion)
    assert isinstance(obs.diffusion, Diffusion) and obs.diffusion.species["EMC"].n_molecules == 8
    assert stored(obs).model_dump(mode="json")["diffusion"] == diffusion
    with pytest.raises(ValidationError, match="D_weighted_A2_ps"):
        Diffusion(**{**diffusion, "D_weighted_A2_ps": 0.05})

    # the diagnostics' error summary has one set of keys, with frames or without (the empty one used another name)
    from harness.diagnostics.contract import ErrorSummary
    from harness.diagnostics.trajectory import summary

    rows = [{"time_ps": 0.01 * k, "n_atoms": 10, "energy_ref_eV_atom": -1.0, "energy_error_meV_atom": 2.0,
             "forces_rmse_meV_A": 50.0 + k} for k in range(3)]
    assert set(summary([])) == set(summary(rows)) == set(ErrorSummary.model_fields)
    assert ErrorSummary.model_validate({"n_frames": 0, "energy_rmse_meV_atom": None, "forces_rmse_meV_A": None,
                                        "forces_rmse_slope": None}).forces_rmse_slope_meV_A_per_ps is None  # as stored

    # an exploration's selection: a picked frame's record, or why nothing was picked; both stored as written
    from harness.al.contract import Selection

    picked = {"sigma2_F": 0.7, "reason": "threshold", "step": 40, "time_ps": 0.02, "n_checks": 8, "max_sigma2_F": 0.9,
              "stopped_by": "committee_variance", "stop_frame_excluded": False}
    for sel in (picked, {"reason": "no committee check before the trajectory stopped"}):
        assert Selection.model_validate(sel).model_dump(mode="json") == sel
    with pytest.raises(ValidationError, match="sigma2"):
        Selection(reason="threshold", sigma2=0.7)

    # a baseline shift stored before its verdict existed still reads (the report calls it undetermined), and
    # a verdict outside the three words is refused
    from harness.diagnostics.contract import BaselineShift

    shift = {"composition": "EC=2,EMC=1", "n_atoms": 60, "dilute_frames": 3, "shift_eV": 3.0, "shift_meV_atom": 50.0,
             "shift_meV_atom_std": 4.0, "members": {"member-0": 48.0, "member-1": 52.0}, "shape_rmse_meV_atom": 3.0,
             "median_abs_shift_meV_atom": 50.0, "members_shifted": 2, "shifted": True,
             "rule": "median over members of |shift|", "tolerance_meV_atom": 10.0, "dilute_g_cm3": 0.1}
    assert BaselineShift.model_validate(shift).model_dump(mode="json") == shift and not BaselineShift(**shift).verdict
    with pytest.raises(ValidationError, match="verdict"):
        BaselineShift(**shift, verdict="probably shifted")


# -- one MD configuration ----------------------------------------------------------------------------------------

def test_detector_thresholds_come_from_yaml_with_defaults_defined_once(tmp_path):
    import yaml

    from harness.md.detectors import RULES, BondStretch, DensityWindow, detectors_from_spec
    from harness.md.protocol import load_protocol, protocol_hash

    proto = _ci_protocol()
    # golden: protocol_hash(protocols/ci.yaml) before thresholds became configurable (main at 245575a)
    assert protocol_hash(proto) == CI_PROTOCOL_HASH
    data = yaml.safe_load((ROOT / "protocols" / "ci.yaml").read_text())
    data["detectors"].update(max_bond_stretch_A=0.3, density_window_g_cm3=[0.5, 1.5], patience=3)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    custom = load_protocol(path)
    assert protocol_hash(custom) != protocol_hash(proto)
    dets = {type(d).__name__: d for d in detectors_from_spec(custom.detectors, True)}
    assert dets["BondStretch"].max_stretch_A == 0.3 and dets["BondStretch"].patience == 3
    assert dets["DensityWindow"].density_window_g_cm3 == (0.5, 1.5)
    default = {type(d).__name__: d for d in detectors_from_spec(proto.detectors, True)}
    assert default["BondStretch"].max_stretch_A == RULES["validation"]["max_bond_stretch_A"]
    assert default["DensityWindow"].density_window_g_cm3 == RULES["validation"]["density_window_g_cm3"]
    assert "CommitteeVariance" not in default  # validation rules: no committee limit unless one is set
    data["detectors"]["density_window_g_cm3"] = [1.5, 0.5]
    path.write_text(yaml.safe_dump(data))
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="density_window_g_cm3"):
        load_protocol(path)
    assert isinstance(dets["BondStretch"], BondStretch) and isinstance(dets["DensityWindow"], DensityWindow)


#: protocol_hash(protocols/ci.yaml) computed by main at 245575a (before detector thresholds were fields)
CI_PROTOCOL_HASH = "e08eab1d2967"


def test_exploration_is_an_md_configuration_and_reads_the_flat_keys():
    from harness.al.spec import ExplorationSpec
    from harness.md.detectors import RULES, detectors_from_spec

    flat = ExplorationSpec(length_ps=0.02, check_interval=5, checkpoint_interval=20, bond_length_method="mmff",
                           start_equilibration_ps=0.5, max_sigma2_F_eV2_A2=0.3, seed=2)
    nested = ExplorationSpec(npt={"length_ps": 0.02}, check_interval=5, output={"checkpoint_interval": 20},
                             detectors={"bond_length_method": "mmff", "max_sigma2_F_eV2_A2": 0.3},
                             start={"classical_equilibration_ps": 0.5, "seed": 2})
    assert flat == nested
    s = flat.settings("npt")
    assert (s.ensemble, s.temperature_K, s.length_ps, s.timestep_fs, s.checkpoint_interval) == ("npt", 500.0, 0.02,
                                                                                                0.5, 20)
    assert (s.frame_interval, s.thermo_interval) == (100, 10)  # outputs are not tied to the check interval
    assert flat.detectors.interval == 5 and flat.max_sigma2_F_eV2_A2 == 0.3 and flat.start.density_g_cm3 == 1.0
    dets = {type(d).__name__: d for d in detectors_from_spec(flat.detectors, True)}
    assert dets["BondStretch"].max_ratio == RULES["active_learning"]["max_bond_ratio"]
    assert dets["DensityWindow"].density_window_g_cm3 == RULES["active_learning"]["density_window_g_cm3"]


# -- uncertainty through the committee calculator --------------------------------------------------------------

def _water_box(n=2):
    blocks = []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                blocks.append(np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + 3.1 * np.array([i, j, k]))
    a = Atoms("OH2" * n ** 3, positions=np.concatenate(blocks), cell=[3.1 * n] * 3, pbc=True)
    return a


def test_frame_interval_unlike_check_interval_selects_the_frame_the_committee_measured(tmp_path):
    """Frames every 10 steps, thermo every 7, committee checks every 3: the selected frame is one written at a
    check, and the committee evaluated on it gives exactly the sigma2_F it was selected for."""
    from harness.al.tasks import selected_frame
    from harness.h5md import read_h5md
    from harness.md.detectors import CommitteeVariance
    from harness.md.runner import RunSettings, run_md
    from harness.models.committee import CommitteeCalculator

    members = [LennardJones(sigma=s, epsilon=e, rc=4.0) for s, e in ((1.0, 0.02), (1.05, 0.02), (0.95, 0.03))]
    committee = CommitteeCalculator(members)
    settings = RunSettings("nvt", 300.0, length_ps=0.02, timestep_fs=0.5, frame_interval=10, thermo_interval=7,
                           checkpoint_interval=1000)
    det = CommitteeVariance(interval=3, max_sigma2_F_eV2_A2=1e9, committee=committee)
    run_md(_water_box(), members[0], settings, outdir=tmp_path, seed=3, detectors=[det])
    traj = read_h5md(tmp_path / "trajectory.h5md")
    s2 = traj["observables"]["sigma2_F"]
    steps = traj["step"]
    assert set(steps) == {0, *range(3, 41, 3), *range(10, 41, 10)} and len(set(steps)) == len(steps)
    assert all(np.isfinite(v) == (st % 3 == 0 and st > 0) for st, v in zip(steps, s2))
    atoms, info = selected_frame(tmp_path, 1e9)  # nothing above: the largest
    assert info["reason"] == "max" and info["step"] % 3 == 0
    k = list(steps).index(info["step"])
    assert info["sigma2_F"] == pytest.approx(float(np.nanmax(s2)), rel=0, abs=0)
    again = atoms.copy()
    again.calc = CommitteeCalculator([LennardJones(sigma=s, epsilon=e, rc=4.0)
                                      for s, e in ((1.0, 0.02), (1.05, 0.02), (0.95, 0.03))])
    assert again.calc.get_property("sigma2_F", again) == pytest.approx(s2[k], rel=1e-10)
    # a frame written one step off would not reproduce it
    assert not np.allclose(atoms.positions, traj["positions"][k - 1])
    # the thermo table has the check rows too
    import pandas as pd

    th = pd.read_parquet(tmp_path / "thermo.parquet")
    assert set(th.dropna(subset=["sigma2_F"])["step"]) == set(range(3, 41, 3))


def test_the_driving_member_is_not_evaluated_twice_at_a_check():
    from harness.models.committee import CommitteeCalculator

    class Counting(LennardJones):
        calls = 0

        def calculate(self, *args, **kwargs):
            type(self).calls += 1
            super().calculate(*args, **kwargs)

    atoms = _water_box()
    driver = Counting(sigma=1.0, epsilon=0.02, rc=4.0)
    atoms.calc = driver
    atoms.get_forces()
    atoms.set_momenta(np.ones((len(atoms), 3)))  # as in MD: momenta change after the force call
    committee = CommitteeCalculator([driver, LennardJones(sigma=1.1, epsilon=0.02, rc=4.0)])
    committee.get_property("sigma2_F", atoms)
    assert Counting.calls == 1


# -- any model in a sweep -------------------------------------------------------------------------------------

def _sweep_with_models(tmp_path, models):
    import yaml

    spec = yaml.safe_load((ROOT / "protocols" / "sweeps" / "ci.yaml").read_text())
    spec.update(dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"), protocol=str(ROOT / "protocols" / "ci.yaml"),
                subsets=[], architectures=[], models=models)
    spec.pop("diagnostics", None)  # diagnostics name the grid's committees
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_models_section_plans_model_tasks_scored_against_the_reference(tmp_path):
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    (tmp_path / "a.model").write_bytes(b"not really a model")  # planning hashes it; loading happens in the worker
    (tmp_path / "b.model").write_bytes(b"another")
    path = _sweep_with_models(tmp_path, [
        {"name": "two-files", "files": ["a.model", "b.model"]},
        {"name": "lj", "calculator": "ase:ase.calculators.lj.LennardJones", "options": {"sigma": 2.5}}])
    spec, files = load_sweep(path)
    tasks = plan_sweep(spec, files, tmp_path / "ws")
    by = {}
    for t in tasks:
        by.setdefault(t.kind, []).append(t)
    models = {(t.params.committee, t.params.member): t for t in by["model"]}
    assert set(models) == {("model:two-files", 0), ("model:two-files", 1), ("model:lj", 0)}
    assert models[("model:two-files", 0)].params.source.arch == "mace"
    assert len(models[("model:two-files", 1)].params.sha256) == 64
    md_members = {t.deps["member"][0] for t in by["md"]}
    assert {t.key for t in by["model"]} <= md_members
    assert {t.params.committee for t in by["score"]} == {"model:two-files", "model:lj", "ref:gap/OPLS+VS"}
    # a changed file is a new plan: its model task (and everything downstream) gets a new key
    (tmp_path / "b.model").write_bytes(b"changed")
    again = plan_sweep(*load_sweep(path), tmp_path / "ws")
    changed = {t.label for t in again} - {t.label for t in tasks}
    assert not changed and {t.key for t in again} != {t.key for t in tasks}


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "files": ["a.model"], "calculator": "ase:ase.calculators.lj.LennardJones"}, "exactly one of"),
    ({"name": "x", "files": ["missing.model"]}, "models.x.files: missing.model not found"),
    ({"name": "x", "files": ["a.weird"]}, "cannot tell the architecture from the suffix '.weird'"),
    ({"name": "x", "files": ["a.model"], "arch": "schnet"}, "unknown architecture 'schnet'"),
])
def test_models_section_bad_input_names_the_entry(tmp_path, entry, message):
    from harness.errors import HarnessError
    from harness.sweep.spec import load_sweep

    (tmp_path / "a.model").write_bytes(b"x")
    (tmp_path / "a.weird").write_bytes(b"x")
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_sweep(_sweep_with_models(tmp_path, [entry]))


def test_model_worker_refuses_a_file_changed_since_planning(tmp_path):
    from harness.models.load import ModelSource
    from harness.validation.contract import ModelParams
    from harness.validation.tasks import model

    f = tmp_path / "m.model"
    f.write_bytes(b"planned")
    p = ModelParams(source=ModelSource(kind="file", path=str(f)), sha256="0" * 64, committee="model:m", arch="mace",
                    member=0)
    with pytest.raises(InputError, match="model file .*m.model hash .* differs from the 0{64}"):
        model(p, {})


@pytest.mark.parametrize("name, content, message", [
    ("m.weird", b"x", "cannot tell the architecture from the suffix '.weird'"),
    ("m.model", b"not a torch file", "model file .*m.model: cannot load it as a mace model"),
    ("m.xml", b"<not a gap/>", "m.xml: not a GAP potential file"),
    ("n.xml", b"<x/>", "n.xml: not a GAP potential file \\(no <Potential> element\\)"),
])
def test_md_on_a_bad_model_file_is_a_clear_error(tmp_path, name, content, message):
    import re

    from typer.testing import CliRunner

    from harness.cli.main import app

    f = tmp_path / name
    f.write_bytes(content)
    r = CliRunner().invoke(app, ["md", "--model", str(f), "--protocol", str(ROOT / "protocols" / "ci.yaml"),
                                 "--ensemble", "npt", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and re.search(message, r.stderr), r.output
    assert "Traceback" not in r.output and not (tmp_path / "ws" / "md").exists()


def test_a_cuda_sweep_places_gap_on_cpu_and_batches_mace_and_deepmd_runs(tmp_path):
    """The ci sweep on device cuda with md_batch 4: MACE/DeePMD training, MD and model evaluation (volume scans,
    trajectory errors, calibration) ask for the GPU, GAP's (the reference), relabelling with the reference method and every
    analysis task do not; each ensemble's 8 grid runs form one batch per architecture (so do the liquids');
    the unbatched cpu plan of the same sweep keeps its task keys (md_batch 1 adds nothing)."""
    import yaml

    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    spec = yaml.safe_load((ROOT / "protocols" / "sweeps" / "ci.yaml").read_text())
    spec.update(dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"), protocol=str(ROOT / "protocols" / "ci.yaml"))
    assert spec.get("diagnostics")  # the shipped ci sweep has them: they are placed too
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(spec))
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text(yaml.safe_dump({**spec, "device": "cuda", "md_batch": 4}))
    tasks = plan_sweep(*load_sweep(gpu), tmp_path / "ws")
    for t in tasks:
        arch = getattr(t.params, "arch", None) or next((a for a in ("gap", "mace", "deepmd") if a in t.label), None)
        if t.kind in ("train", "md", "md_batch", "vscan", "traj_errors", "calibration"):
            assert t.needs_gpu == (arch != "gap"), t.label
        else:
            assert not t.needs_gpu, t.label
    batches = [t for t in tasks if t.kind == "md_batch" and t.params.protocol.name == "ci"]
    assert sorted((t.params.ensemble, len(t.params.runs)) for t in batches) == [("npt", 4)] * 2 + [("nvt", 4)] * 2
    assert {t.params.ensemble for t in batches} == {"npt", "nvt"}
    before = {t.key for t in plan_sweep(*load_sweep(plain), tmp_path / "ws")}
    assert not any(t.kind == "md_batch" for t in plan_sweep(*load_sweep(plain), tmp_path / "ws"))
    liquid_batches = [t for t in tasks if t.kind == "md_batch" and t.params.protocol.name != "ci"]
    assert len(liquid_batches) == 2 * 1  # each of the 2 liquids: one batch per batched architecture diagnosed (DeePMD)
    assert len(before) == len(tasks) - len(batches) - len(liquid_batches)


def test_the_shipped_study_sweep_plans_for_a_gpu_node(tmp_path):
    """protocols/sweeps/study.yaml: 4 subsets x MACE/DeePMD, committees of 5, the study presets, reference MACE
    on Full merged with its grid twin (no separate reference training), 10 ps at 500 K, MD batched by
    architecture and ensemble (20 runs a batch), every train/MD task on the GPU; its diagnostics: volume scans
    per committee, every member's NVT run relabelled (on CPU workers), the three liquids batched alike."""
    from harness.md.protocol import load_protocol
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    spec, files = load_sweep(ROOT / "protocols" / "sweeps" / "study.yaml")
    assert spec.committee == 5 and spec.preset == "study" and spec.device == "cuda"
    assert set(spec.subsets) == {"OPLS", "OPLS+SM", "OPLS+VS", "Full"} and set(spec.architectures) == {"mace", "deepmd"}
    proto = load_protocol(files.protocol)
    assert proto.horizon_ps == proto.npt.length_ps == proto.nvt.length_ps == 10 and proto.temperature_K == 500
    assert load_protocol(ROOT / "protocols" / "study-640.yaml").system.composition == "EC=16,EMC=32"
    tasks = plan_sweep(spec, files, tmp_path / "ws")
    train = [t for t in tasks if t.kind == "train"]
    assert len(train) == 40 and all(t.needs_gpu for t in train)
    batches = [t for t in tasks if t.kind == "md_batch"]
    assert len(batches) == 4 + 3 * 2 and all(len(t.params.runs) == 20 and t.needs_gpu for t in batches)
    assert {t.params.protocol.system.composition for t in batches} == {"EC=4,EMC=8", "EC=9,DEC=5", "VC=8,EMC=5",
                                                                        "PC=12"}
    relabel = [t for t in tasks if t.kind == "relabel"]
    assert len(relabel) == 40 + 3 * 40 and not any(t.needs_gpu for t in relabel)
    assert len([t for t in tasks if t.kind == "vscan"]) == 2 * 8
    scores = {t.params.committee: t.params.reference for t in tasks if t.kind == "score"}
    assert len(scores) == 8 and set(scores.values()) == {"mace/Full"}


def test_the_reference_committee_may_have_its_own_size():
    """`reference.committee`: the chaos sweep trains one member per grid committee and two for the reference (the
    density term needs two); a reference of another size is never merged with its grid twin; one member is
    refused for a reference."""
    from harness.errors import HarnessError
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import SweepSpec, load_sweep

    spec, files = load_sweep(ROOT / "protocols" / "sweeps" / "ci-chaos.yaml")
    assert spec.committee == 1 and spec.reference.committee == 2
    tasks = plan_sweep(spec, files, ROOT / "runs" / "never-written")
    members = {}
    for t in tasks:
        if t.kind == "train":
            members.setdefault(t.params.committee, []).append(t.params.seed)
    assert members == {"deepmd/OPLS+VS": [0], "mace/OPLS+VS": [0], "ref:gap/OPLS+VS": [0, 1]}
    twin = spec.model_copy(update={"architectures": ["gap"], "max_train_frames": 40})
    assert [c.id for c in twin.committees()] == ["gap/OPLS+VS", "ref:gap/OPLS+VS"]
    same = twin.model_copy(update={"reference": twin.reference.model_copy(update={"committee": None})})
    assert [c.id for c in same.committees()] == ["gap/OPLS+VS"]  # merged: trained alike
    with pytest.raises((HarnessError, ValueError), match="greater than or equal to 2"):
        SweepSpec.model_validate({**spec.model_dump(), "reference": {"arch": "gap", "subset": "OPLS+VS",
                                                                     "committee": 1}})


def test_the_reference_may_be_a_shipped_committee(tmp_path):
    """`reference: {model: name}`: an entry of `models:` (a committee trained elsewhere, e.g. shipped) is the
    reference — nothing is trained for it, every score is against it, and its members' MD tasks are the ones the
    entry has as an external model (same keys); `members: N` takes a committee's first N members in seed order.
    Refused, naming the key: a model that is no entry, model beside arch/subset, neither, too many members, and
    an active-learning campaign's reference given as a model."""
    import yaml

    from harness.al.spec import ValidationSpec
    from harness.errors import ConfigError, HarnessError
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import SweepSpec, load_sweep

    demo = yaml.safe_load((ROOT / "protocols" / "sweeps" / "demo.yaml").read_text())
    models = ROOT / "models" / "demo"
    base = {**demo, "dataset": str(ROOT / "datasets" / "ec-emc-xtb.yaml"),
            "protocol": str(ROOT / "protocols" / "demo.yaml"), "subsets": [], "architectures": [],
            "models": [{"name": "gap-OPLS", "subset": "OPLS", "committee": str(models / "gap-OPLS")},
                       {"name": "mace-OPLS", "subset": "OPLS", "committee": str(models / "mace-OPLS"), "members": 1}]}
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(yaml.safe_dump({**base, "reference": {"model": "gap-OPLS"}}))
    spec, files = load_sweep(shipped)
    assert spec.committees() == [] and [s.path.rsplit("/", 1)[1] for s in files.models["mace-OPLS"]] == \
        ["member-0-seed0"]
    tasks = plan_sweep(spec, files, tmp_path / "ws")
    assert not [t for t in tasks if t.kind == "train"]
    scores = {t.params.committee: t.params.reference for t in tasks if t.kind == "score"}
    assert scores == {"model:gap-OPLS": "model:gap-OPLS", "model:mace-OPLS": "model:gap-OPLS"}
    # the same members scored against a reference trained here: the shipped committee's NPT runs are the same tasks
    trained = tmp_path / "trained.yaml"
    trained.write_text(yaml.safe_dump({**base, "reference": {"arch": "gap", "subset": "Full"}}))
    other = plan_sweep(*load_sweep(trained), tmp_path / "ws")
    npt = {t.key for t in tasks if t.kind == "md" and t.params.ensemble == "npt" and "gap-OPLS" in t.label}
    assert len(npt) == 2 and npt <= {t.key for t in other}

    for ref, match in (({"model": "nope"}, "reference.model 'nope' is no entry of models"),
                       ({"model": "gap-OPLS", "arch": "gap"}, "trained elsewhere; arch"),
                       ({"arch": "gap"}, "give arch and subset")):
        with pytest.raises((HarnessError, ValueError), match=match):
            SweepSpec.model_validate({**base, "reference": ref})
    many = tmp_path / "many.yaml"
    many.write_text(yaml.safe_dump({**base, "reference": {"model": "gap-OPLS"},
                                    "models": [{**base["models"][0], "members": 3}]}))
    with pytest.raises(ConfigError, match=r"models.gap-OPLS.members: 3 asked, .*gap-OPLS has 2"):
        load_sweep(many)
    with pytest.raises(ValueError, match="trains its reference"):
        from harness.al.spec import ALSpec

        ALSpec.model_validate({"name": "x", "dataset": "d.yaml", "initial_subsets": ["OPLS"], "architecture": "gap",
                               "generations": 1, "validation": ValidationSpec(protocol="p.yaml",
                                                                              reference={"model": "m"})})


def test_a_grid_may_leave_out_cells():
    """`exclude: [arch/subset, ...]`: those committees are not trained nor scored, the rest of the grid and the
    reference are planned as before (their task keys unchanged); a cell outside the grid, a repeat, or an exclusion
    of every cell is refused naming the value."""
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import SweepSpec, load_sweep

    spec, files = load_sweep(ROOT / "protocols" / "sweeps" / "ci.yaml")
    full = plan_sweep(spec, files, ROOT / "runs" / "never-written")
    cut = spec.model_copy(update={"exclude": ["mace/OPLS"]})
    SweepSpec.model_validate(cut.model_dump())
    assert [c.id for c in cut.committees()] == ["deepmd/OPLS", "mace/OPLS+VS", "deepmd/OPLS+VS", "ref:gap/OPLS+VS"]
    tasks = plan_sweep(cut, files, ROOT / "runs" / "never-written")
    assert not any(getattr(t.params, "committee", None) == "mace/OPLS" for t in tasks)
    kept = {t.key for t in full if getattr(t.params, "committee", None) != "mace/OPLS"}
    assert {t.key for t in tasks if t.kind == "train"} <= kept
    assert {t.key for t in tasks if t.kind == "score"} == {t.key for t in full if t.kind == "score"
                                                           and t.params.committee != "mace/OPLS"}
    base = spec.model_dump()
    for bad, match in ((["gap/OPLS"], "'gap/OPLS' not a cell of the grid"), (["mace/OPLS", "mace/OPLS"], "repeat"),
                       (["mace/OPLS", "deepmd/OPLS", "mace/OPLS+VS", "deepmd/OPLS+VS"], "nothing to score")):
        with pytest.raises(ValueError, match=match):
            SweepSpec.model_validate({**base, "exclude": bad})


def test_the_score_worker_reads_only_its_typed_dependencies(tmp_path):
    """The observe results carry what Q needs (the NPT density samples): after the run directories are gone, the
    score worker gives the Q that scoring the runs from disk gives; an observe result stored without the samples
    (an older harness) does not validate, so its task runs again instead of the score reading files."""
    import shutil

    from harness.observables.analysis import RunSet, score as score_runs
    from harness.validation.contract import ObserveParams, ObserveResult, RunResult, ScoreParams
    from harness.validation.tasks import observe, score
    from tests.observables_helpers import fake_committee, fake_runs, quick_protocol

    proto = quick_protocol()
    ws = tmp_path / "ws"
    ref, model = fake_committee(ws, "gap", "Full", 2), fake_committee(ws, "mace", "OPLS", 2)
    obs_params = ObserveParams(analysis=proto.analysis, equilibration_ps=proto.equilibration_ps, tau_ps=proto.horizon_ps)
    observed, sets = [], {"gap/Full": [], "mace/OPLS": []}
    for cid, cdir, shift in (("gap/Full", ref, 0.0), ("mace/OPLS", model, 0.05)):
        for k, m in enumerate(sorted(cdir.glob("member-*"))):
            fake_runs(ws, m, proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.9 + shift + 0.01 * k, D=0.3, seed=k + (9 if shift else 0))
            from harness.models.train import model_run_name

            base = ws / "md" / model_run_name(m) / proto.name
            sets[cid].append(RunSet(f"member-{k}-seed{k}", base / "npt-r0", base / "nvt-r0"))
            ident = dict(committee=cid, arch=cid.split("/")[0], subset=cid.split("/")[1], member=k, seed=k)
            for ens in ("npt", "nvt"):
                run = RunResult(**ident, run_dir=str(base / f"{ens}-r0"), ensemble=ens, t_stab_ps=1.0)
                observed.append(observe(obs_params, {"run": [run]}))
    want = score_runs(sets["mace/OPLS"], sets["gap/Full"], proto.analysis, tau_ps=proto.horizon_ps,
                      equilibration_ps=proto.equilibration_ps)
    shutil.rmtree(ws / "md")
    got = score(ScoreParams(analysis=proto.analysis, equilibration_ps=proto.equilibration_ps, tau_ps=proto.horizon_ps,
                            committee="mace/OPLS", arch="mace", subset="OPLS", reference="gap/Full",
                            reference_is_self=False), {"observed": observed})
    assert got.committee.model_dump() == want["committee"] and got.reference.kl_baseline == want["reference"]["kl_baseline"]
    assert [m.Q for m in got.members] == [m["Q"] for m in want["members"]]
    assert got.model_dump(mode="json")["members"] == json.loads(json.dumps(want["members"]))  # typed, stored unchanged
    npt = next(o for o in observed if o.ensemble == "npt")
    old = npt.model_dump(mode="json")
    old.pop("density_samples")
    with pytest.raises(ValueError, match="density samples of an NPT run that reached tau not recorded"):
        ObserveResult.model_validate(old)
