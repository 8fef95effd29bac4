"""Plan and execute a sweep spec in one call (used by ``harness sweep run`` and ``harness demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

__all__ = ["run_sweep"]


def run_sweep(spec_path: str | Path, workspace: str | Path, *, scheduler: str | None = None,
              workers: int | None = None, sync: bool = False, slurm: str | Path | None = None,
              progress: Callable[[dict], None] | None = None, say: Callable[[str], None] | None = None,
              loader: Callable | None = None, gpu_workers: int | None = None,
              walltime_min: float | None = None, only: set[str] | None = None,
              device: str | None = None) -> tuple[dict[str, int], str]:
    """Build the dataset if needed, plan, execute; returns (counts by status, sweep name).

    ``device``: cpu or cuda in place of the spec's own (the same spec on a GPU node).

    ``only``: run just the tasks of these kinds and their dependencies (:func:`harness.workflow.task.only_kinds`).

    ``loader``: the spec loader (default :func:`harness.sweep.spec.load_sweep`; transfer specs have their own)."""
    from harness.datasets.build import ensure_built
    from harness.sweep.plan import plan_sweep
    from harness.sweep.spec import load_sweep
    from harness.workflow.run import default_gpu_workers, execute_plan

    workspace = Path(workspace)
    spec, inputs = (loader or load_sweep)(spec_path)
    if device is not None and device != spec.device:
        spec = spec.model_copy(update={"device": device})
    ensure_built(inputs.dataset, say)
    tasks = plan_sweep(spec, inputs, workspace)
    if only:
        from harness.errors import InputError
        from harness.workflow.task import only_kinds

        unknown = sorted(set(only) - {t.kind for t in tasks})
        if unknown:
            raise InputError(f"--only {','.join(unknown)}: no such task kind in {spec_path}; its kinds: "
                             f"{', '.join(sorted({t.kind for t in tasks}))}")
        tasks = only_kinds(tasks, set(only))
    counts = execute_plan(tasks, spec.name, workspace, threads_per_task=spec.threads_per_task, scheduler=scheduler,
                          workers=workers, sync=sync, slurm=slurm, progress=progress, say=say,
                          gpu_workers=default_gpu_workers(gpu_workers, spec.device), walltime_min=walltime_min,
                          partial=bool(only), complete_kinds=set(only or ()))
    return counts, spec.name
