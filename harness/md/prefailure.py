"""The last frames before a failure, kept at the detectors' finer interval (issue #32 item 1).

The trajectory keeps a frame every ``frame_interval`` steps (25 fs in the study); a bond breaks or two molecules
collide in a few fs. So the MD loop keeps the most recent frames at every detector check (every 10 steps by
default) in memory and, only when a detector ends the run, writes them beside the trajectory as
``failure_frames.extxyz`` (positions, cell, ``mol_id``; ``step`` and ``time_ps`` per frame): at most
:data:`MAX_FRAMES` frames (160 atoms: ~1 MB of text), written atomically before ``result.json``. A stable run
writes nothing. A run resumed from a checkpoint keeps the frames since its resumption only.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import numpy as np
from ase import Atoms

__all__ = ["FILENAME", "MAX_FRAMES", "PreFailureFrames"]

FILENAME = "failure_frames.extxyz"
#: frames kept (the last 640 steps at the default check interval of 10: 0.32 ps at 0.5 fs)
MAX_FRAMES = 64


class PreFailureFrames:
    """A ring buffer of (step, time, positions, cell) every ``interval`` steps."""

    def __init__(self, atoms: Atoms, interval: int, max_frames: int = MAX_FRAMES):
        self.interval = max(int(interval), 1)
        self.template = Atoms(numbers=atoms.numbers, cell=atoms.cell, pbc=atoms.pbc)
        if "mol_id" in atoms.arrays:
            self.template.arrays["mol_id"] = np.asarray(atoms.arrays["mol_id"]).copy()
        self.info = {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))}
        self.frames: deque[tuple[int, float, np.ndarray, np.ndarray]] = deque(maxlen=max_frames)

    def observe(self, atoms: Atoms, step: int, time_ps: float, *, force: bool = False) -> None:
        """Keep this step's frame if it is a check step (or ``force``: the failing step)."""
        if force or step % self.interval == 0:
            if self.frames and self.frames[-1][0] == step:
                return
            self.frames.append((step, time_ps, atoms.positions.copy(), np.array(atoms.cell[:])))

    def write(self, outdir: str | Path) -> Path | None:
        """The kept frames as ``outdir/failure_frames.extxyz`` (atomically); None when there are none."""
        from ase.io import write

        if not self.frames:
            return None
        out = []
        for step, t, pos, cell in self.frames:
            a = self.template.copy()
            a.positions = pos
            a.set_cell(cell, scale_atoms=False)
            a.info = {**self.info, "step": int(step), "time_ps": float(t)}
            out.append(a)
        path = Path(outdir) / FILENAME
        tmp = path.with_name("." + path.name + ".tmp")
        write(tmp, out, format="extxyz")
        os.replace(tmp, path)
        return path
