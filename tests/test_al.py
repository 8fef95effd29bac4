"""Active learning: spec validation, the planned graph, the committee check, selection from a run,
one tiny campaign end to end with a counting stand-in oracle (resume after SIGKILL), transfer ΔQ."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ase.build import molecule
from ase.calculators.lj import LennardJones

from harness.al.plan import plan_al
from harness.al.spec import load_al
from harness.al.tasks import selected_frame
from harness.errors import ConfigError
from harness.md.detectors import CommitteeVariance
from harness.models.committee import force_deviation
from tests.al_helpers import ROOT, al_spec

CI_SPEC = ROOT / "protocols" / "al" / "ci.yaml"


@pytest.mark.parametrize("change, message", [
    ({"architecture": "schnet"}, "unknown architecture"),
    ({"warm_start": True, "architecture": "gap"}, "warm_start is supported for deepmd"),
    ({"committee": 1}, "committee"),
    ({"generations": 0}, "generations"),
    ({"exploration": {"compositions": ["EC=2,EMC=10", "EMC=10,EC=2"]}}, "compositions must not repeat"),
    ({"exploration": {"density_window_g_cm3": [1.2, 0.2]}}, "density_window_g_cm3"),
    ({"exploration": {"check_interval": 0}}, "check_interval"),
])
def test_bad_spec_names_file_and_key(tmp_path, change, message):
    spec = yaml.safe_load(CI_SPEC.read_text())
    for k, v in change.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) else v
    spec["dataset"] = str(ROOT / "datasets" / "ec-emc-xtb.yaml")
    spec["validation"]["protocol"] = str(ROOT / "protocols" / "ci.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as exc:
        load_al(path)
    assert "bad.yaml" in str(exc.value) and message in str(exc.value)


def test_ci_plan_structure_and_stable_keys(tmp_path):
    spec, files = load_al(CI_SPEC)
    tasks = plan_al(spec, files, tmp_path)
    again = plan_al(spec, files, tmp_path)
    assert [t.key for t in tasks] == [t.key for t in again]
    assert len({t.key for t in tasks}) == len(tasks)
    by = {}
    for t in tasks:
        by.setdefault(t.kind, []).append(t)
    # 2 generations x 2 members + 2 reference members; exploration and labelling only in generation 0
    assert {k: len(v) for k, v in by.items()} == {"al_start": 2, "train": 6, "explore": 2, "label": 2, "al_set": 1,
                                                 "md": 12, "observe": 12, "score": 3}
    g0 = [t for t in by["train"] if t.params.tags.get("generation") == 0]
    g1 = [t for t in by["train"] if t.params.tags.get("generation") == 1]
    label = by["al_set"][0]
    for e in by["explore"]:  # every explore run sees the whole generation-0 committee and its start frames
        assert {t.key for t in g0} <= set(e.dep_keys)
        assert any(d in e.dep_keys for d in (s.key for s in by["al_start"]))
        assert set(e.deps["members"]) == {t.key for t in g0}  # named roles, not probed keys
    assert set(label.dep_keys) == {t.key for t in by["label"]}
    assert sorted(t.dep_keys for t in by["label"]) == sorted((e.key,) for e in by["explore"])
    assert all(t.dep_keys == (label.key,) for t in g1) and all(t.dep_keys == () for t in g0)
    assert all(t.params.committee_key for t in g0) and not any(t.params.committee_key for t in g1)
    scores = {t.params.committee for t in by["score"]}
    assert scores == {"deepmd/OPLS@g0", "deepmd/OPLS@g1", "ref:gap/OPLS+VS"}


def test_reference_tasks_shared_with_the_ci_sweep(tmp_path):
    """The campaign's reference committee is the ci sweep's: same keys, so one workspace reuses it."""
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    spec, files = load_al(CI_SPEC)
    al = {t.key for t in plan_al(spec, files, tmp_path) if "ref:" in t.label}
    sw_spec, sw_files = load_sweep(ROOT / "protocols" / "sweeps" / "ci.yaml")
    sweep = {t.key for t in plan_sweep(sw_spec, sw_files, tmp_path) if "ref:" in t.label}
    assert al and al - {k for k in al if k.startswith("score")} <= sweep


def test_the_reference_committee_size_is_honoured_as_in_a_sweep(tmp_path):
    """`validation.reference.committee` sets the reference's member count in a campaign as in a sweep (one builder,
    harness.validation.committee.reference_committee): 3 reference members for a committee of 2, the first 2
    seeds' training tasks identical to the default's; a reference of the campaign's size is unchanged."""
    spec, files = load_al(CI_SPEC)
    default = [t for t in plan_al(spec, files, tmp_path) if t.kind == "train" and t.label.startswith("train ref:")]
    assert len(default) == spec.committee == 2
    v = spec.validation.model_copy(update={"reference": spec.validation.reference.model_copy(update={"committee": 3})})
    bigger = [t for t in plan_al(spec.model_copy(update={"validation": v}), files, tmp_path)
              if t.kind == "train" and t.label.startswith("train ref:")]
    assert [t.params.seed for t in bigger] == [0, 1, 2]
    v2 = spec.validation.model_copy(update={"reference": spec.validation.reference.model_copy(update={"committee": 2})})
    same = [t for t in plan_al(spec.model_copy(update={"validation": v2}), files, tmp_path)
            if t.kind == "train" and t.label.startswith("train ref:")]
    assert [t.key for t in same] == [t.key for t in default]
    scores = [t for t in plan_al(spec.model_copy(update={"validation": v}), files, tmp_path) if t.kind == "score"]
    ref_runs = {k for t in scores for k in t.deps["observed"]}
    assert scores and all(len(t.deps["observed"]) >= 2 * 3 for t in scores)  # 3 members' NPT + NVT observables
    assert ref_runs


def _water_box():
    a = molecule("H2O")
    a.center(vacuum=3.0)
    a.pbc = True
    return a


def test_committee_variance_from_other_members_matches_force_deviation():
    from harness.models.committee import CommitteeCalculator

    atoms = _water_box()
    atoms.calc = LennardJones(sigma=1.0, epsilon=0.05, rc=4.0)
    others = [LennardJones(sigma=1.1, epsilon=0.05, rc=4.0), LennardJones(sigma=0.9, epsilon=0.07, rc=4.0)]
    forces = [atoms.get_forces()]
    for c in others:
        b = atoms.copy()
        b.calc = c
        forces.append(b.get_forces())
    expected, _ = force_deviation(np.array(forces))
    # the exploration's committee: every member, the driving one first (its forces come from its cache)
    committee = CommitteeCalculator([atoms.calc, *others])
    det = CommitteeVariance(interval=1, max_sigma2_F_eV2_A2=expected * 2, committee=committee)
    det.reset(atoms)
    assert det.check(atoms, 1, 0.0005) is None
    assert det.observed()["sigma2_F"] == pytest.approx(expected, rel=1e-12)
    assert "sigma2_F" not in atoms.calc.results  # the driver's results are its own
    det.max_sigma2_F_eV2_A2 = expected / 2
    ev = det.check(atoms, 2, 0.001)
    assert ev is not None and ev.value == pytest.approx(expected) and ev.detector == "committee_variance"


def _fake_run(tmp_path: Path, sigma2: list[float], steps: list[int]) -> Path:
    from harness.h5md import H5MDWriter

    run = tmp_path / "run"
    run.mkdir()
    atoms = _water_box()
    atoms.arrays["mol_id"] = np.zeros(len(atoms), dtype=int)
    h5 = H5MDWriter(run / "trajectory.h5md", atoms, observables=("sigma2_F",))
    rows = []
    for k, (s, step) in enumerate(zip(sigma2, steps)):
        a = atoms.copy()
        a.positions += 0.01 * k
        h5.write(a, step, step * 0.0005, {"sigma2_F": s})
        rows.append({"step": step, "time_ps": step * 0.0005, "sigma2_F": s})
    h5.close()
    rows.insert(0, {"step": 0, "time_ps": 0.0, "sigma2_F": np.nan})
    pd.DataFrame(rows).to_parquet(run / "thermo.parquet")
    return run


def test_selection_from_a_run_takes_the_stored_frame(tmp_path):
    run = _fake_run(tmp_path, [0.1, np.nan, 0.7, 0.9], [5, 10, 15, 20])
    atoms, info = selected_frame(run, 0.5)
    assert info["reason"] == "threshold" and info["step"] == 15 and info["sigma2_F"] == pytest.approx(0.7)
    assert np.allclose(atoms.positions, _water_box().positions + 0.02)  # the frame of step 15 (third written)
    assert "mol_id" in atoms.arrays and atoms.pbc.all()
    atoms, info = selected_frame(run, 5.0)
    assert info["reason"] == "max" and info["step"] == 20


def test_selection_without_committee_checks_says_why(tmp_path):
    run = _fake_run(tmp_path, [np.nan], [5])
    atoms, info = selected_frame(run, 0.5)
    assert atoms is None and "finite" in info["reason"]


def test_transfer_matrix_from_scores():
    from harness.transfer import transfer_matrix
    from tests.helpers import score_result

    def sc(cid, arch, q, sem, tags=None):
        return score_result(cid, arch, q=(q, sem), tags=tags)

    scores = [sc("mace/OPLS", "mace", 1.0, 0.3), sc("mace/OPLS+AL[gap]", "mace", 2.5, 0.4,
                                                    {"transfer_source": "gap", "base": "OPLS"}),
              sc("ref:gap/OPLS+VS", "gap", 2.9, 0.0)]
    m = transfer_matrix(scores)
    assert len(m) == 1
    row = m.iloc[0]
    assert (row.target, row.base, row.source) == ("mace", "OPLS", "gap")
    assert row.dQ == pytest.approx(1.5) and row.dQ_se == pytest.approx(0.5)
    assert np.isnan(row.dQ_low)  # no members: no interval
    # with members: ΔQ's 95 % Welch interval over them (members 1.0, 1.2, 1.4 against 2.4, 2.5, 2.6: difference 1.3,
    # between-member variances 0.04/3 and 0.01/3, each member's own interval ±0.0392 below them)
    mem = lambda qs: [{"name": f"member-{k}", "Q": q, "Q_low": q - 0.0392, "Q_high": q + 0.0392}  # noqa: E731
                      for k, q in enumerate(qs)]
    scores = [score_result("mace/OPLS", "mace", mem([1.0, 1.2, 1.4])),
              score_result("mace/OPLS+AL[gap]", "mace", mem([2.4, 2.5, 2.6]),
                           tags={"transfer_source": "gap", "base": "OPLS"})]
    row = transfer_matrix(scores).iloc[0]
    from scipy import stats

    se = np.sqrt(0.04 / 3 + 0.01 / 3)
    dof = (0.05 / 3) ** 2 / ((0.04 / 3) ** 2 / 2 + (0.01 / 3) ** 2 / 2)
    assert row.dQ_low == pytest.approx(1.3 - stats.t.ppf(0.975, dof) * se)
    assert row.dQ_high == pytest.approx(1.3 + stats.t.ppf(0.975, dof) * se)


def test_al_figure_from_member_table(tmp_path):
    from harness.report.figures import fig_al_generations

    rows = []
    for g in range(3):
        for m in range(3):
            rows.append({"committee": f"deepmd/OPLS@g{g}", "campaign": "c", "chain": "OPLS", "generation": g,
                         "Q": 1 + g * 0.5 + 0.1 * m, "t_stab_npt_ps": 0.1 * (g + 1), "density_g_cm3": 1.1,
                         "D_w": 40.0 + m})
    ref = pd.DataFrame([{"committee": "ref:gap/OPLS+VS", "density_g_cm3": 1.15, "D_w": 45.0, "Q": 3.0}])
    path = fig_al_generations(pd.DataFrame(rows), ref, 1.0, tmp_path / "fig2.png")
    assert path.stat().st_size > 10_000


def _store_rows(ws: Path) -> list[dict]:
    db = sqlite3.connect(ws / "harness.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT key, kind, status, attempts, label, params, result FROM tasks")]
    db.close()
    return rows


@pytest.mark.slow
def test_tiny_campaign_end_to_end_with_sigkill_resume(tmp_path):
    """Generation 0 (2 tiny DeePMD members) explores 4 runs, the counting oracle labels the selected frames,
    generation 1 trains on them. The driver and its workers are SIGKILLed once generation 1 is training;
    the rerun finishes without executing or labelling anything twice."""
    spec = al_spec(tmp_path)
    ws = tmp_path / "ws"
    cmd = [str(Path(sys.executable).parent / "harness"), "al", "run", str(spec), "-w", str(ws), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    killed = False
    while proc.poll() is None and time.time() - t0 < 900:
        time.sleep(1)
        if not (ws / "harness.sqlite").exists():
            continue
        try:
            rows = _store_rows(ws)
        except sqlite3.OperationalError:
            continue
        g1 = [r for r in rows if r["kind"] == "train" and '"generation": 1' in r["params"]]
        if any(r["status"] == "running" for r in g1):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait()
    assert killed, f"the campaign ended before generation 1 started training: {proc.stderr.read().decode()[-2000:]}"
    before = {r["key"]: r for r in _store_rows(ws) if r["status"] == "done"}
    assert {r["kind"] for r in before.values()} >= {"al_start", "explore", "label", "al_set"}
    calls_before = len((tmp_path / "oracle.log").read_text().split())

    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    after = {r["key"]: r for r in _store_rows(ws)}
    assert all(r["status"] == "done" for r in after.values())
    for key, r in before.items():  # nothing finished before the kill ran again
        assert after[key]["attempts"] == r["attempts"] == 1, r["label"]

    label = json.loads(next(r for r in after.values() if r["kind"] == "al_set")["result"])
    explores = [json.loads(r["result"]) for r in after.values() if r["kind"] == "explore"]
    assert len(explores) == 4
    # one new frame per exploration run, or a recorded reason for each one missing
    assert label["n_new"] + len(label["failed"]) + len(label["skipped"]) == 4
    assert label["n_new"] >= 1 and label["n_selected"] == label["n_new"] + len(label["failed"])
    # the oracle ran exactly once per new frame, across the kill
    calls = len((tmp_path / "oracle.log").read_text().split())
    assert calls == calls_before == label["oracle_calls"] == label["n_new"]

    from harness.io import read_frames

    frames = read_frames(label["al_frames"])
    assert len(frames) == label["n_new"]
    for f in frames:
        assert f.info["config_type"] == "AL" and f.info["architecture"] == "deepmd" and f.info["generation"] == 0
        assert f.info["composition"] in ("EC=2,EMC=10", "EC=10,EMC=2")
        assert f.info["al_run"].startswith("al-test/OPLS/g0/") and Path(f.info["source_trajectory"]).is_dir()
        assert np.isfinite(f.info["REF_energy"]) and f.info["al_reason"] in ("threshold", "max")
    trains = [json.loads(r["result"]) for r in after.values() if r["kind"] == "train"]
    n0 = {t["n_train"] for t in trains if t["tags"]["generation"] == 0}
    n1 = {t["n_train"] for t in trains if t["tags"]["generation"] == 1}
    assert n0 == {6} and n1 == {6 + label["n_new"]}

    from harness.al.run import al_tables

    tables = al_tables(ws)
    gen = tables["generations"]
    assert list(gen.generation) == [0, 1] and gen.explore_done.tolist() == [4, 0]
    assert len(tables["selected"]) == label["n_new"] and set(tables["hits"].composition) == {"EC=2,EMC=10", "EC=10,EMC=2"}

    harness = cmd[0]
    st = subprocess.run([harness, "al", "status", "-w", str(ws)], capture_output=True, text=True)
    assert st.returncode == 0 and "AL generations" in st.stdout and f"{label['n_total']} AL frames" in st.stdout
    out = tmp_path / "exported.extxyz"
    ex = subprocess.run([harness, "al", "export", "-w", str(ws), "-o", str(out)], capture_output=True, text=True)
    assert ex.returncode == 0, ex.stderr
    assert len(read_frames(out)) == label["n_new"]
    prov = json.loads(Path(str(out) + ".provenance.json").read_text())
    assert prov["campaign"] == "al-test" and prov["oracle"]["name"] == "ase:tests.al_helpers.CountingLJ"
    rep = subprocess.run([harness, "report", "-w", str(ws), "-o", str(ws / "report")], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    page = (ws / "report" / "report.html").read_text()
    assert "Active-learning campaign" in page and "Selected frames" in page and "crossed the threshold" in page
    assert len(pd.read_csv(ws / "report" / "al_selected.csv")) == label["n_new"]


def _labelled_file(tmp_path: Path, n: int = 3) -> Path:
    from harness.datasets.build import source_file
    from harness.datasets.spec import load_dataset_spec
    from harness.io import read_frames, write_frames

    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    frames = read_frames(source_file(spec, "val_liquid"))[:n]  # labelled frames of another composition
    for f in frames:
        f.info["config_type"] = "AL"
    path = tmp_path / "al.extxyz"
    write_frames(path, frames)
    return path


def test_extra_frames_join_the_training_split(tmp_path):
    from harness.models.train import plan_committee

    ds = ROOT / "datasets" / "ec-emc-xtb.yaml"
    base = plan_committee(ds, "OPLS", "deepmd", workspace=tmp_path, max_train_frames=8)
    extra = plan_committee(ds, "OPLS", "deepmd", workspace=tmp_path, max_train_frames=8,
                           extra_frames=_labelled_file(tmp_path), name="OPLS+AL-test")
    assert len(extra.train) == len(base.train) + 3 and len(extra.valid) == len(base.valid)
    assert all(a.info["split"] == "train" for a in extra.train[-3:])
    assert extra.key != base.key and extra.directory.parent.name == "OPLS+AL-test"
    with pytest.raises(Exception) as exc:
        plan_committee(ds, "OPLS", "deepmd", workspace=tmp_path, extra_frames=tmp_path / "missing.extxyz")
    assert "missing.extxyz" in str(exc.value)


def test_transfer_plan_reuses_the_sweep_committees(tmp_path):
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep
    from harness.transfer import load_transfer

    spec = yaml.safe_load((ROOT / "protocols" / "transfer" / "ci.yaml").read_text())
    spec.update(dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"), protocol=str(ROOT / "protocols" / "ci.yaml"),
                al_frames={"gap": str(_labelled_file(tmp_path))})
    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(spec))
    tspec, files = load_transfer(path)
    ids = [c.id for c in tspec.committees()]
    assert ids == ["deepmd/OPLS", "ref:gap/OPLS+VS", "deepmd/OPLS+AL[gap]"]
    tasks = plan_sweep(tspec, files, tmp_path)
    sw_spec, sw_files = load_sweep(ROOT / "protocols" / "sweeps" / "ci.yaml")
    sweep_keys = {t.key for t in plan_sweep(sw_spec, sw_files, tmp_path)}
    new = [t for t in tasks if t.key not in sweep_keys]
    # only the AL-augmented committee (2 members, 2 runs each, observables) and the scores are new
    assert {t.kind for t in new} == {"train", "md", "observe", "score"}
    assert all("+AL[gap]" in t.label or t.kind == "score" for t in new)
    assert sum(t.kind == "train" for t in new) == 2


def test_al_run_bad_subset_is_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from harness.cli.main import app

    spec = yaml.safe_load(CI_SPEC.read_text())
    spec.update(dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"), initial_subsets=["NOPE"])
    spec["validation"]["protocol"] = str(ROOT / "protocols" / "ci.yaml")
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["al", "run", str(path), "-w", str(tmp_path / "ws"), "--plan"])
    assert r.exit_code == 2 and "al.yaml:" in r.output and "unknown subset(s) 'NOPE'" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["al", "status", "-w", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no harness.sqlite" in r.output


@pytest.mark.slow
def test_deepmd_warm_start_from_previous_member(tmp_path):
    """Warm start (AL generations, deepmd): `dp --init-model` from the previous member's checkpoint."""
    from harness.models.train import plan_committee, train_member

    ds = ROOT / "datasets" / "ec-emc-xtb.yaml"
    hp = {"training": {"numb_steps": 20, "disp_freq": 10, "save_freq": 20}}
    plan = plan_committee(ds, "OPLS", "deepmd", workspace=tmp_path, max_train_frames=4, overrides=hp)
    first = train_member("deepmd", plan.train, plan.valid, hyperparameters=plan.hyperparameters, preset="mini", seed=0,
                         workdir=tmp_path / "g0", dataset=plan.dataset, threads=1)
    assert first.status == "ok", first.error
    ckpt = tmp_path / "g0" / "model.ckpt.pt"
    warm = train_member("deepmd", plan.train, plan.valid, hyperparameters=plan.hyperparameters, preset="mini", seed=0,
                        workdir=tmp_path / "g1", dataset=plan.dataset, threads=1, init_model=ckpt)
    assert warm.status == "ok", warm.error
    assert warm.dataset["init_model"] == str(ckpt)
    log = (tmp_path / "g1" / "train.log").read_text()
    assert "--init-model" in log or "Resuming from" in log
    # the warm-started model starts from the trained weights: its first training loss is below the fresh one's
    def first_loss(d):
        rows = [line.split() for line in (d / "lcurve.out").read_text().splitlines() if not line.startswith("#")]
        return float(rows[0][1])
    assert first_loss(tmp_path / "g1") < first_loss(tmp_path / "g0")
