"""MACE backend: ``mace_run_train`` (mace-torch) and ``MACECalculator``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from harness.io import sha256_file, write_frames
from harness.models.base import (MemberFailed, ModelArtifact, TrainInputs, reference_virial, run_tool, thread_env,
                                 training_copy)
from harness.models.curves import mace_curve, read_curve
from harness.provenance import versions
from harness.tools import find_executable

__all__ = ["MACETrainer", "kept_model", "mace_command"]

#: Keys the harness sets itself; a preset or override naming them is refused.
_OWNED = {"name", "train_file", "valid_file", "test_file", "seed", "device", "default_dtype", "work_dir",
          "energy_key", "forces_key", "stress_key", "virials_key", "E0s", "valid_fraction", "model_dir", "log_dir",
          "checkpoints_dir", "results_dir"}

# Every preset trains on the virials of the periodic frames (``loss: virials``: energy, forces and the per-atom
# virial -V·sigma, weighted like the per-atom energy in each stage, as DeePMD's limit prefactors and GAP's virial
# sigma do): the NPT density, which R scores, depends on the pressure, and every architecture of a preset makes
# the same choice (SCIENCE.md §11). Isolated molecules carry no virial (weight 0 in mace-torch).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU, about a minute for a member on ~150 frames of 160 atoms: one interaction block fewer
    # parameters than the smallest MACE in the paper's spirit, invariant messages only (max_L 0),
    # 8 channels, float32 (DESIGN.md measured 16x0e float64 at 76 ms per MD step; this is cheaper).
    "mini": {"model": "MACE", "num_channels": 8, "max_L": 0, "r_max": 4.5, "num_interactions": 2,
             "correlation": 2, "max_ell": 2, "num_radial_basis": 6, "max_num_epochs": 10, "batch_size": 4,
             "lr": 0.01, "forces_weight": 10.0, "energy_weight": 1.0, "loss": "virials", "virials_weight": 1.0,
             "scaling": "rms_forces_scaling", "dtype": "float32"},
    # converged for this liquid on one GPU node (issue #13; acceptance on the GPU in #11): equivariant
    # features (64x0e + 64x1o), 5 Å, correlation 3, EMA and a second stage (SWA: lower lr, energy weight up)
    # for the last quarter; the isolated-atom E0s come from the dataset. ~500 frames of 160 atoms per epoch.
    "study": {"model": "MACE", "num_channels": 64, "max_L": 1, "r_max": 5.0, "num_interactions": 2,
              "correlation": 3, "max_ell": 3, "num_radial_basis": 8, "max_num_epochs": 400, "batch_size": 4,
              "valid_batch_size": 8, "lr": 0.01, "forces_weight": 100.0, "energy_weight": 1.0, "loss": "virials",
              "virials_weight": 1.0, "swa": True, "start_swa": 300, "swa_lr": 0.001, "swa_energy_weight": 1000.0,
              "swa_forces_weight": 100.0, "swa_virials_weight": 1000.0,
              "ema": True, "ema_decay": 0.99, "amsgrad": True, "scheduler_patience": 20,
              "scaling": "rms_forces_scaling", "dtype": "float64"},
    # the best MACE this 2-core CPU trains in half an hour of one core (issue #13 item 7): study's features at a
    # quarter of the channels, 18 epochs with an SWA stage (energy weight 1000) for the last 4. Measured on
    # Full (480 frames): 85 CPU-s per epoch, 25.5 CPU-min, valid F 92.1 meV/Å, E 4.73 meV/atom, stable
    # for 1 ps of NPT at 500 K (docs/measurements.md, "Converged training on CPU")
    "cpu": {"model": "MACE", "num_channels": 16, "max_L": 1, "r_max": 5.0, "num_interactions": 2,
            "correlation": 3, "max_ell": 3, "num_radial_basis": 8, "max_num_epochs": 18, "batch_size": 4,
            "lr": 0.01, "forces_weight": 100.0, "energy_weight": 1.0, "loss": "virials", "virials_weight": 1.0,
            "ema": True, "ema_decay": 0.99, "amsgrad": True, "swa": True, "start_swa": 14, "swa_lr": 0.001,
            "swa_energy_weight": 1000.0, "swa_forces_weight": 100.0, "swa_virials_weight": 1000.0,
            "scaling": "rms_forces_scaling", "dtype": "float32"},
    # GPU-scale, as a practitioner would train it for a molecular liquid
    "paper": {"model": "MACE", "num_channels": 128, "max_L": 1, "r_max": 5.0, "num_interactions": 2,
              "correlation": 3, "max_ell": 3, "max_num_epochs": 300, "batch_size": 5, "lr": 0.01,
              "forces_weight": 100.0, "energy_weight": 1.0, "loss": "virials", "virials_weight": 1.0,
              "swa_virials_weight": 1000.0, "swa": True, "start_swa": 200, "ema": True,
              "ema_decay": 0.99, "amsgrad": True, "scaling": "rms_forces_scaling", "dtype": "float64"},
}


def _flag(key: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [f"--{key}"] if value else []
    if isinstance(value, (dict, list)):
        return [f"--{key}={json.dumps(value)}"]
    return [f"--{key}={value}"]


class MACETrainer:
    name = "mace"

    def presets(self) -> dict[str, dict[str, Any]]:
        return PRESETS

    def train(self, inputs: TrainInputs, hyperparameters: dict[str, Any], workdir: Path) -> ModelArtifact:
        from harness.errors import InputError

        clash = _OWNED & set(hyperparameters)
        if clash:
            raise InputError(f"mace: {', '.join(sorted(clash))} are set by the harness, not by presets")
        hp = dict(hyperparameters)
        _check_eval_interval(hp)
        if inputs.finetune is not None:
            hp.pop("lr", None)  # the recipe's
        hp.pop("dtype", None)  # the preset's default; the resolved dtype is inputs.dtype (an explicit one wins)
        dtype = inputs.dtype
        args = mace_command(inputs, hp, workdir)
        env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", **thread_env(inputs.threads)}
        t_start = time.time()
        seconds = run_tool(args, cwd=workdir, log=workdir / "train.log", env=env)
        model, kept = kept_model(workdir, swa=bool(hp.get("swa")))
        if (workdir / "frozen_blocks.json").is_file():  # written by harness.models.mace_freeze
            hp["frozen_blocks"] = json.loads((workdir / "frozen_blocks.json").read_text())["blocks"]
        rel = os.path.relpath(model, workdir)
        return ModelArtifact(arch="mace", preset="", seed=inputs.seed, workdir=str(workdir), files={"model": rel},
                             file_sha256={"model": sha256_file(model)}, hyperparameters={**hp, "dtype": dtype},
                             kept_model=kept, curve=read_curve(mace_curve, workdir, t_start),
                             e0={"method": "isolated_atoms" if inputs.e0 else "average", "values": inputs.e0 or {}},
                             device=inputs.device, dtype=dtype,
                             versions=versions("core", "mace"),
                             train_seconds=seconds, log="train.log")

    def calculator(self, artifact: ModelArtifact, *, device: str = "cpu") -> Calculator:
        return self.load_file(artifact.path("model"), device=device, dtype=artifact.dtype)

    def load_file(self, path: str | Path, *, device: str = "cpu", dtype: str = "float64") -> Calculator:
        from harness.models.compat import torch_weights_only_workaround

        torch_weights_only_workaround()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mace.calculators import MACECalculator

            return MACECalculator(model_paths=str(path), device=device, default_dtype=dtype,
                                  enable_cueq=_cueq_available(device))


def mace_command(inputs: TrainInputs, hp: dict[str, Any], workdir: Path) -> list[str]:
    """The ``mace_run_train`` command for ``inputs`` (train.xyz and valid.xyz written in ``workdir``): the
    preset's settings as flags after the harness's own (keys, seed, device, dtype, E0s)."""
    frames_train = [_prepare(a) for a in inputs.train]
    frames_valid = [_prepare(a) for a in inputs.valid]
    write_frames(workdir / "train.xyz", frames_train)
    write_frames(workdir / "valid.xyz", frames_valid)
    # a Python dict literal with integer keys: mace_run_train reads E0s with ast.literal_eval (JSON's
    # string keys are not found)
    e0 = repr({_Z(s): float(v) for s, v in inputs.e0.items()}) if inputs.e0 else "average"
    from harness.models.finetune import command

    args = [*command(inputs.finetune, find_executable("mace_run_train", env_var="HARNESS_MACE_RUN_TRAIN")),
            "--name=member",
            "--train_file=train.xyz", "--valid_file=valid.xyz", f"--seed={inputs.seed}",
            f"--device={inputs.device}", f"--default_dtype={inputs.dtype}", "--work_dir=.",
            "--energy_key=REF_energy", "--forces_key=REF_forces", "--stress_key=REF_stress",
            "--virials_key=REF_virials", f"--E0s={e0}", "--num_workers=0",
            # mace's end-of-run parity plots re-run inference over the whole training set once per stage
            f"--plot={bool(hp.get('plot', False))}"]
    for k, v in hp.items():
        args += _flag(k, v) if k != "plot" else []
    if inputs.finetune is not None:
        from harness.models.finetune import mace_args
        from harness.models.train import _frames_key

        args += mace_args(inputs.finetune, workdir, _frames_key)
    if inputs.resume and list(workdir.glob("checkpoints/*.pt")):
        args.append("--restart_latest")  # stopped at a walltime: from the last epoch checkpoint
    return args


def _cueq_available(device: str) -> bool:
    """cuEquivariance kernels for MACE inference on a GPU, where the package is installed (same model, faster
    equivariant products; CPU evaluation is unchanged)."""
    import importlib.util

    return device.startswith("cuda") and importlib.util.find_spec("cuequivariance_torch") is not None


def _check_eval_interval(hp: dict[str, Any]) -> None:
    """Refuse an ``eval_interval`` that would throw trained epochs away.

    mace_run_train saves a checkpoint only on validation epochs (``epoch % eval_interval == 0``) and
    keeps the best validated one: epochs after the last validation are trained for nothing, and with
    SWA and no validation in stage two it fails after the last epoch (no stage-two checkpoint).
    """
    from harness.errors import InputError

    k = int(hp.get("eval_interval", 1))
    if k <= 1:
        return
    epochs = int(hp.get("max_num_epochs", 2048))
    start = hp.get("start_swa")
    start = max(1, epochs // 4 * 3) if start is None else int(start)
    if hp.get("swa") and start < epochs and not any(e % k == 0 for e in range(start, epochs)):
        raise InputError(f"mace: eval_interval {k} validates no epoch of stage two (epochs {start}..{epochs - 1}); "
                         "mace_run_train would train every epoch and then find no stage-two checkpoint")
    if (epochs - 1) % k:
        last = (epochs - 1) // k * k
        raise InputError(f"mace: with eval_interval {k} the last validated epoch is {last} of 0..{epochs - 1}; "
                         f"the {epochs - 1 - last} epoch(s) after it would be trained and discarded (choose "
                         "eval_interval dividing max_num_epochs - 1)")


def kept_model(workdir: Path, *, swa: bool) -> tuple[Path, dict[str, Any]]:
    """The final model ``mace_run_train`` wrote in ``workdir`` and why it is the one kept.

    With SWA / stage two on, mace-torch writes the stage-one model (``member.model``, the best
    validation checkpoint before stage two) and the stage-two model (``member_stagetwo.model``);
    the stage-two model is the one trained last (SCIENCE.md §4), so it is kept. The stage-one file
    stays on disk and its hash is recorded under ``discarded``.
    """
    def find(name: str) -> Path | None:  # model_dir is the work dir; any other layout: the first match
        return next(iter(sorted(workdir.glob(f"**/{name}"), key=lambda p: len(p.parts))), None)

    stage_one, stage_two = find("member.model"), find("member_stagetwo.model")
    if stage_two is not None:
        return stage_two, {"file": os.path.relpath(stage_two, workdir), "stage": "two",
                           "reason": "stage two (swa) written by mace_run_train: the model trained last",
                           "discarded": {os.path.relpath(stage_one, workdir): sha256_file(stage_one)} if stage_one else {}}
    if stage_one is None:
        raise MemberFailed(f"mace_run_train wrote no member.model in {workdir} (see train.log)")
    reason = ("stage one: swa was requested but mace_run_train wrote no stage-two model (start_swa >= "
              "max_num_epochs?)" if swa else "stage one: swa off, the only model mace_run_train wrote")
    return stage_one, {"file": os.path.relpath(stage_one, workdir), "stage": "one", "reason": reason, "discarded": {}}


def _Z(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def _prepare(atoms):
    a = training_copy(atoms, ("REF_energy", "REF_stress", "config_type", "uid"))
    virial = reference_virial(atoms)
    if virial is not None:
        a.info["REF_virials"] = virial
    a.info["config_weight"] = float(atoms.info.get("weight", 1.0))
    a.info.setdefault("config_type", "Default")
    if not a.pbc.any():
        a.cell = [0, 0, 0]
    return a


def untrained_model(path: str | Path, preset: str | dict[str, Any] = "mini", *, symbols=("H", "C", "O"),
                    dtype: str = "float64", seed: int = 0, avg_num_neighbors: float = 12.0) -> Path:
    """A MACE model of a preset's architecture with its initial (untrained) weights, saved to ``path``.

    For what depends on the architecture, not on training: the cost of an MD step (benchmarks) and exact
    identities between evaluation paths (tests). Its forces mean nothing; never score it."""
    from harness.models.compat import torch_weights_only_workaround

    torch_weights_only_workaround()
    import warnings

    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    hp = PRESETS[preset] if isinstance(preset, str) else preset
    channels, max_l = hp["num_channels"], hp["max_L"]
    hidden = o3.Irreps(" + ".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(max_l + 1)))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == "float64" else torch.float32)
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e3nn's TorchScript notices while building the blocks
            block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
            model = modules.ScaleShiftMACE(
                r_max=hp["r_max"], num_bessel=hp.get("num_radial_basis", 8), num_polynomial_cutoff=5,
                max_ell=hp.get("max_ell", 3), interaction_cls=block, interaction_cls_first=block,
                num_interactions=hp["num_interactions"], num_elements=len(symbols), hidden_irreps=hidden,
                MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(symbols)),
                avg_num_neighbors=avg_num_neighbors, atomic_numbers=sorted(_Z(s) for s in symbols),
                correlation=hp["correlation"], gate=torch.nn.functional.silu, atomic_inter_scale=0.05,
                atomic_inter_shift=0.0)
    finally:
        torch.set_default_dtype(old)
    path = Path(path)
    torch.save(model, path)
    return path
