"""Discovery of external executables (packmol, gap_fit, dp, mace_run_train, ...) and their OpenMP waiting.

Order (STYLE.md): an explicit argument, then an environment variable, then ``PATH``, then the
``bin`` folder of the running interpreter (pip installs console tools there, and a ``.venv`` need
not be activated for the harness to find them).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.errors import ToolError

__all__ = ["find_executable", "openmp_wait_env", "malloc_env", "keep_freed_memory", "process_settings"]


def find_executable(name: str, *, explicit: str | os.PathLike | None = None, env_var: str | None = None) -> str:
    """Full path of executable ``name``.

    Raises
    ------
    ToolError
        If it cannot be found; the message says where the harness looked and how to point at it.
    """
    if explicit:
        path = shutil.which(str(explicit))
        if path is None:
            raise ToolError(f"{name}: the given executable {explicit} does not exist or is not executable")
        return path
    if env_var and os.environ.get(env_var):
        value = os.environ[env_var]
        path = shutil.which(value)
        if path is None:
            raise ToolError(f"{name}: {env_var}={value} does not point at an executable")
        return path
    path = shutil.which(name)
    if path is None:
        candidate = Path(sys.executable).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            path = str(candidate)
    if path is None:
        hint = f"set {env_var} or " if env_var else ""
        raise ToolError(f"{name} not found: {hint}install it into the environment (make install) or put it on PATH")
    return path


def openmp_wait_env(environ=os.environ) -> dict[str, str]:
    """Environment for bounded OpenMP spinning: ``GOMP_SPINCOUNT=10000`` (``HARNESS_SPINCOUNT`` to change it).

    Nothing when the user sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``: theirs wins. Threads that spin long
    at every barrier turn a busy machine's shared cores into a trap (dp --pt train on 2 cores with another
    process running, measured: 2.63 s per step spinning, 0.095 s passive), while fully passive threads cost
    10-30 % on an idle machine. benchmarks/training.py, harness / by hand (libgomp's default): idle DeePMD
    0.80, MACE 0.975 (PASSIVE: 1.047, 1.11); with two busy-loop processes on the 2 cores DeePMD 0.68, MACE 1.047.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return {"GOMP_SPINCOUNT": environ.get("HARNESS_SPINCOUNT", "10000")}


#: glibc malloc settings of harness processes and the processes they start (Dask workers, training tools):
#: freed blocks stay in the process for the next force call instead of going back to the kernel and faulting
#: in again. torch on a CPU allocates and frees tensors of megabytes at every evaluation; under glibc's
#: defaults (blocks above an adaptive threshold are mmap'ed, a heap top above 128 KiB is trimmed) the kernel
#: zeroes pages all the time: a 2-worker ci-foundation sweep spent 186 of its 456 CPU-s in the kernel, and
#: 23 of 229 with these (benchmarks/allocator.py measures the ratio). The price: up to 1 GiB of freed memory
#: kept per process.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 1 << 30, "MALLOC_TOP_PAD_": 256 << 20}
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}  # <malloc.h> M_*


def malloc_env(environ=os.environ) -> dict[str, str]:
    """Environment for :data:`MALLOC` (read by glibc when a process starts); a variable the user set wins."""
    return {var: str(value) for var, value in MALLOC.items() if var not in environ}


def keep_freed_memory(environ=os.environ) -> bool:
    """Apply the ``MALLOC_*_`` settings (the user's where set, else :data:`MALLOC`) to this running process with
    ``mallopt``; True when glibc took all three (False elsewhere: macOS, musl)."""
    settings = {**{var: str(value) for var, value in MALLOC.items()}, **environ}
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    ok = True
    for var, param in _MALLOPT.items():
        try:
            ok = bool(mallopt(param, int(settings[var]))) and ok
        except ValueError:  # the user's own value is not a number: glibc ignores it too
            ok = False
    return ok


_APPLIED = False


def process_settings() -> None:
    """Bounded OpenMP spinning and freed memory kept (:func:`openmp_wait_env`, :func:`malloc_env`) for this
    process (``mallopt``) and the processes it starts (their environment); once per process. Called where
    harness work starts: the CLI, every task (a Dask worker started by SLURM never ran the CLI), the tests."""
    global _APPLIED
    if _APPLIED:
        return
    os.environ.update(openmp_wait_env())
    os.environ.update(malloc_env())
    keep_freed_memory()
    _APPLIED = True
