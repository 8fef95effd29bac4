"""Labelling throughput: GFN2-xTB (tblite) on 160-atom periodic EC:EMC cells (4 EC + 8 EMC).

Prints frames per minute at 1 thread and at all available threads (OpenMP, set through the
oracle's ``threads`` option), and their ratio, measured in the same run. Also prints the cost of
the harness's labelling envelope (hashing, provenance, copies) relative to a bare ASE
``get_potential_energy/get_forces/get_stress`` loop with the same calculator settings.

    python benchmarks/label_throughput.py [--frames 3]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3, help="frames per measurement")
    args = parser.parse_args()

    from harness.reference import label_frames, make_oracle
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    ncpu = len(os.sched_getaffinity(0))
    comp = Composition.parse("EC=4,EMC=8")
    frames = [build_box(comp, 1.15, seed=s) for s in range(args.frames)]
    print(f"GFN2-xTB labelling, {len(frames)} frames of {len(frames[0])} atoms (periodic, 1.15 g/cm³), "
          f"{ncpu} CPU(s) available")

    # baseline: bare ASE loop, same calculator, all threads
    oracle = make_oracle("xtb", {"threads": ncpu})
    t0 = time.perf_counter()
    for a in frames:
        b = a.copy()
        b.calc = oracle.make_calculator()
        b.get_potential_energy(), b.get_forces(), b.get_stress()
    bare = time.perf_counter() - t0

    results = {}
    for threads in sorted({1, ncpu}):
        oracle = make_oracle("xtb", {"threads": threads})
        t0 = time.perf_counter()
        report = label_frames(frames, oracle)
        dt = time.perf_counter() - t0
        assert not report.failed, report.failed
        results[threads] = dt
        print(f"  threads={threads}: {60 * len(frames) / dt:6.1f} frames/min ({dt / len(frames):.2f} s/frame)")
    if ncpu > 1:
        print(f"  speed-up {ncpu} threads vs 1: {results[1] / results[ncpu]:.2f}x")
    print(f"  harness label_frames vs bare ASE loop ({ncpu} threads): {results[ncpu] / bare:.3f}x wall time")


if __name__ == "__main__":
    main()
