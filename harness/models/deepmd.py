"""DeePMD backend: ``dp --pt train`` + ``dp --pt freeze`` (deepmd-kit, PyTorch) and the ``DP`` calculator.

Data are written directly in deepmd/npy format. Frames are grouped into *systems* of identical
atom types in identical order, equal periodicity and equal weight; a subset's per-frame weights
reach DeePMD as system probabilities (``sys_probs`` ∝ the total weight of each system), so a frame
is drawn in proportion to its weight, as with MACE's ``config_weight`` and GAP's sigmas.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator

from harness.io import sha256_file
from harness.models.base import ModelArtifact, TrainInputs, default_threads, reference_virial, run_tool, thread_env
from harness.models.curves import deepmd_curve, read_curve
from harness.provenance import versions
from harness.tools import find_executable

__all__ = ["DeePMDTrainer", "deepmd_input", "resolve_sel", "write_deepmd_systems"]

# The neighbour selection is fixed per cut-off, the same for every subset a preset trains on (SCIENCE.md §11, one
# difference per arm): ``sel: auto`` would resolve it from each subset's own neighbour statistics, giving the
# volume-scan subsets (frames up to 2 g/cm³) a larger neighbour list than OPLS. The largest counts of each element
# within the cut-off around any atom in the shipped data (datasets/ec-emc-xtb, every source, the held-out 1:2 and
# 2:1 volume scans included; measured 2026-12-06): 4.5 Å C 23, H 41, O 20; 6.0 Å C 47, H 86, O 41 — about 1.27x.
# A mapping by element; the trainer writes it in type-map order and refuses a species it does not name.
SEL_4_5 = {"C": 30, "H": 52, "O": 26}
SEL_6_0 = {"C": 60, "H": 110, "O": 52}

PRESETS: dict[str, dict[str, Any]] = {
    # CPU, about a minute per member: a small se_e2_a (DESIGN.md measured rcut 5, [10,20], [60,60] at
    # 2000 steps in 2 min 12 s; this is smaller and shorter).
    "mini": {
        "model": {"descriptor": {"type": "se_e2_a", "rcut": 4.5, "rcut_smth": 0.5, "sel": SEL_4_5,
                                 "neuron": [8, 16], "axis_neuron": 4},
                  "fitting_net": {"neuron": [32, 32], "resnet_dt": True}},
        "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-5, "decay_steps": 50},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {"numb_steps": 1000, "batch_size": 1, "disp_freq": 100, "save_freq": 1000},
        "dtype": "float64",
    },
    # converged for this liquid on one GPU node (issue #13; acceptance on the GPU in #11): se_e2_a at the
    # paper's widths with a 6 Å cut-off, 200 000 steps with the learning rate decayed 1e-3 -> 1e-6, and the
    # virial in the loss (periodic frames carry REF_stress: the NPT density depends on it)
    "study": {
        "model": {"descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": SEL_6_0,
                                 "neuron": [25, 50, 100], "axis_neuron": 16},
                  "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}},
        "learning_rate": {"type": "exp", "start_lr": 0.001, "stop_lr": 1e-6, "decay_steps": 2000},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {"numb_steps": 200000, "batch_size": 1, "disp_freq": 1000, "save_freq": 10000},
        "dtype": "float64",
    },
    # the DeePMD this 2-core CPU trains in ~40 minutes of one core (issue #29 item 2): se_e2_a at a third of the
    # paper's widths, float32, 40 000 steps with lr 1e-3 -> 1e-5 decayed over all of them. The first `cpu` recipe
    # (18 000 steps, the same decay) flattened at 206.5 meV/Å on Full once its rate had decayed (14 000 steps) and
    # broke a C-H bond within 0.07 ps; slower decays kept falling: 1e-3 -> 1e-5 over 40 000 steps ~150 meV/Å after
    # 24 CPU-min, over 60 000 steps 125-129 meV/Å at step 31 000 (lr ~1e-4). 0.058 CPU-s per step on Full
    # (docs/measurements.md, "Converged training on CPU"); the study's members' own curves are its evidence. A
    # checkpoint every 1000 steps (~1 CPU-min): a walltime piece stops `dp` and the next resumes from the last one.
    # Compressed after freezing (dp compress): the member whose errors are measured and which runs the MD.
    "cpu": {
        "model": {"descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": SEL_6_0,
                                 "neuron": [16, 32, 64], "axis_neuron": 8},
                  "fitting_net": {"neuron": [120, 120, 120], "resnet_dt": True}},
        "learning_rate": {"type": "exp", "start_lr": 0.001, "stop_lr": 1e-5, "decay_steps": 1000},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {"numb_steps": 40000, "batch_size": 1, "disp_freq": 1000, "save_freq": 1000},
        "dtype": "float32",
        "compress": True,
    },
    # GPU-scale (paper-like): se_e2_a with a 6 Å cut-off
    "paper": {
        "model": {"descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": SEL_6_0,
                                 "neuron": [25, 50, 100], "axis_neuron": 16},
                  "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}},
        "learning_rate": {"type": "exp", "start_lr": 0.001, "stop_lr": 3.51e-8, "decay_steps": 5000},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {"numb_steps": 400000, "batch_size": "auto", "disp_freq": 1000, "save_freq": 10000},
        "dtype": "float64",
    },
}


def write_deepmd_systems(frames, root: Path, type_map: list[str]) -> tuple[list[str], list[float]]:
    """Write frames as deepmd/npy systems under ``root``; return system paths and their weights."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for a in frames:
        key = (tuple(a.get_chemical_symbols()), bool(a.pbc.all()), round(float(a.info.get("weight", 1.0)), 10))
        groups.setdefault(key, []).append(a)
    paths, weights = [], []
    index = {s: i for i, s in enumerate(type_map)}
    for k, ((symbols, periodic, weight), members) in enumerate(groups.items()):
        d = root / f"sys{k:03d}"
        (d / "set.000").mkdir(parents=True, exist_ok=True)
        (d / "type.raw").write_text("\n".join(str(index[s]) for s in symbols) + "\n")
        (d / "type_map.raw").write_text("\n".join(type_map) + "\n")
        n = len(symbols)
        coord = np.array([a.positions.reshape(-1) for a in members])
        force = np.array([a.arrays["REF_forces"].reshape(-1) for a in members])
        energy = np.array([a.info["REF_energy"] for a in members])
        if periodic:
            box = np.array([np.asarray(a.cell[:]).reshape(-1) for a in members])
        else:
            (d / "nopbc").write_text("")
            # a box is still required by the reader; a large one is ignored under nopbc
            span = max(float(np.ptp(coord.reshape(-1, n, 3), axis=1).max()) + 20.0, 50.0)
            box = np.tile((np.eye(3) * span).reshape(-1), (len(members), 1))
        np.save(d / "set.000" / "coord.npy", coord)
        np.save(d / "set.000" / "force.npy", force)
        np.save(d / "set.000" / "energy.npy", energy)
        np.save(d / "set.000" / "box.npy", box)
        virials = [reference_virial(a) for a in members]
        if periodic and all(v is not None for v in virials):  # DeePMD's virial: W = -V * sigma, full 3x3
            np.save(d / "set.000" / "virial.npy", np.array(virials))
        paths.append(str(d))
        weights.append(weight * len(members))
    return paths, weights


def resolve_sel(sel: Any, type_map: list[str]) -> Any:
    """``sel`` in type-map order: a per-element mapping (the presets') is written out; a list or ``auto`` (an
    explicit override: the user's choice) is passed as it is."""
    from harness.errors import InputError

    if not isinstance(sel, dict):
        return sel
    missing = [s for s in type_map if s not in sel]
    if missing:
        raise InputError(f"deepmd: the neighbour selection sel names {', '.join(sorted(sel))}, not "
                         f"{', '.join(missing)}; give model.descriptor.sel for every element (a mapping by element, "
                         f"or a list in type-map order {type_map})")
    return [int(sel[s]) for s in type_map]


def deepmd_input(inputs: TrainInputs, hp: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The ``dp train`` input for ``inputs`` (its data written under ``workdir/data``): the preset's settings
    with the species' type map, the seeds, the fixed neighbour selection and the isolated-atom energies;
    only data paths and weights depend on the frames."""
    from harness.models.base import deep_merge

    type_map = list(inputs.species)
    dtype = inputs.dtype
    train_paths, train_w = write_deepmd_systems(inputs.train, workdir / "data" / "train", type_map)
    total = sum(train_w)
    descriptor = hp.get("model", {}).get("descriptor", {})
    config = deep_merge(hp, {
        "model": {"type_map": type_map,
                  "descriptor": {"seed": inputs.seed, "precision": dtype,
                                 **({"sel": resolve_sel(descriptor["sel"], type_map)} if "sel" in descriptor else {})},
                  "fitting_net": {"seed": inputs.seed, "precision": dtype}},
        "training": {"seed": inputs.seed,
                     "training_data": {"systems": [os.path.relpath(p, workdir) for p in train_paths],
                                       "sys_probs": [w / total for w in train_w],
                                       "batch_size": hp.get("training", {}).get("batch_size", 1)}},
    })
    config["training"].pop("batch_size", None)
    if inputs.e0:
        # the isolated-atom energies are the per-type energy bias (``preset_out_bias``, which needs
        # ``set_davg_zero``); DeePMD otherwise fits the bias by least squares over the training set.
        # (``atom_ener``, which would also remove the fitting net's vacuum output, breaks the frozen
        # PyTorch model in deepmd-kit 3.2: "a view of a leaf Variable ... in-place operation".)
        config["model"]["preset_out_bias"] = {"energy": [float(inputs.e0[s]) for s in type_map]}
        config["model"]["descriptor"]["set_davg_zero"] = True
    if inputs.valid:
        valid_paths, _ = write_deepmd_systems(inputs.valid, workdir / "data" / "valid", type_map)
        # the validation error of each display (lcurve.out, the learning curve) over up to disp_freq/20
        # frames (one validation frame per 20 training steps) instead of deepmd's single frame (numb_btch 1)
        disp_freq = int(config["training"].get("disp_freq", 1000))
        numb_btch = hp.get("training", {}).get("validation_data", {}).get(
            "numb_btch", min(len(inputs.valid), max(1, disp_freq // 20)))
        config["training"]["validation_data"] = {"systems": [os.path.relpath(p, workdir) for p in valid_paths],
                                                 "batch_size": 1, "numb_btch": numb_btch}
    return config


def _last_checkpoint(workdir: Path) -> Path | None:
    """The newest ``model.ckpt-<step>.pt`` dp train saved in ``workdir`` (None if none)."""
    found = []
    for p in workdir.glob("model.ckpt-*.pt"):
        try:
            found.append((int(p.stem.split("-")[-1]), p))
        except ValueError:
            continue
    return max(found)[1] if found else None


def run_dp(commands: list[list[str]], *, cwd: Path, log: Path, env: dict[str, str]) -> float:
    """Run ``dp`` commands (each its arguments after ``dp``) in ``cwd`` with their output in ``log``; seconds taken.
    One Python process for all of them (:mod:`harness.models.dp_session`: DeePMD-kit's import, ~14 CPU-s, paid once)
    when the ``dp`` found is this environment's; else (``HARNESS_DP``, another installation) one ``dp`` call each."""
    import sys

    dp = find_executable("dp", env_var="HARNESS_DP")
    if not os.environ.get("HARNESS_DP") and Path(dp).parent.resolve() == Path(sys.executable).parent.resolve():
        return run_tool([sys.executable, "-m", "harness.models.dp_session", json.dumps(commands)], cwd=cwd, log=log,
                        env=env)
    return sum(run_tool([dp, *args], cwd=cwd, log=log, env=env) for args in commands)


def compress_model(src: Path, dest: Path, *, env: dict[str, str] | None = None, log: Path | None = None) -> float:
    """``dp --pt compress`` of frozen model ``src`` into ``dest`` (the embedding nets tabulated); seconds taken.
    The same deepmd-kit makes the same model (its file differs between installations only in TorchScript's debug
    records), so a shipped member carries only its frozen model and makes the compressed one at load
    (:mod:`harness.models.packing`, checked by content)."""
    src, dest = Path(src).resolve(), Path(dest).resolve()
    if src.parent != dest.parent:
        raise ValueError("dp compress: the frozen and compressed models must share a folder")
    env = env if env is not None else {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", **thread_env(None),
                                       "CUDA_VISIBLE_DEVICES": ""}
    return run_dp([["--pt", "compress", "-i", src.name, "-o", dest.name]], cwd=dest.parent,
                  log=log or dest.parent / f"{dest.name}.log", env=env)


class DeePMDTrainer:
    name = "deepmd"

    def presets(self) -> dict[str, dict[str, Any]]:
        return PRESETS

    def train(self, inputs: TrainInputs, hyperparameters: dict[str, Any], workdir: Path) -> ModelArtifact:
        hp = json.loads(json.dumps(hyperparameters))
        hp.pop("dtype", None)  # the preset's default; the resolved dtype is inputs.dtype (an explicit one wins)
        compress = bool(hp.pop("compress", False))  # a harness setting, not a dp input key
        dtype = inputs.dtype
        config = deepmd_input(inputs, hp, workdir)
        hp["model"] = {**hp.get("model", {}), "descriptor": {**hp.get("model", {}).get("descriptor", {}),
                                                             "sel": config["model"]["descriptor"]["sel"]}}
        (workdir / "input.json").write_text(json.dumps(config, indent=1))
        find_executable("dp", env_var="HARNESS_DP")  # a clear error before anything runs when it is missing
        threads = str(inputs.threads or default_threads())
        # NUM_WORKERS=0: deepmd-kit's PyTorch data loader otherwise forks min(4, cores) worker processes
        # per data set, which compete with the training threads for the cores (measured on 2 cores:
        # 0.111 -> 0.087 s per step)
        env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", **thread_env(inputs.threads), "NUM_WORKERS": "0",
               "DP_INTRA_OP_PARALLELISM_THREADS": threads, "DP_INTER_OP_PARALLELISM_THREADS": "1"}
        if inputs.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        init = ["--init-model", str(Path(inputs.init_model).resolve())] if inputs.init_model else []
        last = _last_checkpoint(workdir) if inputs.resume else None
        if last is not None:  # stopped at a walltime: continue from the last checkpoint (step and optimiser)
            init = ["--restart", last.name]
        t_start = time.time()
        # the embedding nets tabulated (dp compress): ~1.35x faster MD on one CPU thread (benchmarks/md_cost.py);
        # the compressed model is the member (its validation errors are measured on it), the frozen one kept
        # (compress in a process of its own: after a freeze in the same process TorchScript names the classes it
        # compiles again differently, and a shipped member remakes its compressed model alone: harness.models.packing)
        seconds = run_dp([["--pt", "train", "input.json", *init], ["--pt", "freeze", "-o", "model.pth"]], cwd=workdir,
                         log=workdir / "train.log", env=env)
        if compress:
            seconds += compress_model(workdir / "model.pth", workdir / "model-compressed.pth", env=env,
                                      log=workdir / "train.log")
        steps = int(config["training"].get("numb_steps", 0))
        files, reason = {"model": "model.pth"}, f"frozen from the last checkpoint of dp train (step {steps}): the model trained last"
        if compress:
            files = {"model": "model-compressed.pth", "frozen": "model.pth"}
            reason += ", then compressed with dp compress (tabulated embedding nets)"
        return ModelArtifact(arch="deepmd", preset="", seed=inputs.seed, workdir=str(workdir), files=files,
                             kept_model={"file": files["model"], "reason": reason},
                             curve=read_curve(deepmd_curve, workdir, t_start),
                             file_sha256={k: sha256_file(workdir / f) for k, f in files.items()},
                             hyperparameters={**hp, "dtype": dtype, **({"compress": True} if compress else {})},
                             e0={"method": "isolated_atoms" if inputs.e0 else "average", "values": inputs.e0 or {}},
                             device=inputs.device, dtype=dtype,
                             versions=versions("core", "deepmd"), train_seconds=seconds,
                             log="train.log")

    def calculator(self, artifact: ModelArtifact, *, device: str = "cpu") -> Calculator:
        return self.load_file(artifact.path("model"), device=device, dtype=artifact.dtype)

    def load_file(self, path: str | Path, *, device: str = "cpu", dtype: str = "float64") -> Calculator:
        from harness.models.compat import torch_weights_only_workaround

        torch_weights_only_workaround()
        if device == "cpu":
            os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
            # on CPU deepmd keeps its 1024-atom inference batch anyway; saying so explicitly skips its
            # per-model warning about the variable (one line per MD run otherwise)
            os.environ.setdefault("DP_INFER_BATCH_SIZE", "1024")
        import warnings

        with warnings.catch_warnings():  # torch.load's weights_only notice, expected here (see compat)
            warnings.simplefilter("ignore")
            from deepmd.calculator import DP

            return DP(model=str(path))
