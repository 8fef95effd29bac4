"""MD speed on one device: the harness loop vs a bare ASE loop, and batched vs one-at-a-time throughput.

Targets (issue #15, one H100): a single trajectory in the harness loop <= 1.05 x the bare ASE loop with
the backend's own calculator; 32 batched 160-atom trajectories >= 8 x the throughput of running them one
at a time. On a CPU the same measurements run with smaller N (defaults below) to show no regression.

Per architecture (MACE unless --no-mace; DeePMD unless --no-deepmd), models of the ``study`` preset's architecture:

1. ms/step of one trajectory (MTK NPT, 500 K) of 160 and 640 atoms (a packed 16 EC + 32 EMC box):
   a bare ``dyn.run`` with the model's ASE calculator, and ``run_md`` with the validation detectors and
   outputs; ratio harness / bare.
2. aggregate atom-steps/s of B batched 160-atom trajectories per engine — ``ase`` (``run_batched``: one ASE
   integrator per trajectory, one model call per step for all B) and ``torchsim`` (``run_torchsim``: TorchSim's
   integrators on the device, MACE on TorchSim's MaceModel) — vs the same B run one after another (B x the time
   of one trajectory in ``run_md``, measured just before each batch); no detectors. Langevin NVT at 500 K for
   all three: the ensemble TorchSim 0.3 samples correctly (harness.md.torchsim.INTEGRATORS), so that both engines
   integrate the same equations.

MACE's weights are its initial ones (``harness.models.mace.untrained_model``: the cost of a step depends on
the architecture, not the weights); DeePMD is trained for 10 steps on a few frames (``dp`` needs a trained,
frozen model). Short runs at 500 K with untrained weights may end early (a detector fires): the rates are
per step actually run. Use --mace-model / --deepmd-model FILE (a model file, or a trained or shipped member's
folder) for trained models.

    python benchmarks/gpu_md.py                                   # CPU: steps 6, batches 1 2 4
    python benchmarks/gpu_md.py --device cuda --steps 200 --batches 1 8 32 128 --dtype float32
    python benchmarks/gpu_md.py --engines torchsim --no-deepmd --sizes 160 --batches 1 2   # one engine
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the detectors of the harness-loop measurement (all validation detectors, unless one cannot run on the node)
DETECTORS: dict = {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="MACE evaluation precision")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 640], help="atoms of the single trajectories")
    p.add_argument("--preset", default="study", help="architecture of the models (a preset name)")
    p.add_argument("--mace-model", type=Path, default=None, help="model file or member folder")
    p.add_argument("--deepmd-model", type=Path, default=None, help="model file or member folder")
    p.add_argument("--no-deepmd", action="store_true")
    p.add_argument("--no-mace", action="store_true")
    p.add_argument("--cueq", action="store_true", help="MACE with cuEquivariance kernels (if installed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", nargs="+", default=["ase", "torchsim"], choices=["ase", "torchsim"],
                   help="engines of the batched measurement")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args()

    import torch

    global np
    import numpy as np

    torch.set_num_threads(args.threads)
    from harness.io import read_frames

    tmp = Path(tempfile.mkdtemp())
    start = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[0]
    models = {} if args.no_mace else {"mace": _mace(args, tmp)}
    if not args.no_deepmd:
        models["deepmd"] = _deepmd(args, tmp)
    out = {"device": args.device, "dtype": args.dtype, "steps": args.steps, "preset": args.preset, "archs": {}}
    for arch, make in models.items():
        rec = out["archs"][arch] = {"single": {}, "batched": {}}
        for n in args.sizes:
            atoms = _start(start, n)
            bare = _bare(make, atoms, args.steps)
            harness = _harness(make, atoms, args.steps, tmp / f"{arch}-{n}")
            rec["single"][n] = {"bare_ms": bare, "harness_ms": harness, "ratio": harness / bare}
            print(f"{arch:6s} {n:4d} atoms, one trajectory: bare ASE {bare:8.1f} ms/step, harness {harness:8.1f} "
                  f"ms/step, ratio {harness / bare:.3f}", flush=True)
        for engine in args.engines:
            per = rec["batched"][engine] = {}
            for b in args.batches:
                # one at a time = the harness loop on one trajectory, measured just before (same machine load)
                one = _harness(make, start, args.steps, tmp / f"{arch}-{engine}-alone{b}", detectors=False,
                               ensemble="nvt")
                run = _batched if engine == "ase" else _torchsim
                ms = run(make, start, b, args.steps, tmp / f"{arch}-{engine}-batch{b}", args.device)
                batched_rate = b * len(start) / (ms / 1000)
                alone_rate = len(start) / (one / 1000)
                per[b] = {"ms_per_batch_step": ms, "atom_steps_per_s": batched_rate,
                          "one_at_a_time_atom_steps_per_s": alone_rate, "speedup": batched_rate / alone_rate}
                print(f"{arch:6s} {engine:8s} {b:4d} x 160 atoms batched: {ms:8.1f} ms per step of all, "
                      f"{batched_rate:10.0f} atom-steps/s vs {alone_rate:10.0f} one at a time: "
                      f"x{batched_rate / alone_rate:.2f}", flush=True)
    out["detectors"] = DETECTORS
    out["distributions"] = _distributions()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def _distributions() -> list[str]:
    """The installed distributions this run imported (what a GPU node must have or be given: harness.wheelhouse
    --check compares them with a device bundle)."""
    import sys
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    tops = {m.split(".")[0] for m in list(sys.modules)}
    return sorted({d for t in tops for d in owners.get(t, []) if d != "liquid-mlip-harness"})


def _start(start, n: int):
    """The shipped 160-atom OPLS frame, or four periodic images of it (2 x 2 x 1: 640 atoms at the same density;
    timing only, and no packmol or RDKit needed on the node)."""
    if n == 160:
        return start
    if n != 640:
        raise SystemExit(f"--sizes: 160 or 640, got {n}")
    big = start.repeat((2, 2, 1))
    if "mol_id" in start.arrays:  # molecules of the images are other molecules
        per = int(start.arrays["mol_id"].max()) + 1
        big.arrays["mol_id"] = (big.arrays["mol_id"] + per * (np.arange(len(big)) // len(start))).astype(int)
    return big


def _model_file(path: Path | None) -> Path | None:
    """A model file, or the model of a member folder (artifact.json; a shipped one unpacked, hash-checked);
    resolved only for an architecture that runs (a --no-deepmd run never unpacks a DeePMD member)."""
    from harness.models.base import ModelArtifact

    if path is None:
        return None
    return ModelArtifact.load(path).path("model") if (path / "artifact.json").is_file() else path


def _mace(args, tmp: Path):
    from harness.models.mace import MACETrainer, untrained_model

    path = _model_file(args.mace_model) or untrained_model(tmp / "mace.model", args.preset, dtype="float64")

    def make():
        if args.cueq:
            from mace.calculators import MACECalculator

            return MACECalculator(model_paths=str(path), device=args.device, default_dtype=args.dtype, enable_cueq=True)
        return MACETrainer().load_file(path, device=args.device, dtype=args.dtype)
    return make


def _deepmd(args, tmp: Path):
    from harness.io import read_frames
    from harness.models.deepmd import DeePMDTrainer
    from harness.models.train import resolve_hyperparameters, train_member

    path = _model_file(args.deepmd_model)
    if path is None:
        opls = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")
        hp = resolve_hyperparameters("deepmd", args.preset, {"training": {"numb_steps": 10, "disp_freq": 5,
                                                                         "save_freq": 10}})
        art = train_member("deepmd", opls[:4], opls[4:6], hyperparameters=hp, preset=args.preset, seed=0,
                           workdir=tmp / "deepmd", threads=args.threads, device=args.device)
        if art.status != "ok":
            raise SystemExit(f"DeePMD training for the benchmark failed: {art.error}")
        path = art.path("model")
    return lambda: DeePMDTrainer().load_file(path, device=args.device)


def _settings(steps: int, ensemble: str = "npt"):
    """MTK NPT (single trajectories), or Langevin NVT (batches: both engines' common ensemble), 500 K."""
    from harness.md.runner import RunSettings

    return RunSettings(ensemble, 500.0, length_ps=steps * 0.5 / 1000, timestep_fs=0.5, frame_interval=20,
                       thermo_interval=5, checkpoint_interval=1000, thermostat="langevin")


def _warm(calc, atoms) -> None:
    a = atoms.copy()
    a.calc = calc
    for _ in range(3):  # first calls of a torch model compile / allocate
        a.positions[0, 0] += 1e-3
        a.get_forces()


def _bare(make, atoms, steps: int) -> float:
    """ms/step of ASE's own loop (the harness's MTK NPT integrator, no detectors or outputs)."""
    import numpy as np
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from harness.md.runner import make_dynamics

    calc = make()
    _warm(calc, atoms)
    a = atoms.copy()
    a.calc = calc
    rng = np.random.default_rng(0)
    MaxwellBoltzmannDistribution(a, temperature_K=500.0, rng=rng)
    dyn = make_dynamics(a, _settings(steps), rng)
    t0 = time.perf_counter()
    dyn.run(steps)
    return 1000 * (time.perf_counter() - t0) / steps


def _harness(make, atoms, steps: int, outdir: Path, detectors: bool = True, ensemble: str = "npt") -> float:
    from harness.md.detectors import validation_detectors
    from harness.md.runner import run_md

    from harness.md.detectors import BondStretch

    # bond lengths from RDKit's MMFF geometry, not GFN2-xTB: the same detector cost without tblite, which the device
    # bundles do not carry (and independent of what the bond-length cache holds)
    dets = validation_detectors(True, interval=10, bond_length_method="mmff") if detectors else []
    try:
        for d in dets:
            d.reset(atoms)
    except ModuleNotFoundError as exc:  # RDKit (the bond templates) absent: a node given only the device bundle
        dets = [d for d in dets if not isinstance(d, BondStretch)]
        for d in dets:
            d.reset(atoms)
        DETECTORS["missing"] = f"bond-stretch detector left out: {exc}"
    if dets:
        DETECTORS["used"] = sorted(type(d).__name__ for d in dets)
    calc = make()
    _warm(calc, atoms)
    t0 = time.perf_counter()
    r = run_md(atoms, calc, _settings(steps, ensemble), outdir=outdir, detectors=dets, seed=0)
    return 1000 * (time.perf_counter() - t0) / max(r.n_steps, 1)


def _batched(make, atoms, b: int, steps: int, root: Path, device: str = "cpu") -> float:
    """ms per step of all ``b`` trajectories advanced together (model calls / steps actually made)."""
    from harness.md.batched import BatchJob, run_batched
    from harness.models.batch import batch_evaluator

    calc = make()
    _warm(calc, atoms)
    ev = batch_evaluator(calc)
    jobs = [BatchJob(atoms, _settings(steps, "nvt"), root / f"r{k}", seed=k) for k in range(b)]
    t0 = time.perf_counter()
    results = run_batched(jobs, [ev])
    wall = time.perf_counter() - t0
    made = max(max((r.n_steps for r in results if not isinstance(r, BaseException)), default=1), 1)
    return 1000 * wall / made


def _torchsim(make, atoms, b: int, steps: int, root: Path, device: str = "cpu") -> float:
    """ms per step of all ``b`` trajectories in one TorchSim batch (``run_torchsim``; MACE on TorchSim's MaceModel,
    DeePMD through the batched evaluator)."""
    from harness.md.batched import BatchJob
    from harness.md.torchsim import run_torchsim
    from harness.models.batch import torchsim_model

    calc = make()
    _warm(calc, atoms)
    model = torchsim_model(calc, device)
    warm = run_torchsim([BatchJob(atoms, _settings(3, "nvt"), root / "warm", seed=0)], model)  # first calls
    del warm
    jobs = [BatchJob(atoms, _settings(steps, "nvt"), root / f"r{k}", seed=k) for k in range(b)]
    t0 = time.perf_counter()
    results = run_torchsim(jobs, model)
    wall = time.perf_counter() - t0
    made = max(max((r.n_steps for r in results if not isinstance(r, BaseException)), default=1), 1)
    return 1000 * wall / made


if __name__ == "__main__":
    main()
