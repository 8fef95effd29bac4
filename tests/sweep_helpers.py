"""Stand-in sweep tasks for tests of the executor (the subject is resume and failure handling)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from harness.workflow.task import Task


def compute(params: dict, deps: dict) -> dict:
    """Count the execution, sleep, write an output file, return value + the dependencies' values."""
    out = Path(params["dir"])
    with open(out / "executions.log", "a") as f:
        f.write(params["name"] + "\n")
    time.sleep(params.get("sleep", 0.0))
    if params.get("fail"):
        raise ValueError(f"stand-in failure in {params['name']}")
    value = params["value"] + sum(d["value"] for d in deps.values())
    drift = out / f"{params['name']}.drift"  # a task that computes something else when run again (a retraining)
    value += int(drift.read_text()) if drift.exists() else 0
    path = out / f"{params['name']}.json"
    path.write_text(json.dumps({"value": value}))
    return {"value": value, "_outputs": [str(path)]}


def die_once(params: dict, deps: dict) -> dict:
    """Kill the worker process running it the first time (a lost worker), succeed the second time."""
    import os

    marker = Path(params["dir"]) / f"{params['name']}.died"
    with open(Path(params["dir"]) / "executions.log", "a") as f:
        f.write(params["name"] + "\n")
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return {"value": params["value"]}


def graph(workdir: str, *, sleep: float = 0.0, fail: str | None = None) -> list[Task]:
    """3 trains -> 2 runs each -> 1 observe per run -> 1 score: 16 tasks."""
    fn = "tests.sweep_helpers:compute"

    def task(kind, name, value, deps=()):
        return Task(kind, fn, {"dir": workdir, "name": name, "value": value, "sleep": sleep, "fail": name == fail},
                    tuple(t.key for t in deps), name)

    tasks, observes = [], []
    for m in range(3):
        tr = task("train", f"train{m}", m)
        tasks.append(tr)
        for e in range(2):
            md = task("md", f"md{m}{e}", 10 * e, [tr])
            ob = task("observe", f"obs{m}{e}", 1, [md])
            tasks += [md, ob]
            observes.append(ob)
    tasks.append(task("score", "score", 0, observes))
    return tasks


def main() -> None:
    """python -m tests.sweep_helpers WORKDIR [dask]: run the stand-in graph, print final values as JSON."""
    from harness.workflow.cluster import make_client
    from harness.workflow.execute import execute
    from harness.workflow.store import Store

    workdir = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "local"
    client = make_client(workers=2) if mode in ("dask", "lost-worker") else None
    store = Store(Path(workdir) / "harness.sqlite")
    tasks = graph(workdir, sleep=0.3)
    if mode == "lost-worker":  # one extra task whose worker dies on the first attempt
        tasks.append(Task("md", "tests.sweep_helpers:die_once", {"dir": workdir, "name": "crash", "value": 7},
                          (tasks[0].key,), "crash"))
    counts = execute(tasks, store, sweep="stand-in", client=client)
    values = {t.label: store.get(t.key)["result"]["value"] for t in tasks}
    print(json.dumps({"counts": counts, "values": values}))
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()


# -- a typed stand-in kind (the subject: the task contract in the executor) ----------------------------------------

from typing import ClassVar  # noqa: E402

from harness.workflow.contract import TaskParams, TaskResult, worker  # noqa: E402


class ToyResult(TaskResult):
    value: int


class ToyParams(TaskParams):
    KIND: ClassVar[str] = "toy"
    KEY_NAME: ClassVar[str] = "tests.sweep_helpers:toy"
    RESULT: ClassVar[type[TaskResult]] = ToyResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"inputs": ("toy",)}

    dir: str
    name: str
    value: int


@worker(ToyParams)
def toy(p: ToyParams, deps) -> ToyResult:
    with open(Path(p.dir) / "executions.log", "a") as f:
        f.write(p.name + "\n")
    assert all(isinstance(d, ToyResult) for d in deps.get("inputs", []))  # typed results, by role
    return ToyResult(value=p.value + sum(d.value for d in deps.get("inputs", [])))


def where(params: dict, deps: dict) -> dict:
    """Which Dask worker ran the task, and which GPUs it could see."""
    import os
    import time

    from distributed import get_worker

    time.sleep(0.2)  # long enough for the tasks to spread over the workers
    return {"worker": get_worker().name, "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "i": params["i"]}


def until_deadline(params: dict, deps: dict) -> dict:
    """Works for ``params['seconds']``; stops at the run's walltime like MD does (harness.deadline)."""
    import time

    from harness.deadline import Interrupted, passed

    t0 = time.time()
    while time.time() - t0 < params["seconds"]:
        if passed():
            raise Interrupted(f"stopped after {time.time() - t0:.1f} s")
        time.sleep(0.05)
    return {"value": params["seconds"], "deps": len(deps)}


def ignore_deadline(params: dict, deps: dict) -> dict:
    """A task that does not stop at the walltime (a lost or hung worker, as the driver sees it): it runs until the
    file ``params['release']`` exists (at most a minute)."""
    import time
    from pathlib import Path

    t0 = time.time()
    while not Path(params["release"]).exists() and time.time() - t0 < 60:
        time.sleep(0.05)
    return {"value": 0}
