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

__all__ = ["Subset", "assemble", "is_validation", "load_source", "dataset_e0"]

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
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    frames = _SOURCE_CACHE.get(key)
    if frames is None:
        frames = read_frames(path)
        for k, a in enumerate(frames):
            if "REF_energy" not in a.info or "REF_forces" not in a.arrays:
                raise InputError(f"{path}: frame {k} lacks reference labels (REF_energy/REF_forces)")
        if len(_SOURCE_CACHE) >= _SOURCE_CACHE_SIZE:
            _SOURCE_CACHE.pop(next(iter(_SOURCE_CACHE)))
        _SOURCE_CACHE[key] = frames
    return [a.copy() for a in frames]  # callers tag their copies (weight, split, source)


#: parsed sources by (file, mtime, size): a sweep's plan assembles every subset of every committee from the same
#: few files (parsing them again each time was most of a plan's cost); a rebuilt file has another mtime or size
_SOURCE_CACHE: dict[tuple, list[Atoms]] = {}
_SOURCE_CACHE_SIZE = 16


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


def assemble(spec: DatasetSpec, name: str, *, max_train_frames: int | None = None,
             _stack: tuple[str, ...] = ()) -> Subset:
    """Frames of subset or validation set ``name``, weighted and split.

    ``max_train_frames`` thins the training split before the weights are set (see :func:`thin`):
    every source keeps the same share of its frames, pinned and weighted frames always stay, and
    sampling fractions are computed on what is left. Validation frames are never thinned.
    """
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
    if max_train_frames is not None and role == "training":
        pinned_ids = {id(a) for item, got in members if item.count is not None or item.sampling_fraction is not None
                      for a in got}
        keep = {id(a) for a in thin([a for a in frames if a.info["split"] == "train"], max_train_frames,
                                    pinned=pinned_ids)}
        frames = [a for a in frames if a.info["split"] != "train" or id(a) in keep]
        members = [(item, [a for a in got if a.info["split"] != "train" or id(a) in keep]) for item, got in members]
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


def subset_frames(spec: DatasetSpec, name: str, max_frames: int | None = None) -> list[Atoms]:
    """Every frame of subset or validation set ``name`` (training and validation splits), isolated atoms left out
    (they are E0s, not structures), evenly thinned to at most ``max_frames``: a replay or held-out set."""
    sub = assemble(spec, name)
    frames = [a for a in [*sub.train, *sub.valid] if len(a) > 1]
    if max_frames is not None and len(frames) > max_frames:
        frames = thin(frames, max_frames)
    return frames


def thin(frames: list[Atoms], max_frames: int, *, pinned: set[int] = frozenset()) -> list[Atoms]:
    """At most ``max_frames`` of ``frames``, every source thinned by the same fraction.

    Frames whose ``id`` is in ``pinned`` and frames with a weight other than 1 are always kept; the
    rest of the budget is shared between sources (``info["source"]``) in proportion to their
    number of free frames (largest remainders; every source keeps at least one frame while the
    budget allows), and each source keeps evenly spaced frames in its own order. Deterministic.

    Raises
    ------
    InputError
        ``max_frames`` is smaller than the number of frames that must be kept.
    """
    if max_frames < 1:
        raise InputError(f"max_train_frames must be at least 1, got {max_frames}")
    if len(frames) <= max_frames:
        return list(frames)
    fixed = [a for a in frames if id(a) in pinned or float(a.info.get("weight", 1.0)) != 1.0]
    budget = max_frames - len(fixed)
    if budget < 0:
        raise InputError(f"max_train_frames={max_frames} is smaller than the {len(fixed)} pinned or weighted "
                         "training frames, which are always kept")
    fixed_ids = {id(a) for a in fixed}
    by_source: dict[str, list[Atoms]] = {}
    for a in frames:
        if id(a) not in fixed_ids:
            by_source.setdefault(str(a.info.get("source", "?")), []).append(a)
    total = sum(len(v) for v in by_source.values())
    quota = {s: budget * len(v) / total for s, v in by_source.items()}
    alloc = {s: int(np.floor(q)) for s, q in quota.items()}
    if budget >= len(by_source):  # no source vanishes while the budget allows one frame each
        for s in alloc:
            alloc[s] = max(alloc[s], 1)
    spare = budget - sum(alloc.values())
    for s in sorted(quota, key=lambda s: (alloc[s] - quota[s], s)):  # largest remainder first
        if spare <= 0:
            break
        if alloc[s] < len(by_source[s]):
            alloc[s] += 1
            spare -= 1
    while sum(alloc.values()) > budget:  # the minimum of one frame each overshot: trim the largest
        s = max(alloc, key=lambda s: (alloc[s] - quota[s], alloc[s]))
        alloc[s] -= 1
    keep = set(fixed_ids)
    for s, v in by_source.items():
        n = alloc[s]
        keep.update(id(v[int(k * len(v) / n)]) for k in range(n))
    return [a for a in frames if id(a) in keep]


def training_fraction(subset: Subset, source: str) -> float:
    """Share of the training weight carried by frames of ``source`` (for checks and reports)."""
    w = np.array([a.info["weight"] for a in subset.train])
    mask = np.array([a.info.get("source") == source for a in subset.train])
    return float(w[mask].sum() / w.sum()) if len(w) else 0.0


def dataset_e0(spec: DatasetSpec) -> tuple[dict[str, float] | None, dict]:
    """Isolated-atom energies (eV per element) of the dataset's ``isolated_atoms`` source(s).

    They are every backend's E0s in every subset, whether or not a subset lists the source
    (SCIENCE.md §4). Returns ``(None, {"method": "average"})`` when the dataset has no such
    source: each backend then uses its own least-squares average, recorded as such.

    Raises
    ------
    InputError
        The source is not built, or two sources disagree on an element.
    """
    from harness.datasets.spec import IsolatedAtomsSource

    names = [n for n, s in spec.sources.items() if isinstance(s, IsolatedAtomsSource)]
    if not names:
        return None, {"method": "average"}
    values: dict[str, float] = {}
    info: dict = {"method": "isolated_atoms", "sources": names, "multiplicity": {}}
    for name in names:
        for a in load_source(spec, name):
            if len(a) != 1:
                raise InputError(f"source {name!r}: a frame with {len(a)} atoms (isolated atoms have one)")
            symbol = a.get_chemical_symbols()[0]
            e = float(a.info["REF_energy"])
            if symbol in values and abs(values[symbol] - e) > 1e-8:
                raise InputError(f"isolated-atom sources disagree on the energy of {symbol} "
                                 f"({values[symbol]} vs {e} eV)")
            values[symbol] = e
            info["multiplicity"][symbol] = int(a.info.get("spin_multiplicity", 0)) or None
            info["reference"] = a.info.get("REF_method")
    return values, info
