"""Provenance: package versions, host, time — recorded with every dataset, model, trajectory, score.

:data:`PACKAGES` is the one list of the packages whose versions the harness records, grouped by what
they are recorded for; callers name groups (``versions("core", "mace")``), never packages.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Iterable

__all__ = ["PACKAGES", "CORE_PACKAGES", "MLIP_GROUPS", "packages", "package_versions", "versions", "run_context"]

#: group -> distributions; an architecture's group is named after it (its model files' provenance)
PACKAGES: dict[str, tuple[str, ...]] = {
    "core": ("liquid-mlip-harness", "ase", "numpy"),
    "reference": ("tblite",),
    "classical": ("openmm", "rdkit", "packmol"),
    "gap": ("quippy-ase",),
    "deepmd": ("deepmd-kit", "torch"),
    "mace": ("mace-torch", "torch", "e3nn"),
    # foundation model families (harness.models.foundation) and the dispersion term
    "sevennet": ("sevenn", "torch", "e3nn"),
    "chgnet": ("chgnet", "torch"),
    "d3": ("dftd3",),
    "analysis": ("scipy", "MDAnalysis", "kinisi", "featomic", "skmatter"),
    "cluster": ("dask", "distributed"),
}
#: the groups of the MLIP backends (what an MD run or a sweep may have used)
MLIP_GROUPS = ("gap", "deepmd", "mace")


def packages(*groups: str) -> tuple[str, ...]:
    """The distributions of ``groups`` (every group when none is named), each once, in order."""
    names = groups or tuple(PACKAGES)
    unknown = [g for g in names if g not in PACKAGES]
    if unknown:
        raise KeyError(f"unknown package group(s) {unknown}; known: {', '.join(PACKAGES)}")
    return tuple(dict.fromkeys(p for g in names for p in PACKAGES[g]))


CORE_PACKAGES = packages()


def package_versions(names: Iterable[str] = CORE_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` when absent)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def versions(*groups: str) -> dict[str, str]:
    """Installed versions of the packages of ``groups`` (every group when none is named)."""
    return package_versions(packages(*groups))


def run_context(groups: Iterable[str] = ("core",)) -> dict[str, object]:
    """Where and when something ran, with the versions of the package groups that matter for it."""
    return {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": versions(*groups),
    }
