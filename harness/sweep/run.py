"""Plan and execute a sweep spec in one call (used by ``harness sweep run`` and ``harness demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["run_sweep", "time_shares"]


def run_sweep(spec_path: str | Path, workspace: str | Path, *, scheduler: str | None = None,
              workers: int | None = None, sync: bool = False, slurm: str | Path | None = None, progress: Callable[[dict], None] | None = None,
              say: Callable[[str], None] | None = None) -> tuple[dict[str, int], str]:
    """Build the dataset if needed, plan, execute; returns (counts by status, sweep name)."""
    from harness.datasets.build import build_dataset
    from harness.datasets.spec import load_dataset_spec
    from harness.sweep.cluster import make_client
    from harness.sweep.execute import execute
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep
    from harness.sweep.store import Store

    say = say or (lambda msg: None)
    workspace = Path(workspace)
    spec, files = load_sweep(spec_path)
    build_dataset(load_dataset_spec(files["dataset"]), say=say)  # a no-op when the data is built
    tasks = plan_sweep(spec, files, workspace)
    store = Store(workspace / "harness.sqlite")
    client = None
    if not sync:
        n = workers or max(1, (os.cpu_count() or 1) // spec.threads_per_task)
        client = make_client(scheduler, workers=n, slurm=slurm)
        where = f"scheduler {scheduler}" if scheduler else f"SLURM ({slurm})" if slurm else f"{n} local workers"
        say(f"sweep {spec.name}: {len(tasks)} tasks on {where}")
    try:
        counts = execute(tasks, store, sweep=spec.name, client=client, progress=progress)
    finally:
        if client is not None:
            client.close()
        store.close()
    return counts, spec.name


def time_shares(workspace: str | Path, sweep: str | None = None) -> dict[str, float]:
    """Task seconds by stage (training, MD, analysis) of the finished tasks in a workspace."""
    from harness.sweep.store import Store

    store = Store(Path(workspace) / "harness.sqlite")
    stage = {"train": "training", "md": "MD", "observe": "analysis", "ref_density": "analysis", "score": "analysis",
             "label": "labelling"}
    out: dict[str, float] = {}
    for row in store.tasks(status="done", sweep=sweep):
        key = stage.get(row["kind"], row["kind"])
        out[key] = out.get(key, 0.0) + (row["wall_s"] or 0.0)
    store.close()
    return out
