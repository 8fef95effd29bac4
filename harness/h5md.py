"""Trajectory outputs: an H5MD file (unwrapped positions, per-frame cell) and a thermo table.

The H5MD layout follows the H5MD 1.1 specification as read by MDAnalysis (``format="H5MD"``):
``/particles/all/position/{step,time,value}`` with ``unit`` attributes (Angstrom, ps),
``/particles/all/box`` with ``dimension`` 3 and time-dependent ``edges``, plus
``/particles/all/species`` (atomic numbers) and ``/particles/all/mol_id``; per-frame scalars a run
records with its frames (e.g. the committee's ``sigma2_F`` at active-learning checks) are H5MD
observables ``/observables/<name>/{step,time,value}``, one value per frame (NaN where it was not
evaluated). Frames are written in atomic parts and assembled at the end (:class:`H5MDWriter`), so a killed run
leaves no corrupt file, and a resumed run has no duplicated or missing frames.

This module is the trajectory file layer shared by :mod:`harness.md` (writing) and
:mod:`harness.observables` and :mod:`harness.al` (reading); it imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["H5MDWriter", "ThermoTable", "read_h5md"]


#: (group, per-frame value shape given N atoms, unit) of the time-dependent elements under /particles/all
def _elements(n: int, velocities: bool) -> list[tuple[str, tuple, str]]:
    out = [("particles/all/position", (n, 3), "Angstrom"), ("particles/all/box/edges", (3, 3), "Angstrom")]
    if velocities:
        out.append(("particles/all/velocity", (n, 3), "Angstrom ps-1"))
    return out


def _create(f, static: dict[str, Any], observables: tuple[str, ...], velocities: bool, creator: str) -> None:
    """The H5MD layout with empty, resizable time series."""
    h5 = f.create_group("h5md")
    h5.attrs["version"] = np.array([1, 1])
    h5.create_group("author").attrs["name"] = "harness"
    h5.create_group("creator").attrs.update({"name": creator, "version": "1"})
    part = f.create_group("particles/all")
    box = part.create_group("box")
    box.attrs["dimension"] = 3
    box.attrs["boundary"] = np.array([b"periodic" if p else b"none" for p in static["pbc"]])
    n = len(static["species"])
    for name, shape, unit in _elements(n, velocities):
        _element(f, name, shape, unit)
    part.create_dataset("species", data=static["species"])
    if static.get("mol_id") is not None:
        part.create_dataset("mol_id", data=static["mol_id"])
    part.create_dataset("masses", data=static["masses"])
    for name in observables:
        _element(f, f"observables/{name}", (), "")


def _element(f, name: str, shape: tuple, unit: str) -> None:
    g = f.create_group(name)
    g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=True)
    t = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=True)
    t.attrs["unit"] = "ps"
    v = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64,
                         chunks=(1, *shape) if shape else True)
    if unit:
        v.attrs["unit"] = unit


def _append_block(f, block: dict[str, np.ndarray]) -> None:
    """Append frames: ``block`` maps each time-dependent group to its values; ``step`` and ``time`` are shared."""
    k = len(block["step"])
    for name, value in block.items():
        if name in ("step", "time"):
            continue
        g = f[name]
        n0 = g["step"].shape[0]
        for ds, data in (("step", block["step"]), ("time", block["time"]), ("value", value)):
            g[ds].resize(n0 + k, axis=0)
            g[ds][n0:n0 + k] = data


def _read_block(f) -> dict[str, np.ndarray]:
    p = f["particles/all/position"]
    block = {"step": p["step"][:], "time": p["time"][:]}
    for name in ("particles/all/position", "particles/all/box/edges", "particles/all/velocity"):
        if name in f:
            block[name] = f[f"{name}/value"][:]
    for k in f.get("observables", {}):
        block[f"observables/{k}"] = f[f"observables/{k}/value"][:]
    return block


class H5MDWriter:
    """Append frames of one run to an H5MD file, crash-safe.

    An HDF5 file written in place is corrupt when its writer is killed mid-write (measured: a SIGKILL in a
    sweep left "bad object header version number"), so frames are buffered in memory and each :meth:`flush` (a
    checkpoint) writes those since the last one as one small H5MD file, ``trajectory.parts/part-<first
    frame>.h5``, written atomically: a part is whole or absent, and its cost does not grow with the run.
    :meth:`close` (the end of a run or of a piece stopped at a walltime) assembles the parts into
    ``trajectory.h5md`` (atomically) and removes them. On resume the parts are the record when there are any
    (an assembled file beside them is a copy of them), else a whole ``trajectory.h5md`` becomes the first
    part; :meth:`truncate` drops the frames past a checkpoint. :func:`read_h5md` reads the parts of a run
    under way.
    """

    def __init__(self, path: str | Path, atoms: Atoms, *, velocities: bool = False, creator: str = "harness",
                 observables: tuple[str, ...] = ()):
        import logging
        import os

        import h5py

        self.path = Path(path)
        self.parts = self.path.with_name(self.path.stem + ".parts")
        self.velocities = velocities
        self.creator = creator
        self._static = {"species": atoms.numbers.astype(np.int32), "masses": atoms.get_masses(),
                        "pbc": np.array(atoms.pbc),
                        "mol_id": np.asarray(atoms.arrays["mol_id"], dtype=np.int32) if "mol_id" in atoms.arrays
                        else None}
        self._buf: list[dict[str, Any]] = []
        self._closed = False
        files = self._part_files()
        if files:
            self.path.unlink(missing_ok=True)  # assembled from these parts by a close that was killed
        elif self.path.exists():
            try:
                with h5py.File(self.path, "r") as f:
                    f["particles/all/position/step"].shape
            except (OSError, KeyError) as exc:  # written in place by an older harness and killed mid-write
                logging.getLogger(__name__).warning("%s is unreadable (%s); its frames are lost", self.path, exc)
                self.path.unlink()
            else:
                self.parts.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, self.parts / _part_name(0))
        self._counts = {}  # part file -> its frames
        written = ()
        for f_path in self._part_files():
            with h5py.File(f_path, "r") as f:
                self._counts[f_path] = int(f["particles/all/position/step"].shape[0])
                written = tuple(f["observables"]) if "observables" in f else ()
        if self._counts:
            missing = set(observables) - set(written)
            if missing:
                raise ValueError(f"{self.path}: written without the per-frame observables {sorted(missing)}")
            self.observables = written
        else:
            self.observables = tuple(observables)
        self.n_frames = sum(self._counts.values())

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.h5")) if self.parts.is_dir() else []

    def write(self, atoms: Atoms, step: int, time_ps: float, values: dict[str, float] | None = None) -> None:
        """Append a frame; ``values``: this frame's per-frame observables (the others are NaN)."""
        values = values or {}
        unknown = set(values) - set(self.observables)
        if unknown:
            raise ValueError(f"{self.path}: no per-frame observable(s) {sorted(unknown)}")
        frame = {"step": step, "time": time_ps, "particles/all/position": atoms.positions.copy(),
                 "particles/all/box/edges": np.array(atoms.cell[:])}
        if self.velocities:
            from ase import units

            frame["particles/all/velocity"] = atoms.get_velocities() * 1000 * units.fs
        for name in self.observables:
            frame[f"observables/{name}"] = float(values.get(name, np.nan))
        self._buf.append(frame)
        self.n_frames += 1

    def _write_part(self, path: Path, block: dict[str, np.ndarray]) -> None:
        import h5py

        from harness.io import atomic_path

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                _create(f, self._static, self.observables, self.velocities, self.creator)
                _append_block(f, block)

    def flush(self) -> None:
        """Write the frames added since the last flush as one part (nothing when there are none)."""
        if not self._buf:
            return
        block = {k: np.array([fr[k] for fr in self._buf]) for k in self._buf[0]}
        path = self.parts / _part_name(self.n_frames - len(self._buf))
        self.parts.mkdir(parents=True, exist_ok=True)
        self._write_part(path, block)
        self._counts[path] = len(self._buf)
        self._buf = []

    def truncate(self, n_frames: int) -> None:
        """Drop frames beyond the first ``n_frames`` (back to a checkpoint). ``n_frames`` stays below the request
        when fewer frames were written (the caller checks)."""
        import h5py

        flushed = self.n_frames - len(self._buf)
        self._buf = self._buf[:max(0, n_frames - flushed)]
        for path in list(self._counts):
            first, count = int(path.stem.split("-")[1]), self._counts[path]
            if first >= n_frames:
                path.unlink()
                del self._counts[path]
            elif first + count > n_frames:
                with h5py.File(path, "r") as f:
                    block = {k: v[:n_frames - first] for k, v in _read_block(f).items()}
                self._write_part(path, block)
                self._counts[path] = n_frames - first
        self.n_frames = sum(self._counts.values()) + len(self._buf)

    def close(self) -> None:
        """Assemble the parts into ``trajectory.h5md`` and remove them (once; later calls do nothing)."""
        import shutil

        import h5py

        from harness.io import atomic_path

        if self._closed:
            return
        self.flush()
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as out:
                _create(out, self._static, self.observables, self.velocities, self.creator)
                for path in self._part_files():
                    with h5py.File(path, "r") as f:
                        _append_block(out, _read_block(f))
        shutil.rmtree(self.parts, ignore_errors=True)
        self._closed = True


def _part_name(first_frame: int) -> str:
    return f"part-{first_frame:09d}.h5"


def read_h5md(path: str | Path) -> dict[str, np.ndarray]:
    """``positions`` (n_frames, N, 3) Å, ``cells`` (n_frames, 3, 3) Å, ``time_ps``, ``step``,
    ``numbers``, ``mol_id`` (if present), ``masses``, ``observables`` (name -> one value per frame).

    A run under way (or killed) has no ``trajectory.h5md`` yet: its parts (``trajectory.parts/``) are read."""
    import h5py

    path = Path(path)
    parts = path.with_name(path.stem + ".parts")
    files = sorted(parts.glob("part-*.h5")) if not path.exists() and parts.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"{path}: no trajectory (and no parts of one)")
    blocks = []
    for i, name in enumerate(files):
        with h5py.File(name, "r") as f:
            blocks.append(_read_block(f))
            if i == 0:
                p = f["particles/all"]
                out = {"numbers": p["species"][:], "masses": p["masses"][:]}
                if "mol_id" in p:
                    out["mol_id"] = p["mol_id"][:]
    cat = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    out.update({"positions": cat["particles/all/position"], "time_ps": cat["time"], "step": cat["step"],
                "cells": cat["particles/all/box/edges"],
                "observables": {k.split("/", 1)[1]: v for k, v in cat.items() if k.startswith("observables/")}})
    if "particles/all/velocity" in cat:
        out["velocities"] = cat["particles/all/velocity"]
    return out


class ThermoTable:
    """Rows of per-step scalars of one run, append-only on disk.

    Each :meth:`flush` (a checkpoint) writes only the rows added since the last one, as one Parquet part
    (``thermo.parts/part-NNNNNN.parquet``, written atomically): its cost does not grow with the run. :meth:`close`
    (the end of a run, or of a piece stopped at a walltime) writes the whole table as ``thermo.parquet``, the file
    every reader reads, and removes the parts. On resume the parts, when there are any, are the record (the first
    flush after reading ``thermo.parquet`` writes it all as the first part), else ``thermo.parquet``; rows after
    the checkpoint's step are dropped (:meth:`truncate_after`), rewriting the parts only when some of those rows
    had been flushed.
    """

    def __init__(self, path: str | Path):
        import pandas as pd

        self.path = Path(path)
        self.parts = self.path.with_name(self.path.stem + ".parts")
        self.rows: list[dict[str, Any]] = []
        self._flushed = 0  # rows already in parts
        self._next = 0  # index of the next part
        files = self._part_files()
        if files:
            for f in files:
                self.rows += pd.read_parquet(f).to_dict("records")
            self._flushed = len(self.rows)
            self._next = int(files[-1].stem.split("-")[1]) + 1
        elif self.path.exists():  # a run written before the parts (or whose parts were removed)
            self.rows = pd.read_parquet(self.path).to_dict("records")

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def reset(self) -> None:
        """Start the table afresh (a run started again from step 0)."""
        import shutil

        self.rows, self._flushed, self._next = [], 0, 0
        shutil.rmtree(self.parts, ignore_errors=True)
        self.path.unlink(missing_ok=True)

    def truncate_after(self, step: int) -> None:
        keep = [r for r in self.rows if r["step"] <= step]
        if len(keep) < self._flushed:  # flushed rows dropped: the parts become one part of what is kept
            self.reset()
            self.rows = keep
            self.flush()
        else:
            self.rows = keep

    def _write(self, rows: list[dict[str, Any]], path: Path) -> None:
        """Write atomically: a failed write (a full disk) leaves the previous file and no temporary."""
        import pandas as pd

        from harness.io import atomic_path

        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)

    def flush(self) -> None:
        """Append the rows added since the last flush as one part (nothing when there are none)."""
        new = self.rows[self._flushed:]
        if not new:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        self._write(new, self.parts / f"part-{self._next:06d}.parquet")
        self._next += 1
        self._flushed = len(self.rows)

    def close(self) -> None:
        """Write the whole table as ``thermo.parquet`` (once per run or piece) and drop the parts it now holds (a
        run's file count stays bounded; a resumed piece's first flush writes the table it read as its first part)."""
        import shutil

        if self.rows:
            self._write(self.rows, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        self._flushed, self._next = 0, 0
