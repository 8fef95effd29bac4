"""The Trainer contract, model artifacts, the backend registry and the shared training envelope.

The harness owns what must be equal across architectures (SCIENCE.md §4): the reference keys
(``REF_energy``/``REF_forces``/``REF_stress``), the train/validation split (from the subset), the
isolated-atom energies, per-frame weights, seeds and committee size. Each backend turns these into
its own tool's inputs and passes its hyperparameters through untouched.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from harness.errors import InputError, ToolError
from harness.io import sha256_file

__all__ = ["Trainer", "ModelArtifact", "TrainInputs", "get_trainer", "TRAINERS", "ARCHITECTURES", "check_frames", "isolated_atom_energies",
           "evaluate", "run_tool", "MemberFailed", "deep_merge", "training_copy", "default_threads",
           "thread_env"]

logger = logging.getLogger(__name__)

#: name -> "module:Class", imported lazily so a missing backend fails only when asked for
TRAINERS = {
    "gap": "harness.models.gap:GAPTrainer",
    "deepmd": "harness.models.deepmd:DeePMDTrainer",
    "mace": "harness.models.mace:MACETrainer",
}
#: architectures with no GPU path (quippy): their tasks run on CPU workers whatever the device
CPU_ONLY_ARCHITECTURES = ("gap",)
#: model-file suffixes of each architecture (what ``--model FILE`` recognises without ``--arch``)
MODEL_SUFFIXES = {"gap": (".xml",), "deepmd": (".pth", ".pb"), "mace": (".model",)}
#: files a shipped member makes at load from another of its files: how -> "module:function(src, dest)"
DERIVED = {"dp-compress": "harness.models.deepmd:compress_model"}
#: the architectures the harness trains (the one list: specs and CLIs validate against it)
ARCHITECTURES: tuple[str, ...] = tuple(TRAINERS)


class MemberFailed(Exception):
    """A backend tool crashed while training one member (the message carries its log tail)."""


@dataclass
class ModelArtifact:
    """Everything needed to rebuild and trace one trained committee member (``artifact.json``)."""

    arch: str
    preset: str
    seed: int
    workdir: str
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to workdir
    file_sha256: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    e0: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float64"
    versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    species: list[str] = field(default_factory=list)
    train_seconds: float = 0.0
    log: str | None = None
    status: str = "ok"
    error: str | None = None
    #: the model file kept and why, e.g. {"file": "member_stagetwo.model", "reason": "...", "discarded": {...}}
    kept_model: dict[str, Any] = field(default_factory=dict)
    #: validation learning curve: [{"step" or "epoch", "wall_s", "valid_forces_rmse_meV_A", ...}, ...]
    curve: list[dict[str, Any]] = field(default_factory=list)
    #: how a shipped member stores its files (:mod:`harness.models.packing`): role -> {"how": "gzip", "file",
    #: "sha256"} or {"how": "dp-compress", "from": role, "content_sha256"}; empty: the files as trained, in ``workdir``
    packed: dict[str, dict[str, str]] = field(default_factory=dict)

    def path(self, role: str) -> Path:
        """The file of ``role``, ready to load: in ``workdir``, or (a packed member) unpacked into the cache and
        checked against the hashes recorded at training (:func:`harness.models.packing.unpacked`)."""
        if self.packed:
            from harness.models.packing import unpacked

            return unpacked(self) / self.files[role]
        return Path(self.workdir) / self.files[role]

    def save(self) -> Path:
        from harness.io import atomic_path

        path = Path(self.workdir) / "artifact.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.__dict__, indent=1, sort_keys=True, default=str) + "\n")
        return path

    @classmethod
    def load(cls, workdir: str | os.PathLike) -> "ModelArtifact":
        """The artifact of a trained member directory; InputError (naming the file and what to do) when it is
        missing, or damaged: cut short, not JSON, not an artifact."""
        path = Path(workdir) / "artifact.json"
        if not path.exists():
            raise InputError(f"{workdir}: no artifact.json (not a trained model directory)")
        from harness.io import read_json_object

        todo = f"restore it, or remove {workdir} and train the member again"
        data = read_json_object(path, what="a model artifact", todo=todo)
        data["workdir"] = str(Path(workdir).resolve())
        try:
            return cls(**data)
        except TypeError as exc:  # unknown or missing fields
            raise InputError(f"{path}: not a model artifact ({exc}); {todo}") from None

    def verify(self) -> None:
        """Raise if a model file is missing or changed since training (a packed member: since it was packed;
        its unpacked files are checked against the training hashes when unpacked)."""
        for role, rel in self.files.items():
            how = self.packed.get(role, {})
            if how.get("how") in DERIVED:  # made from another role's file, checked when made
                if how.get("from") not in self.files:
                    raise InputError(f"{self.workdir}: artifact.json: packed {role} is made from "
                                     f"{how.get('from')!r}, which is not one of its files")
                continue
            rel = how.get("file", rel)
            p = Path(self.workdir) / rel
            if not p.exists():
                raise InputError(f"{self.workdir}: model file {rel} is missing")
            want = how.get("sha256") if how else self.file_sha256.get(role)
            if want and sha256_file(p) != want:
                raise InputError(f"{self.workdir}: model file {rel} changed since training (hash mismatch)")


@dataclass
class TrainInputs:
    """The harness's side of a training run, identical for every backend."""

    train: list[Atoms]
    valid: list[Atoms]
    species: tuple[str, ...]
    e0: dict[str, float] | None  # eV per element from isolated-atom frames, or None -> backend average
    seed: int
    device: str = "cpu"
    dtype: str = "float64"
    threads: int | None = None
    init_model: str | None = None  # warm start: a previous model's checkpoint (deepmd)
    #: continue the run stopped at a walltime in this work dir from its last checkpoint (MACE, DeePMD)
    resume: bool = False
    #: start from a foundation model (:class:`harness.models.finetune.Finetune`; MACE)
    finetune: Any = None


class Trainer(Protocol):
    """One MLIP backend."""

    name: str

    def presets(self) -> dict[str, dict[str, Any]]:
        """Named hyperparameter sets (``mini``, ``paper``), in the backend's own terms."""

    def train(self, inputs: TrainInputs, hyperparameters: dict[str, Any], workdir: Path) -> ModelArtifact:
        """Train one member in ``workdir``; raise :class:`MemberFailed` if the tool crashes."""

    def calculator(self, artifact: ModelArtifact, *, device: str = "cpu") -> Calculator:
        """An ASE calculator of a trained member."""

    def load_file(self, path: str | Path, *, device: str = "cpu", dtype: str = "float64") -> Calculator:
        """An ASE calculator of a model file of this architecture (trained here or elsewhere)."""


def get_trainer(name: str) -> Trainer:
    """The backend called ``name`` (``gap``, ``deepmd``, ``mace``)."""
    if name not in TRAINERS:
        raise InputError(f"unknown architecture {name!r}; available: {', '.join(TRAINERS)}")
    module, _, cls = TRAINERS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ToolError(f"architecture {name!r} is not usable here: {exc}") from None
    return getattr(mod, cls)()


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively with ``override`` (override wins; dicts merge)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def check_frames(frames: Sequence[Atoms], what: str) -> tuple[str, ...]:
    """Validate labelled frames; return the sorted element symbols present.

    Raises
    ------
    InputError
        No frames, missing or non-finite labels (naming the frame).
    """
    if not frames:
        raise InputError(f"{what}: no frames")
    species: set[str] = set()
    for k, a in enumerate(frames):
        src = a.info.get("source", "?")
        where = f"{what}: frame {k} (source {src}, uid {a.info.get('uid', '?')})"
        if "REF_energy" not in a.info:
            raise InputError(f"{where}: no REF_energy")
        if "REF_forces" not in a.arrays:
            raise InputError(f"{where}: no REF_forces")
        if not np.isfinite(a.info["REF_energy"]) or not np.all(np.isfinite(a.arrays["REF_forces"])):
            raise InputError(f"{where}: NaN or infinite labels")
        if "REF_stress" in a.info and not np.all(np.isfinite(a.info["REF_stress"])):
            raise InputError(f"{where}: NaN or infinite REF_stress")
        species.update(a.get_chemical_symbols())
    return tuple(sorted(species))


def isolated_atom_energies(frames: Sequence[Atoms]) -> dict[str, float] | None:
    """Reference energies of isolated atoms when the data contain single-atom frames, else None.

    None means each backend uses its own least-squares average over the training set, which sets
    the composition baseline of the model (SCIENCE.md §9); the artifact records which was used.
    """
    e0 = {}
    for a in frames:
        if len(a) == 1 and not a.pbc.any():
            e0[a.get_chemical_symbols()[0]] = float(a.info["REF_energy"])
    return e0 or None


def reference_virial(atoms: Atoms) -> np.ndarray | None:
    """The reference virial W = -V·sigma (eV, 3x3 flattened, ASE's stress sign) of a periodic frame with
    ``REF_stress`` (Voigt or 3x3), else None: what every backend trains on (SCIENCE.md §11)."""
    if not atoms.pbc.all() or "REF_stress" not in atoms.info:
        return None
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = np.asarray(atoms.info["REF_stress"], dtype=float)
    full = voigt_6_to_full_3x3_stress(stress) if stress.size == 6 else stress.reshape(3, 3)
    return (-atoms.get_volume() * full).reshape(-1)


def training_copy(atoms: Atoms, info_keep: Sequence[str]) -> Atoms:
    """A copy holding only positions, species, ``REF_forces`` and the info keys a backend reads.

    Backends' file readers choke on (or silently use) unrelated keys; every backend strips the
    same way through this one function.
    """
    a = atoms.copy()
    a.calc = None
    for k in [k for k in a.info if k not in info_keep]:
        del a.info[k]
    for k in [k for k in a.arrays if k not in ("numbers", "positions", "REF_forces")]:
        del a.arrays[k]
    return a


def evaluate(calc: Calculator, frames: Sequence[Atoms]) -> dict[str, float]:
    """Energy RMSE (meV/atom), force-component RMSE (meV/Å) and, over the periodic frames with a stress label,
    stress-component RMSE (meV/Å³: what an NPT density rests on) of ``calc`` against REF labels
    (:mod:`harness.models.evaluate`)."""
    from harness.models.evaluate import error_table, predict

    if not frames:
        return {}
    m = error_table(frames, predict(calc, frames))["all"]
    keys = ("energy_rmse_meV_atom", "forces_rmse_meV_A", "n_frames", "stress_rmse_meV_A3", "n_stress_frames")
    return {k: m[k] for k in keys if k in m}


def default_threads() -> int:
    """Threads a training process uses when none are given: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment of a PyTorch training tool on ``threads`` threads (default: :func:`default_threads`).

    OpenMP threads spin a bounded time at barriers (:func:`harness.tools.openmp_wait_env`); freed memory
    stays in the process (:func:`harness.tools.malloc_env`).
    """
    from harness.tools import malloc_env, openmp_wait_env

    n = str(threads or default_threads())
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, **openmp_wait_env(), **malloc_env()}


#: the tool is SIGKILLed by the kernel when the process that started it dies (util-linux's setpriv, Linux): a
#: killed sweep worker leaves no gap_fit, dp or mace_run_train behind writing into the member's folder while the
#: rerun trains it again
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"] if sys.platform.startswith("linux") and \
    shutil.which("setpriv") else []


def run_tool(args: Sequence[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None,
             timeout_s: float | None = None) -> float:
    """Run a backend tool with its output in ``log``; raise :class:`MemberFailed` with the log tail.

    Returns the wall time in seconds.
    """
    from harness.deadline import Interrupted, seconds_left

    t0 = time.perf_counter()
    full_env = dict(os.environ, **(env or {}))
    left = seconds_left()  # a piece's walltime (harness.deadline): the tool is stopped there
    if left is not None and left <= 0:
        raise Interrupted(f"walltime reached before {Path(args[0]).name} started")
    limits = [t for t in (timeout_s, left) if t is not None]
    limit = min(limits) if limits else None
    if _DIE_WITH_PARENT and shutil.which(str(args[0]), path=full_env.get("PATH")) is None:
        raise ToolError(f"{args[0]}: not found or not executable")  # setpriv would only exit 127
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(str(a) for a in args)}\n")
        fh.flush()
        try:
            proc = subprocess.run([*_DIE_WITH_PARENT, *(str(a) for a in args)], cwd=cwd, stdout=fh,
                                  stderr=subprocess.STDOUT, env=full_env, timeout=limit)
        except subprocess.TimeoutExpired:
            if timeout_s is None or (left is not None and left < timeout_s):
                raise Interrupted(f"{Path(args[0]).name} stopped at the walltime in {cwd}") from None
            raise MemberFailed(f"{Path(args[0]).name} timed out after {timeout_s} s (log {log})") from None
        except FileNotFoundError as exc:
            raise ToolError(f"{args[0]}: {exc}") from None
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        flagged = [ln for ln in lines if any(w in ln.lower() for w in ("error", "abort", "exception", "traceback"))]
        tail = "\n".join(dict.fromkeys(flagged[-5:] + lines[-10:]))
        raise MemberFailed(f"{Path(args[0]).name} exited with status {proc.returncode} in {cwd}; "
                           f"error lines and last lines of {log.name}:\n{tail}")
    return time.perf_counter() - t0
