"""Validation force RMSE against training wall time, per architecture (issue #13 item 5).

Trains one member per architecture on a subset of the shipped GFN2-xTB data (or reads the members of
an existing workspace with ``--workspace``) and prints, against the training tool's wall time, the
force-component RMSE (meV/Å) on

- the subset's own validation split (all of it: the frames the member's curve was logged on), and
- the held-out liquid validation sets (``liquid-2:10``, ``liquid-10:2``: EC:EMC compositions the
  training data do not contain; ``validation:`` in datasets/ec-emc-xtb.yaml).

Where the backend keeps intermediate models (DeePMD: ``model.ckpt-<step>.pt``, every ``save_freq``
steps) each is evaluated on all sets. Otherwise (MACE keeps only its best checkpoint per stage, GAP
fits in closed form) the rows are the member's recorded learning curve (``ModelArtifact.curve``, the
tool's own validation error on the subset split) and the kept model is evaluated on every set.

    python benchmarks/learning_curves.py [--arch deepmd,mace,gap] [--subset OPLS] [--frames 12]
        [--heldout 3] [--steps 200] [--epochs 4] [--threads 2]
    python benchmarks/learning_curves.py --workspace runs/demo-models [--arch mace] [--subset Full] [--heldout 10]

The defaults are tiny (a few minutes on 2 cores): the numbers show the machinery and the trend of the
first minutes, not converged models.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ("liquid-2:10", "liquid-10:2")


def _force_rmse(calc, frames) -> float:
    from harness.models.base import evaluate

    return evaluate(calc, frames).get("forces_rmse_meV_A", float("nan")) if frames else float("nan")


def _wall_at(curve, key: str, value: int) -> float:
    """Wall seconds of the last curve point at or before ``value`` of ``key`` (epoch or step)."""
    at = [p["wall_s"] for p in curve if key in p and p[key] <= value and "wall_s" in p]
    return at[-1] if at else float("nan")


def member_rows(art, sets: dict[str, list]) -> list[tuple[str, float, list[float]]]:
    """(position, wall s, force RMSE per set) for one member: checkpoints or the recorded curve, then the kept model."""
    from harness.models.base import get_trainer

    trainer = get_trainer(art.arch)
    names = list(sets)
    rows = []
    work = Path(art.workdir)
    ckpts = sorted(((int(m.group(1)), p) for p in work.glob("model.ckpt-*.pt")
                    if (m := re.match(r"model\.ckpt-(\d+)\.pt$", p.name))), key=lambda t: t[0])
    if art.arch == "deepmd" and ckpts:
        for step, path in ckpts:
            calc = trainer.calculator(replace(art, files={"model": path.name}))
            rows.append((f"step {step} (checkpoint)", _wall_at(art.curve, "step", step),
                         [_force_rmse(calc, sets[n]) for n in names]))
    else:
        for p in art.curve:
            if p.get("source") == "harness":
                continue
            pos = f"epoch {p['epoch']}" if "epoch" in p else f"step {p.get('step', '?')}"
            rows.append((pos + (" (stage 2)" if p.get("stage") == 2 else "") + " (tool log)", p.get("wall_s", np.nan),
                         [p.get("valid_forces_rmse_meV_A", np.nan)] + [np.nan] * (len(names) - 1)))
    calc = trainer.calculator(art)
    final = next((p for p in art.curve if p.get("source") == "harness"), {})
    # the subset split: the harness's evaluation at the end of training (the same frames as the curve)
    own = art.metrics.get("valid_forces_rmse_meV_A", np.nan)
    rows.append((f"kept {art.kept_model.get('file', art.files.get('model'))}", final.get("wall_s", art.train_seconds),
                 [own if np.isfinite(own) else _force_rmse(calc, sets[names[0]])]
                 + [_force_rmse(calc, sets[n]) for n in names[1:]]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="deepmd,mace,gap")
    p.add_argument("--subset", default="OPLS")
    p.add_argument("--workspace", type=Path, default=None, help="evaluate this workspace's members instead of training")
    p.add_argument("--frames", type=int, default=12, help="training frames (when training)")
    p.add_argument("--heldout", type=int, default=3, help="frames of each held-out liquid set evaluated (10 = all)")
    p.add_argument("--steps", type=int, default=200, help="DeePMD optimizer steps (when training)")
    p.add_argument("--epochs", type=int, default=4, help="MACE epochs (when training)")
    p.add_argument("--preset", default="mini")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, dataset_e0
    from harness.models.train import list_models, resolve_hyperparameters, train_member

    archs = args.arch.split(",")
    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    held = {n: assemble(spec, n).valid[: args.heldout] for n in HELD_OUT}
    tmp = None
    if args.workspace is not None:
        arts = [a for a in list_models(args.workspace) if a.status == "ok" and a.arch in archs
                and a.dataset.get("subset", args.subset) == args.subset]
        if not arts:
            raise SystemExit(f"no trained {'/'.join(archs)} member on {args.subset} in {args.workspace}")
        sub = assemble(load_dataset_spec(arts[0].dataset.get("spec", spec.path)), args.subset)
    else:
        sub = assemble(spec, args.subset)
        train = sub.train[:: max(1, len(sub.train) // args.frames)][: args.frames]
        e0, _ = dataset_e0(spec)
        disp = max(1, args.steps // 8)
        overrides = {"deepmd": {"training": {"numb_steps": args.steps, "disp_freq": disp,
                                             "save_freq": max(disp, args.steps // 4)}},
                     "mace": {"max_num_epochs": args.epochs}, "gap": {}}
        tmp = Path(tempfile.mkdtemp(prefix="bench-curves-"))
        arts = []
        for arch in archs:
            hp = resolve_hyperparameters(arch, args.preset, overrides[arch])
            art = train_member(arch, train, sub.valid, hyperparameters=hp, preset=args.preset, seed=0,
                               workdir=tmp / arch, threads=args.threads, e0=e0,
                               dataset={"subset": args.subset, "n_train": len(train), "n_valid": len(sub.valid)})
            if art.status != "ok":
                print(f"{arch}: training failed: {art.error}")
                continue
            arts.append(art)
        print(f"trained on {len(train)} frames of {args.subset} ({args.preset} preset), {args.threads} threads")
    sets = {f"{args.subset} valid": sub.valid, **held}
    print("force-component RMSE (meV/Å) on " + ", ".join(f"{n} ({len(f)} frames)" for n, f in sets.items())
          + "; wall s = training tool time; '-' = not evaluated at that point")
    for art in arts:
        print(f"\n{art.arch} on {art.dataset.get('subset', args.subset)}, {Path(art.workdir).name} "
              f"({art.dataset.get('n_train', '?')} training frames)")
        print(f"  {'at':34s} {'wall s':>8s} " + " ".join(f"{n:>16s}" for n in sets))
        for pos, wall, vals in member_rows(art, sets):
            cells = " ".join(f"{v:16.0f}" if np.isfinite(v) else f"{'-':>16s}" for v in vals)
            print(f"  {pos:34s} {wall:8.1f} {cells}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
