"""Plan and execute a sweep spec in one call (used by ``harness sweep run`` and ``harness demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["run_sweep", "execute_plan", "time_shares"]


def run_sweep(spec_path: str | Path, workspace: str | Path, *, scheduler: str | None = None,
              workers: int | None = None, sync: bool = False, slurm: str | Path | None = None,
              progress: Callable[[dict], None] | None = None, say: Callable[[str], None] | None = None,
              loader: Callable | None = None, gpu_workers: int | None = None,
              walltime_min: float | None = None, only: set[str] | None = None) -> tuple[dict[str, int], str]:
    """Build the dataset if needed, plan, execute; returns (counts by status, sweep name).

    ``only``: run just the tasks of these kinds and their dependencies (:func:`harness.sweep.execute.only_kinds`).

    ``loader``: the spec loader (default :func:`harness.sweep.spec.load_sweep`; transfer specs have their own)."""
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep

    workspace = Path(workspace)
    spec, files = (loader or load_sweep)(spec_path)
    _build_data(files["dataset"], say)
    tasks = plan_sweep(spec, files, workspace)
    if only:
        from harness.errors import InputError
        from harness.sweep.execute import only_kinds

        unknown = sorted(set(only) - {t.kind for t in tasks})
        if unknown:
            raise InputError(f"--only {','.join(unknown)}: no such task kind in {spec_path}; its kinds: "
                             f"{', '.join(sorted({t.kind for t in tasks}))}")
        tasks = only_kinds(tasks, set(only))
    counts = execute_plan(tasks, spec.name, workspace, threads_per_task=spec.threads_per_task, scheduler=scheduler,
                          workers=workers, sync=sync, slurm=slurm, progress=progress, say=say,
                          gpu_workers=default_gpu_workers(gpu_workers, spec.device), walltime_min=walltime_min,
                          partial=bool(only))
    return counts, spec.name


def walltime_deadline(walltime_min: float | None, started: float) -> float | None:
    """The deadline of a run given ``walltime_min``: the walltime less a margin for the driver to record what
    stopped (10 % of it, at most a minute)."""
    if walltime_min is None:
        return None
    seconds = 60.0 * walltime_min
    return started + seconds - min(60.0, 0.1 * seconds)


def default_gpu_workers(gpu_workers: int | None, device: str) -> int:
    """GPU workers of an embedded cluster: as given, else one when the spec runs on cuda, else none."""
    if gpu_workers is not None:
        return gpu_workers
    return 1 if device == "cuda" else 0


def _build_data(dataset: Path, say: Callable[[str], None] | None) -> None:
    from harness.datasets.build import build_dataset
    from harness.datasets.spec import load_dataset_spec

    build_dataset(load_dataset_spec(dataset), say=say or (lambda msg: None))  # a no-op when the data is built


def execute_plan(tasks: list, name: str, workspace: str | Path, *, threads_per_task: int = 1,
                 scheduler: str | None = None, workers: int | None = None, sync: bool = False,
                 slurm: str | Path | None = None, progress: Callable[[dict], None] | None = None,
                 say: Callable[[str], None] | None = None, gpu_workers: int = 0,
                 walltime_min: float | None = None, partial: bool = False) -> dict[str, int]:
    """Execute a planned task graph against ``workspace/harness.sqlite`` (Dask, SLURM or in-process).

    ``gpu_workers`` (embedded cluster only): that many GPU workers beside the CPU workers; tasks on device cuda
    go to them (:func:`harness.sweep.cluster.gpu_node_cluster`). ``walltime_min``: this run's walltime
    (:func:`walltime_deadline`; a piece of a long job: what is left resumes in the next run)."""
    import time

    from harness.sweep.cluster import make_client
    from harness.sweep.execute import execute
    from harness.sweep.store import Store

    say = say or (lambda msg: None)
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    deadline = walltime_deadline(walltime_min, time.time())
    store = Store(workspace / "harness.sqlite")
    client = None
    if not sync:
        n = workers or max(1, (os.cpu_count() or 1) // threads_per_task - gpu_workers)
        client = make_client(scheduler, workers=n, slurm=slurm, gpu_workers=0 if scheduler or slurm else gpu_workers)
        where = (f"scheduler {scheduler}" if scheduler else f"SLURM ({slurm})" if slurm else
                 f"{n} local CPU workers and {gpu_workers} GPU workers" if gpu_workers else f"{n} local workers")
        say(f"{name}: {len(tasks)} tasks on {where}")
    try:
        return execute(tasks, store, sweep=name, client=client, progress=progress, deadline=deadline, partial=partial)
    finally:
        if client is not None:
            client.close()
        store.close()


def time_shares(workspace: str | Path, sweep: str | None = None) -> dict[str, float]:
    """Task seconds by stage (training, MD, analysis) of the finished tasks in a workspace."""
    from harness.sweep.store import Store

    store = Store(Path(workspace) / "harness.sqlite")
    stage = {"train": "training", "md": "MD", "observe": "analysis", "ref_density": "analysis", "score": "analysis",
             "label": "labelling", "al_set": "labelling", "al_start": "exploration", "explore": "exploration",
             "model": "models"}
    out: dict[str, float] = {}
    for row in store.tasks(status="done", sweep=sweep):
        key = stage.get(row["kind"], row["kind"])
        out[key] = out.get(key, 0.0) + (row["wall_s"] or 0.0)
    store.close()
    return out
