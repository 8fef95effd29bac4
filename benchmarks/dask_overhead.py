"""What Dask's own monitoring costs a sweep's embedded cluster: the harness's quiet settings vs Dask's defaults.

A sweep's tasks last minutes to hours: training runs in a child process the worker waits on (gap_fit, dp,
mace_run_train), MD and analysis run in the worker's task thread. Dask's worker samples that thread's stack every
10 ms for its profiler, ticks its event loop every 20 ms, reads the process's memory every 100 ms and the
system's every 500 ms; the scheduler beside the driver does its own. Measured here, for each setting in the same
run, on a LocalCluster of 2 single-threaded workers like ``harness sweep run``'s:

- **idle**: CPU seconds per minute used by the driver, the nannies and the workers (not the task's children)
  while each worker's task waits ``--idle-s`` on a child process (a training's situation);
- **busy**: the wall time of a fixed pure-Python computation run as a task in one worker (the best of 3), as a
  ratio to the same computation run just before each in a Python process of its own (best of 3): an MD task's situation, the task
  thread sampled by the profiler. On a loaded machine the ratio also holds the load's noise: compare the two
  settings' ratios, measured one after the other.

    python benchmarks/dask_overhead.py [--idle-s 30] [--work-s 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _wait_on_child(seconds: float) -> float:
    t = time.perf_counter()
    subprocess.run(["sleep", str(seconds)], check=True)
    return time.perf_counter() - t


def _compute(n: int) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return time.perf_counter() - t


def _alone(n: int) -> float:
    """The computation in a fresh Python process of its own (this one hosts the scheduler's event loop)."""
    out = subprocess.run([sys.executable, __file__, "--compute", str(n)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _tree_cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            c = psutil.Process(pid).cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(quiet: bool, *, idle_s: float, n_work: int) -> dict:
    import psutil
    from distributed import Client

    from harness.workflow.cluster import make_client
    from harness.workflow.run import close_client

    client: Client = make_client(workers=2, quiet=quiet)
    try:
        client.wait_for_workers(2)
        me = psutil.Process()
        procs = [me.pid, *(p.pid for p in me.children(recursive=True) if p.name() != "sleep")]
        futs = [client.submit(_wait_on_child, idle_s, pure=False) for _ in range(2)]
        time.sleep(2)  # the tasks started, the workers settled
        c0, t0 = _tree_cpu(procs), time.perf_counter()
        time.sleep(idle_s - 4)
        c1, t1 = _tree_cpu(procs), time.perf_counter()
        client.gather(futs)
        busy, alone = [], []
        for _ in range(3):  # interleaved: the machine's drift (other load, clock) falls on both alike
            alone.append(_alone(n_work))
            busy.append(client.submit(_compute, n_work, pure=False).result())
    finally:
        close_client(client)  # the cluster too: its workers would count in the next setting's tree
    return {"idle_cpu_s_per_min": 60 * (c1 - c0) / (t1 - t0), "busy_ratio": min(busy) / min(alone)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--idle-s", type=float, default=30.0)
    p.add_argument("--work-s", type=float, default=5.0, help="about how long the busy computation takes alone")
    p.add_argument("--json", default=None)
    p.add_argument("--compute", type=int, default=None, help=argparse.SUPPRESS)  # _alone's child
    args = p.parse_args()
    if args.compute is not None:
        print(_compute(args.compute))
        return

    n = 2_000_000
    n = int(n * args.work_s / _compute(n))
    out = {"cores": os.cpu_count()}
    for quiet in (False, True):
        out["quiet" if quiet else "dask_defaults"] = measure(quiet, idle_s=args.idle_s, n_work=n)
    d, q = out["dask_defaults"], out["quiet"]
    print(f"idle: {d['idle_cpu_s_per_min']:.2f} CPU-s/min with Dask's defaults, {q['idle_cpu_s_per_min']:.2f} quiet "
          f"(x{d['idle_cpu_s_per_min'] / max(q['idle_cpu_s_per_min'], 1e-9):.1f}); a task's computation in a worker "
          f"takes x{d['busy_ratio']:.3f} of its time alone with the defaults, x{q['busy_ratio']:.3f} quiet")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
