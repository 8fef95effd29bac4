"""Fine-tuning a foundation model (issue #17): recipes, spec, planning, forgetting; the ci run (slow) checks that
each strategy did what it says on real mace_run_train output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from harness.errors import ConfigError, InputError
from harness.finetune.forgetting import gain_and_forgetting, prediction_change
from harness.models.evaluate import Prediction
from harness.models.finetune import Finetune, command, mace_args

ROOT = Path(__file__).resolve().parents[1]
CARBONATES = ROOT / "datasets" / "carbonates-xtb.yaml"
FOUNDATION = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"


def _frames(n_frames=3, n_atoms=4):
    rng = np.random.default_rng(0)
    return [Atoms("H" * n_atoms, positions=rng.random((n_atoms, 3)) * 3) for _ in range(n_frames)]


def test_prediction_change_analytic():
    frames = _frames()
    orig = [Prediction(energy=1.0 * k, forces=np.zeros((4, 3))) for k in range(3)]
    # tuned: every energy 0.2 eV higher (0.05 eV/atom), every force component +0.1 eV/Å
    tuned = [Prediction(energy=1.0 * k + 0.2, forces=np.full((4, 3), 0.1)) for k in range(3)]
    c = prediction_change(frames, orig, tuned)
    assert c["energy_change_rms_meV_atom"] == pytest.approx(50.0)
    assert c["energy_change_mean_meV_atom"] == pytest.approx(50.0)  # tuned − original, not the reverse
    assert c["energy_change_rms_shifted_meV_atom"] == pytest.approx(0.0, abs=1e-9)  # a constant offset only
    assert c["forces_change_rms_meV_A"] == pytest.approx(100.0)
    assert prediction_change(frames, orig, orig)["forces_change_rms_meV_A"] == 0.0
    with pytest.raises(ValueError):
        prediction_change(frames, orig[:2], tuned)


def test_gain_and_forgetting_signs():
    before = {"forces_rmse_meV_A": 200.0, "energy_rmse_meV_atom": 20.0}
    after = {"forces_rmse_meV_A": 150.0, "energy_rmse_meV_atom": 25.0}
    changes = {"a": {"forces_change_rms_meV_A": 30.0, "energy_change_rms_meV_atom": 2.0,
                     "forces_error_increase_meV_A": 10.0, "energy_error_increase_meV_atom": -1.0},
               "b": {"forces_change_rms_meV_A": 50.0, "energy_change_rms_meV_atom": 4.0,
                     "forces_error_increase_meV_A": 20.0, "energy_error_increase_meV_atom": 3.0},
               "unlabelled": {"forces_change_rms_meV_A": 70.0, "energy_change_rms_meV_atom": 6.0}}
    s = gain_and_forgetting(before, after, changes)
    assert s["target_forces_gain_meV_A"] == 50.0 and s["target_energy_gain_meV_atom"] == -5.0
    assert s["forgetting_forces_meV_A"] == 15.0 and s["forgetting_energy_meV_atom"] == 1.0  # labelled sets only
    assert s["prediction_change_forces_meV_A"] == 50.0 and s["prediction_change_energy_meV_atom"] == 4.0
    assert "forgetting_forces_meV_A" not in gain_and_forgetting(before, after, {})
    assert "forgetting_forces_meV_A" not in gain_and_forgetting(before, after, {"u": changes["unlabelled"]})


def test_a_model_moved_towards_the_labels_forgets_nothing():
    """The original predicts forces 0.2 eV/Å off the labels; the tuned model half as far: its predictions changed
    (100 meV/Å) but its error fell: forgetting is negative (an error decrease), not the change. A constant energy
    offset is not forgetting either."""
    from harness.finetune.forgetting import error_increase

    frames = _frames()
    rng = np.random.default_rng(1)
    for a in frames:
        a.arrays["REF_forces"] = rng.normal(size=(4, 3))
        a.info["REF_energy"] = float(rng.normal())
    orig = [Prediction(energy=a.info["REF_energy"] + 0.04 * k, forces=a.arrays["REF_forces"] + 0.2)
            for k, a in enumerate(frames)]
    tuned = [Prediction(energy=a.info["REF_energy"] + 0.02 * k + 5.0, forces=a.arrays["REF_forces"] + 0.1)
             for k, a in enumerate(frames)]
    e = error_increase(frames, orig, tuned)
    assert e["forces_rmse_original_meV_A"] == pytest.approx(200.0) and e["forces_rmse_tuned_meV_A"] == pytest.approx(100.0)
    assert e["forces_error_increase_meV_A"] == pytest.approx(-100.0)
    # energies: errors 0, 10, 20 meV/atom (orig) vs 1250 + 0, 5, 10 (tuned): offset removed, the spread halves
    assert e["energy_error_increase_meV_atom"] == pytest.approx(1000 * (np.std([0, 0.005, 0.01]) - np.std([0, 0.01, 0.02])))
    assert e["energy_error_increase_meV_atom"] < 0
    assert prediction_change(frames, orig, tuned)["forces_change_rms_meV_A"] == pytest.approx(100.0)


def _fake_foundation(tmp_path, content=b"not a real model"):
    from harness.io import sha256_file

    f = tmp_path / "f.model"
    f.write_bytes(content)
    return f, sha256_file(f)


def test_recipe_validation_and_key(tmp_path):
    f, sha = _fake_foundation(tmp_path)
    with pytest.raises(ValueError, match="freeze"):
        Finetune(foundation=str(f), foundation_sha256=sha, strategy="frozen", lr=1e-3)
    with pytest.raises(ValueError, match="freeze is for strategy frozen"):
        Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-3, freeze=4)
    with pytest.raises(ValueError, match="replay"):
        Finetune(foundation=str(f), foundation_sha256=sha, strategy="replay", lr=1e-3)
    a = Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-3)
    moved = Finetune(foundation="/elsewhere/f.model", foundation_sha256=sha, strategy="naive", lr=1e-3)
    assert a.key_fields() == moved.key_fields()  # the content identifies the foundation, not its path
    assert a.key_fields() != Finetune(foundation=str(f), foundation_sha256="0" * 64, strategy="naive",
                                      lr=1e-3).key_fields()
    assert a.key_fields() != Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-4).key_fields()


def test_mace_flags_per_strategy(tmp_path):
    from harness.models.train import _frames_key

    f, sha = _fake_foundation(tmp_path)
    naive = mace_args(Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-3), tmp_path,
                      _frames_key)
    assert f"--foundation_model={f.resolve()}" in naive and "--lr=0.001" in naive
    assert "--multiheads_finetuning=False" in naive and not any(a.startswith("--freeze") for a in naive)
    assert "--force_mh_ft_lr=True" in naive  # the given lr, never mace-torch's multi-head default
    frozen = Finetune(foundation=str(f), foundation_sha256=sha, strategy="frozen", lr=1e-3, freeze=4)
    assert command(frozen, "/x/mace_run_train")[1:] == ["-m", "harness.models.mace_freeze", "--harness_freeze_blocks=4"]
    assert command(None, "/x/mace_run_train") == ["/x/mace_run_train"]
    assert command(frozen.model_copy(update={"strategy": "naive", "freeze": None}), "m") == ["m"]
    replay = Finetune(foundation=str(f), foundation_sha256=sha, strategy="replay", lr=1e-3,
                      replay_dataset=str(CARBONATES), replay_subset="Foundation", replay_max_frames=10)
    flags = mace_args(replay, tmp_path, _frames_key)
    from harness.io import read_frames

    pt = read_frames(tmp_path / "pt_train.xyz")
    assert len(pt) == 10 and all(len(a) > 1 for a in pt) and "REF_forces" in pt[0].arrays
    assert "--multiheads_finetuning=True" in flags and "--num_samples_pt=10" in flags
    assert "--pt_train_file=pt_train.xyz" in flags
    stale = replay.model_copy(update={"replay_key": "0" * 16})
    with pytest.raises(InputError, match="changed since planning"):
        mace_args(stale, tmp_path, _frames_key)
    f.write_bytes(b"another model")
    with pytest.raises(InputError, match="foundation model"):
        mace_args(Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-3), tmp_path, _frames_key)
    with pytest.raises(InputError, match="no such file"):
        mace_args(Finetune(foundation=str(tmp_path / "gone.model"), foundation_sha256=sha, strategy="naive", lr=1e-3),
                  tmp_path, _frames_key)


def test_only_mace_fine_tunes(tmp_path):
    from harness.models.train import train_member

    f, sha = _fake_foundation(tmp_path)
    with pytest.raises(InputError, match="MACE, not deepmd"):
        train_member("deepmd", _frames(), [], hyperparameters={}, preset="mini", seed=0, workdir=tmp_path / "w",
                     finetune=Finetune(foundation=str(f), foundation_sha256=sha, strategy="naive", lr=1e-3))


def _spec(tmp_path, finetune: str, name="s.yaml") -> Path:
    text = (ROOT / "protocols" / "sweeps" / "ci-finetune.yaml").read_text()
    head = text.split("finetune:")[0]
    for rel in ("../../datasets/", "../ci-short.yaml"):
        head = head.replace(rel, str((ROOT / "protocols" / "sweeps" / rel).resolve()) + ("/" if rel.endswith("/") else ""))
    p = tmp_path / name
    p.write_text(head + finetune)
    return p


def test_spec_errors(tmp_path):
    from harness.sweep.spec import load_sweep

    ok = f"finetune:\n  foundation: {FOUNDATION}\n  strategies: [{{strategy: naive}}]\n"
    spec, files = load_sweep(_spec(tmp_path, ok))
    assert files.foundation == FOUNDATION and spec.finetune.strategies[0].label == "naive-lr0.0001"
    cases = {
        "strategies: [{strategy: naive}, {strategy: naive}]": "must not repeat",
        "strategies: [{strategy: replay}]": "needs a replay section",
        "strategies: [{strategy: naive, freeze: 2}]": "freeze is for strategy frozen",
        "strategies: [{strategy: sgd}]": "strategy",
        "strategies: []": "strategies",
        "committee: 3\n  strategies: [{strategy: naive}]": "exceeds the sweep's committee",
    }
    for body, msg in cases.items():
        with pytest.raises(ConfigError, match=msg):
            load_sweep(_spec(tmp_path, f"finetune:\n  foundation: {FOUNDATION}\n  {body}\n"))
    with pytest.raises(ConfigError, match="finetune.foundation"):
        load_sweep(_spec(tmp_path, "finetune:\n  foundation: nowhere.model\n  strategies: [{strategy: naive}]\n"))
    with pytest.raises(ConfigError, match="pinned"):
        load_sweep(_spec(tmp_path, ok + f"  sha256: {'a' * 64}\n"))
    with pytest.raises(ConfigError, match="MACE .model"):
        load_sweep(_spec(tmp_path, f"finetune:\n  foundation: {CARBONATES}\n  strategies: [{{strategy: naive}}]\n"))


def test_plan_adds_finetuned_zero_shot_and_forgetting(tmp_path):
    """The section adds committees and tasks; every other task keeps its key (a spec without the section)."""
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    spec, files = load_sweep(ROOT / "protocols" / "sweeps" / "ci-finetune.yaml")
    tasks = plan_sweep(spec, files, tmp_path)
    plain = plan_sweep(spec.model_copy(update={"finetune": None}), files, tmp_path)
    keys = {t.key for t in tasks}
    assert {t.key for t in plain} <= keys
    ft_train = [t for t in tasks if t.kind == "train" and t.params.finetune is not None]
    assert len(ft_train) == 4 * 1 and {t.params.finetune.strategy for t in ft_train} == {"naive", "frozen", "replay"}
    assert {t.params.finetune.lr for t in ft_train if t.params.finetune.strategy == "naive"} == {1e-2, 1e-3}
    assert [t.params.finetune.freeze for t in ft_train if t.params.finetune.strategy == "frozen"] == [4]
    assert {t.params.seed for t in ft_train} == {0}  # finetune.committee 1: the sweep's first seed
    assert sum(t.kind == "forgetting" for t in tasks) == 4
    zero = [t for t in tasks if t.kind == "model"]
    assert len(zero) == 1 and zero[0].params.committee == "model:carbonates-mini"
    scored = {t.params.committee for t in tasks if t.kind == "score"}
    assert {"model:carbonates-mini", "mace/OPLS+VS", "ft:replay-lr0.001/OPLS+VS", "ft:naive-lr0.01/OPLS+VS"} <= scored
    dirs = {t.params.finetune.strategy: t for t in ft_train}
    assert len({t.key for t in ft_train}) == 4 and dirs  # distinct recipes, distinct keys


@pytest.mark.slow
def test_ci_finetune_run(tmp_path):
    """After `make ci-finetune`: every strategy trained from the shipped foundation and did what it says."""
    import torch

    from harness.models.compat import torch_weights_only_workaround
    from harness.report.build import build_report
    from harness.workflow.store import Store

    torch_weights_only_workaround()
    ws = Path(os.environ.get("HARNESS_CI_WORKSPACE", ROOT / "runs" / "ci")).resolve()
    if not (ws / "harness.sqlite").exists():
        pytest.fail(f"{ws}: no ci workspace (run `make ci-finetune` first, or set HARNESS_CI_WORKSPACE)")
    store = Store(ws / "harness.sqlite")
    res = [r["result"] for r in store.tasks(kind="forgetting", status="done")]
    trained = {r["result"]["committee"]: r["result"] for r in store.tasks(kind="train", status="done")
               if r["result"]["committee"].startswith("ft:")}
    store.close()
    by = {}
    for r in res:
        by.setdefault(r["committee"], []).append(r["summary"])
    assert {c.split("/")[0] for c in by} == {"ft:naive-lr0.01", "ft:naive-lr0.001", "ft:frozen-lr0.001",
                                             "ft:replay-lr0.001"}
    for c, rows in by.items():
        for s in rows:  # every strategy moved the model; forgetting (an error increase) is measured on labels
            assert s["prediction_change_forces_meV_A"] > 0 and np.isfinite(s["forgetting_forces_meV_A"]), c
    # a ten times larger learning rate moves the model further from the foundation and raises its held-out error more
    for key in ("prediction_change_forces_meV_A", "forgetting_forces_meV_A"):
        fast = np.mean([s[key] for s in by["ft:naive-lr0.01/OPLS+VS"]])
        slow = np.mean([s[key] for s in by["ft:naive-lr0.001/OPLS+VS"]])
        assert fast > slow, key

    def model(committee):
        m = trained[committee]
        return torch.load(Path(m["workdir"]) / "member.model", map_location="cpu", weights_only=False)

    found = torch.load(FOUNDATION, map_location="cpu", weights_only=False)
    frozen, naive = model("ft:frozen-lr0.001/OPLS+VS"), model("ft:naive-lr0.001/OPLS+VS")

    def same(block, tuned):
        ref = found.get_submodule(block).state_dict()
        return all(torch.equal(v.to(ref[k].dtype), ref[k]) for k, v in tuned.get_submodule(block).state_dict().items())

    first = ("node_embedding", "interactions.0", "products.0", "readouts.0")  # freeze 4: the first four blocks kept
    assert all(same(b, frozen) for b in first)
    assert not same("interactions.1", frozen) and not any(same(b, naive) for b in first)
    import json

    art = json.loads((Path(trained["ft:frozen-lr0.001/OPLS+VS"]["workdir"]) / "artifact.json").read_text())
    assert [b["block"] for b in art["hyperparameters"]["frozen_blocks"]] == list(first)
    assert sorted(model("ft:replay-lr0.001/OPLS+VS").heads) == ["Default", "pt_head"]
    from harness.models.load import ModelSource, load_model

    replay_dir = trained["ft:replay-lr0.001/OPLS+VS"]["workdir"]  # MD and scoring use the fine-tuned head
    assert load_model(ModelSource(kind="member", path=replay_dir)).calculator.head == "Default"
    files = build_report(ws, tmp_path / "report")
    assert files["fig7"].stat().st_size > 0
    table = (tmp_path / "report" / "finetune.csv").read_text()
    for c in ("model:carbonates-mini", "mace/OPLS+VS", *by):
        assert c in table, c


def test_frozen_blocks_order_and_bad_counts(tmp_path):
    """Blocks count in forward order (embedding, then each layer's interaction, product, readout); a count that
    would leave nothing to train is refused, at planning and before a run."""
    from harness.models.mace import untrained_model
    from harness.models.mace_freeze import blocks, frozen_blocks, load_model_file

    model = load_model_file(untrained_model(tmp_path / "u.model", "mini"))
    assert [b for b, _ in blocks(model)] == ["node_embedding", "interactions.0", "products.0", "readouts.0",
                                              "interactions.1", "products.1", "readouts.1"]
    assert [b for b, _ in frozen_blocks(model, 4)] == ["node_embedding", "interactions.0", "products.0", "readouts.0"]
    for n in (0, 7, 9):
        with pytest.raises(ValueError, match="this MACE has 7 blocks"):
            frozen_blocks(model, n)
    from harness.io import sha256_file

    with pytest.raises(InputError, match="freeze 7: this MACE has 7 blocks"):
        mace_args(Finetune(foundation=str(FOUNDATION), foundation_sha256=sha256_file(FOUNDATION), strategy="frozen",
                           lr=1e-3, freeze=7), tmp_path, lambda frames: "")


def test_frozen_param_options_leave_the_optimizer(tmp_path):
    """The hook on mace-torch's own optimizer groups (the installed mace-torch's): the frozen blocks' parameters
    are in no group and need no gradient; every other parameter is in exactly one group."""
    import argparse

    from mace.tools.scripts_utils import get_params_options

    from harness.models.mace import untrained_model
    from harness.models.mace_freeze import freeze_param_options, load_model_file

    model = load_model_file(untrained_model(tmp_path / "u.model", "mini"))
    args = argparse.Namespace(lr_params_factors="{}", freeze=None, lr=1e-3, weight_decay=0.0, amsgrad=True, beta=0.9)
    options = get_params_options(args, model)
    record = freeze_param_options(options, model, 4)
    assert [r["block"] for r in record][-1] == "readouts.0" and all(r["parameters"] > 0 for r in record)
    in_groups = [id(p) for g in options["params"] for p in g["params"]]
    assert len(in_groups) == len(set(in_groups))
    frozen = {id(p) for m in (model.node_embedding, model.interactions[0], model.products[0], model.readouts[0])
              for p in m.parameters()}
    assert not frozen & set(in_groups)
    assert all(not p.requires_grad for m in (model.node_embedding, model.readouts[0]) for p in m.parameters())
    rest = {id(p) for p in model.parameters()} - frozen
    assert rest == set(in_groups) and all(p.requires_grad for p in model.interactions[1].parameters())


def test_frozen_training_keeps_the_first_blocks(tmp_path):
    """Real mace_run_train (EMA and an SWA stage on) from the shipped foundation with freeze 4: the embedding and
    the whole first layer end bit for bit at the foundation's values, the second layer moved; the artifact says
    which blocks were kept."""
    import torch

    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import subset_frames
    from harness.io import sha256_file
    from harness.models.mace import PRESETS
    from harness.models.mace_freeze import load_model_file
    from harness.models.train import train_member

    frames = subset_frames(load_dataset_spec(CARBONATES), "liquids-held-out", 4)
    ft = Finetune(foundation=str(FOUNDATION), foundation_sha256=sha256_file(FOUNDATION), strategy="frozen",
                  lr=1e-2, freeze=4)
    hp = {**PRESETS["mini"], "max_num_epochs": 2, "batch_size": 1, "swa": True, "start_swa": 1, "ema": True, "ema_decay": 0.9,
          "eval_interval": 1}
    art = train_member("mace", frames[:3], frames[3:], hyperparameters=hp, preset="mini", seed=0,
                       workdir=tmp_path / "m", finetune=ft, threads=1)
    assert art.status == "ok", art.error
    assert [b["block"] for b in art.hyperparameters["frozen_blocks"]] == ["node_embedding", "interactions.0",
                                                                          "products.0", "readouts.0"]
    found, tuned = load_model_file(FOUNDATION), load_model_file(art.path("model"))

    def same(a, b):
        sa, sb = a.state_dict(), b.state_dict()
        return all(torch.equal(sa[k].to(sb[k].dtype), sb[k]) for k in sb)

    for name in ("node_embedding", "interactions.0", "products.0", "readouts.0"):
        assert same(found.get_submodule(name), tuned.get_submodule(name)), name
    assert not same(found.get_submodule("interactions.1"), tuned.get_submodule("interactions.1"))
