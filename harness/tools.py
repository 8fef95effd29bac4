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

__all__ = ["find_executable", "openmp_wait_env"]


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
