"""The command line as a user meets it: outputs, and one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from harness.cli.main import app
from harness.io import read_frames
from harness.units import density_g_cm3


def test_version_and_help(runner):
    from harness import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"harness {__version__}"
    for cmd in (["--help"], ["box", "--help"], ["label", "--help"], ["demo", "--help"]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_box_weight_ratio_to_file(runner, tmp_path):
    out = tmp_path / "box.extxyz"
    result = runner.invoke(app, ["box", "-c", "EC:EMC=3:7", "--by", "weight", "--atoms", "160",
                                 "--density", "1.15", "--seed", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    (frame,) = read_frames(out)
    assert frame.info["composition"] == "EC=4,EMC=8" and len(frame) == 160
    assert density_g_cm3(frame) == pytest.approx(1.15, rel=1e-6)
    assert "EC=4,EMC=8 (160 atoms)" in result.stderr


def test_box_piped_into_label_with_gfn2(runner, tmp_path):
    boxed = runner.invoke(app, ["box", "-c", "EC=4,EMC=8", "--density", "1.2", "--seed", "0"])
    assert boxed.exit_code == 0, boxed.output
    out = tmp_path / "lab.extxyz"
    result = runner.invoke(app, ["label", "-", "-o", str(out)], input=boxed.stdout)
    assert result.exit_code == 0, result.output
    (frame,) = read_frames(out)
    assert len(frame) == 160 and np.isfinite(frame.info["REF_energy"])
    assert frame.arrays["REF_forces"].shape == (160, 3) and frame.info["REF_stress"].shape == (6,)
    assert frame.arrays["mol_id"].max() == 11  # topology survives labelling
    manifest = json.loads((tmp_path / "lab.extxyz.manifest.json").read_text())
    assert manifest["oracle"]["method"] == "GFN2-xTB" and manifest["n_failed"] == 0
    assert manifest["command"].startswith("harness label")


def test_label_with_ase_calculator_and_failure_exit_status(runner, tmp_path):
    boxed = runner.invoke(app, ["box", "-c", "EC=2", "--density", "0.8", "-o", str(tmp_path / "in.extxyz")])
    assert boxed.exit_code == 0
    result = runner.invoke(app, ["label", str(tmp_path / "in.extxyz"), "-o", str(tmp_path / "o.extxyz"),
                                 "--reference", "ase:ase.calculators.emt.EMT"])
    assert result.exit_code == 0, result.output
    assert read_frames(tmp_path / "o.extxyz")[0].info["REF_method"] == "ase.calculators.emt.EMT"
    # an SCF that cannot converge: exit 1, frame recorded as failed, no output frames file
    result = runner.invoke(app, ["label", str(tmp_path / "in.extxyz"), "-o", str(tmp_path / "f.extxyz"),
                                 "--reference-options", '{"max_iterations": 1, "retry_max_iterations": 1}'])
    assert result.exit_code == 1
    assert "1 frame(s) failed" in result.stderr and "SCF not converged" in result.stderr
    assert not (tmp_path / "f.extxyz").exists()
    manifest = json.loads((tmp_path / "f.extxyz.manifest.json").read_text())
    assert manifest["frames"][0]["status"] == "failed"


BAD_BOX = [
    (["-c", "XYZ=3", "--density", "1"], "unknown molecule 'XYZ'"),
    (["-c", "BAD=1", "--molecule", "BAD=C1CC(", "--density", "1"], "invalid SMILES 'C1CC(' for molecule 'BAD'"),
    (["-c", "EC=4", "--density", "5", "--nloop", "5"], "density 5.0 g/cm³ cannot be reached by packmol"),
    (["-c", "EC=1.5,EMC=2", "--density", "1"], "whole number of molecules"),
    (["-c", "EC=1,EMC=1", "--atoms", "641", "--density", "1"], "does not resolve to whole molecules"),
    (["-c", "EC=1", "--density", "-1"], "density must be a positive number"),
    (["-c", "EC=1", "--by", "weight", "--density", "1"], "--by needs --atoms or --molecules"),
]


@pytest.mark.parametrize("args, message", BAD_BOX)
def test_box_bad_input(runner, tmp_path, args, message):
    out = tmp_path / "box.extxyz"
    result = runner.invoke(app, ["box", *args, "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []  # no partial output


@pytest.mark.parametrize("content, extra, message", [
    (None, [], "no such file"),
    ("", [], "file is empty"),
    ("2\nProperties=species:S:1\nH\nH\n", [], "frame 0 has no positions"),
    ("1\n\nH 0 0 0\n", ["--reference", "dft"], "unknown reference 'dft'"),
    ("1\n\nH 0 0 0\n", ["--reference-options", "{bad"], "invalid JSON"),
])
def test_label_bad_input(runner, tmp_path, content, extra, message):
    src = tmp_path / "in.extxyz"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "out" / "o.extxyz"
    result = runner.invoke(app, ["label", str(src), "-o", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()
