"""Ablation subsets: unions of sources with weights and a deterministic train/validation split.

The split is a pure function of each frame's content hash and the split seed: a frame is in
validation iff ``u(seed, uid) < valid_fraction`` with ``u`` uniform in [0, 1) from SHA-256.
Adding frames therefore never moves old frames between train and validation. Members selected by
``count``/``sampling_fraction`` (e.g. the single EC of ``OPLS+EC+EMC``) always train.

Weights: every frame has ``weight`` (default 1). A member with ``sampling_fraction`` f gets the
per-frame weight that makes its frames f of the total training weight, so a sampler drawing
frames proportional to weight shows them in a fraction f of training steps (SCIENCE.md §3).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms

from harness.datasets.build import source_file
from harness.datasets.spec import DatasetSpec, SubsetItem
from harness.errors import InputError
from harness.io import frame_uid, read_frames

__all__ = ["Subset", "assemble", "is_validation", "load_source"]

logger = logging.getLogger(__name__)


def is_validation(uid: str, valid_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13 < valid_fraction


def load_source(spec: DatasetSpec, name: str, _cache: dict | None = None) -> list[Atoms]:
    """Labelled frames of a built source; errors when it is not built or frames lack labels."""
    path = source_file(spec, name)
    if not path.exists():
        raise InputError(f"source {name!r} of {spec.path.name} is not built yet: run "
                         f"`harness dataset build {spec.path.name} --only {name}`")
    frames = read_frames(path)
    for k, a in enumerate(frames):
        if "REF_energy" not in a.info or "REF_forces" not in a.arrays:
            raise InputError(f"{path}: frame {k} lacks reference labels (REF_energy/REF_forces)")
    return frames


@dataclass
class Subset:
    """An assembled subset: frames with ``weight``, ``split`` (train/valid) and ``source`` info."""

    name: str
    role: Literal["training", "validation"]
    frames: list[Atoms] = field(default_factory=list)

    @property
    def train(self) -> list[Atoms]:
        return [f for f in self.frames if f.info["split"] == "train"]

    @property
    def valid(self) -> list[Atoms]:
        return [f for f in self.frames if f.info["split"] == "valid"]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "n_frames": len(self.frames),
            "n_train": len(self.train),
            "n_valid": len(self.valid),
            "by_config_type": dict(Counter(str(f.info.get("config_type")) for f in self.frames)),
            "by_composition": dict(Counter(str(f.info.get("composition")) for f in self.frames)),
            "weighted": sorted({(str(f.info.get("source")), round(float(f.info["weight"]), 6))
                                for f in self.frames if f.info["weight"] != 1.0}),
        }


def _select(frames: list[Atoms], item: SubsetItem) -> list[Atoms]:
    out = frames
    if item.species is not None:
        out = [f for f in out if str(f.info.get("composition")) == f"{item.species}=1"]
    if item.composition is not None:
        from harness.systems.composition import Composition

        want = str(Composition.parse(item.composition))
        out = [f for f in out if str(f.info.get("composition")) == want]
    if item.count is not None:
        out = out[: item.count]
    return out


def assemble(spec: DatasetSpec, name: str, *, _stack: tuple[str, ...] = ()) -> Subset:
    """Frames of subset or validation set ``name``, weighted and split."""
    if name in spec.subsets:
        items, role = spec.subsets[name], "training"
    elif name in spec.validation:
        items, role = spec.validation[name], "validation"
    else:
        raise InputError(f"unknown subset {name!r}; subsets: {', '.join(spec.subsets)}; "
                         f"validation sets: {', '.join(spec.validation) or 'none'}")
    seen: set[str] = set()
    members: list[tuple[SubsetItem, list[Atoms]]] = []
    for item in items:
        if item.source is not None:
            got = [a.copy() for a in _select(load_source(spec, item.source), item)]
        else:
            got = [a.copy() for a in _select(assemble(spec, item.subset, _stack=(*_stack, name)).frames, item)]
        if not got:
            raise InputError(f"subset {name!r}: member {item.source or item.subset!r} selects no frames "
                             f"(species={item.species}, composition={item.composition})")
        kept = []
        for a in got:
            uid = frame_uid(a)
            if uid in seen:
                continue
            seen.add(uid)
            a.info["uid"] = uid
            kept.append(a)
        members.append((item, kept))
    frames: list[Atoms] = []
    for item, got in members:
        pinned = item.count is not None or item.sampling_fraction is not None
        for a in got:
            if role == "validation":
                a.info["split"] = "valid"
            elif pinned:
                a.info["split"] = "train"
            else:
                a.info["split"] = "valid" if is_validation(a.info["uid"], spec.split.valid_fraction,
                                                           spec.split.seed) else "train"
            a.info["weight"] = float(item.weight) if item.weight is not None else float(a.info.get("weight", 1.0))
            a.info["subset"] = name
        frames += got
    # sampling fractions: w_i = f_i * W_total / n_i over the training frames
    fractions = [(item, got) for item, got in members if item.sampling_fraction is not None]
    if fractions and role == "training":
        fixed = {id(a) for _, got in fractions for a in got}
        w_free = sum(a.info["weight"] for a in frames if a.info["split"] == "train" and id(a) not in fixed)
        f_total = sum(item.sampling_fraction for item, _ in fractions)
        w_total = w_free / (1.0 - f_total)
        for item, got in fractions:
            w = item.sampling_fraction * w_total / len(got)
            for a in got:
                a.info["weight"] = float(w)
    return Subset(name, role, frames)


def training_fraction(subset: Subset, source: str) -> float:
    """Share of the training weight carried by frames of ``source`` (for checks and reports)."""
    w = np.array([a.info["weight"] for a in subset.train])
    mask = np.array([a.info.get("source") == source for a in subset.train])
    return float(w[mask].sum() / w.sum()) if len(w) else 0.0
