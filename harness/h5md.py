"""Trajectory outputs: an H5MD file (unwrapped positions, per-frame cell) and a thermo table.

The H5MD layout follows the H5MD 1.1 specification as read by MDAnalysis (``format="H5MD"``):
``/particles/all/position/{step,time,value}`` with ``unit`` attributes (Angstrom, ps),
``/particles/all/box`` with ``dimension`` 3 and time-dependent ``edges``, plus
``/particles/all/species`` (atomic numbers) and ``/particles/all/mol_id``; per-frame scalars a run
records with its frames (e.g. the committee's ``sigma2_F`` at active-learning checks) are H5MD
observables ``/observables/<name>/{step,time,value}``, one value per frame (NaN where it was not
evaluated). The file can be truncated back to a checkpoint, so a resumed run has no duplicated or
missing frames.

This module is the trajectory file layer shared by :mod:`harness.md` (writing) and
:mod:`harness.observables` and :mod:`harness.al` (reading); it imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["H5MDWriter", "ThermoTable", "read_h5md"]


class H5MDWriter:
    """Append frames to an H5MD file."""

    def __init__(self, path: str | Path, atoms: Atoms, *, velocities: bool = False, creator: str = "harness",
                 observables: tuple[str, ...] = ()):
        import h5py

        self.path = Path(path)
        self.velocities = velocities
        new = not self.path.exists()
        self.f = h5py.File(self.path, "a")
        n = len(atoms)
        if new:
            h5 = self.f.create_group("h5md")
            h5.attrs["version"] = np.array([1, 1])
            h5.create_group("author").attrs["name"] = "harness"
            h5.create_group("creator").attrs.update({"name": creator, "version": "1"})
            part = self.f.create_group("particles/all")
            box = part.create_group("box")
            box.attrs["dimension"] = 3
            box.attrs["boundary"] = np.array([b"periodic" if p else b"none" for p in atoms.pbc])
            self._element(box, "edges", (3, 3), "Angstrom")
            self._element(part, "position", (n, 3), "Angstrom")
            if velocities:
                self._element(part, "velocity", (n, 3), "Angstrom ps-1")
            part.create_dataset("species", data=atoms.numbers.astype(np.int32))
            if "mol_id" in atoms.arrays:
                part.create_dataset("mol_id", data=np.asarray(atoms.arrays["mol_id"], dtype=np.int32))
            part.create_dataset("masses", data=atoms.get_masses())
            for name in observables:
                self._element(self.f.require_group("observables"), name, (), "")
        self.observables = tuple(self.f["observables"]) if "observables" in self.f else ()
        if set(observables) - set(self.observables):
            raise ValueError(f"{self.path}: written without the per-frame observables "
                             f"{sorted(set(observables) - set(self.observables))}")
        self.n_frames = int(self.f["particles/all/position/step"].shape[0])

    @staticmethod
    def _element(group, name: str, shape: tuple, unit: str) -> None:
        g = group.create_group(name)
        g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=True)
        t = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=True)
        t.attrs["unit"] = "ps"
        v = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64,
                             chunks=(1, *shape) if shape else True)
        if unit:
            v.attrs["unit"] = unit

    def _append(self, name: str, step: int, time_ps: float, value: np.ndarray) -> None:
        g = self.f[name]
        k = g["step"].shape[0]
        for ds in ("step", "time", "value"):
            g[ds].resize(k + 1, axis=0)
        g["step"][k] = step
        g["time"][k] = time_ps
        g["value"][k] = value

    def write(self, atoms: Atoms, step: int, time_ps: float, values: dict[str, float] | None = None) -> None:
        """Append a frame; ``values``: this frame's per-frame observables (the others are NaN)."""
        values = values or {}
        unknown = set(values) - set(self.observables)
        if unknown:
            raise ValueError(f"{self.path}: no per-frame observable(s) {sorted(unknown)}")
        for name in self.observables:
            self._append(f"observables/{name}", step, time_ps, float(values.get(name, np.nan)))
        self._append("particles/all/position", step, time_ps, atoms.positions)
        self._append("particles/all/box/edges", step, time_ps, np.asarray(atoms.cell[:]))
        if self.velocities:
            from ase import units

            self._append("particles/all/velocity", step, time_ps, atoms.get_velocities() * 1000 * units.fs)
        self.n_frames += 1

    def truncate(self, n_frames: int) -> None:
        """Drop frames beyond the first ``n_frames`` (back to a checkpoint)."""
        names = ["particles/all/position", "particles/all/box/edges", *(f"observables/{n}" for n in self.observables)]
        if self.velocities:
            names.append("particles/all/velocity")
        for name in names:
            for ds in ("step", "time", "value"):
                self.f[name][ds].resize(n_frames, axis=0)
        self.n_frames = n_frames

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_h5md(path: str | Path) -> dict[str, np.ndarray]:
    """``positions`` (n_frames, N, 3) Å, ``cells`` (n_frames, 3, 3) Å, ``time_ps``, ``step``,
    ``numbers``, ``mol_id`` (if present), ``masses``, ``observables`` (name -> one value per frame)."""
    import h5py

    with h5py.File(path, "r") as f:
        p = f["particles/all"]
        out = {"positions": p["position/value"][:], "time_ps": p["position/time"][:],
               "step": p["position/step"][:], "cells": p["box/edges/value"][:], "numbers": p["species"][:],
               "masses": p["masses"][:]}
        if "mol_id" in p:
            out["mol_id"] = p["mol_id"][:]
        out["observables"] = {k: f[f"observables/{k}/value"][:] for k in f.get("observables", {})}
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
