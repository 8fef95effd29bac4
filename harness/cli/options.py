"""Command-line options checked up front, each error naming its option (issue #30 item 7).

Checks that need more than a type (typer's ``min``/``max`` handle plain ranges): the compute device actually
present, numbers the external tools accept (packmol's 32-bit seed), finite values.
"""

from __future__ import annotations

import math

from harness.errors import InputError

__all__ = ["MAX_SEED", "check_device", "check_range"]

MAX_SEED = 2**31 - 1  # gap_fit, packmol and DeePMD read seeds as 32-bit integers


def check_device(device: str, option: str = "--device") -> str:
    """``cpu``, or ``cuda`` where a CUDA device is visible to torch."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"{option} must be cpu or cuda, got {device!r}")
    if device == "cuda":
        try:
            import torch
        except ImportError:
            raise InputError(f"{option} cuda: torch is not installed") from None
        if not torch.cuda.is_available():
            raise InputError(f"{option} cuda: no CUDA device is visible to torch on this machine "
                             "(CUDA_VISIBLE_DEVICES, driver); use --device cpu")
    return device


def check_range(option: str, value, lo: float | None = None, hi: float | None = None, *, unit: str = "",
                why: str = "") -> None:
    """``lo <= value <= hi`` and finite; booleans are not numbers."""
    if value is None:
        return
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    bad = bad or (lo is not None and value < lo) or (hi is not None and value > hi)
    if bad:
        span = (f"in [{_num(lo)}, {_num(hi)}]" if lo is not None and hi is not None else
                f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}")
        unit = f" {unit}" if unit else ""
        raise InputError(f"{option} must be {span}{unit}{f' ({why})' if why else ''}, got {value}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
