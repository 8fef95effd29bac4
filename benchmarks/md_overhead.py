"""Overhead of the harness MD loop vs a bare ASE dynamics loop (target <= 1.03 with an MLIP).

Same calculator, same start, same number of steps, same integrator (MTK NPT, 300 K default): the bare
loop calls ``dyn.run(steps)``; the harness loop runs ``run_md`` with the validation detectors
(interval 10), thermo every 5 steps, frames every 20 and checkpoints every 1000. The calculator is a
MACE mini member trained here on shipped data (or ``--model DIR``).

    python benchmarks/md_overhead.py [--steps 400] [--model runs/.../member-0-seed0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--temperature-K", type=float, default=300.0, help="300 K keeps a mini model stable for the run")
    args = p.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from harness.io import read_frames
    from harness.md.detectors import validation_detectors
    from harness.md.runner import RunSettings, make_dynamics, run_md
    from harness.models.base import ModelArtifact, get_trainer
    from harness.models.train import resolve_hyperparameters, train_member

    tmp = Path(tempfile.mkdtemp())
    if args.model is None:
        opls = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")
        hp = resolve_hyperparameters("mace", "mini", {"max_num_epochs": 20})
        art = train_member("mace", opls[::3][:60], opls[1::45][:3], hyperparameters=hp,
                           preset="mini", seed=0, workdir=tmp / "model", threads=args.threads, dtype="float32")
    else:
        art = ModelArtifact.load(args.model)
    start = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[0]
    s = RunSettings("npt", args.temperature_K, length_ps=args.steps * 0.5 / 1000, timestep_fs=0.5, frame_interval=20,
                    thermo_interval=5, checkpoint_interval=1000)

    def fresh():
        return get_trainer(art.arch).calculator(art)

    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def bare_loop() -> float:
        atoms = start.copy()
        atoms.calc = fresh()
        rng = np.random.default_rng(0)
        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature_K, rng=rng)
        dyn = make_dynamics(atoms, s, rng)
        dyn.run(5)
        t0 = time.perf_counter()
        dyn.run(args.steps)
        return time.perf_counter() - t0

    bare_before = bare_loop()
    # harness loop (detector set-up, e.g. the cached GFN2-xTB bond lengths, done before timing)
    dets = validation_detectors(True, interval=10)
    for d in dets:
        d.reset(start)
    calc = fresh()  # warmed up like the bare loop's (first calls of a torch model are slow)
    warm = start.copy()
    warm.calc = calc
    for _ in range(5):
        warm.positions[0, 0] += 1e-3
        warm.get_forces()
    t0 = time.perf_counter()
    r = run_md(start, calc, s, outdir=tmp / "md", detectors=dets, seed=0)
    harness = time.perf_counter() - t0
    bare = min(bare_before, bare_loop())  # bare loop timed before and after: machine noise
    per_step = 1000 * bare / args.steps
    print(f"{art.arch} ({art.preset}) on {len(start)} atoms, {args.steps} MTK NPT steps, {args.threads} threads: "
          f"bare ASE {per_step:.1f} ms/step; harness {1000 * harness / max(r.n_steps, 1):.1f} ms/step "
          f"(detectors + H5MD + thermo + checkpoints); ratio {harness / bare * args.steps / max(r.n_steps, 1):.3f}"
          + ("" if r.failure is None else f"  [run stopped early: {r.failure['detector']} at step {r.failure['step']}]"))


if __name__ == "__main__":
    main()
