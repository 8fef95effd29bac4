"""Workarounds for co-installing the MLIP backends, in one place (DESIGN.md, "Environment").

deepmd-kit's PyTorch backend imports e3nn; MACE pins e3nn 0.4.4, whose pickled constants file
torch ≥ 2.6 refuses to load under ``weights_only`` ("Unsupported global: GLOBAL slice"). MACE sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` when imported; DeePMD must get the same before
``deepmd.pt`` is imported in-process, and in the environment of ``dp`` subprocesses.
"""

from __future__ import annotations

import os

__all__ = ["torch_weights_only_workaround"]


def torch_weights_only_workaround() -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
