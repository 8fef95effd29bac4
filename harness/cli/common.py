"""Shared CLI plumbing: error handling (one line, exit 2), logging set-up, the console."""

from __future__ import annotations

import functools
import logging
import shlex
import sys
from typing import Callable, TypeVar

import typer

from harness.errors import HarnessError

__all__ = ["handle_errors", "setup_logging", "err", "command_line"]

F = TypeVar("F", bound=Callable)


def err(message: str) -> None:
    """Print to standard error (standard output may carry frames)."""
    typer.echo(message, err=True)


def handle_errors(fn: F) -> F:
    """Turn a :class:`HarnessError` into ``error: <message>`` on stderr and its exit code (2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def command_line() -> str:
    """The command as typed, for provenance records."""
    return shlex.join(["harness", *sys.argv[1:]])
