"""Run a task graph on Dask (or in-process), recording every task in the workspace store.

``execute`` skips every task whose key is done in the store with unchanged output files and whose
dependencies are all skipped likewise (this is resume; a task downstream of one that runs again runs
again), submits a task once its dependencies are done, records results as they arrive, records a
failure with its traceback summary and marks the dependents skipped, and carries on with the rest.
The one rule for reuse is written down in :mod:`harness.workflow` (its module docstring).

A worker function receives ``(params, deps)`` and returns its typed result (:mod:`harness.workflow.contract`:
the worker gets the params object itself and, per dependency role, the typed results of its dependencies;
the result is stored with its schema id, and a stored result of another schema is not reused). Untyped
tasks (a JSON dict of parameters, the function by import path; tests) return a JSON dict whose
``"_outputs"`` paths are hashed for later verification.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.deadline import ENV, Interrupted
from harness.workflow.store import Store
from harness.workflow.task import Task, _typed, only_kinds

__all__ = ["execute", "run_task", "LOCKS", "Task", "only_kinds"]

#: folder beside the store with a lock file per task key (held while the task runs)
LOCKS = ".locks"

logger = logging.getLogger(__name__)


#: tasks of this process inside a deadline (threads of an in-process Dask worker share the environment): the first
#: sets HARNESS_DEADLINE_UNIX, the last restores what was there before (a per-task save and restore would let a
#: task that outlives another put back the deadline the other had set, leaking it past the run)
_DEADLINE = {"users": 0, "before": None}
_DEADLINE_LOCK = threading.Lock()


def _deadline_enter(deadline: float) -> None:
    with _DEADLINE_LOCK:
        if _DEADLINE["users"] == 0:
            _DEADLINE["before"] = os.environ.get(ENV)
        _DEADLINE["users"] += 1
        os.environ[ENV] = repr(deadline)


def _deadline_exit() -> None:
    with _DEADLINE_LOCK:
        _DEADLINE["users"] -= 1
        if _DEADLINE["users"] == 0:
            os.environ.pop(ENV, None)
            if _DEADLINE["before"] is not None:
                os.environ[ENV] = _DEADLINE["before"]


def run_task(fn: str | Callable, params, deps: dict[str, Any], deadline: float | None = None,
             lock: str | None = None) -> tuple[dict, dict[str, str], float]:
    """Worker side: call the task function (imported first when given as ``"module:function"``); hash its
    declared outputs. ``deadline``: the run's
    walltime (Unix seconds), set for the task's process (:mod:`harness.deadline`). ``lock``: a file this
    execution holds an exclusive lock on while it runs, so that a second execution of the same task (started by
    the rerun of a killed driver while a worker of the old run is still at it: a SLURM job, a remote worker)
    waits for the first to end, then finds its finished outputs instead of writing into them."""
    with _task_lock(lock):
        return _run_task(fn, params, deps, deadline)


@contextmanager
def _task_lock(path: str | None):
    if path is None:
        yield
        return
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("task lock %s is held by another execution; waiting for it to end", path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:  # the kernel also releases it when the process dies
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_task(fn: str | Callable, params, deps: dict[str, Any],
              deadline: float | None) -> tuple[dict, dict[str, str], float]:
    from harness.io import sha256_file

    if callable(fn):
        func = fn
    else:
        module, name = fn.split(":")
        func = getattr(importlib.import_module(module), name)
    t0 = time.perf_counter()
    if deadline is not None:
        _deadline_enter(deadline)
    try:
        result = func(params, deps) or {}
    finally:  # a worker (or the driver, in-process) keeps no deadline beyond the task
        if deadline is not None:
            _deadline_exit()
    if _typed(params):
        if not isinstance(result, params.RESULT):
            raise TypeError(f"{getattr(func, '__qualname__', fn)} returned {type(result).__name__}, not "
                            f"{params.RESULT.__name__}")
        files = result.outputs
        result = {"schema": params.schema_id(), **result.model_dump(mode="json")}
    else:
        files = result.pop("_outputs", [])
    outputs = {str(Path(p).resolve()): sha256_file(p) for p in files}
    return result, outputs, time.perf_counter() - t0


def _error_summary(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(tb[-3:]))
    head = f"{type(exc).__name__}: {exc}".strip()
    return f"{head} [{frames}]" if frames else head


def _routing(client) -> Callable[[Task], dict | None]:
    """Worker resources a task asks for: on a cluster whose workers declare ``GPU`` (and ``CPU``) resources
    (:func:`harness.workflow.cluster.make_client` with GPU workers, a SLURM GPU spec), GPU tasks go to GPU workers
    and the others to CPU workers where there are any; elsewhere no restriction."""
    try:
        offered = {r for w in client.scheduler_info()["workers"].values() for r in (w.get("resources") or {})}
    except Exception:  # no worker yet (SLURM jobs pending): plain submission
        offered = set()
    if "GPU" not in offered:
        return lambda t: None
    cpu = {"CPU": 1} if "CPU" in offered else None
    return lambda t: {"GPU": 1} if t.needs_gpu else cpu


#: how long after the walltime the driver waits for running tasks to checkpoint and stop (an MD step, a training
#: epoch of the CPU presets: minutes) before it leaves the ones that have not to the next run
STOP_GRACE_S = 900.0


def execute(tasks: list[Task], store: Store, *, sweep: str = "", client=None,
            progress: Callable[[dict], None] | None = None, deadline: float | None = None,
            partial: bool = False, complete_kinds: Iterable[str] = ()) -> dict[str, int]:
    """Run ``tasks`` (dependencies before dependents in any order) and return counts by final status.

    ``deadline`` (Unix seconds): a walltime. No task starts after it; running MD and MACE/DeePMD training
    checkpoint and stop at it (``interrupted``), and tasks never started are counted as ``waiting``; the next
    run resumes (:mod:`harness.deadline`). A task still running STOP_GRACE_S after the walltime (its worker lost,
    e.g. after the machine was suspended past it) is given up as ``interrupted``: the run ends instead of waiting
    for it.

    ``client``: a Dask client, or None to run in this process (tests, debugging). Every completion is
    written to ``store`` at once, so killing the driver loses only running tasks. ``partial``: ``tasks`` is a
    part of the sweep's plan (:func:`only_kinds`): the sweep's other rows are not retired as superseded, except
    those of ``complete_kinds``, the kinds the part holds every task of (rows of an older plan of them).
    """
    by_key = {t.key: t for t in tasks}
    for t in tasks:
        missing = [d for d in t.dep_keys if d not in by_key]
        if missing:
            raise ValueError(f"task {t.label or t.key} depends on unknown tasks {missing}")
        store.register(t.key, t.kind, t.label or t.key, t.params_json(), t.dep_keys, sweep)
    if sweep and not partial:
        store.retire(sweep, by_key)
    elif sweep and complete_kinds:
        store.retire(sweep, by_key, kinds=complete_kinds)
    results: dict[str, Any] = {}
    state: dict[str, str] = {}
    for key, t in by_key.items():
        res = t.typed_result(store.verified(key))
        if res is not None:
            results[key], state[key] = res, "cached"
    # a result computed from the outputs of a task that runs again (its files changed or are gone, e.g. a
    # member retrained under the same key) is stale: everything downstream of that task runs again too
    while stale := [k for k in results if any(d not in results for d in by_key[k].dep_keys)]:
        for k in stale:
            del results[k], state[k]
            logger.info("%s: an upstream task runs again; its result is not reused", by_key[k].label or k)
    dependents: dict[str, list[str]] = {k: [] for k in by_key}
    for t in tasks:
        for d in t.dep_keys:
            dependents[d].append(t.key)
    counts = {"cached": len(results), "done": 0, "failed": 0, "skipped": 0}
    # priority = number of transitive dependents, so the critical path (e.g. the reference committee,
    # on which every score waits) is worked on first
    priority: dict[str, int] = {}

    def n_downstream(key: str) -> int:
        if key not in priority:
            seen: set[str] = set()
            stack = list(dependents[key])
            while stack:
                k = stack.pop()
                if k not in seen:
                    seen.add(k)
                    stack += dependents[k]
            priority[key] = len(seen)
        return priority[key]

    def report(key: str, status: str) -> None:
        if progress is not None:
            progress({"key": key, "label": by_key[key].label, "kind": by_key[key].kind, "status": status,
                      "finished": sum(counts.values()), "total": len(by_key)})

    def skip(key: str, reason: str) -> None:
        for k in dependents[key]:
            if k not in state:
                state[k] = "skipped"
                counts["skipped"] += 1
                store.mark_skipped(k, reason)
                report(k, "skipped")
                skip(k, reason)

    def ready() -> list[str]:
        return [k for k, t in by_key.items() if k not in state and all(state.get(d) in ("cached", "done") for d in t.dep_keys)]

    def finish(key: str, outcome) -> None:
        if isinstance(outcome, Interrupted):  # stopped at the walltime: resumable, not a failure
            state[key] = "interrupted"
            counts["interrupted"] = counts.get("interrupted", 0) + 1
            store.mark_interrupted(key, str(outcome))
            report(key, "interrupted")
        elif isinstance(outcome, BaseException):
            msg = _error_summary(outcome)
            state[key] = "failed"
            counts["failed"] += 1
            store.mark_failed(key, msg)
            logger.warning("task %s failed: %s", by_key[key].label, msg)
            report(key, "failed")
            skip(key, f"dependency {by_key[key].label} failed")
        else:
            result, outputs, wall = outcome
            results[key], state[key] = by_key[key].typed_result(result), "done"
            counts["done"] += 1
            store.mark_done(key, result, outputs, wall)
            report(key, "done")

    for key in list(results):
        report(key, "cached")
    locks = store.path.resolve().parent / LOCKS

    def lock_path(key: str) -> str:
        return str(locks / f"{key}.lock")

    def passed() -> bool:
        return deadline is not None and time.time() >= deadline

    def left_waiting() -> dict[str, int]:
        waiting = sum(1 for k in by_key if k not in state)
        if waiting:
            counts["waiting"] = waiting
            logger.warning("walltime reached: %d task(s) left for the next run", waiting)
        return counts

    if client is None:
        while True:
            batch = sorted(ready(), key=n_downstream, reverse=True)
            if not batch or passed():
                break
            for key in batch:
                if passed():
                    break
                t = by_key[key]
                state[key] = "running"
                store.mark_running(key)
                try:
                    outcome = run_task(t.fn, t.params, t.dep_payload(results), deadline, lock_path(key))
                except Exception as exc:  # recorded, the sweep goes on
                    outcome = exc
                finish(key, outcome)
        return left_waiting()

    from distributed import wait

    futures: dict = {}  # future -> task key

    def slots() -> int:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # a scheduler between workers (SLURM jobs pending): keep one task in flight
            return 1

    def submit_ready() -> None:
        # at most one task per worker thread in flight, highest priority first: Dask's own priorities do
        # not reorder tasks already handed to workers, so the driver keeps the queue
        if passed():  # the walltime: nothing new starts; running tasks checkpoint and stop
            return
        free = slots() - len(futures)
        route = _routing(client)  # asked each round: SLURM workers (and their resources) join later
        for key in sorted(ready(), key=n_downstream, reverse=True)[:max(free, 0)]:
            t = by_key[key]
            state[key] = "running"
            store.mark_running(key)
            fut = client.submit(run_task, t.fn, t.params, t.dep_payload(results), deadline, lock_path(key), pure=False,
                                key=f"{key}-{time.time_ns()}", priority=n_downstream(key), resources=route(t))
            futures[fut] = key

    submit_ready()
    while futures:
        try:  # wake up now and then: workers may have joined (SLURM) and freed slots
            done, _ = wait(list(futures), timeout=10, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        if not done and deadline is not None and time.time() >= deadline + STOP_GRACE_S:
            # past the walltime by the grace: a task that has not answered by now will not (its worker lost after
            # the machine was suspended, a worker that hangs): leave it to the next run, which resumes it
            lost = sorted(futures.values())
            for fut in list(futures):
                fut.cancel()
            futures.clear()
            counts["interrupted"] = counts.get("interrupted", 0) + len(lost)
            logger.warning("walltime passed %d s ago and %d task(s) still have not stopped (%s): left for the next "
                           "run", int(time.time() - deadline), len(lost), ", ".join(lost[:5]))
            break
        for fut in done:
            key = futures.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:
                outcome = exc
            finish(key, outcome)
        submit_ready()
    return left_waiting()
