"""Label a frames file into an output file, resumably, with a manifest beside it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ase import Atoms

from harness.io import STDIO, atomic_path, check_output, frame_uid, sha256_file, write_frames
from harness.provenance import run_context
from harness.reference.base import LabelReport, Oracle, label_frames, oracle_key

__all__ = ["label_to_file", "resume_path", "manifest_path_for"]

logger = logging.getLogger(__name__)


def resume_path(output: str | os.PathLike) -> Path:
    """Where finished labels of an interrupted run are kept (removed once the output is written)."""
    p = Path(output)
    return p.with_name(f".{p.name}.labels-partial.extxyz")


def manifest_path_for(output: str | os.PathLike) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".manifest.json")


def _load_resume(path: Path, key: str) -> dict[str, Atoms]:
    if not path.exists() or path.stat().st_size == 0:
        return {}
    from ase.io import iread

    frames = []
    try:
        for atoms in iread(path, format="extxyz"):
            frames.append(atoms)
    except Exception:  # the last frame was cut short by a kill: keep the ones before it
        logger.warning("resume file %s ends in a damaged frame; %d labels kept", path, len(frames))
    cache = {}
    for atoms in frames:
        if atoms.info.get("REF_oracle") == key:
            cache[frame_uid(atoms)] = atoms
    return cache


def label_to_file(
    frames: Sequence[Atoms],
    output: str | os.PathLike,
    oracle: Oracle,
    *,
    manifest: str | os.PathLike | None = None,
    retries: int = 1,
    progress: bool = False,
    source: str | None = None,
    command: str | None = None,
    reuse: dict[str, Atoms] | None = None,
) -> LabelReport:
    """Label ``frames`` and write the labelled ones to ``output`` (extxyz, atomic; ``-`` = stdout).

    A run interrupted part-way keeps its finished labels in a hidden resume file beside
    ``output``; rerunning the same command reuses them (same frame content and oracle settings)
    and computes only the rest; ``reuse`` offers more finished labels by uid (e.g. from a previous
    build of the same data), taken only when their ``REF_oracle`` key matches. The manifest (JSON) records the oracle's provenance, every input
    frame's status (labelled / cached / failed with the error), the input's hash and the command.
    """
    key = oracle_key(oracle)
    to_stdout = str(output) == STDIO
    inputs = [source] if source else []
    manifest = manifest if manifest is not None else (None if to_stdout else manifest_path_for(output))
    check_output(output, inputs=inputs)  # before any frame is labelled
    if manifest is not None:
        check_output(manifest, inputs=inputs)
    resume = None if to_stdout else resume_path(output)
    cache = _load_resume(resume, key) if resume is not None else {}
    for uid, atoms in (reuse or {}).items():
        if atoms.info.get("REF_oracle") == key:
            cache.setdefault(uid, atoms)
    if cache:
        logger.info("resuming: %d labels reused from %s", len(cache), resume)

    handle = None
    if resume is not None:
        resume.parent.mkdir(parents=True, exist_ok=True)

    def append(_index: int, atoms: Atoms) -> None:
        nonlocal handle
        from ase.io import write

        if resume is None:
            return
        if handle is None:
            handle = open(resume, "a")
        plain = atoms.copy()
        plain.calc = None
        write(handle, plain, format="extxyz")
        handle.flush()
        os.fsync(handle.fileno())

    try:
        report = label_frames(frames, oracle, retries=retries, cache=cache, on_labelled=append, progress=progress)
    finally:
        if handle is not None:
            handle.close()
    extra: dict[str, Any] = {"input": source, "command": command, "context": run_context(("core", "reference"))}
    if source and source != STDIO and Path(source).is_file():
        extra["input_sha256"] = sha256_file(source)
    report.extra.update(extra)
    if report.frames:
        write_frames(output, report.frames, inputs=inputs)
    if manifest is not None:
        with atomic_path(manifest, inputs=inputs) as tmp:
            data = report.manifest()
            if report.frames and not to_stdout:
                data["output"] = str(output)
                data["output_sha256"] = sha256_file(output)
            tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    if resume is not None and report.frames:
        resume.unlink(missing_ok=True)
    return report
