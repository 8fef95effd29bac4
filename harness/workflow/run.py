"""Execute a planned task graph in one call (every study kind), in walltime pieces, with pinned threads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["execute_plan", "walltime_deadline", "default_gpu_workers", "time_shares", "set_threads"]


def set_threads(n: int) -> None:
    """Pin every threading layer a task may touch (torch, OpenMP/MKL, deepmd, xTB) to ``n`` threads, so
    that workers × threads never oversubscribes the machine; keep freed memory for reuse
    (:func:`harness.tools.process_settings`: a worker started outside the harness CLI, e.g. by SLURM)."""
    from harness.tools import process_settings

    process_settings()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
        os.environ[var] = str(n)
    os.environ["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def close_client(client) -> None:
    """Close a Dask client and the cluster it started (an embedded or SLURM one; a running scheduler given by
    address is left alone): workers first, then the scheduler, so that no worker is left heartbeating to a closed
    scheduler (a CommClosedError traceback on stderr at the end of a run)."""
    import contextlib

    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):  # already closing (interrupted): nothing left to tidy
            cluster.close()


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


def execute_plan(tasks: list, name: str, workspace: str | Path, *, threads_per_task: int = 1,
                 scheduler: str | None = None, workers: int | None = None, sync: bool = False,
                 slurm: str | Path | None = None, progress: Callable[[dict], None] | None = None,
                 say: Callable[[str], None] | None = None, gpu_workers: int = 0,
                 walltime_min: float | None = None, partial: bool = False,
                 complete_kinds: Iterable[str] = ()) -> dict[str, int]:
    """Execute a planned task graph against ``workspace/harness.sqlite`` (Dask, SLURM or in-process).

    ``gpu_workers`` (embedded cluster only): that many GPU workers beside the CPU workers; tasks on device cuda
    go to them (:func:`harness.workflow.cluster.gpu_node_cluster`). ``walltime_min``: this run's walltime
    (:func:`walltime_deadline`; a piece of a long job: what is left resumes in the next run)."""
    import time

    from harness.workflow.cluster import make_client
    from harness.workflow.execute import execute
    from harness.workflow.store import Store

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
        return execute(tasks, store, sweep=name, client=client, progress=progress, deadline=deadline, partial=partial,
                       complete_kinds=complete_kinds)
    finally:
        if client is not None:
            close_client(client)
        store.close()


def time_shares(workspace: str | Path, sweep: str | None = None) -> dict[str, float]:
    """Task seconds by stage (training, MD, analysis) of the finished tasks in a workspace."""
    from harness.workflow.store import Store

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
