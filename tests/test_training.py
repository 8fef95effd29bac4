"""Training as asked for: the model that was trained is kept, an explicit dtype wins, options parse.

Issue #13 item 1. The tiny SWA training is real (mace_run_train, 3 epochs on 6 isolated molecules);
the dtype and option tests stand in fake backend executables or a fake ``train_member`` so that
they check what reaches the tool without training anything.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from harness.io import read_frames, sha256_file
from harness.models.base import ModelArtifact, TrainInputs, get_trainer
from harness.models.train import plan_committee, resolve_hyperparameters, train_member

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "ec-emc-xtb"
SPEC = ROOT / "datasets" / "ec-emc-xtb.yaml"


@pytest.fixture(scope="module")
def molecules():
    """8 isolated EC/EMC molecules of the shipped data (6 train, 2 valid): seconds per MACE epoch."""
    return read_frames(DATA / "sm.extxyz.gz")[::37][:8]


# -- the kept model ----------------------------------------------------------------------------------

def test_kept_model_rules(tmp_path):
    from harness.models.base import MemberFailed
    from harness.models.mace import kept_model

    (tmp_path / "member.model").write_bytes(b"stage one")
    path, kept = kept_model(tmp_path, swa=False)
    assert path.name == "member.model" and kept["stage"] == "one" and "swa off" in kept["reason"]
    path, kept = kept_model(tmp_path, swa=True)  # asked for, never written: say so
    assert path.name == "member.model" and "no stage-two model" in kept["reason"]
    (tmp_path / "member_stagetwo.model").write_bytes(b"stage two")
    (tmp_path / "member_stagetwo_compiled.model").write_bytes(b"compiled")
    path, kept = kept_model(tmp_path, swa=True)
    assert path.name == "member_stagetwo.model" and kept["stage"] == "two"
    assert kept["discarded"] == {"member.model": sha256_file(tmp_path / "member.model")}
    with pytest.raises(MemberFailed, match="no member.model"):
        kept_model(tmp_path / "empty", swa=False)


@pytest.mark.slow
@pytest.mark.mace
def test_swa_training_keeps_the_stage_two_model(molecules, tmp_path):
    hp = resolve_hyperparameters("mace", "mini", {"max_num_epochs": 3, "swa": True, "start_swa": 1,
                                                  "batch_size": 2})
    art = train_member("mace", molecules[:6], molecules[6:], hyperparameters=hp, preset="mini", seed=0,
                       workdir=tmp_path / "m", threads=1)
    assert art.status == "ok", art.error
    work = Path(art.workdir)
    # by name: the stage-two file mace_run_train wrote, and the reason in artifact.json
    assert art.files["model"] == "member_stagetwo.model"
    saved = json.loads((work / "artifact.json").read_text())
    assert saved["kept_model"]["file"] == "member_stagetwo.model" and saved["kept_model"]["stage"] == "two"
    assert "stage two" in saved["kept_model"]["reason"]
    # by content: a different model from stage one, whose hash is recorded as discarded
    one, two = sha256_file(work / "member.model"), sha256_file(work / "member_stagetwo.model")
    assert one != two
    assert art.file_sha256["model"] == two and saved["kept_model"]["discarded"] == {"member.model": one}
    # and the calculator is built from it
    ModelArtifact.load(work).verify()
    assert "Loaded Stage two model" in "".join(p.read_text() for p in (work / "logs").glob("*.log"))
    # its learning curve: before training and after each of the 3 epochs (stage two from epoch 1), then the
    # harness's evaluation of the kept model, on one clock
    curve = saved["curve"]
    assert [p.get("epoch") for p in curve] == [0, 1, 2, 3, None]
    assert [p.get("stage", 1) for p in curve[:4]] == [1, 1, 2, 2] and curve[-1]["source"] == "harness"
    walls = [p["wall_s"] for p in curve]
    assert all(0 < a < b for a, b in zip(walls, walls[1:])) and walls[-1] <= art.train_seconds
    assert curve[-1]["valid_forces_rmse_meV_A"] == pytest.approx(art.metrics["valid_forces_rmse_meV_A"])
    assert all(500 < p["valid_forces_rmse_meV_A"] < 5000 for p in curve)  # meV/Å, not eV/Å


# -- an explicit dtype wins ----------------------------------------------------------------------------

def _fake_tool(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_plan_explicit_dtype_wins_over_the_preset(tmp_path):
    assert resolve_hyperparameters("mace", "mini")["dtype"] == "float32"
    default = plan_committee(SPEC, "OPLS", "mace", workspace=tmp_path, max_train_frames=4)
    assert default.dtype == "float32" and default.hyperparameters["dtype"] == "float32"
    explicit = plan_committee(SPEC, "OPLS", "mace", workspace=tmp_path, max_train_frames=4, dtype="float64")
    assert explicit.dtype == "float64" and explicit.hyperparameters["dtype"] == "float64"
    assert explicit.key != default.key
    gap = plan_committee(SPEC, "OPLS", "gap", workspace=tmp_path, max_train_frames=4, dtype="float32")
    assert "dtype" not in gap.hyperparameters  # GAP has no dtype: its committee key is unchanged


@pytest.mark.parametrize("arch", ["mace", "deepmd"])
def test_backend_trains_in_the_inputs_dtype_not_the_presets(arch, molecules, tmp_path, monkeypatch):
    # fake tools: record the command line (mace) or read input.json (deepmd), write a model file
    log = tmp_path / "argv.json"
    if arch == "mace":
        tool = _fake_tool(tmp_path / "mace_run_train", f"json.dump(sys.argv, open({str(log)!r}, 'w'))\n"
                          "open('member.model', 'wb').write(b'x')")
        monkeypatch.setenv("HARNESS_MACE_RUN_TRAIN", str(tool))
    else:
        tool = _fake_tool(tmp_path / "dp", f"json.dump(dict(os.environ), open({str(log)!r}, 'w'))\n"
                          "if 'freeze' in sys.argv: open('model.pth', 'wb').write(b'x')")
        monkeypatch.setenv("HARNESS_DP", str(tool))
    hp = resolve_hyperparameters(arch, "mini", {"dtype": "float32"})
    inputs = TrainInputs(train=molecules[:2], valid=molecules[2:8], species=("C", "H", "O"), e0=None, seed=0,
                         dtype="float64")
    (tmp_path / "m").mkdir()
    art = get_trainer(arch).train(inputs, hp, tmp_path / "m")
    assert art.dtype == "float64" and art.hyperparameters["dtype"] == "float64"
    if arch == "mace":
        argv = json.loads(log.read_text())
        assert "--default_dtype=float64" in argv
        assert "--plot=False" in argv  # no end-of-run inference over the training set for parity plots
    else:
        config = json.loads((tmp_path / "m" / "input.json").read_text())
        model = config["model"]
        assert model["descriptor"]["precision"] == model["fitting_net"]["precision"] == "float64"
        # no data-loader worker processes competing with the training threads
        env = json.loads(log.read_text())
        assert env["NUM_WORKERS"] == "0"
        tool_env = {**os.environ, **env}  # no unbounded spinning: a bounded spin count or the user's policy
        assert "GOMP_SPINCOUNT" in tool_env or "OMP_WAIT_POLICY" in tool_env
        # the learning curve's validation error over more than deepmd's default single frame
        assert config["training"]["validation_data"]["numb_btch"] == 5  # disp_freq 100 / 20, <= 6 frames


def _fake_train_member(calls):
    def fake(arch, train, valid, *, hyperparameters, preset, seed, workdir, dtype=None, **kw):
        calls.append({"arch": arch, "hyperparameters": hyperparameters, "dtype": dtype})
        Path(workdir).mkdir(parents=True, exist_ok=True)
        art = ModelArtifact(arch=arch, preset=preset, seed=seed, workdir=str(workdir), dtype=dtype,
                            hyperparameters=hyperparameters)
        art.save()
        return art

    return fake


def test_cli_dtype_flag_wins_and_long_json_options(runner, tmp_path, monkeypatch):
    import harness.models.train as train_mod
    from harness.cli.main import app

    calls: list[dict] = []
    monkeypatch.setattr(train_mod, "train_member", _fake_train_member(calls))
    # a JSON object longer than a file name may be (255 bytes): parsed as JSON, not tried as a path first
    options = {"max_num_epochs": 2, "batch_size": 1, "num_radial_basis": 6,
               **{f"note_{k}": "x" * 20 for k in range(12)}}
    text = json.dumps(options)
    assert len(text) > os.pathconf("/", "PC_NAME_MAX")
    args = ["train", "-d", str(SPEC), "-s", "OPLS", "-a", "mace", "-n", "1", "-w", str(tmp_path / "ws"),
            "--max-train-frames", "4", "--dtype", "float64", "--options", text]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls[0]["dtype"] == "float64" and calls[0]["hyperparameters"]["dtype"] == "float64"
    assert calls[0]["hyperparameters"]["note_11"] == "x" * 20
    # without --dtype the preset's (float32 for mace mini)
    calls.clear()
    result = runner.invoke(app, args[:-4] + ["--options", text])
    assert result.exit_code == 0, result.output
    assert calls[0]["dtype"] == "float32"
    # a YAML file still works, and a long non-JSON string is a one-line error, not an OSError
    (tmp_path / "o.yaml").write_text("max_num_epochs: 2\n")
    calls.clear()
    assert runner.invoke(app, args[:-2] + ["--options", str(tmp_path / "o.yaml")]).exit_code == 0
    assert calls[0]["hyperparameters"]["max_num_epochs"] == 2
    bad = runner.invoke(app, args[:-2] + ["--options", "y" * 400])
    assert bad.exit_code == 2 and "neither a file nor valid JSON" in bad.output


def test_is_file_survives_names_that_cannot_be_paths(tmp_path):
    from harness.cli.common import is_file

    (tmp_path / "a.yaml").write_text("x: 1\n")
    assert is_file(str(tmp_path / "a.yaml")) and not is_file(str(tmp_path))
    assert not is_file("{" + "x" * 5000 + "}") and not is_file("a\0b")


def test_mace_eval_interval_that_discards_epochs_is_refused():
    from harness.errors import InputError
    from harness.models.mace import _check_eval_interval

    _check_eval_interval({"max_num_epochs": 10})  # mace's default: every epoch
    _check_eval_interval({"max_num_epochs": 10, "eval_interval": 3})  # validates 0, 3, 6, 9
    with pytest.raises(InputError, match="last validated epoch is 8 of 0..9; the 1 epoch"):
        _check_eval_interval({"max_num_epochs": 10, "eval_interval": 4})
    with pytest.raises(InputError, match="no epoch of stage two"):  # stage two = epochs 8, 9
        _check_eval_interval({"max_num_epochs": 10, "eval_interval": 7, "swa": True, "start_swa": 8})
    _check_eval_interval({"max_num_epochs": 10, "eval_interval": 3, "swa": True})  # default start 6: 6 and 9


def test_thread_env_bounded_spinning_unless_the_user_says_otherwise(monkeypatch):
    from harness.models.base import default_threads, thread_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("HARNESS_SPINCOUNT", raising=False)
    assert thread_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "GOMP_SPINCOUNT": "10000"}
    assert thread_env(None)["OMP_NUM_THREADS"] == str(default_threads())
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the user's policy wins: no spin count of ours
    assert "GOMP_SPINCOUNT" not in thread_env(1)
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    assert "GOMP_SPINCOUNT" not in thread_env(1)


def test_every_preset_trains_what_it_says():
    """Each preset keeps the model it trained and anneals: MACE's SWA stage starts inside the run and owns a
    validated epoch, so stage two is kept; DeePMD's learning rate reaches stop_lr by the last step (decay steps
    fewer than the steps) and checkpoints at the last step; GAP sets E0s only through the harness."""
    from harness.models import deepmd, gap, mace

    for name, hp in mace.PRESETS.items():
        mace._check_eval_interval(hp)
        assert not mace._OWNED & set(hp), name
        if hp.get("swa"):
            assert 0 < hp["start_swa"] < hp["max_num_epochs"], name
            # stage two raises the energy weight (mace_run_train default 1000): it removes the energy offset
            assert hp.get("swa_energy_weight", 1000.0) > hp["energy_weight"], name
    for name, hp in deepmd.PRESETS.items():
        t, lr = hp["training"], hp["learning_rate"]
        assert lr["decay_steps"] < t["numb_steps"] and lr["stop_lr"] < lr["start_lr"], name
        assert t["numb_steps"] % t["save_freq"] == 0, name  # a checkpoint at the last step is frozen
    for name, hp in gap.PRESETS.items():
        assert "e0" not in hp, name
    assert {"mini", "study", "cpu", "paper"} <= set(mace.PRESETS) & set(deepmd.PRESETS) & set(gap.PRESETS)
