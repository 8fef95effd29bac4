"""Provenance: package versions, host, time — recorded with every dataset, model, trajectory, score."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Iterable

__all__ = ["package_versions", "run_context", "CORE_PACKAGES"]

CORE_PACKAGES = (
    "liquid-mlip-harness", "ase", "numpy", "scipy", "tblite", "rdkit", "packmol", "openmm",
    "torch", "deepmd-kit", "mace-torch", "quippy-ase", "MDAnalysis", "kinisi",
)


def package_versions(packages: Iterable[str] = CORE_PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when absent)."""
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_context(packages: Iterable[str] = ("liquid-mlip-harness", "ase", "numpy")) -> dict[str, object]:
    """Where and when something ran, with the versions that matter for it."""
    return {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": package_versions(packages),
    }
