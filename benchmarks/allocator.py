"""Force calls with glibc's default malloc settings vs the harness's (``harness.tools.MALLOC``): CPU-s per call.

torch on a CPU allocates and frees tensors of megabytes at every force call; under glibc's defaults the freed heap
goes back to the kernel and is faulted in (zeroed) again at the next call. Each case runs in a fresh process (glibc
reads ``MALLOC_*_`` when a process starts) on one thread: the 160-atom EC:EMC cell of the shipped dataset, a
warm-up call, then ``--calls`` force calls with the atoms rattled each time. Reported: wall, user and system
CPU-s per call, minor page faults per call, and default / harness ratios from the same run.

    python benchmarks/allocator.py [--models mace,sevennet] [--calls 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASE = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(1)
from harness.io import read_frames
atoms = read_frames(sys.argv[3] + "/datasets/ec-emc-xtb/opls.extxyz.gz")[0]
if sys.argv[1] == "mace":
    from harness.models.mace import untrained_model
    from mace.calculators import MACECalculator
    path = untrained_model(os.path.join(sys.argv[4], "mace-cpu.model"), "cpu", dtype="float64")
    atoms.calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
else:
    from harness.models.foundation import foundation_calculator
    atoms.calc = foundation_calculator("sevennet-0")
atoms.get_forces()
t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
for i in range(int(sys.argv[2])):
    atoms.rattle(1e-3, seed=i)
    atoms.get_forces()
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
n = int(sys.argv[2])
print(json.dumps({"wall_s": (t1 - t0) / n, "user_s": (r1.ru_utime - r0.ru_utime) / n,
                  "system_s": (r1.ru_stime - r0.ru_stime) / n, "minor_faults": (r1.ru_minflt - r0.ru_minflt) / n}))
"""


def run_case(model: str, calls: int, settings: str, work: str) -> dict:
    from harness.tools import MALLOC

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(OMP_NUM_THREADS="1", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    if settings == "harness":
        env.update({k: str(v) for k, v in MALLOC.items()})
    out = subprocess.run([sys.executable, "-c", CASE, model, str(calls), str(ROOT), work], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{model} ({settings}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mace,sevennet")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models.split(","):
            cases = {s: run_case(model, args.calls, s, work) for s in ("default", "harness")}
            d, h = cases["default"], cases["harness"]
            cpu = lambda c: c["user_s"] + c["system_s"]  # noqa: E731
            rows.append({"model": model, **{f"{s}_{k}": v for s, c in cases.items() for k, v in c.items()},
                         "cpu_ratio": cpu(d) / cpu(h), "wall_ratio": d["wall_s"] / h["wall_s"]})
            print(f"{model:9s} default: {d['wall_s']:.3f} s/call, {d['user_s']:.3f} user + {d['system_s']:.3f} "
                  f"system, {d['minor_faults']:.0f} faults | harness: {h['wall_s']:.3f} s/call, {h['user_s']:.3f} "
                  f"user + {h['system_s']:.3f} system, {h['minor_faults']:.0f} faults | default/harness CPU "
                  f"{rows[-1]['cpu_ratio']:.2f}, wall {rows[-1]['wall_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
