"""Dask clusters for sweeps: an embedded LocalCluster, an existing scheduler, or SLURM via dask-jobqueue.

A SLURM cluster is described by a small YAML file (``protocols/clusters/slurm-example.yaml``): each
SLURM job runs ``processes`` single-threaded worker processes on ``cores`` cores; ``jobs`` jobs are
requested. ``job_script_prologue`` lines run before the workers start (activate the harness
environment there). The driver (``harness sweep run``) stays on the login/submit node and only
schedules; all training and MD runs in the jobs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import Field

from harness.config import MAX_PARALLEL, HarnessModel, load_yaml
from harness.errors import ToolError

__all__ = ["SlurmSpec", "slurm_cluster", "make_client", "gpu_node_cluster", "QUIET_DASK"]

#: Dask's own monitoring, paced for a sweep's tasks (minutes to hours) on the embedded clusters: no statistical
#: profiler (by default a worker samples its task thread's stack every 10 ms, for a dashboard the harness never
#: shows), the event-loop tick, the memory monitor and the system monitor at 0.5, 1 and 2 s instead of 20, 100 and
#: 500 ms. Measured: benchmarks/dask_overhead.py (docs/measurements.md). SLURM jobs get them as environment
#: variables in their script (:func:`quiet_exports`); an existing scheduler's workers keep their own.
QUIET_DASK = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


class SlurmSpec(HarnessModel):
    jobs: int = Field(2, ge=1, le=MAX_PARALLEL, description="SLURM jobs to request")
    cores: int = Field(8, ge=1, le=MAX_PARALLEL, description="cores per job")
    processes: int = Field(8, ge=1, le=MAX_PARALLEL, description="worker processes per job (one thread each)")
    memory: str = Field("32GB", description="memory per job")
    walltime: str = Field("04:00:00", description="per job, HH:MM:SS")
    queue: str | None = Field(None, description="partition")
    account: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list, description="extra #SBATCH lines, e.g. --gres=gpu:1")
    job_script_prologue: list[str] = Field(default_factory=list, description="shell lines before the workers start")
    worker_resources: dict[str, int] = Field(default_factory=dict, description="Dask resources every worker of "
                                             "these jobs offers, e.g. {GPU: 1} on a GPU partition (GPU tasks then "
                                             "run only there)")
    local_directory: str | None = Field(None, description="node-local scratch for worker spill files")


def quiet_exports() -> list[str]:
    """:data:`QUIET_DASK` as the environment a worker started elsewhere reads it from (Dask's
    ``DASK_A__B__C`` variables), for a SLURM job script: lines before the user's prologue, which may change them."""
    return [f"export DASK_{k.upper().replace('.', '__').replace('-', '_')}={v}" for k, v in QUIET_DASK.items()]


def slurm_cluster(spec: SlurmSpec, *, quiet: bool = True):
    """A dask-jobqueue ``SLURMCluster`` (no jobs submitted until ``scale``); its workers start quiet
    (:func:`quiet_exports`) unless ``quiet`` is False."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(cores=spec.cores, processes=spec.processes, memory=spec.memory, walltime=spec.walltime,
                        queue=spec.queue, account=spec.account, job_extra_directives=spec.job_extra_directives,
                        job_script_prologue=[*(quiet_exports() if quiet else []), *spec.job_script_prologue],
                        local_directory=spec.local_directory,
                        worker_extra_args=[f"--resources={','.join(f'{k}={v}' for k, v in spec.worker_resources.items())}"]
                        if spec.worker_resources else [],
                        silence_logs="error", scheduler_options={"dashboard_address": ":0"})


def gpu_node_cluster(cpu_workers: int, gpu_workers: int, *, threads_per_worker: int = 1):
    """A one-node cluster of two kinds of workers: ``cpu_workers`` with resource ``CPU`` and no GPU visible
    (``CUDA_VISIBLE_DEVICES`` empty: GAP, labelling, analysis) and ``gpu_workers`` with resource ``GPU`` (MACE
    and DeePMD training and MD on device cuda; several share the one GPU). Tasks are routed by
    :func:`harness.workflow.execute.execute`."""
    from distributed import Nanny, Scheduler, SpecCluster

    def worker(resources: dict, env: dict) -> dict:
        return {"cls": Nanny, "options": {"nthreads": threads_per_worker, "resources": resources, "env": env,
                                          "silence_logs": logging.ERROR}}

    specs = {f"cpu-{i}": worker({"CPU": 1}, {"CUDA_VISIBLE_DEVICES": ""}) for i in range(cpu_workers)}
    specs.update({f"gpu-{i}": worker({"GPU": 1}, {}) for i in range(gpu_workers)})
    return SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                       silence_logs=logging.ERROR, name="harness-gpu-node")


def make_client(scheduler: str | None = None, *, workers: int | None = None, threads_per_worker: int = 1,
                slurm: str | Path | None = None, gpu_workers: int = 0, quiet: bool = True):
    """A Dask client: an existing scheduler (``tcp://host:port``), a SLURM cluster from a YAML spec, or an
    embedded ``LocalCluster`` with one thread per worker process (MLIP/xTB threads are pinned per task, so
    workers do not oversubscribe the machine); with ``gpu_workers`` a GPU node's cluster
    (:func:`gpu_node_cluster`: ``workers`` CPU workers beside them). ``quiet``: an embedded cluster's scheduler,
    nannies and workers start with :data:`QUIET_DASK` (False: Dask's configuration as it is)."""
    import dask
    import distributed  # noqa: F401 - its defaults join Dask's configuration on import: before the set below,
    # whose exit would otherwise remove the whole `distributed` section it did not see

    with dask.config.set(QUIET_DASK if quiet else {}):  # read when the servers start; the workers inherit it
        return _make_client(scheduler, workers=workers, threads_per_worker=threads_per_worker, slurm=slurm,
                            gpu_workers=gpu_workers, quiet=quiet)


def _make_client(scheduler: str | None, *, workers: int | None, threads_per_worker: int,
                 slurm: str | Path | None, gpu_workers: int, quiet: bool):
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)  # its INFO chatter drowns the progress bar
    if scheduler:
        return Client(scheduler)
    if slurm is not None:
        spec = load_yaml(slurm, SlurmSpec)
        cluster = slurm_cluster(spec, quiet=quiet)
        # adaptive with a fixed size: a job that ends (scancel, preemption, its walltime) is replaced by a new
        # submission, and the tasks it was running go to the other workers (measured: ~16 s to a new job on a
        # one-node cluster)
        cluster.adapt(minimum_jobs=spec.jobs, maximum_jobs=spec.jobs)
        return Client(cluster)
    n = workers or max(1, os.cpu_count() or 1)
    if gpu_workers:
        return Client(gpu_node_cluster(n, gpu_workers, threads_per_worker=threads_per_worker))
    for attempt in range(3):
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
            break
        except RuntimeError as exc:  # a worker process died while starting (killed, out of memory): again
            if attempt == 2:
                raise ToolError(f"could not start {n} local Dask workers: {exc}") from None
            logging.getLogger(__name__).warning("local Dask cluster failed to start (%s); trying again", exc)
    return Client(cluster)
