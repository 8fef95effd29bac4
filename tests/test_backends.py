"""The MLIP backend tools are installed and runnable inside the environment (issue #2).

Real training runs are tested with the committees (issue #4); here each tool must start, and
gap_fit must complete a minimal fit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from harness.tools import find_executable

pytestmark = pytest.mark.backends


def _run(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, **kwargs)


def test_import_deepmd_pytorch_backend_with_custom_ops():
    proc = _run([sys.executable, "-c",
                 "import deepmd.pt; from deepmd.pt.cxx_op import ENABLE_CUSTOMIZED_OP; print(ENABLE_CUSTOMIZED_OP)"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


def test_dp_pytorch_cli():
    proc = _run([find_executable("dp"), "--pt", "train", "-h"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INPUT" in proc.stdout
    assert "3.2.0" in _run([find_executable("dp"), "--version"]).stdout


def test_mace_run_train_cli():
    proc = _run([find_executable("mace_run_train"), "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--train_file" in proc.stdout


def test_gap_fit_completes_a_minimal_fit(tmp_path):
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.io import write

    frames = []
    for d in np.linspace(0.9, 1.6, 8):
        a = Atoms("H2", positions=[[0, 0, 0], [0, 0, d]], cell=[10, 10, 10], pbc=True)
        a.calc = EMT()
        a.info["REF_energy"] = a.get_potential_energy()
        a.arrays["REF_forces"] = a.get_forces()
        a.calc = None
        frames.append(a)
    write(tmp_path / "train.xyz", frames, format="extxyz")
    args = [
        find_executable("gap_fit", env_var="HARNESS_GAP_FIT"), "at_file=train.xyz",
        "gap={distance_2b cutoff=3.0 n_sparse=6 covariance_type=ard_se delta=1.0 theta_uniform=1.0 "
        "sparse_method=uniform}",
        "default_sigma={0.001 0.01 0.0 0.0}", "energy_parameter_name=REF_energy",
        "force_parameter_name=REF_forces", "e0_method=average", "gp_file=gap.xml", "rnd_seed=1",
    ]
    proc = _run(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "gap.xml").stat().st_size > 0

    # the harness calculator evaluates forces and stress in one pass once stress is wanted (NPT), with
    # results identical to quippy's Potential called property by property
    from quippy.potential import Potential

    from harness.models.gap import _gap_potential

    plain, ours = Potential(param_filename=str(tmp_path / "gap.xml")), _gap_potential(str(tmp_path / "gap.xml"))
    calls = []
    original = Potential.calculate

    def counting(self, *a, **k):
        calls.append(self is ours)
        return original(self, *a, **k)

    Potential.calculate = counting
    try:
        for d in (1.0, 1.1, 1.2):
            x = Atoms("H2", positions=[[0, 0, 0], [0, 0, d]], cell=[10, 10, 10], pbc=True)
            y = x.copy()
            x.calc, y.calc = plain, ours
            np.testing.assert_array_equal(x.get_forces(), y.get_forces())
            np.testing.assert_array_equal(x.get_stress(), y.get_stress())
    finally:
        Potential.calculate = original
    # plain: 2 calls per geometry; ours: 2 for the first geometry, then 1
    assert calls.count(False) == 6 and calls.count(True) == 4


def test_packmol_found():
    assert os.access(find_executable("packmol", env_var="HARNESS_PACKMOL"), os.X_OK)


def test_missing_tool_is_a_clear_error(monkeypatch):
    from harness.errors import ToolError

    monkeypatch.setenv("HARNESS_GAP_FIT", "/nonexistent/gap_fit")
    with pytest.raises(ToolError, match="HARNESS_GAP_FIT=/nonexistent/gap_fit does not point at an executable"):
        find_executable("gap_fit", env_var="HARNESS_GAP_FIT")
    with pytest.raises(ToolError, match="no_such_tool_xyz not found"):
        find_executable("no_such_tool_xyz")
