"""A walltime for one piece of a long job (a short or preemptible queue): work stops cleanly at it and the
next piece resumes.

``harness sweep|al|transfer run --walltime-min M`` sets the deadline (``HARNESS_DEADLINE_UNIX``, seconds since
the epoch, inherited by the worker processes). At the deadline an MD run checkpoints and stops, a training
tool is stopped (MACE and DeePMD resume from their last checkpoint in the next piece; a GAP fit starts
again), and the task ends with :class:`Interrupted`: recorded as ``interrupted``, not failed, and run again
by the next piece. The driver submits no task after the deadline.
"""

from __future__ import annotations

import os
import time

__all__ = ["ENV", "Interrupted", "deadline", "seconds_left", "passed"]

ENV = "HARNESS_DEADLINE_UNIX"


class Interrupted(Exception):
    """Work stopped at the walltime, resumable: not a failure."""


def deadline() -> float | None:
    """The deadline (Unix seconds), or None when no walltime is set."""
    value = os.environ.get(ENV)
    return float(value) if value else None


def seconds_left() -> float | None:
    d = deadline()
    return None if d is None else d - time.time()


def passed() -> bool:
    left = seconds_left()
    return left is not None and left <= 0
