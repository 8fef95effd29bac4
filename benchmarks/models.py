"""Per backend (mini preset): training wall time, evaluation cost, committee overhead.

Trains one member per backend on the shipped GFN2-xTB data (OPLS subset, up to ``--frames``
training frames), then times force calls on a 160-atom and a 640-atom cell, and a committee of
five copies of the member as a ratio to 5 x one member (same calculator objects, same run).

    python benchmarks/models.py [--arch gap,deepmd,mace] [--frames 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time_calls(calc, atoms, n: int) -> float:
    a = atoms.copy()
    a.calc = calc
    for k in range(3):  # warm-up: compilation, neighbour lists, DeePMD's automatic batch-size search
        a.positions[0, 1] += 1e-4
        a.get_forces()
    t0 = time.perf_counter()
    for k in range(n):
        a.positions[0, 0] += 1e-4 * (-1) ** k
        a.get_forces()
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="gap,deepmd,mace")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=5)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble
    from harness.models.base import get_trainer
    from harness.models.committee import CommitteeCalculator
    from harness.models.train import resolve_hyperparameters, train_member
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    sub = assemble(spec, "OPLS")
    train = sub.train[:: max(1, len(sub.train) // args.frames)][: args.frames]
    valid = sub.valid[:5]
    cell160 = build_box(Composition.parse("EC=4,EMC=8"), 1.1, seed=0)
    cell640 = build_box(Composition.parse("EC=16,EMC=32"), 1.1, seed=0)
    print(f"mini presets, {len(train)} training frames of 160 atoms, {args.threads} threads, CPU")
    for arch in args.arch.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            hp = resolve_hyperparameters(arch, "mini")
            art = train_member(arch, train, valid, hyperparameters=hp, preset="mini", seed=0,
                               workdir=Path(tmp) / "m", threads=args.threads, dtype=hp.get("dtype", "float64"))
            if art.status != "ok":
                print(f"  {arch}: training failed: {art.error}")
                continue
            calc = get_trainer(arch).calculator(art)
            t160 = _time_calls(calc, cell160, args.calls)
            t640 = _time_calls(calc, cell640, max(2, args.calls // 2))
            members = [get_trainer(arch).calculator(art) for _ in range(5)]
            single = sum(_time_calls(m, cell160, args.calls) for m in members)
            comm = _time_calls(CommitteeCalculator(members), cell160, args.calls)
            print(f"  {arch:6s}: train {art.train_seconds:6.1f} s (valid F RMSE "
                  f"{art.metrics.get('valid_forces_rmse_meV_A', float('nan')):.0f} meV/Å); "
                  f"{t160:7.1f} ms per 160-atom force call, {t640:7.1f} ms per 640-atom call; "
                  f"committee of 5 / (5 x member) = {comm / single:.3f}")


if __name__ == "__main__":
    main()
