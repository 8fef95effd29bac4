"""What an MD step of the 160-atom EC:EMC cell costs on this CPU, per architecture and preset (issue #29 item 1).

The cost of a step does not depend on the values of a model's weights, only on its architecture, so each case
is a model *of the preset's architecture*: MACE's untrained model of the preset, a DeePMD model frozen after one
training step of the preset's input (its widths, cut-off and fixed ``sel``; also compressed with ``dp compress``
where ``--compress``), a GAP fitted with the preset's descriptors on 24 shipped frames. Each case runs the
harness's own NPT loop (MTK, 500 K, 0.5 fs, the validation detectors, thermo and frames as the study protocol
writes them) for ``--steps`` steps after a warm-up, and reports ms per step and CPU-s per step (wall × threads).

Variants: float32 vs float64 (MACE, DeePMD), 1 vs 2 threads, and ``--batch N``: N trajectories advanced together
(``harness.md.batched``, one model call per step for all) against N one at a time, as a throughput ratio.
Ratios are against the first case of the same run (never against numbers from another run).

    python benchmarks/md_cost.py [--arch mace,deepmd,gap] [--preset cpu] [--steps 60] [--threads 1,2]
                                 [--dtype float32,float64] [--batch 4] [--compress] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _start():
    from harness.io import read_frames

    a = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[0]
    assert len(a) == 160
    return a


def _settings(steps: int):
    from harness.md.runner import RunSettings

    return RunSettings("npt", 500.0, length_ps=steps * 0.5e-3, timestep_fs=0.5, pressure_atm=1.0, tdamp_fs=50.0,
                       pdamp_fs=500.0, frame_interval=50, thermo_interval=10, checkpoint_interval=10**9)


def mace_model(preset: str, dtype: str, work: Path) -> tuple[str, Path]:
    from harness.models.mace import untrained_model

    return "mace", untrained_model(work / f"mace-{preset}-{dtype}.model", preset, dtype=dtype)


def deepmd_model(preset: str, dtype: str, work: Path, compress: bool = False) -> tuple[str, Path]:
    """A DeePMD model of the preset's input frozen after one training step (and compressed if asked)."""
    import subprocess

    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, dataset_e0
    from harness.models.base import TrainInputs
    from harness.models.deepmd import PRESETS, deepmd_input
    from harness.tools import find_executable

    d = work / f"deepmd-{preset}-{dtype}"
    d.mkdir(parents=True, exist_ok=True)
    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    s = assemble(spec, "Full")
    e0, _ = dataset_e0(spec)
    inp = TrainInputs(train=s.train[::20], valid=s.valid[:2], species=("C", "H", "O"), e0=e0, seed=0, dtype=dtype)
    hp = json.loads(json.dumps(PRESETS[preset]))
    hp.pop("dtype", None)
    hp["training"].update(numb_steps=1, disp_freq=1, save_freq=1)
    cfg = deepmd_input(inp, hp, d)
    (d / "input.json").write_text(json.dumps(cfg))
    dp = find_executable("dp", env_var="HARNESS_DP")
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "NUM_WORKERS": "0", "CUDA_VISIBLE_DEVICES": ""}
    for cmd in ([dp, "--pt", "train", "input.json"], [dp, "--pt", "freeze", "-o", "model.pth"]):
        subprocess.run(cmd, cwd=d, env=env, check=True, capture_output=True)
    if compress:
        subprocess.run([dp, "--pt", "compress", "-i", "model.pth", "-o", "model-compressed.pth"], cwd=d, env=env,
                       check=True, capture_output=True)
        return "deepmd", d / "model-compressed.pth"
    return "deepmd", d / "model.pth"


def gap_model(preset: str, work: Path) -> tuple[str, Path]:
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, dataset_e0
    from harness.models.base import TrainInputs
    from harness.models.gap import GAPTrainer, PRESETS

    spec = load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml")
    s = assemble(spec, "Full")
    e0, _ = dataset_e0(spec)
    periodic = [a for a in s.train if a.pbc.all()]
    inp = TrainInputs(train=periodic[::max(1, len(periodic) // 24)][:24], valid=[], species=("C", "H", "O"), e0=e0,
                      seed=0, threads=2)
    d = work / f"gap-{preset}"
    d.mkdir(parents=True, exist_ok=True)
    art = GAPTrainer().train(inp, dict(PRESETS[preset]), d)
    return "gap", Path(art.workdir) / "gap.xml"


def _calc(arch: str, path: Path, dtype: str):
    from harness.models.base import get_trainer

    return get_trainer(arch).load_file(path, dtype=dtype)


def time_md(arch: str, path: Path, dtype: str, threads: int, steps: int, work: Path, warmup: int = 10) -> float:
    """Wall seconds per step of the harness NPT loop (after ``warmup`` steps)."""
    import torch

    from harness.md.detectors import validation_detectors
    from harness.md.runner import run_md

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    start = _start()
    calc = _calc(arch, path, dtype)
    run_md(start, calc, _settings(warmup), outdir=work / f"warm-{time.time_ns()}", seed=0,
           detectors=validation_detectors(True))
    t0 = time.perf_counter()
    r = run_md(start, calc, _settings(steps), outdir=work / f"run-{time.time_ns()}", seed=1,
               detectors=validation_detectors(True))
    return (time.perf_counter() - t0) / max(1, r.n_steps)


def time_batched(arch: str, path: Path, dtype: str, threads: int, steps: int, n: int, work: Path) -> tuple[float, float]:
    """Wall seconds per trajectory-step: n trajectories batched, and the same n one after another."""
    import torch

    from harness.md.batched import BatchJob, run_batched
    from harness.models.batch import batch_evaluator

    torch.set_num_threads(threads)
    start = _start()
    ev = batch_evaluator(_calc(arch, path, dtype))
    s = _settings(steps)
    t0 = time.perf_counter()
    run_batched([BatchJob(start, s, work / f"b{k}-{time.time_ns()}", seed=k) for k in range(n)], [ev])
    batched = (time.perf_counter() - t0) / (n * steps)
    t0 = time.perf_counter()
    for k in range(n):
        time_md(arch, path, dtype, threads, steps, work, warmup=1)
    alone = (time.perf_counter() - t0) / (n * steps)
    return batched, alone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mace,deepmd,gap")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--batch", type=int, default=0, help="also time N batched trajectories vs N alone (MACE, DeePMD)")
    p.add_argument("--compress", action="store_true", help="also a compressed DeePMD model (dp --pt compress)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="md-cost-"))
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for arch in args.arch.split(","):
        dtypes = ["float64"] if arch == "gap" else args.dtype.split(",")
        for dtype in dtypes:
            models = []
            if arch == "mace":
                models.append(("", mace_model(args.preset, dtype, work)[1]))
            elif arch == "deepmd":
                models.append(("", deepmd_model(args.preset, dtype, work)[1]))
                if args.compress:
                    try:
                        models.append((" compressed", deepmd_model(args.preset, dtype, work, compress=True)[1]))
                    except Exception as exc:  # noqa: BLE001 - report and go on
                        print(f"deepmd {dtype}: dp compress failed ({type(exc).__name__}); skipped", flush=True)
            else:
                models.append(("", gap_model(args.preset, work)[1]))
            for tag, path in models:
                for t in threads:
                    s = time_md(arch, path, dtype, t, args.steps, work)
                    rows.append({"case": f"{arch}{tag} {args.preset} {dtype}", "threads": t, "ms_per_step": 1000 * s,
                                 "cpu_s_per_step": s * t})
                    print(f"{rows[-1]['case']:<34} {t} thread(s): {1000 * s:8.1f} ms/step, "
                          f"{s * t:.3f} CPU-s/step", flush=True)
                if args.batch and arch in ("mace", "deepmd"):
                    b, a = time_batched(arch, path, dtype, threads[0], args.steps, args.batch, work)
                    rows.append({"case": f"{arch}{tag} {args.preset} {dtype} batch {args.batch}", "threads": threads[0],
                                 "ms_per_step": 1000 * b, "alone_ms_per_step": 1000 * a, "throughput_ratio": a / b})
                    print(f"{rows[-1]['case']:<34} {threads[0]} thread(s): batched {1000 * b:.1f} ms per trajectory-step, "
                          f"alone {1000 * a:.1f}: throughput x{a / b:.2f}", flush=True)
    base = rows[0]["ms_per_step"]
    print(f"\nratios to the first case ({rows[0]['case']}, {rows[0]['threads']} thread(s)):")
    for r in rows:
        print(f"  {r['case']:<40} {r['threads']}t  x{r['ms_per_step'] / base:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
