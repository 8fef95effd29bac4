"""Learning curves (issue #13 item 5): parsed from each tool's own logs, stored in artifact.json, shown by
``harness models list --curves`` and the report.

The parsers are checked on log excerpts in the formats mace-torch 0.3.16 and deepmd-kit 3.2 write
(values chosen so that a swapped column, a missing unit conversion or a wrong clock shows); the slow
tests train tiny members for real.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

from harness.models.base import ModelArtifact
from harness.models.curves import curve_table, deepmd_curve, final_point, mace_curve
from tests.test_report import scored_store  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _ts(t0: datetime.datetime, s: float, fmt: str) -> str:
    t = t0 + datetime.timedelta(seconds=s)
    return t.strftime(fmt)


@pytest.fixture()
def mace_run(tmp_path):
    """A 3-epoch SWA run of mace_run_train as it leaves results/ and logs/ (stage two from epoch 1)."""
    t0 = datetime.datetime(2026, 1, 2, 10, 0, 0)
    w = tmp_path / "mace"
    (w / "results").mkdir(parents=True)
    (w / "logs").mkdir()
    evals = [(None, 0.0456, 1.4647), (0, 0.0373, 1.2), (1, 0.0369, 0.9), (2, 0.0366, 0.8)]
    lines = [json.dumps({"loss": 10.7, "rmse_e_per_atom": evals[0][1], "rmse_f": evals[0][2], "time": 0.15,
                         "mode": "eval", "epoch": None, "head": "Default"})]
    for epoch, e, f in evals[1:]:
        lines += [json.dumps({"loss": 2.0 * (epoch + 1), "time": 0.1, "mode": "opt", "epoch": epoch})] * 2
        lines.append(json.dumps({"loss": 1.0, "rmse_e_per_atom": e, "rmse_f": f, "time": 0.03, "mode": "eval",
                                 "epoch": epoch, "head": "Default"}))
    (w / "results" / "member_run-0_train.txt").write_text("\n".join(lines) + "\n")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    log = [f"{_ts(t0, 0, fmt)[:-3]} INFO: ===========VERIFYING SETTINGS===========",
           f"{_ts(t0, 2, fmt)[:-3]} INFO: Initial: head: Default, loss=10.7, RMSE_E_per_atom=   45.57 meV",
           f"{_ts(t0, 5, fmt)[:-3]} INFO: Epoch 0: head: Default, loss=1.0, RMSE_E_per_atom=   37.29 meV",
           f"{_ts(t0, 5.5, fmt)[:-3]} INFO: Changing loss based on Stage Two Weights",
           f"{_ts(t0, 8, fmt)[:-3]} INFO: Epoch 1: head: Default, loss=1.0, RMSE_E_per_atom=   36.91 meV",
           f"{_ts(t0, 11, fmt)[:-3]} INFO: Epoch 2: head: Default, loss=1.0, RMSE_E_per_atom=   36.56 meV"]
    (w / "logs" / "member_run-0.log").write_text("\n".join(log) + "\n")
    (w / "logs" / "member_run-0_debug.log").write_text("\n".join(log[:2]) + "\n")
    return w, t0.timestamp() - 10.0  # the tool was launched 10 s before its first log line


def test_mace_curve_from_results_and_log(mace_run):
    w, t_start = mace_run
    curve = mace_curve(w, t_start)
    assert [p["epoch"] for p in curve] == [0, 1, 2, 3]
    assert [p["wall_s"] for p in curve] == pytest.approx([12.0, 15.0, 18.0, 21.0])
    assert [p["valid_forces_rmse_meV_A"] for p in curve] == pytest.approx([1464.7, 1200.0, 900.0, 800.0])
    assert [p["valid_energy_rmse_meV_atom"] for p in curve] == pytest.approx([45.6, 37.3, 36.9, 36.6])
    assert [p.get("stage", 1) for p in curve] == [1, 1, 2, 2]
    assert "train_loss" not in curve[0] and curve[2]["train_loss"] == pytest.approx(4.0)
    assert "wall_s" not in mace_curve(w, None)[0]
    assert mace_curve(w.parent / "nothing", t_start) == []


def test_mace_curve_of_a_member_resumed_after_a_walltime_stop(tmp_path):
    """Two mace_run_train processes in one log and results file (the second resumes the checkpoint, re-evaluates
    it as 'Initial' and redoes the epoch it was stopped in, 100 s later): one point per epoch, the redone epoch's
    last evaluation, and wall_s on one clock of training time (never negative, always increasing)."""
    t0 = datetime.datetime(2026, 1, 2, 10, 0, 0)
    w = tmp_path / "mace"
    (w / "results").mkdir(parents=True)
    (w / "logs").mkdir()
    evals = [(None, 1.5), (0, 1.2), (1, 1.0), (None, 1.0), (1, 0.95), (2, 0.8)]
    lines = []
    for epoch, f in evals:
        if epoch is not None:
            lines.append(json.dumps({"loss": 3.0 if f == 1.0 else 2.0, "time": 0.1, "mode": "opt", "epoch": epoch}))
        lines.append(json.dumps({"loss": 1.0, "rmse_e_per_atom": 0.01, "rmse_f": f, "mode": "eval", "epoch": epoch,
                                 "head": "Default"}))
    (w / "results" / "member_run-0_train.txt").write_text("\n".join(lines) + "\n")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    log = [f"{_ts(t0, 0, fmt)[:-3]} INFO: ===========VERIFYING SETTINGS===========",
           f"{_ts(t0, 2, fmt)[:-3]} INFO: Initial: head: Default, loss=10.7",
           f"{_ts(t0, 5, fmt)[:-3]} INFO: Epoch 0: head: Default, loss=1.0",
           f"{_ts(t0, 8, fmt)[:-3]} INFO: Epoch 1: head: Default, loss=1.0",
           f"{_ts(t0, 9, fmt)[:-3]} INFO: stopped",
           f"{_ts(t0, 109, fmt)[:-3]} INFO: ===========VERIFYING SETTINGS===========",
           f"{_ts(t0, 111, fmt)[:-3]} INFO: Initial: head: Default, loss=1.0",
           f"{_ts(t0, 111.5, fmt)[:-3]} INFO: Changing loss based on Stage Two Weights",
           f"{_ts(t0, 114, fmt)[:-3]} INFO: Epoch 1: head: Default, loss=1.0",
           f"{_ts(t0, 117, fmt)[:-3]} INFO: Epoch 2: head: Default, loss=1.0"]
    (w / "logs" / "member_run-0.log").write_text("\n".join(log) + "\n")
    t_start = t0.timestamp() + 109 - 10.0  # the last piece's tool was launched 10 s before its first log line
    curve = mace_curve(w, t_start)
    assert [p["epoch"] for p in curve] == [0, 1, 2, 3]
    assert [p["valid_forces_rmse_meV_A"] for p in curve] == pytest.approx([1500.0, 1200.0, 950.0, 800.0])
    # piece 1: 9 s + 10 s start-up; piece 2: its own start-up, then 5 and 8 s into it
    assert [p["wall_s"] for p in curve] == pytest.approx([12.0, 15.0, 19.0 + 10 + 5, 19.0 + 10 + 8])
    assert [p.get("stage", 1) for p in curve] == [1, 1, 2, 2]
    assert curve[2]["train_loss"] == pytest.approx(2.0)  # the redone epoch's own losses


@pytest.fixture()
def deepmd_run(tmp_path):
    """lcurve.out and train.log of a 40-step dp --pt train with validation data, disp_freq 20."""
    t0 = datetime.datetime(2026, 1, 2, 10, 0, 0)
    w = tmp_path / "dp"
    w.mkdir()
    (w / "lcurve.out").write_text(
        "# step       rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn   lr      \n"
        "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"
        "      1      3.39e+01    3.65e+01      7.79e-01    7.91e-01      1.07e+00    1.15e+00    5.0e-03\n"
        "     20      3.30e+01    3.40e+01      8.53e-02    5.56e-02      1.04e+00    9.70e-01    5.0e-03\n"
        "     40      7.11e+00    6.18e+00      6.22e-02    6.21e-02      8.50e-01    7.07e-01    2.2e-04\n")
    lines = ["$ dp --pt train input.json"]
    for step, s in ((1, 3.0), (20, 5.25), (40, 7.5)):
        stamp = _ts(t0, s, "%Y-%m-%d %H:%M:%S,%f")[:-3]
        lines += [f"[{stamp}] DEEPMD INFO    Batch {step:7d}: trn: rmse = 3.65e+01, rmse_e = 7.91e-01",
                  f"[{stamp}] DEEPMD INFO    Batch {step:7d}: total wall time = 1.05 s"]
    (w / "train.log").write_text("\n".join(lines) + "\n")
    return w, t0.timestamp()


def test_deepmd_curve_from_lcurve_and_log(deepmd_run):
    w, t_start = deepmd_run
    curve = deepmd_curve(w, t_start)
    assert [p["step"] for p in curve] == [1, 20, 40]
    assert [p["wall_s"] for p in curve] == pytest.approx([3.0, 5.25, 7.5])
    # validation columns, not training ones; eV -> meV
    assert [p["valid_forces_rmse_meV_A"] for p in curve] == pytest.approx([1070.0, 1040.0, 850.0])
    assert [p["train_forces_rmse_meV_A"] for p in curve] == pytest.approx([1150.0, 970.0, 707.0])
    assert [p["valid_energy_rmse_meV_atom"] for p in curve] == pytest.approx([779.0, 85.3, 62.2])
    assert curve[-1]["lr"] == pytest.approx(2.2e-4)
    # without validation data deepmd writes only *_trn columns: no valid_* keys, no crash
    (w / "lcurve.out").write_text("# step  rmse_trn  rmse_e_trn  rmse_f_trn  lr\n  1  3.6e+01  7.9e-01  1.1e+00  5.0e-03\n")
    (only,) = deepmd_curve(w, t_start)
    assert "valid_forces_rmse_meV_A" not in only and only["train_forces_rmse_meV_A"] == pytest.approx(1100.0)


def test_final_point_and_table():
    metrics = {"valid_energy_rmse_meV_atom": 3.0, "valid_forces_rmse_meV_A": 250.0, "train_forces_rmse_meV_A": 200.0}
    p = final_point(metrics, 42.0)
    assert p == {"wall_s": 42.0, "source": "harness", "valid_energy_rmse_meV_atom": 3.0,
                 "valid_forces_rmse_meV_A": 250.0, "train_forces_rmse_meV_A": 200.0}
    assert final_point({"train_forces_rmse_meV_A": 1.0}, 1.0) is None
    rows = curve_table([{"epoch": 1, "wall_s": 3.0, "valid_forces_rmse_meV_A": 900.0},
                        {"epoch": 2, "stage": 2, "wall_s": 5.0, "valid_forces_rmse_meV_A": 800.0}, p], last=2)
    assert rows == [("epoch 2 (stage 2)", "5", "-", "800.0"), ("kept model", "42", "3.00", "250.0")]


def test_old_artifacts_load_without_curve_or_kept_model(tmp_path):
    art = ModelArtifact(arch="gap", preset="mini", seed=0, workdir=str(tmp_path))
    data = dict(art.__dict__)
    del data["curve"], data["kept_model"]
    (tmp_path / "artifact.json").write_text(json.dumps(data))
    old = ModelArtifact.load(tmp_path)
    assert old.curve == [] and old.kept_model == {}


def _add_curves(ws: Path) -> int:
    n = 0
    for k, path in enumerate(sorted(ws.glob("models/*/*/*/*/artifact.json"))):
        art = ModelArtifact.load(path.parent)
        if art.arch == "gap":
            art.curve = [{"wall_s": 30.0 + k, "valid_forces_rmse_meV_A": 300.0, "valid_energy_rmse_meV_atom": 2.0,
                          "source": "harness"}]
        else:
            art.curve = [{"epoch": e, "wall_s": 10.0 * e + 5, "valid_forces_rmse_meV_A": 1000.0 / (e + 1),
                          "valid_energy_rmse_meV_atom": 50.0 / (e + 1)} for e in range(4)]
            art.curve.append({"wall_s": 45.0, "valid_forces_rmse_meV_A": 260.0, "valid_energy_rmse_meV_atom": 12.0,
                              "source": "harness"})
        art.kept_model = {"file": "model", "reason": "test"}
        art.save()
        n += len(art.curve)
    return n


def test_report_has_learning_curves_when_members_recorded_them(scored_store, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    import pandas as pd

    from harness.cli.main import app

    runner = CliRunner()
    before = runner.invoke(app, ["report", "-w", str(scored_store), "-o", str(tmp_path / "r0")])
    assert before.exit_code == 0, before.output
    assert not (tmp_path / "r0" / "fig3_learning_curves.png").exists()  # no curves, no figure
    n_points = _add_curves(scored_store)
    r = runner.invoke(app, ["report", "-w", str(scored_store), "-o", str(tmp_path / "r1")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r1" / "fig3_learning_curves.png").stat().st_size > 2000
    df = pd.read_csv(tmp_path / "r1" / "learning_curves.csv")
    assert len(df) == n_points and set(df.arch) == {"gap", "mace"}
    mace = df[(df.arch == "mace") & (df.source == "tool")]
    assert set(mace.unit) == {"epoch"} and mace.valid_forces_rmse_meV_A.min() == pytest.approx(250.0)
    assert "alt='fig3'" in (tmp_path / "r1" / "report.html").read_text()


def test_models_list_curves(scored_store, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from harness.cli.main import app

    runner = CliRunner()
    none = runner.invoke(app, ["models", "list", "-w", str(scored_store), "--curves", "--curves-png",
                               str(tmp_path / "c.png")])
    assert none.exit_code == 1 and "no curve recorded" in none.stdout
    _add_curves(scored_store)
    r = runner.invoke(app, ["models", "list", "-w", str(scored_store), "--curves", "--points", "2",
                            "--curves-png", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    assert r.stdout.count("kept model") == 8 and r.stdout.count("epoch 3") == 4  # 2 points per member
    assert "epoch 2" not in r.stdout and (tmp_path / "c.png").stat().st_size > 2000


@pytest.fixture(scope="module")
def molecules():
    from harness.io import read_frames

    return read_frames(ROOT / "datasets" / "ec-emc-xtb" / "sm.extxyz.gz")[::37][:8]


@pytest.mark.slow
@pytest.mark.deepmd
def test_deepmd_member_records_its_curve(molecules, tmp_path):
    from harness.models.train import resolve_hyperparameters, train_member

    hp = resolve_hyperparameters("deepmd", "mini", {"training": {"numb_steps": 40, "disp_freq": 10,
                                                                 "save_freq": 40}})
    art = train_member("deepmd", molecules[:6], molecules[6:], hyperparameters=hp, preset="mini", seed=0,
                       workdir=tmp_path / "m", threads=1)
    assert art.status == "ok", art.error
    saved = json.loads((tmp_path / "m" / "artifact.json").read_text())
    curve = saved["curve"]
    assert [p.get("step") for p in curve] == [1, 10, 20, 30, 40, None] and curve[-1]["source"] == "harness"
    walls = [p["wall_s"] for p in curve]
    assert all(0 < a < b for a, b in zip(walls, walls[1:])) and walls[-1] <= art.train_seconds
    assert all(100 < p["valid_forces_rmse_meV_A"] < 10000 for p in curve)
    assert saved["kept_model"]["file"] == "model.pth" and "step 40" in saved["kept_model"]["reason"]


@pytest.mark.slow
@pytest.mark.gap
def test_gap_member_curve_is_one_point(molecules, tmp_path):
    from harness.models.train import resolve_hyperparameters, train_member

    hp = resolve_hyperparameters("gap", "mini", {"soap_turbo": {"n_sparse": 20}})
    art = train_member("gap", molecules[:6], molecules[6:], hyperparameters=hp, preset="mini", seed=0,
                       workdir=tmp_path / "m", threads=1)
    assert art.status == "ok", art.error
    (point,) = ModelArtifact.load(tmp_path / "m").curve
    assert point["source"] == "harness" and 0 < point["wall_s"] <= art.train_seconds
    assert point["valid_forces_rmse_meV_A"] == pytest.approx(art.metrics["valid_forces_rmse_meV_A"])
    assert art.kept_model["file"] == "gap.xml"


def test_curves_of_members_brought_in_come_from_the_store(tmp_path):
    """A committee brought as trained members (shipped outside the workspace: a `model` task of a member source)
    shows its curves under its committee id; a member trained here and recorded in the store too, once."""
    from harness.models.load import ModelSource
    from harness.report.data import learning_curves
    from harness.validation.contract import MemberResult, ModelParams, TrainParams
    from harness.workflow.store import Store

    ws, shipped = tmp_path / "ws", tmp_path / "models" / "study-cpu" / "mace-OPLS" / "member-0-seed0"
    here = ws / "models" / "mace" / "Full" / "cpu-abc" / "member-0-seed0"
    for d, valid in ((shipped, [300.0, 150.0]), (here, [400.0, 200.0, 100.0])):
        d.mkdir(parents=True)
        art = ModelArtifact(arch="mace", preset="cpu", seed=0, workdir=str(d), status="ok")
        art.dataset = {"subset": d.parent.name.split("-")[-1] if d == shipped else "Full"}
        art.curve = [{"epoch": e, "wall_s": 10.0 * e, "valid_forces_rmse_meV_A": v} for e, v in enumerate(valid)]
        art.save()
    store = Store(ws / "harness.sqlite")
    for key, params, committee, where in (("m0", ModelParams, "model:study-mace-OPLS", shipped),
                                          ("t0", TrainParams, "mace/Full", here)):
        res = MemberResult(committee=committee, arch="mace", member=0, run_name=where.name,
                           model=ModelSource(kind="member", path=str(where)),
                           workdir=str(where) if params is TrainParams else None)
        store.register(key, params.KIND, key, {}, [], "test")
        store.mark_done(key, {"schema": params.schema_id(), **res.model_dump(mode="json")}, {}, 0.1)
    store.close()
    df = learning_curves(ws)
    assert sorted(df.groupby("committee").size().items()) == [("mace/Full", 3), ("model:study-mace-OPLS", 2)]
    assert df[df.committee == "model:study-mace-OPLS"].valid_forces_rmse_meV_A.min() == 150.0


def test_members_csv_columns_name_each_members_validation_errors_and_curve_end(tmp_path):
    """member_training (members.csv beside t_stab): the kept model's validation RMSEs from its artifact and the
    curve's end — the last step of the last stage, its force RMSE and the change since the last point a tenth of
    the stage before the end; a member with a one-point curve has no change; a failed member no row."""
    from harness.models.load import ModelSource
    from harness.report.data import member_training
    from harness.validation.contract import MemberResult, TrainParams
    from harness.workflow.store import Store

    ws = tmp_path / "ws"
    curves = {  # step curve 0..1000: the last tenth starts at 900 (RMSE 110 -> 99: -10 %)
        "member-0-seed0": [{"step": s, "valid_forces_rmse_meV_A": v} for s, v in
                           ((0, 900.0), (500, 200.0), (900, 110.0), (950, 104.0), (1000, 99.0))]
        + [{"valid_forces_rmse_meV_A": 98.0, "source": "harness"}],
        # two stages (MACE's SWA): stage 2 from epoch 10 to 20; a tenth of it before the end is epoch 19
        "member-1-seed1": [{"epoch": e, "valid_forces_rmse_meV_A": 300.0 - e, "stage": 1} for e in range(10)]
        + [{"epoch": e, "valid_forces_rmse_meV_A": v, "stage": 2} for e, v in ((10, 150.0), (19, 120.0), (20, 90.0))],
        "member-2-seed2": [{"valid_forces_rmse_meV_A": 50.0, "source": "harness"}],  # GAP: no tool curve
        "member-3-seed3": [],
    }
    store = Store(ws / "harness.sqlite")
    for k, (name, curve) in enumerate(curves.items()):
        d = ws / "models" / "mace" / "Full" / "cpu-abc" / name
        d.mkdir(parents=True)
        ModelArtifact(arch="mace", preset="cpu", seed=k, workdir=str(d), status="failed" if k == 3 else "ok",
                      curve=curve, train_seconds=60.0 * (k + 1), dataset={"subset": "Full"},
                      metrics={"valid_forces_rmse_meV_A": 98.0 + k, "valid_energy_rmse_meV_atom": 1.5,
                               "valid_n_frames": 21}).save()
        res = MemberResult(committee="mace/Full", arch="mace", member=k, run_name=name,
                           model=ModelSource(kind="member", path=str(d)), workdir=str(d))
        store.register(f"t{k}", TrainParams.KIND, f"t{k}", {}, [], "test")
        store.mark_done(f"t{k}", {"schema": TrainParams.schema_id(), **res.model_dump(mode="json")}, {}, 0.1)
    store.close()
    df = member_training(ws).set_index("member")
    assert list(df.index) == ["member-0-seed0", "member-1-seed1", "member-2-seed2"]
    m0, m1, m2 = (df.loc[f"member-{k}-seed{k}"] for k in range(3))
    assert (m0.curve_unit, m0.curve_end, m0.curve_end_valid_forces_meV_A) == ("step", 1000, 99.0)
    assert m0.curve_end_change_from == 900 and m0.curve_end_change_pct == pytest.approx(-10.0)
    assert m0.valid_forces_rmse_meV_A == 98.0 and m0.valid_n_frames == 21 and m0.train_seconds == 60.0
    assert (m1.curve_unit, m1.curve_end, m1.curve_end_change_from) == ("epoch", 20, 19)
    assert m1.curve_end_change_pct == pytest.approx(-25.0)
    assert np.isnan(m2.curve_end) and np.isnan(m2.curve_end_change_pct) and m2.valid_forces_rmse_meV_A == 100.0
