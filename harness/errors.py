"""User-facing errors.

A :class:`HarnessError` is a problem with the user's input or environment that the user can fix
(a bad file, an unknown name, a missing tool). The CLI prints its message on one line and exits
with status 2; library callers catch it like any exception. Bugs are not HarnessErrors.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error the user can fix; the message names the culprit (file, key, frame, name)."""

    exit_code = 2


class ConfigError(HarnessError):
    """A configuration file or option failed validation."""


class InputError(HarnessError):
    """An input file or argument is unreadable, empty or inconsistent."""


class ToolError(HarnessError):
    """An external tool (packmol, gap_fit, dp, ...) is missing or failed."""
