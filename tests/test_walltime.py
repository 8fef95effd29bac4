"""A walltime for one piece of a long job (harness.deadline): MD checkpoints and stops at it, the executor
starts nothing after it and records the stopped tasks as interrupted (not failed), and the next run resumes
to the result an uninterrupted run gives."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from ase import Atoms

from harness.deadline import ENV
from harness.h5md import read_h5md
from harness.md.runner import RunSettings, run_md


def _lj():
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True)


def test_md_stops_at_the_walltime_and_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    atoms = Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                  cell=[11.4] * 3, pbc=True)
    s = RunSettings("npt", 90.0, length_ps=1.2, timestep_fs=2.0, frame_interval=20, thermo_interval=10,
                    checkpoint_interval=200, pressure_atm=100.0)
    whole = run_md(atoms, _lj(), s, outdir=tmp_path / "whole", seed=5)
    monkeypatch.setenv(ENV, repr(time.time() + 0.4 * whole.wall_s))
    part = run_md(atoms, _lj(), s, outdir=tmp_path / "part", seed=5)
    assert not part.completed and 0 < part.n_steps < s.n_steps
    assert not (tmp_path / "part" / "result.json").exists() and (tmp_path / "part" / "checkpoint.pkl").exists()
    monkeypatch.delenv(ENV)
    resumed = run_md(atoms, _lj(), s, outdir=tmp_path / "part", seed=5)
    assert resumed.completed and resumed.n_frames == whole.n_frames
    a, b = read_h5md(tmp_path / "whole" / "trajectory.h5md"), read_h5md(tmp_path / "part" / "trajectory.h5md")
    assert np.array_equal(a["positions"], b["positions"]) and np.array_equal(a["cells"], b["cells"])
    ta, tb = pd.read_parquet(tmp_path / "whole" / "thermo.parquet"), pd.read_parquet(tmp_path / "part" / "thermo.parquet")
    assert list(ta["step"]) == list(tb["step"]) and np.array_equal(ta["kinetic_eV"], tb["kinetic_eV"])


def test_the_executor_stops_at_the_walltime_and_the_next_run_finishes(tmp_path):
    """a (0.1 s) -> b (3 s) -> c; d (0.1 s): with a 1.5 s walltime a and d finish, b is interrupted, c waits; no
    failure. The next run (no walltime) reruns b, then c, and skips a and d."""
    from harness.workflow.execute import Task, execute
    from harness.workflow.store import Store

    fn = "tests.sweep_helpers:until_deadline"
    a = Task("work", fn, {"seconds": 0.1, "n": "a"})
    b = Task("work", fn, {"seconds": 3.0, "n": "b"}, (a.key,))
    c = Task("work", fn, {"seconds": 0.1, "n": "c"}, (b.key,))
    d = Task("work", fn, {"seconds": 0.1, "n": "d"})
    store = Store(tmp_path / "harness.sqlite")
    counts = execute([a, b, c, d], store, deadline=time.time() + 1.5)
    assert counts == {"cached": 0, "done": 2, "failed": 0, "skipped": 0, "interrupted": 1, "waiting": 1}
    assert store.get(b.key)["status"] == "interrupted" and "stopped after" in store.get(b.key)["error"]
    assert ENV not in __import__("os").environ  # the in-process run left no deadline behind
    assert execute([a, b, c, d], store) == {"cached": 2, "done": 2, "failed": 0, "skipped": 0}


def test_a_task_that_never_stops_does_not_keep_the_run_past_the_walltime(tmp_path, monkeypatch):
    """A task on a Dask worker ignores the walltime (as a worker lost while the machine was suspended does): once
    the walltime and the grace have passed, the run ends with it interrupted (resumed by the next run) instead of
    waiting for it; the task that finished before stays done."""
    from distributed import Client

    from harness.workflow import execute as ex
    from harness.workflow.execute import Task, execute
    from harness.workflow.store import Store

    monkeypatch.setattr(ex, "STOP_GRACE_S", 1.0)
    release = tmp_path / "release"
    a = Task("work", "tests.sweep_helpers:until_deadline", {"seconds": 0.1, "n": "a"})
    hung = Task("work", "tests.sweep_helpers:ignore_deadline", {"release": str(release)})
    store = Store(tmp_path / "harness.sqlite")
    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    try:
        t0 = time.time()
        counts = execute([a, hung], store, client=client, deadline=time.time() + 1.0)
        assert time.time() - t0 < 30
        assert counts["done"] == 1 and counts["interrupted"] == 1 and counts["failed"] == 0
        assert store.get(hung.key)["status"] == "running"  # the next run resumes it
    finally:
        release.touch()
        client.close()
    # the hung task's thread ends after the run: it must not leave its deadline in this process's environment
    # (it did: each task restored the value it found, the deadline the other task had set)
    t1 = time.time()
    while __import__("os").environ.get(ENV) and time.time() - t1 < 5:
        time.sleep(0.05)
    assert ENV not in __import__("os").environ


def test_nothing_starts_after_the_walltime(tmp_path):
    from harness.workflow.execute import Task, execute
    from harness.workflow.store import Store

    t = Task("work", "tests.sweep_helpers:until_deadline", {"seconds": 0.1})
    counts = execute([t], Store(tmp_path / "harness.sqlite"), deadline=time.time() - 1)
    assert counts["waiting"] == 1 and counts["done"] == 0


def test_walltime_deadline_leaves_the_driver_a_margin():
    from harness.workflow.run import walltime_deadline

    assert walltime_deadline(None, 100.0) is None
    assert walltime_deadline(10, 0.0) == pytest.approx(540.0)  # 10 min: a minute's margin
    assert walltime_deadline(1, 0.0) == pytest.approx(54.0)  # 10 % of a short one


@pytest.mark.slow
@pytest.mark.deepmd
def test_deepmd_training_stopped_at_the_walltime_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """dp train stopped by the walltime after its first checkpoints; the next call continues from the last
    checkpoint (``--restart``) to the full step count: the artifact records one resume."""
    from harness.deadline import Interrupted
    from harness.io import read_frames
    from harness.models.train import INTERRUPTED, resolve_hyperparameters, train_member
    from tests.test_curves import ROOT

    frames = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "sm.extxyz.gz")[::37][:8]
    # dp starts in 11-15 s, then 5 (a busy core) to 30 (an idle one, 2026-12-02) steps/s: 1500 steps cannot end
    # within the 40 s walltime, and even at 5 steps/s it has checkpointed (every 20 steps) by then
    hp = resolve_hyperparameters("deepmd", "mini", {"training": {"numb_steps": 1500, "disp_freq": 20,
                                                                 "save_freq": 20}})
    work = tmp_path / "m"
    monkeypatch.setenv(ENV, repr(time.time() + 40))
    with pytest.raises(Interrupted):
        train_member("deepmd", frames[:6], frames[6:], hyperparameters=hp, preset="mini", seed=0, workdir=work,
                     threads=1)
    assert (work / INTERRUPTED).exists() and list(work.glob("model.ckpt-*.pt"))
    monkeypatch.delenv(ENV)
    art = train_member("deepmd", frames[:6], frames[6:], hyperparameters=hp, preset="mini", seed=0, workdir=work,
                       threads=1)
    assert art.status == "ok", art.error
    assert art.dataset["walltime_resumes"] == 1 and not (work / INTERRUPTED).exists()
    log = (work / "train.log").read_text()
    assert "--restart model.ckpt-" in log
    assert max(int(p.stem.split("-")[-1]) for p in work.glob("model.ckpt-*.pt")) == 1500


def test_the_study_loop_runs_pieces_then_the_whole_sweep_and_stops_before_the_end(tmp_path):
    """protocols/sweeps/study-cpu.loop.sh with a stand-in harness (records its arguments, answers 3 = walltime left
    work, then 0 = done): pieces of the ONLY kinds until they are done, then the whole sweep (no --only) until it is
    done; each piece's walltime is the time left less 8 minutes, at most 180; nothing starts within 13 minutes of
    END_UNIX."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "protocols" / "sweeps" / "study-cpu.loop.sh"
    calls, answers = tmp_path / "calls", tmp_path / "answers"
    answers.write_text("3\n0\n3\n0\n")
    fake = tmp_path / "harness"
    fake.write_text(f'#!/bin/bash\necho "$*" >> {calls}\nrc=$(head -1 {answers}); sed -i 1d {answers}; exit $rc\n')
    fake.chmod(0o755)
    env = {**os.environ, "HARNESS": str(fake), "WORKSPACE": str(tmp_path / "ws"), "ONLY": "train",
           "END_UNIX": str(int(time.time()) + 60 * 60)}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 4 and all(" --workers 2 " in f" {c} " for c in lines)
    assert [("--only train" in c) for c in lines] == [True, True, False, False]
    assert all(int(c.split("--walltime-min ")[1].split()[0]) in (51, 52) for c in lines)
    assert "on with the whole sweep" in out.stdout and out.stdout.rstrip().endswith("the sweep is done")
    calls.unlink()
    env["END_UNIX"] = str(int(time.time()) + 12 * 60)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not calls.exists() and "the end is near" in out.stdout
