"""Training throughput through the harness vs the backend's own command run by hand (issue #13 item 4).

Per architecture, one member is trained with :func:`harness.models.train.train_member` on the same
frames; every tool command the harness ran (its argument list, captured) is then run again by hand in a
fresh directory holding a copy of the input files the harness wrote (input.json + data for ``dp``,
train/valid extxyz for ``mace_run_train`` and ``gap_fit``), in the environment a user would have
(inherited, plus ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``--threads``, ``CUDA_VISIBLE_DEVICES=""`` on
CPU and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which the tools need with torch >= 2.6; not the
harness's ``NUM_WORKERS=0``). Printed per architecture:

- DeePMD: optimizer steps/s over the whole ``dp --pt train`` (start-up and statistics included) and in
  the training loop (deepmd's ``average training time``), ``dp --pt freeze`` seconds;
- MACE: epochs/min over the whole ``mace_run_train`` and in the epoch loop (from its log's time stamps),
  and the share of its per-epoch validation in the loop;
- GAP: ``gap_fit`` seconds;

each with the ratio harness/by-hand of the *times* (target <= 1.05), and the harness's own work around
the tool (writing inputs, evaluating the kept model on the training/validation frames). With
``--repeats`` > 1 the order alternates (harness first, then by hand first) and medians are printed. The machine's load is
printed with the results: compare ratios only from runs on an otherwise idle machine.

    python benchmarks/training.py [--arch deepmd,mace,gap] [--frames 12] [--valid 2] [--threads 2]
                                  [--steps 200] [--epochs 4] [--repeats 1] [--subset OPLS]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ToolRecorder:
    """Wraps the backends' ``run_tool``: records each command, its wall time and the inputs present before it."""

    def __init__(self):
        self.calls: list[dict] = []

    def install(self):
        import harness.models.deepmd as dp_mod
        import harness.models.gap as gap_mod
        import harness.models.mace as mace_mod

        for mod in (dp_mod, gap_mod, mace_mod):
            mod.run_tool = self._wrap(mod.run_tool)

    def _wrap(self, run_tool):
        def timed(args, *, cwd, log, env=None, timeout_s=None):
            inputs = sorted(p.name for p in Path(cwd).iterdir()) if not self.calls else None
            t0 = time.perf_counter()
            seconds = run_tool(args, cwd=cwd, log=log, env=env, timeout_s=timeout_s)
            self.calls.append({"args": [str(a) for a in args], "env": dict(env or {}), "cwd": Path(cwd),
                               "seconds": time.perf_counter() - t0, "inputs": inputs})
            return seconds

        return timed


def by_hand(calls: list[dict], threads: int, workdir: Path) -> list[float]:
    """Run the recorded commands again in ``workdir`` (a copy of the inputs), as a user would; seconds each."""
    src = calls[0]["cwd"]
    workdir.mkdir(parents=True)
    for name in calls[0]["inputs"]:
        if name in ("train.log",):
            continue
        (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, workdir / name)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="",
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    out = []
    with open(workdir / "train.log", "a") as log:
        for c in calls:
            t0 = time.perf_counter()
            subprocess.run(c["args"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
            out.append(time.perf_counter() - t0)
    return out


def deepmd_loop_s_per_step(workdir: Path) -> float:
    m = re.findall(r"average training time: ([0-9.]+) s/batch", (workdir / "train.log").read_text())
    return float(m[-1]) if m else float("nan")


def mace_loop_s_per_epoch(workdir: Path) -> float:
    """Seconds per epoch between mace's 'Initial' validation and its last 'Epoch N' line."""
    times = {}
    for log in workdir.glob("logs/*.log"):
        if log.name.endswith("_debug.log"):
            continue
        for line in log.read_text().splitlines():
            m = re.match(r"^(\S+ \S+) INFO: (Initial|Epoch (\d+)): head", line)
            if m:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                times[-1 if m.group(3) is None else int(m.group(3))] = t
    last = max(times)
    return (times[last] - times[-1]) / (last + 1) if last >= 0 else float("nan")


def mace_validation_share(workdir: Path) -> float:
    """Share of mace's per-epoch validation in the epoch loop (``time`` of its eval vs opt result lines)."""
    import json

    ev = opt = 0.0
    for path in workdir.glob("results/*_train.txt"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("mode") == "eval" and row.get("epoch") is not None:
                ev += float(row.get("time", 0.0))
            elif row.get("mode") == "opt":
                opt += float(row.get("time", 0.0))
    return ev / (ev + opt) if ev + opt else float("nan")


def _med(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="deepmd,mace,gap")
    p.add_argument("--subset", default="OPLS")
    p.add_argument("--frames", type=int, default=12, help="training frames (160-atom liquid cells)")
    p.add_argument("--valid", type=int, default=2, help="validation frames (2 of 12: the OPLS split's ~12 %%)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="DeePMD optimizer steps")
    p.add_argument("--epochs", type=int, default=4, help="MACE epochs")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    args = p.parse_args()

    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, dataset_e0
    from harness.models.train import resolve_hyperparameters, train_member

    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    sub = assemble(spec, args.subset)
    train = sub.train[:: max(1, len(sub.train) // args.frames)][: args.frames]
    valid = sub.valid[: args.valid]
    e0, _ = dataset_e0(spec)
    overrides = {"deepmd": {"training": {"numb_steps": args.steps, "disp_freq": max(1, args.steps // 4),
                                         "save_freq": args.steps}},
                 "mace": {"max_num_epochs": args.epochs},
                 "gap": {}}
    root = Path(tempfile.mkdtemp(prefix="bench-training-")) if args.keep is None else args.keep
    print(f"{len(train)} training + {len(valid)} validation frames of {args.subset}, mini presets, "
          f"{args.threads} threads, {args.repeats} repeat(s); load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    rec = ToolRecorder()
    rec.install()
    for arch in args.arch.split(","):
        hp = resolve_hyperparameters(arch, "mini", overrides[arch])
        res: dict[str, list[float]] = {}
        for r in range(args.repeats):
            work = root / f"{arch}-{r}"
            hand = None
            if r % 2 == 1:  # odd repeats: by hand first (on the previous repeat's inputs), then the harness
                hand = by_hand(rec.calls, args.threads, work / "by-hand")
            rec.calls.clear()
            t0 = time.perf_counter()
            art = train_member(arch, train, valid, hyperparameters=hp, preset="mini", seed=0, workdir=work / "harness",
                               threads=args.threads, e0=e0)
            total = time.perf_counter() - t0
            if art.status != "ok":
                print(f"{arch}: training failed: {art.error}")
                break
            tool = [c["seconds"] for c in rec.calls]
            if hand is None:
                hand = by_hand(rec.calls, args.threads, work / "by-hand")
            print(f"  {arch} repeat {r}: tool s harness {' + '.join(f'{x:.2f}' for x in tool)}, "
                  f"by hand {' + '.join(f'{x:.2f}' for x in hand)}", flush=True)
            res.setdefault("tool_h", []).append(tool[0])
            res.setdefault("tool_b", []).append(hand[0])
            res.setdefault("overhead", []).append(total - sum(tool))
            if arch == "deepmd":
                res.setdefault("freeze_h", []).append(tool[1])
                res.setdefault("freeze_b", []).append(hand[1])
                res.setdefault("loop_h", []).append(deepmd_loop_s_per_step(work / "harness"))
                res.setdefault("loop_b", []).append(deepmd_loop_s_per_step(work / "by-hand"))
            elif arch == "mace":
                res.setdefault("loop_h", []).append(mace_loop_s_per_epoch(work / "harness"))
                res.setdefault("loop_b", []).append(mace_loop_s_per_epoch(work / "by-hand"))
                res.setdefault("val_share", []).append(mace_validation_share(work / "harness"))
            res.setdefault("rmse", []).append(art.metrics.get("valid_forces_rmse_meV_A", float("nan")))
        if not res:
            continue
        th, tb = _med(res["tool_h"]), _med(res["tool_b"])
        if arch == "deepmd":
            lh, lb = _med(res["loop_h"]), _med(res["loop_b"])
            rows += [(arch, "dp train: steps/s overall", args.steps / th, args.steps / tb, th / tb),
                     (arch, "dp train: steps/s in the loop", 1 / lh, 1 / lb, lh / lb),
                     (arch, "dp freeze: s", _med(res["freeze_h"]), _med(res["freeze_b"]),
                      _med(res["freeze_h"]) / _med(res["freeze_b"]))]
        elif arch == "mace":
            lh, lb = _med(res["loop_h"]), _med(res["loop_b"])
            rows += [(arch, "mace_run_train: epochs/min overall", 60 * args.epochs / th, 60 * args.epochs / tb, th / tb),
                     (arch, "mace_run_train: epochs/min in the loop", 60 / lh, 60 / lb, lh / lb),
                     (arch, "validation share of the epoch loop", _med(res["val_share"]), float("nan"), float("nan"))]
        else:
            rows.append((arch, "gap_fit: fit s", th, tb, th / tb))
        rows.append((arch, "harness work around the tool: s", _med(res["overhead"]), float("nan"), float("nan")))
        print(f"{arch}: valid force RMSE {_med(res['rmse']):.0f} meV/Å (a throughput run, not a converged model)")
    print(f"\n{'arch':7s} {'quantity':42s} {'harness':>9s} {'by hand':>9s} {'time ratio h/b':>15s}")
    for arch, what, h, b, ratio in rows:
        print(f"{arch:7s} {what:42s} {h:9.3g} {b:9.3g} {ratio:15.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}; run directories: {root}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
