"""Preloaded into every worker process of an embedded cluster (``LocalCluster``, the GPU node's cluster): the
worker dies with the driver that spawned it.

Without this, a driver killed with SIGKILL leaves its workers running the tasks they had: a rerun then starts the
same tasks again while the orphans still write into the same work folders (two trainings of one member, two MD
runs appending to one trajectory). Linux's ``PR_SET_PDEATHSIG`` has the kernel send SIGKILL to the worker when
its parent (the driver's thread that spawned it) ends. Elsewhere (macOS, remote schedulers) the per-task lock of
:func:`harness.sweep.execute.run_task` keeps a second execution waiting until the first one has ended.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent", "dask_setup"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent ends; True where that is supported (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent or parent == 1:  # the parent ended before the request: end now
        os._exit(1)
    return True


def dask_setup(worker) -> None:  # noqa: ARG001 (the Dask preload hook)
    die_with_parent()
