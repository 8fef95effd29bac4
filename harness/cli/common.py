"""Shared CLI plumbing: error handling (one line, exit 2), logging set-up, the console."""

from __future__ import annotations

import functools
import logging
import shlex
import sys
from pathlib import Path
from typing import Callable, TypeVar

import typer

from harness.errors import HarnessError

__all__ = ["handle_errors", "setup_logging", "err", "command_line", "is_file"]

F = TypeVar("F", bound=Callable)


def err(message: str) -> None:
    """Print to standard error (standard output may carry frames)."""
    typer.echo(message, err=True)


def is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; False for text that cannot be a path (a long JSON
    object: ``OSError: File name too long``; a NUL byte)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def handle_errors(fn: F) -> F:
    """Turn a :class:`HarnessError` into ``error: <message>`` on stderr and its exit code (2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError as exc:
            err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except (FileExistsError, NotADirectoryError) as exc:  # an output path runs into a file
            blocker = _file_in_the_way(exc.filename)
            where = f" ({blocker} is a file, not a folder)" if blocker else ""
            err(f"error: cannot create {exc.filename}{where}: choose another output path")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _file_in_the_way(path) -> str | None:
    """The existing file among ``path`` and its parents, if any."""
    from pathlib import Path

    if path is None:
        return None
    for p in [Path(path), *Path(path).parents]:
        if p.is_file():
            return str(p)
    return None


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def command_line(ctx: typer.Context | None = None) -> str:
    """The running sub-command with every option spelled out (defaults included), for provenance.

    Rebuilt from the parsed parameters of ``ctx`` rather than ``sys.argv``, so it is exact however
    the command was invoked and stays re-runnable if defaults change later.
    """
    if ctx is None:
        return shlex.join(["harness", *sys.argv[1:]])
    parts = ["harness", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or param.name == "ctx":
            continue
        if param.param_type_name == "argument":
            parts.append(str(value))
            continue
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if getattr(param, "is_flag", False):
            if value:
                parts.append(flag)
            elif param.secondary_opts:
                parts.append(param.secondary_opts[0])
        elif isinstance(value, (list, tuple)):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
