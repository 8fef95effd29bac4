"""The reference-oracle contract and batch labelling.

An :class:`Oracle` makes ASE calculators for the reference method and describes itself
(provenance). :func:`label_frames` labels a batch: each frame gets ``REF_energy``, ``REF_forces``
and (periodic cells) ``REF_stress`` plus provenance keys. A frame whose calculation fails is retried
once with the oracle's safer settings, then recorded as failed — never given a silent zero, never
allowed to crash the batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError

from harness.io import frame_uid

__all__ = ["Oracle", "FrameRecord", "LabelReport", "label_frames", "oracle_key", "REF_KEYS"]

logger = logging.getLogger(__name__)

REF_KEYS = ("REF_energy", "REF_forces", "REF_stress")


@runtime_checkable
class Oracle(Protocol):
    """A reference method that labels frames with energies, forces and stresses."""

    #: short name, e.g. ``GFN2-xTB``
    name: str

    def make_calculator(self, *, safer: bool = False) -> Calculator:
        """A fresh ASE calculator; ``safer=True`` for the retry after a failure."""

    def provenance(self) -> dict[str, Any]:
        """``{"method", "code", "version", "settings"}``: enough to reproduce the labels."""


def oracle_key(oracle: Oracle) -> str:
    """Short hash (12 hex) of an oracle's provenance; labels with equal keys are interchangeable."""
    text = json.dumps(oracle.provenance(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class FrameRecord:
    """What happened to one input frame."""

    index: int
    uid: str
    status: str  # "labelled", "failed" or "cached"
    attempts: int
    seconds: float
    error: str | None = None  # the last error seen (also kept when a retry succeeded)


@dataclass
class LabelReport:
    """Result of labelling a batch: labelled frames (input order) and a record per input frame."""

    frames: list[Atoms]
    records: list[FrameRecord]
    provenance: dict[str, Any]
    oracle_key: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[FrameRecord]:
        return [r for r in self.records if r.status == "failed"]

    def manifest(self) -> dict[str, Any]:
        return {
            "oracle": self.provenance,
            "oracle_key": self.oracle_key,
            "n_input": len(self.records),
            "n_labelled": len(self.frames),
            "n_failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "frames": [asdict(r) for r in self.records],
            **self.extra,
        }


def _one(atoms: Atoms, oracle: Oracle, safer: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
    work = atoms.copy()
    work.calc = oracle.make_calculator(safer=safer)
    energy = float(work.get_potential_energy())
    forces = np.array(work.get_forces(), dtype=float)
    stress = None
    if work.pbc.all():
        try:
            stress = np.array(work.get_stress(voigt=True), dtype=float)
        except PropertyNotImplementedError:
            stress = None
    bad = [name for name, v in (("energy", energy), ("forces", forces), ("stress", stress))
           if v is not None and not np.all(np.isfinite(v))]
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(bad)}")
    if forces.shape != (len(atoms), 3):
        raise ValueError(f"forces of shape {forces.shape}, expected ({len(atoms)}, 3)")
    return energy, forces, stress


def label_frames(
    frames: Sequence[Atoms],
    oracle: Oracle,
    *,
    retries: int = 1,
    cache: dict[str, Atoms] | None = None,
    on_labelled: Callable[[int, Atoms], None] | None = None,
    progress: bool = False,
) -> LabelReport:
    """Label ``frames`` with ``oracle``.

    Parameters
    ----------
    frames
        Input frames (not modified).
    oracle
        The reference method.
    retries
        Extra attempts per frame with the oracle's safer settings after a failure.
    cache
        Already-labelled frames by ``uid`` (same oracle key); reused, not recomputed (resume).
    on_labelled
        Called with ``(index, frame)`` right after each new label (e.g. to append to a resume file).
    progress
        Show a progress bar on standard error.

    Returns
    -------
    LabelReport
        Labelled copies of the successful frames, in input order, each with ``REF_energy``,
        ``REF_forces``, ``REF_stress`` (periodic), ``uid``, ``REF_method``, ``REF_code``,
        ``REF_oracle`` (provenance hash) and ``REF_attempts``.
    """
    prov = oracle.provenance()
    key = oracle_key(oracle)
    cache = cache or {}
    out: list[Atoms] = []
    records: list[FrameRecord] = []
    t_batch = time.perf_counter()
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn(f"labelling ({oracle.name})"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), transient=True)
        task = bar.add_task("label", total=len(frames))
        bar.start()
    try:
        for index, atoms in enumerate(frames):
            uid = frame_uid(atoms)
            if uid in cache:
                out.append(cache[uid])
                records.append(FrameRecord(index, uid, "cached", 0, 0.0))
            else:
                t0 = time.perf_counter()
                error = None
                result = None
                attempts = 0
                for attempt in range(retries + 1):
                    attempts = attempt + 1
                    try:
                        result = _one(atoms, oracle, safer=attempt > 0)
                        break
                    except Exception as exc:  # any calculator failure is recorded, not raised
                        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                        logger.warning("frame %d (%s): attempt %d failed: %s", index, uid, attempts, error)
                dt = time.perf_counter() - t0
                if result is None:
                    records.append(FrameRecord(index, uid, "failed", attempts, dt, error))
                else:
                    energy, forces, stress = result
                    labelled = atoms.copy()
                    labelled.calc = None
                    for k in REF_KEYS:
                        labelled.info.pop(k, None)
                    labelled.arrays.pop("REF_forces", None)
                    labelled.info["REF_energy"] = energy
                    labelled.arrays["REF_forces"] = forces
                    if stress is not None:
                        labelled.info["REF_stress"] = stress
                    labelled.info["uid"] = uid
                    labelled.info["REF_method"] = prov.get("method", oracle.name)
                    labelled.info["REF_code"] = f"{prov.get('code', '?')} {prov.get('version', '?')}"
                    labelled.info["REF_oracle"] = key
                    labelled.info["REF_attempts"] = attempts
                    out.append(labelled)
                    # keep the first attempt's error when a retry recovered the frame
                    records.append(FrameRecord(index, uid, "labelled", attempts, dt, error))
                    if on_labelled is not None:
                        on_labelled(index, labelled)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return LabelReport(out, records, prov, key, time.perf_counter() - t_batch)
