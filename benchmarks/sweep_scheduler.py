"""Sweep executor overheads: per-task scheduling cost and CPU-bound throughput on 2 workers vs 1.

1. Empty tasks (a chain-free graph of N no-op tasks) through ``harness.workflow.execute.execute`` with the
   SQLite store, on an embedded LocalCluster of 2 workers and in-process; overhead per task =
   (executor wall - bare function calls) / N.
2. CPU-bound tasks (pure-Python loops of ~0.5 s each) on 1 and on 2 workers: the throughput ratio
   (target >= 1.8 on 2 cores).

    python benchmarks/sweep_scheduler.py [--tasks 200] [--cpu-tasks 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def noop(params: dict, deps: dict) -> dict:
    return {"i": params["i"]}


def spin(params: dict, deps: dict) -> dict:
    x = 0
    for k in range(params["n"]):
        x += k * k % 7
    return {"x": x}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--cpu-tasks", type=int, default=8)
    p.add_argument("--loop", type=int, default=6_000_000, help="iterations per CPU-bound task")
    args = p.parse_args()

    from harness.workflow.cluster import make_client
    from harness.workflow.execute import Task, execute
    from harness.workflow.store import Store

    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    tmp = Path(tempfile.mkdtemp())

    def graph(name, count, **params):
        return [Task(name, f"sweep_scheduler:{name}", {**params, "i": i}) for i in range(count)]

    t0 = time.perf_counter()
    for i in range(args.tasks):
        noop({"i": i}, {})
    bare = time.perf_counter() - t0

    t0 = time.perf_counter()
    execute(graph("noop", args.tasks), Store(tmp / "inproc.sqlite"))
    inproc = time.perf_counter() - t0

    client = make_client(workers=2)
    client.run(lambda: sys.path.insert(0, str(Path(__file__).parent)))
    t0 = time.perf_counter()
    execute(graph("noop", args.tasks), Store(tmp / "dask.sqlite"), client=client)
    dask2 = time.perf_counter() - t0
    client.close()
    print(f"{args.tasks} empty tasks: bare calls {bare * 1e3:.1f} ms; in-process executor {inproc:.2f} s "
          f"({(inproc - bare) / args.tasks * 1e3:.1f} ms/task); Dask, 2 workers {dask2:.2f} s "
          f"({(dask2 - bare) / args.tasks * 1e3:.1f} ms/task)")

    walls = {}
    for n in (1, 2):
        client = make_client(workers=n)
        client.run(lambda: sys.path.insert(0, str(Path(__file__).parent)))
        t0 = time.perf_counter()
        execute(graph("spin", args.cpu_tasks, n=args.loop), Store(tmp / f"cpu{n}.sqlite"), client=client)
        walls[n] = time.perf_counter() - t0
        client.close()
    print(f"{args.cpu_tasks} CPU-bound tasks: 1 worker {walls[1]:.2f} s, 2 workers {walls[2]:.2f} s; "
          f"throughput ratio 2/1 = {walls[1] / walls[2]:.2f} (target >= 1.8)")


if __name__ == "__main__":
    main()
