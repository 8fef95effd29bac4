"""The sweep executor: resume after SIGKILL, failures recorded without stopping others, corrupted artifacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


from harness.workflow.execute import execute
from harness.workflow.store import Store
from tests.sweep_helpers import graph

ROOT = Path(__file__).resolve().parents[1]


def executions(workdir: Path) -> Counter:
    log = workdir / "executions.log"
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_rerun_skips_finished_tasks(tmp_path):
    store = Store(tmp_path / "harness.sqlite")
    counts = execute(graph(str(tmp_path)), store)
    assert counts == {"cached": 0, "done": 16, "failed": 0, "skipped": 0}
    # score = sum over 6 observe tasks of (1 + md value), md value = 10 e + train value m
    assert store.get(graph(str(tmp_path))[-1].key)["result"]["value"] == sum(1 + 10 * e + m for m in range(3) for e in range(2))
    again = execute(graph(str(tmp_path)), store)
    assert again == {"cached": 16, "done": 0, "failed": 0, "skipped": 0}
    assert set(executions(tmp_path).values()) == {1}


def test_only_some_kinds_then_the_rest(tmp_path):
    """``--only train``: the train tasks run (nothing downstream), the sweep's other rows are not retired; the
    whole plan afterwards reuses them and runs the rest."""
    from harness.workflow.task import only_kinds

    store = Store(tmp_path / "harness.sqlite")
    tasks = graph(str(tmp_path))
    assert execute(tasks, store, sweep="s") == {"cached": 0, "done": 16, "failed": 0, "skipped": 0}
    part = only_kinds(tasks, {"md"})
    assert sorted(t.kind for t in part) == ["md"] * 6 + ["train"] * 3
    assert execute(part, store, sweep="s", partial=True)["cached"] == 9
    assert store.counts("s").get(("score", "superseded")) is None  # a partial run retires nothing
    (tmp_path / "executions.log").unlink()
    store2 = Store(tmp_path / "b.sqlite")
    assert execute(only_kinds(tasks, {"train"}), store2, sweep="s", partial=True)["done"] == 3
    assert executions(tmp_path) == Counter({"train0": 1, "train1": 1, "train2": 1})
    assert execute(tasks, store2, sweep="s") == {"cached": 3, "done": 13, "failed": 0, "skipped": 0}


def test_a_partial_run_retires_the_old_rows_of_the_kinds_it_holds_whole(tmp_path):
    """``--only train`` after the train tasks changed (a new preset: other keys): the old train rows are superseded
    (the part holds every train task of the plan), the old rows of the other kinds are left alone (their new tasks
    are not in the part), and the task counts no longer show the old trainings as pending."""
    from harness.workflow.task import only_kinds

    store = Store(tmp_path / "harness.sqlite")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = graph(str(tmp_path / "a"))
    execute(only_kinds(old, {"train"}), store, sweep="s", partial=True, complete_kinds={"train"})
    new = graph(str(tmp_path / "b"))  # every key changes with the parameter
    for t in old:  # the whole old plan registered (as a full run would have left it)
        store.register(t.key, t.kind, t.label, t.params_json(), t.dep_keys, "s")
    execute(only_kinds(new, {"train"}), store, sweep="s", partial=True, complete_kinds={"train"})
    counts = store.counts("s")
    assert counts[("train", "superseded")] == 3 and counts[("train", "done")] == 3
    assert counts.get(("md", "superseded")) is None and counts[("md", "pending")] == 6


def test_failure_is_recorded_and_others_continue(tmp_path):
    store = Store(tmp_path / "harness.sqlite")
    tasks = graph(str(tmp_path), fail="md10")
    counts = execute(tasks, store)
    # md10 fails -> obs10 and score skipped; the other 13 tasks finish
    assert counts == {"cached": 0, "done": 13, "failed": 1, "skipped": 2}
    row = next(r for r in store.tasks(status="failed"))
    assert row["label"] == "md10" and "ValueError: stand-in failure in md10" in row["error"]
    assert "sweep_helpers.py" in row["error"]  # the traceback summary names where it raised
    skipped = {r["label"]: r["error"] for r in store.tasks(status="skipped")}
    assert skipped == {"obs10": "dependency md10 failed", "score": "dependency md10 failed"}
    # fixing the input reruns only what did not finish
    counts = execute(graph(str(tmp_path)), store)
    assert counts["done"] == 3 and counts["cached"] == 13


def test_truncated_artifact_is_detected_and_recomputed(tmp_path):
    store = Store(tmp_path / "harness.sqlite")
    execute(graph(str(tmp_path)), store)
    path = tmp_path / "md01.json"
    path.write_text(path.read_text()[:5])
    counts = execute(graph(str(tmp_path)), store)
    # md01 runs again, and so does what was computed from it (obs01, score)
    assert counts == {"cached": 13, "done": 3, "failed": 0, "skipped": 0}
    assert json.loads(path.read_text())["value"] == 10
    assert executions(tmp_path)["md01"] == 2 and executions(tmp_path)["obs01"] == 2
    assert executions(tmp_path)["md00"] == 1


def test_a_task_downstream_of_one_that_runs_again_is_not_reused(tmp_path):
    """A member retrained under the same key (its model file lost) is another model: its MD, observables and
    the score are computed again from it, not returned from the store."""
    store = Store(tmp_path / "harness.sqlite")
    execute(graph(str(tmp_path)), store)
    score = graph(str(tmp_path))[-1]
    before = store.get(score.key)["result"]["value"]
    (tmp_path / "train1.json").unlink()
    (tmp_path / "train1.drift").write_text("100")  # the retraining gives another model
    counts = execute(graph(str(tmp_path)), store)
    assert counts == {"cached": 10, "done": 6, "failed": 0, "skipped": 0}  # train1, md10, md11, obs10, obs11, score
    assert store.get(score.key)["result"]["value"] == before + 2 * 100
    assert executions(tmp_path)["md00"] == 1 and executions(tmp_path)["md11"] == 2


def test_changing_one_parameter_reruns_only_its_dependents(tmp_path):
    store = Store(tmp_path / "harness.sqlite")
    execute(graph(str(tmp_path)), store)
    tasks = graph(str(tmp_path))
    md = next(t for t in tasks if t.label == "md11")
    changed = type(md)(md.kind, md.fn, {**md.params, "value": 20}, md.deps, md.label)
    # rebuild the dependents of md11 with the new key
    obs = next(t for t in tasks if t.label == "obs11")
    new_obs = type(obs)(obs.kind, obs.fn, obs.params, (changed.key,), obs.label)
    score = tasks[-1]
    new_score = type(score)(score.kind, score.fn, score.params,
                            tuple(new_obs.key if d == obs.key else d for d in score.deps), score.label)
    tasks = [changed if t is md else new_obs if t is obs else new_score if t is score else t for t in tasks]
    counts = execute(tasks, store, sweep="s")
    assert counts == {"cached": 13, "done": 3, "failed": 0, "skipped": 0}
    assert store.get(new_score.key)["result"]["value"] == 42 + 10  # md11: 10 + 1 -> 20 + 1


def test_a_lost_worker_task_is_rerun(tmp_path):
    out = _run(tmp_path, mode="lost-worker")
    assert out["counts"]["done"] == 17 and out["counts"]["failed"] == 0
    assert executions(tmp_path)["crash"] == 2  # died with its worker, then ran again


def _run(workdir: Path, *, kill_after: int | None = None, mode: str = "dask") -> dict | None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.sweep_helpers", str(workdir), mode], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill_after is None:
        out, errs = proc.communicate(timeout=300)
        assert proc.returncode == 0, errs
        return json.loads(out.strip().splitlines()[-1])
    deadline = time.time() + 120
    while sum(executions(workdir).values()) < kill_after and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, mid-sweep
    proc.wait()
    return None


def test_sigkill_at_several_points_then_resume_gives_identical_results(tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    expected = _run(whole)
    assert expected["counts"]["done"] == 16
    killed = tmp_path / "killed"
    killed.mkdir()
    finished: dict[str, int] = {}  # task -> executions counted when it was first seen finished after a kill
    for kill_after in (3, 9):
        _run(killed, kill_after=kill_after)
        store = Store(killed / "harness.sqlite")
        seen = executions(killed)
        for r in store.tasks(status="done"):
            finished.setdefault(r["label"], seen[r["label"]])
        store.close()
    assert finished and len(finished) < 16, "the kills did not land mid-sweep"
    final = _run(killed)
    assert final["values"] == expected["values"]
    assert final["counts"]["cached"] == len(finished)
    counts = executions(killed)
    # no task that had finished before a kill was executed again (a task killed while running may rerun)
    assert {k: counts[k] for k in finished} == finished, counts
    assert set(counts) == set(expected["values"])
