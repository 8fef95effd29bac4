"""One writer per trajectory: an exclusive lock on a run directory (issue #30 item 1).

Two processes integrating the same run directory would interleave frames, thermo rows and checkpoints (both
reporting success over a trajectory shorter than either claims). :func:`run_lock` takes an advisory ``flock`` on a
file *beside* the run directory (``.<run>.lock``, so that it survives the directory being moved aside by a
superseding run), without waiting: a second process is refused at once with the holder's pid and start time.
The lock is reentrant within one thread (``run_protocol`` holds it around ``prepare_run`` and ``run_md``) and
exclusive between threads (a batch of trajectories runs one thread per run directory).

``flock`` locks are per host on most network filesystems; runs of one directory from two nodes of a cluster
are kept apart by the sweep's task locks and the scheduler, not by this.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import InputError

__all__ = ["RunBusy", "run_lock"]

_HELD: dict[str, int] = {}  # lock file -> thread holding it
_GUARD = threading.Lock()


class RunBusy(InputError):
    """Another process (or thread) is writing this run directory."""


def _lock_file(outdir: Path) -> Path:
    return outdir.parent / f".{outdir.name}.lock"


@contextmanager
def run_lock(outdir: str | os.PathLike) -> Iterator[None]:
    """Hold the run directory ``outdir`` for writing; :class:`RunBusy` if another process or thread holds it."""
    outdir = Path(outdir)
    path = _lock_file(outdir)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    me = threading.get_ident()
    with _GUARD:
        owner = _HELD.get(key)
        if owner is not None and owner != me:
            raise RunBusy(f"{outdir}: another thread of this process is running this trajectory")
        reentrant = owner == me
        if not reentrant:
            _HELD[key] = me
    if reentrant:
        yield
        return
    fh = None
    try:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunBusy(f"{outdir}: {holder} is running this trajectory; wait for it to finish (a rerun then "
                          "returns or resumes it) or use another --workspace or --replica") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield
        finally:
            if not outdir.exists():  # refused before anything was written: leave no lock file or empty folders
                path.unlink(missing_ok=True)
                for d in created:  # deepest first
                    try:
                        d.rmdir()
                    except OSError:  # not empty: someone else's
                        break
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        if fh is not None:
            fh.close()
        with _GUARD:
            _HELD.pop(key, None)
