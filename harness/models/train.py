"""Train committees: one independent member per seed, resumable, failures isolated."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ase import Atoms

from harness.deadline import Interrupted
from harness.errors import InputError
from harness.io import frame_uid
from harness.models.base import (MemberFailed, ModelArtifact, TrainInputs, check_frames, deep_merge,
                                 evaluate, get_trainer, isolated_atom_energies)
from harness.models.curves import final_point

__all__ = ["train_member", "train_committee", "plan_committee", "CommitteePlan", "committee_dir", "list_models", "member_dirs", "model_run_name", "resolve_hyperparameters"]

logger = logging.getLogger(__name__)


def resolve_hyperparameters(arch: str, preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A backend preset with user overrides merged in (passed through untouched)."""
    trainer = get_trainer(arch)
    presets = trainer.presets()
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r} for {arch}; presets: {', '.join(presets)}")
    return deep_merge(presets[preset], overrides or {})


def _frames_key(frames: Sequence[Atoms]) -> str:
    h = hashlib.sha256()
    for a in frames:
        h.update(frame_uid(a).encode())
        h.update(f"{a.info['REF_energy']:.8f}:{float(a.info.get('weight', 1.0)):.8f}".encode())
    return h.hexdigest()[:16]


def committee_dir(workspace: Path, arch: str, subset: str, preset: str, key: str) -> Path:
    return Path(workspace) / "models" / arch / subset.replace("/", "_") / f"{preset}-{key[:10]}"


#: marker of a training stopped at a walltime (resumed by the next call with the same work dir)
INTERRUPTED = "interrupted.json"
#: backends that continue a stopped training from their checkpoints (gap_fit cannot: it starts again)
RESUMABLE = ("mace", "deepmd")


def _seconds_before(marker: Path) -> float:
    """Training seconds of the walltime pieces before this one (0 for a marker of an older harness)."""
    try:
        return float(json.loads(marker.read_text()).get("seconds", 0.0))
    except (OSError, ValueError):
        return 0.0


def _resumes(marker: Path) -> int:
    try:
        return int(json.loads(marker.read_text()).get("resumes", 0))
    except (OSError, ValueError):
        return 0


def train_member(arch: str, train: list[Atoms], valid: list[Atoms], *, hyperparameters: dict[str, Any],
                 preset: str, seed: int, workdir: Path, dataset: dict[str, Any] | None = None,
                 device: str = "cpu", dtype: str | None = None, threads: int | None = None,
                 max_train_eval: int = 30, init_model: str | Path | None = None,
                 e0: dict[str, float] | None = None, finetune=None) -> ModelArtifact:
    """Train (or reuse) one committee member in ``workdir``.

    A finished member (``artifact.json`` with status ok and unchanged files) is returned as is.
    A crash of the backend tool is recorded in ``artifact.json`` with status ``failed`` and the
    log tail; it does not raise. ``init_model``: warm start from a previous member's checkpoint
    (backends that support it; recorded in the artifact's dataset entry). ``e0``: isolated-atom
    energies (eV per element, e.g. :attr:`CommitteePlan.e0`); default: single-atom frames among
    ``train``, else each backend's average. ``finetune``: start from a foundation model
    (:class:`harness.models.finetune.Finetune`; MACE only). ``dtype``: float32 or float64; None takes the
    hyperparameters' ``dtype`` (the preset's), else float64; an explicit one wins over the preset.
    """
    workdir = Path(workdir)
    dtype = dtype or str(hyperparameters.get("dtype", "float64"))
    if (workdir / "artifact.json").exists():
        try:
            art = ModelArtifact.load(workdir)
        except InputError as exc:  # a damaged artifact: train the member again, as for a changed model file
            logger.warning("retraining %s: %s", workdir, exc)
            art = None
        if art is not None and art.status == "ok":
            try:
                art.verify()
                return art
            except InputError as exc:
                logger.warning("retraining %s: %s", workdir, exc)
    trainer = get_trainer(arch)
    if finetune is not None and arch != "mace":
        raise InputError(f"fine-tuning a foundation model is implemented for MACE, not {arch}")
    species = check_frames(train, "training frames")
    if valid:
        unseen = set(check_frames(valid, "validation frames")) - set(species)
        if unseen:
            raise InputError(f"validation frames contain element(s) {', '.join(sorted(unseen))} absent from the "
                             "training frames; the model cannot describe them")
    if e0 is not None:
        missing = sorted(set(species) - set(e0))
        if missing:
            raise InputError(f"isolated-atom energies lack element(s) {', '.join(missing)} of the training frames")
    inputs = TrainInputs(train=train, valid=valid, species=species,
                         e0=e0 if e0 is not None else isolated_atom_energies(train), seed=seed,
                         device=device, dtype=dtype, threads=threads,
                         init_model=str(init_model) if init_model else None, finetune=finetune)
    if init_model:
        dataset = {**(dataset or {}), "init_model": str(init_model)}
    stopped = workdir / INTERRUPTED
    if stopped.exists() and arch in RESUMABLE:
        # stopped at a walltime (harness.deadline): the same inputs (the work dir is content-keyed), so the
        # backend continues from its last checkpoint
        inputs.resume = True
        logger.info("resuming %s from its last checkpoint", workdir)
    elif workdir.exists():
        import shutil

        shutil.rmtree(workdir)  # a partial or failed attempt: start clean
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    before = _seconds_before(stopped) if inputs.resume else 0.0  # training time of the pieces before this one
    try:
        art = trainer.train(inputs, hyperparameters, workdir)
    except Interrupted:
        stopped.write_text(json.dumps({"stopped_unix": time.time(), "resumes": _resumes(stopped) + 1,
                                       "seconds": round(before + time.perf_counter() - t0, 2)}) + "\n")
        raise
    except MemberFailed as exc:
        stopped.unlink(missing_ok=True)
        art = ModelArtifact(arch=arch, preset=preset, seed=seed, workdir=str(workdir), status="failed",
                            error=str(exc), hyperparameters=hyperparameters, dataset=dataset or {},
                            log="train.log", train_seconds=time.perf_counter() - t0)
        art.save()
        logger.error("member %s failed: %s", workdir, str(exc).splitlines()[0])
        return art
    if stopped.exists():  # finished after walltime stops: how often it was resumed, in the provenance
        dataset = {**(dataset or {}), "walltime_resumes": _resumes(stopped)}
        stopped.unlink()
    # the backend's tool time, summed over walltime pieces: the clock of its learning curve
    tool_seconds = max([p.get("wall_s", 0.0) for p in art.curve] + [before + art.train_seconds])
    art.preset = preset
    art.species = list(species)
    art.dataset = dataset or {}
    art.train_seconds = round(before + time.perf_counter() - t0, 2)
    try:
        calc = trainer.calculator(art, device=device)
        step = max(1, len(train) // max_train_eval)
        art.metrics = {**{f"train_{k}": v for k, v in evaluate(calc, train[::step]).items()},
                       **{f"valid_{k}": v for k, v in evaluate(calc, valid).items()}}
        final = final_point(art.metrics, tool_seconds)  # the kept model closes the learning curve
        art.curve = [*art.curve, final] if final else art.curve
    except Exception as exc:  # a model that trains but cannot be evaluated is a failed member
        art.status, art.error = "failed", f"evaluation failed: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    art.save()
    return art


@dataclass
class CommitteePlan:
    """Where a committee lives and what its members train on (content-hashed: same inputs, same dir)."""

    arch: str
    subset: str
    preset: str
    directory: Path
    key: str
    hyperparameters: dict[str, Any]
    dtype: str
    device: str
    dataset: dict[str, Any]
    train: list[Atoms]
    valid: list[Atoms]
    e0: dict[str, float] | None = None  # the dataset's isolated-atom energies (eV), None -> backend average
    finetune: Any = None  # harness.models.finetune.Finetune: start from a foundation model

    def member_dir(self, k: int, seed: int) -> Path:
        return self.directory / f"member-{k}-seed{seed}"

    def write_json(self, arts: Sequence[ModelArtifact]) -> Path:
        path = self.directory / "committee.json"
        path.write_text(json.dumps({
            "arch": self.arch, "preset": self.preset, "subset": self.subset, "dataset": self.dataset,
            "hyperparameters": self.hyperparameters, "device": self.device, "dtype": self.dtype,
            **({"finetune": self.finetune.model_dump()} if self.finetune is not None else {}),
            "members": [Path(a.workdir).name for a in arts], "status": [a.status for a in arts]},
            indent=1, default=str) + "\n")
        return path


def plan_committee(spec_path: str | Path, subset: str, arch: str, *, preset: str = "mini",
                   workspace: str | Path = "runs/default", overrides: dict[str, Any] | None = None,
                   device: str = "cpu", dtype: str | None = None,
                   max_train_frames: int | None = None, extra_frames: str | Path | None = None,
                   name: str | None = None, finetune=None) -> CommitteePlan:
    """Assemble the subset and resolve hyperparameters; the committee key hashes arch, preset,
    hyperparameters, the training/validation frames, device and dtype.

    ``max_train_frames`` thins the subset's training split (every source by the same fraction,
    pinned and weighted frames kept, weights set after: :func:`harness.datasets.subsets.thin`).
    ``extra_frames``: a labelled extxyz file (e.g. active-learned frames) added to the subset's training
    frames after the thinning (all of them train); ``name`` labels the committee directory (default:
    the subset name). The E0s are the dataset's isolated-atom energies in every subset
    (:func:`harness.datasets.subsets.dataset_e0`) and are part of the key. ``finetune``
    (:class:`harness.models.finetune.Finetune`): the members start from a foundation model; the recipe and the
    foundation's and replay set's content hashes are part of the key.
    """
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, dataset_e0

    spec = load_dataset_spec(spec_path)
    sub = assemble(spec, subset, max_train_frames=max_train_frames)
    train, valid = sub.train, sub.valid
    e0, e0_info = dataset_e0(spec)
    if extra_frames is not None:
        train = train + _extra_frames(extra_frames)
    if not train:
        raise InputError(f"subset {subset!r} has no training frames")
    if e0 is not None:
        species = {s for a in train for s in a.get_chemical_symbols()}
        missing = sorted(species - set(e0))
        if missing:
            raise InputError(f"{spec.path.name}: the isolated-atom source(s) {', '.join(e0_info['sources'])} have no "
                             f"energy for element(s) {', '.join(missing)} of subset {subset!r}: add them to `elements`")
        e0 = {s: e0[s] for s in sorted(species)}
    hp = resolve_hyperparameters(arch, preset, overrides)
    if dtype and "dtype" in hp:  # an explicit dtype wins over the preset's, in the key and in training
        hp["dtype"] = dtype
    dtype = dtype or str(hp.get("dtype", "float64"))
    dataset = {"spec": str(spec.path), "subset": subset, "extra_frames": str(extra_frames) if extra_frames else None,
               "train_key": _frames_key(train),
               "valid_key": _frames_key(valid) if valid else None, "n_train": len(train), "n_valid": len(valid),
               "max_train_frames": max_train_frames, "e0": {**e0_info, "values": e0}}
    if finetune is not None:
        dataset["finetune"] = finetune.model_dump()
    key = hashlib.sha256(json.dumps([arch, preset, hp, dataset["train_key"], dataset["valid_key"], device, dtype,
                                     *([e0] if e0 is not None else []),
                                     *([finetune.key_fields()] if finetune is not None else [])],
                                    sort_keys=True, default=str).encode()).hexdigest()
    label = name or subset
    return CommitteePlan(arch, label, preset, committee_dir(Path(workspace), arch, label, preset, key), key, hp,
                         dtype, device, dataset, train, valid, e0, finetune)


def _extra_frames(path: str | Path) -> list[Atoms]:
    """Labelled frames of an extra training file, weight 1 unless set, all in the training split."""
    from harness.io import read_frames

    path = Path(path)
    if not path.exists():
        raise InputError(f"extra training frames {path}: no such file")
    frames = read_frames(path)
    for k, a in enumerate(frames):
        if "REF_energy" not in a.info or "REF_forces" not in a.arrays:
            raise InputError(f"{path}: frame {k} lacks reference labels (REF_energy/REF_forces)")
        a.info.setdefault("weight", 1.0)
        a.info["split"] = "train"
    return frames


def train_committee(spec_path: str | Path, subset: str, arch: str, *, preset: str = "mini", n: int = 5,
                    seeds: Sequence[int] | None = None, workspace: str | Path = "runs/default",
                    overrides: dict[str, Any] | None = None, device: str = "cpu", dtype: str | None = None,
                    threads: int | None = None, max_train_frames: int | None = None,
                    on_member=None) -> tuple[Path, list[ModelArtifact]]:
    """Train a committee of ``n`` members of ``arch`` on a subset of a dataset spec.

    Members differ only in their seed (GAP: sparse-point selection; NNs: initialisation and
    shuffling). Returns the committee directory and the member artifacts (failed ones included).
    """
    if n < 1:
        raise InputError("committee size must be at least 1")
    seeds = list(seeds) if seeds is not None else list(range(n))
    if len(seeds) != n or len(set(seeds)) != n:
        raise InputError(f"need {n} distinct seeds, got {seeds}")
    plan = plan_committee(spec_path, subset, arch, preset=preset, workspace=workspace, overrides=overrides,
                          device=device, dtype=dtype, max_train_frames=max_train_frames)
    plan.directory.mkdir(parents=True, exist_ok=True)
    arts = []
    for k, seed in enumerate(seeds):
        art = train_member(arch, plan.train, plan.valid, hyperparameters=plan.hyperparameters, preset=preset,
                           seed=seed, workdir=plan.member_dir(k, seed), dataset=plan.dataset, device=device,
                           dtype=plan.dtype, threads=threads, e0=plan.e0)
        arts.append(art)
        if on_member is not None:
            on_member(k, art)
    plan.write_json(arts)
    return plan.directory, arts


def model_run_name(model: str | Path) -> str:
    """Name of a member's or committee's MD runs: ``<arch>-<subset>-<preset>-<key>[-member-<k>-seed<s>]``
    (from the workspace layout ``models/<arch>/<subset>/<preset>-<key>/member-<k>-seed<s>``)."""
    model = Path(model).resolve()
    if (model / "artifact.json").exists():
        return f"{model.parents[2].name}-{model.parents[1].name}-{model.parent.name}-{model.name}"
    return f"{model.parents[1].name}-{model.parent.name}-{model.name}"


def member_dirs(workspace: str | Path) -> list[Path]:
    """Every trained member's directory under ``workspace/models`` (``arch/subset/preset-key/member``)."""
    return [p.parent for p in sorted((Path(workspace) / "models").glob("*/*/*/*/artifact.json"))]


def list_models(workspace: str | Path) -> list[ModelArtifact]:
    """Every member artifact under ``workspace/models``."""
    return [ModelArtifact.load(d) for d in member_dirs(workspace)]


def load_committee(path: str | Path, *, device: str = "cpu"):
    """A :class:`CommitteeCalculator` over the successful members of a committee directory
    (:func:`harness.models.load.load_committee`, the one loader)."""
    from harness.models.load import load_committee as load

    return load(path, device=device).calculator
