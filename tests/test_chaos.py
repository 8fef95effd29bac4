"""Kills in a real sweep (issue #18 item 2): the ci-chaos sweep (real gap_fit, dp and mace_run_train training, MD,
observables, Q; ``protocols/sweeps/ci-chaos.yaml``) is killed with SIGKILL at 20 moments — the driver alone, one
worker process, or the whole process group — and rerun after each kill of the driver. Then:

- the final run finishes with every task done, and its Q table (every member's t_stab, density, D, KL, S, R, V,
  Q) is identical to an uninterrupted run's;
- no task that had finished before a kill ran again (the store's execution counts);
- nothing in the store points at a missing or changed file, and no partial file is left (``*.tmp``, a
  checkpoint beside a finished trajectory, thermo parts);
- a trajectory killed mid-run resumed from its checkpoint (``result.json``: ``meta.resumed_at_steps``).

Slow (two sweeps and twenty restarts, ~10 min on 2 cores); ``make ci-chaos`` runs it in CI. The kill moments are
drawn from ``HARNESS_CHAOS_SEED`` (default 18); ``HARNESS_CHAOS_KILLS`` sets their number;
``HARNESS_CHAOS_REFERENCE`` names the workspace of the uninterrupted run (made there if missing, reused if not).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "protocols" / "sweeps" / "ci-chaos.yaml"
KILLS = int(os.environ.get("HARNESS_CHAOS_KILLS", "20"))
SEED = int(os.environ.get("HARNESS_CHAOS_SEED", "18"))

pytestmark = pytest.mark.slow


def _start(ws: Path, log: Path) -> subprocess.Popen:
    fh = open(log, "a")
    fh.write(f"\n=== sweep run at {time.strftime('%H:%M:%S')}\n")
    fh.flush()
    return subprocess.Popen([sys.executable, "-m", "harness.cli.main", "sweep", "run", str(SPEC), "--workspace",
                             str(ws)], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _attempts(ws: Path) -> dict[str, tuple[str, int]]:
    """key -> (status, attempts) of every task, read while the driver writes (WAL: readers do not block it)."""
    path = ws / "harness.sqlite"
    if not path.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return {k: (s, a) for k, s, a in con.execute("SELECT key, status, attempts FROM tasks")}
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is being created
        return {}


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _workers(driver: int) -> list[int]:
    """The driver's Dask worker processes (spawned Python processes; not multiprocessing's resource tracker)."""
    found = []
    for pid in _children(driver):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(pid)
    return found


def _md_mid_run(ws: Path) -> Path | None:
    """An MD run folder with a checkpoint past step 0 and no result yet (a trajectory under way)."""
    for ck in (ws / "md").rglob("checkpoint.pkl") if (ws / "md").is_dir() else []:
        if (ck.parent / "result.json").exists():
            continue
        try:
            with open(ck, "rb") as fh:
                if pickle.load(fh)["step"] > 0:
                    return ck.parent
        except Exception:  # replaced while read
            continue
    return None


def _wait(cond, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _q_table(ws: Path) -> pd.DataFrame:
    from harness.report.data import load_scores, member_table

    return member_table(load_scores(ws, "ci-chaos")).sort_values(["committee", "member"]).reset_index(drop=True)


def _uninterrupted(tmp_path: Path) -> Path:
    ws = Path(os.environ.get("HARNESS_CHAOS_REFERENCE") or tmp_path / "whole").resolve()
    proc = _start(ws, tmp_path / "whole.log")
    assert proc.wait(timeout=1800) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    return ws


def test_sigkill_at_twenty_moments_of_a_real_sweep(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc for the worker processes")
    whole = _uninterrupted(tmp_path)
    expected = _q_table(whole)
    n_tasks = len(_attempts(whole))
    ws, log = tmp_path / "killed", tmp_path / "killed.log"
    rng = random.Random(SEED)
    # the kill moments: once a random number of tasks have finished (spread over the sweep, the last few left
    # for the end), a random 0-8 s after the run's workers are up (one kill in five: 0-2 s into the run, while it
    # plans and starts its cluster); the mode is random too. The first trajectory seen under way (checkpointed
    # past step 0) is killed there.
    plan = sorted(rng.randrange(0, n_tasks - 8) for _ in range(KILLS))
    modes = [rng.choice(["driver", "worker", "group"]) for _ in range(KILLS)]
    finished: dict[str, int] = {}  # task key -> its attempts when first seen done after a kill
    kills: list[dict] = []
    proc: subprocess.Popen | None = None
    resumed_run: Path | None = None  # the trajectory killed under way (the first one seen)
    for i, (after, mode) in enumerate(zip(plan, modes)):
        if proc is None or proc.poll() is not None:
            proc = _start(ws, log)
        done = lambda: sum(s == "done" for s, _ in _attempts(ws).values()) >= after  # noqa: E731
        in_md = lambda: resumed_run is None and _md_mid_run(ws) is not None  # noqa: E731
        landed = _wait(lambda: done() or in_md(), proc, 900)
        md = None if resumed_run is not None else _md_mid_run(ws)
        if md is not None:  # a trajectory under way, checkpointed past step 0: kill the run there (once)
            resumed_run, mode = md, "driver"
        elif rng.random() < 0.8:  # most kills while tasks run; the others in the run's start (plan, cluster)
            _wait(lambda: bool(_workers(proc.pid)), proc, 120)
            time.sleep(rng.uniform(0.0, 8.0))
        else:
            time.sleep(rng.uniform(0.0, 2.0))
        assert proc.poll() is None, f"kill {i + 1}: the sweep ended before it (landed: {landed}); see {log}"
        state = _attempts(ws)
        for key, (status, attempts) in state.items():
            if status == "done":
                finished.setdefault(key, attempts)
        if mode == "worker":
            workers = _workers(proc.pid)
            if not workers:  # between workers (startup): the driver instead
                mode = "driver"
            else:
                os.kill(rng.choice(workers), signal.SIGKILL)
        if mode == "driver":
            os.kill(proc.pid, signal.SIGKILL)
        elif mode == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        if mode != "worker":
            proc.wait()
            proc = None
        kills.append({"kill": i + 1, "mode": mode, "done": sum(s == "done" for s, _ in state.values())})
    assert len(kills) == KILLS
    if proc is not None:  # a run that only lost a worker goes on (or stops, with a worker lost at its start)
        proc.wait(timeout=1800)
    final = _start(ws, log)  # and the rerun after the last kill (or a no-op over a finished sweep)
    assert final.wait(timeout=1800) == 0, log.read_text()[-3000:]
    tail = log.read_text().strip().splitlines()[-1]
    assert "0 failed" in tail, tail
    (tmp_path / "kills.json").write_text(json.dumps(kills, indent=1))
    print("kills (mode, tasks done):", [(k["mode"], k["done"]) for k in kills])

    # every task done; those finished before some kill were never executed again
    state = _attempts(ws)
    assert len(state) == n_tasks and {s for s, _ in state.values()} == {"done"}, state
    assert finished and len(finished) < n_tasks, "the kills did not land mid-sweep"
    rerun = {k: (a, state[k][1]) for k, a in finished.items() if state[k][1] != a}
    assert not rerun, f"finished tasks executed again (attempts before, after): {rerun}"

    # the store points at intact files only, and nothing partial is left
    from harness.h5md import read_h5md
    from harness.workflow.store import Store

    store = Store(ws / "harness.sqlite")
    try:
        unverified = [r["label"] for r in store.tasks(status="done") if store.verified(r["key"]) is None]
        runs = [Path(r["result"]["run_dir"]) for r in store.tasks(kind="md", status="done")]
    finally:
        store.close()
    assert not unverified, f"outputs missing or changed: {unverified}"
    assert not list(ws.rglob("*.tmp")) and not list(ws.rglob("thermo.parts")), "partial files left"
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        assert not (run / "checkpoint.pkl").exists(), run
        assert len(read_h5md(run / "trajectory.h5md")["time_ps"]) == result["n_frames"], run

    # the trajectory killed under way resumed from its checkpoint
    assert resumed_run is not None, "no kill landed in a trajectory"
    meta = json.loads((resumed_run / "result.json").read_text())["meta"]
    assert meta.get("resumed_at_steps"), f"{resumed_run} did not resume from its checkpoint"

    # and the Q table is the uninterrupted run's
    pd.testing.assert_frame_equal(_q_table(ws), expected, check_exact=True)
