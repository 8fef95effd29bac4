"""Wheels for an offline install (harness.wheelhouse, ``make wheelhouse``): what a backend selection ships,
and (slow, ``make ci-wheelhouse``) a fresh venv installed from a wheelhouse with no index."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.wheelhouse import main, select, uncovered


def test_a_backend_selection_ships_its_closure_and_nothing_else():
    core = select([])
    assert {"ase", "tblite", "openmm", "packmol", "rdkit", "numpy", "typer"} <= set(core)
    assert not {"torch", "deepmd-kit", "mace-torch", "quippy-ase", "e3nn", "sevenn"} & set(core)
    assert "dftd3" in core  # the D3 term needs no torch
    seven = select(["sevennet"])
    assert {"sevenn", "torch", "e3nn"} <= set(seven) and "mace-torch" not in seven
    gap = select(["gap"])
    assert set(gap) - set(core) >= {"quippy-ase"} and "torch" not in gap
    both = select(["mace", "deepmd"])
    assert {"torch", "mace-torch", "e3nn", "deepmd-kit", "mpich"} <= set(both)
    assert any(n.startswith("nvidia-") for n in both) and "quippy-ase" not in both
    # a node with its own torch: torch and what only torch needs (the CUDA libraries) are left out
    node = select(["mace", "deepmd"], ["torch"])
    assert "torch" not in node and not any(n.startswith("nvidia-") or n == "triton" for n in node)
    assert {"mace-torch", "e3nn", "deepmd-kit"} <= set(node)
    from importlib import metadata

    assert all(metadata.version(n) == v for n, v in node.items())  # this environment's (locked) versions


def test_a_job_bundle_replaces_the_core_and_its_check_names_what_a_node_would_miss(tmp_path, capsys):
    """``core``: the GPU node's MACE bundle ships MACE, TorchSim and their closure, not the project's core (no
    OpenMM, RDKit, tblite); ``uncovered`` names what a job imported that neither the bundle nor the node has, and
    ``--check`` exits 1 naming it (0 when covered)."""
    import json

    has = ["torch", "numpy", "scipy", "pandas", "h5py", "matplotlib"]
    bundle = select(["mace"], has, python="3.12", core=["ase", "torch-sim-atomistic"])
    assert {"mace-torch", "e3nn", "torch-sim-atomistic", "vesin-torch", "tables", "ase"} <= set(bundle)
    assert not {"openmm", "rdkit", "tblite", "deepmd-kit", "torch", "numpy"} & set(bundle)
    used = ["ase", "mace-torch", "torch", "numpy", "rdkit", "liquid-mlip-harness"]
    assert uncovered(used, ["mace"], has, python="3.12", core=["ase", "torch-sim-atomistic"]) == ["rdkit"]
    assert uncovered(used, ["mace"], [*has, "rdkit"], python="3.12", core=["ase"]) == []
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"distributions": used}))
    args = ["--check", str(job), "--backends", "mace", "--core", "ase,torch-sim-atomistic", "--exclude", ",".join(has),
            "--python", "3.12"]
    assert main(args) == 1 and "imported rdkit: neither in the bundle nor on the node" in capsys.readouterr().err
    assert main([*args, "--optional", "rdkit"]) == 0


def test_an_unknown_backend_is_a_clear_error(capsys):
    assert main(["--backends", "nequip", "--dest", "/nonexistent/never"]) == 2
    assert "unknown backend(s) nequip; known: gap, deepmd, mace, sevennet" in capsys.readouterr().err


@pytest.mark.slow
def test_a_fresh_venv_installs_from_the_wheelhouse_alone(tmp_path):
    """The core wheelhouse for this Python (no MLIP backend: ~310 MiB), installed into a new venv with
    ``--no-index``; the installed harness packs a liquid cell (packmol, RDKit) and answers --help."""
    wh, venv = tmp_path / "wh", tmp_path / "venv"
    assert main(["--dest", str(wh), "--backends", "none"]) == 0
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wh)]
    subprocess.run([*pip, "-r", str(wh / "requirements.txt")], check=True)
    subprocess.run([*pip, "--no-deps", *map(str, wh.glob("liquid_mlip_harness-*.whl"))], check=True)
    code = ("from harness.systems.box import build_box; from harness.systems.composition import Composition; "
            "print(len(build_box(Composition.parse('EC=1,EMC=1'), 1.0, seed=0)))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "25"
    helped = subprocess.run([str(venv / "bin" / "harness"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "Usage" in helped.stdout
