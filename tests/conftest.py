"""Shared fixtures: a per-session cache dir, small built systems, a CLI runner."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


# the settings the harness CLI gives its processes (harness/cli/main.py), for the tests that run torch, OpenMP
# and the training tools in this process or in processes it starts
from harness.tools import process_settings  # noqa: E402

process_settings()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the bond-length cache of the tests away from the user's ~/.cache."""
    path = tmp_path_factory.mktemp("harness-cache")
    old = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = old


@pytest.fixture(scope="session")
def small_box():
    """4 EC + 8 EMC (160 atoms) at 1.1 g/cm³, seed 3."""
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    return build_box(Composition.parse("EC=4,EMC=8"), 1.1, seed=3)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()
