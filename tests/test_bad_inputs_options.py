"""Options checked up front, each message naming its option; calculator configuration errors exit 2; frames a
model cannot predict or a trajectory without a box are one-line errors (issue #30 items 7-8). One row per case:
each would fail on a traceback (exit 1), a silent success (exit 0), or a message not naming the option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"
LJ = ["--calculator", "ase:ase.calculators.lj.LennardJones"]


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _box(*extra):
    return ["box", "-c", "EC=1", "--density", "1.0", *extra]


def _md(*extra):
    return ["md", "-p", str(ROOT / "protocols" / "ci.yaml"), "-e", "npt", *extra]


def _train(*extra):
    return ["train", "-d", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "-s", "OPLS", "-a", "mace", *extra]


CASES = [
    pytest.param(_box("--tolerance", "-1"), "--tolerance must be at least 1 Å", id="box-negative-tolerance"),
    pytest.param(_box("--tolerance", "0.5"), "--tolerance must be at least 1 Å", id="box-tiny-tolerance"),
    pytest.param(_box("--tolerance", "nan"), "--tolerance must be", id="box-nan-tolerance"),
    pytest.param(_box("--seed", str(2**31)), "--seed must be in [0, 2147483647]", id="box-seed-beyond-packmol"),
    pytest.param(_box("--seed", "-1"), "--seed must be in [0, 2147483647]", id="box-negative-seed"),
    pytest.param(_box("--nloop", "0"), "--nloop must be in [1, 1000000]", id="box-zero-nloop"),
    pytest.param(["box", "-c", "EC=1", "--density", "inf"], "density must be a positive number", id="box-infinite-density"),
    pytest.param(["box", "-c", "EC=3,EMC=7", "--density", "1", "--atoms", "0"], "--atoms must be at least 1",
                 id="box-zero-atoms"),
    pytest.param(_md(*LJ, "--device", "tpu"), "--device must be cpu or cuda", id="md-unknown-device"),
    pytest.param(_md(*LJ, "--calculator-options", '{"foo": 1}'), "--calculator 'ase:ase.calculators.lj",
                 id="md-calculator-unknown-option-named-as-calculator"),
    pytest.param(_md(*LJ, "--calculator-options", "{not json"), "--calculator-options: invalid JSON",
                 id="md-calculator-options-not-json"),
    pytest.param(_train("--threads", "-1"), "--threads", id="train-negative-threads"),
    pytest.param(_train("--threads", "0"), "--threads", id="train-zero-threads"),
    pytest.param(_train("--seeds", "1,x"), "--seeds must be comma-separated integers", id="train-seeds-not-integers"),
    pytest.param(_train("--seeds", "-3"), "--seeds must be in [0, 2147483647]", id="train-negative-seed"),
    pytest.param(_train("--seeds", str(2**32)), "--seeds must be in [0, 2147483647]", id="train-seed-too-big"),
    pytest.param(_train("--seeds", "1,1"), "--seeds repeats a seed", id="train-repeated-seed"),
    pytest.param(_train("--committee", "0"), "--committee", id="train-empty-committee"),
    pytest.param(_train("--committee", "100000"), "--committee", id="train-huge-committee"),
    pytest.param(_train("--device", "tpu"), "--device must be cpu or cuda", id="train-unknown-device"),
    pytest.param(_train("--max-train-frames", "0"), "--max-train-frames", id="train-zero-frames"),
    pytest.param(["sweep", "run", str(ROOT / "protocols" / "sweeps" / "ci.yaml"), "--device", "tpu"],
                 "--device must be cpu or cuda", id="sweep-unknown-device"),
]
if not _has_cuda():
    CASES += [
        pytest.param(_md(*LJ, "--device", "cuda"), "--device cuda: no CUDA device is visible", id="md-cuda-absent"),
        pytest.param(_train("--device", "cuda"), "--device cuda: no CUDA device is visible", id="train-cuda-absent"),
        pytest.param(["sweep", "run", str(ROOT / "protocols" / "sweeps" / "ci.yaml"), "--device", "cuda"],
                     "--device cuda: no CUDA device is visible", id="sweep-cuda-absent"),
        pytest.param(["evaluate", str(ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz"), "-m",
                      str(FOUNDATION), "--device", "cuda"], "--device cuda: no CUDA device", id="evaluate-cuda-absent"),
    ]


@pytest.mark.parametrize("args, message", CASES)
def test_bad_option_is_one_line_naming_it(runner, tmp_path, args, message):
    result = runner.invoke(app, [*args, *(["-w", str(tmp_path / "ws")] if args[0] in ("md", "train", "sweep") else [])],
                           catch_exceptions=False)
    assert result.exit_code == 2, result.output
    out = result.stderr if result.stderr else result.output
    assert message in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "ws").exists()  # refused before anything was written


def test_a_calculator_its_options_cannot_build_is_a_configuration_error_not_failed_frames(runner, tmp_path):
    """LennardJones(sigma="x") raises in its constructor: exit 2 before any frame, not N failed frames and exit 1."""
    data = ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz"
    out = tmp_path / "out.extxyz"
    result = runner.invoke(app, ["label", str(data), "-o", str(out), "--reference", "ase:ase.calculators.lj.LennardJones",
                                 "--reference-options", '{"sigma": "x"}'])
    assert result.exit_code == 2, result.output
    assert "cannot construct with options" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*manifest*"))


def test_non_finite_predictions_are_an_error_naming_the_frame(tmp_path):
    from ase.calculators.calculator import Calculator, all_changes

    from harness.errors import InputError
    from harness.models.evaluate import predict, read_labelled

    class Diverged(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            f = np.zeros((len(atoms), 3))
            f[3, 1] = np.nan
            self.results = {"energy": 0.0, "forces": f, "stress": np.zeros(6)}

    frames = read_labelled(ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz")[:3]
    with pytest.raises(InputError, match=r"val_liquid: frame 0: the model predicts a non-finite"):
        predict(Diverged(), frames, where="val_liquid")


@pytest.mark.parametrize("cell, message", [
    (np.zeros((3, 3)), "has a zero or singular cell"), (np.diag([10.0, 10.0, 0.0]), "has a zero or singular cell"),
    (np.diag([10.0, np.inf, 10.0]), "has non-finite positions or cell")], ids=["zero", "singular", "infinite"])
def test_a_trajectory_frame_without_a_box_is_an_error_naming_the_frame(tmp_path, small_box, cell, message):
    """A harness H5MD whose third frame has a zero, singular or infinite box: one line naming the file and frame
    (today: LinAlgError or a silent nonsense density)."""
    from harness.errors import InputError
    from harness.h5md import H5MDWriter
    from harness.observables.trajectory import load_trajectory

    path = tmp_path / "trajectory.h5md"
    w = H5MDWriter(path, small_box)
    for k in range(4):
        a = small_box.copy()
        if k == 2:
            a.set_cell(cell, scale_atoms=False)
        w.write(a, k, 0.01 * k)
    w.close()
    with pytest.raises(InputError, match=rf"trajectory.h5md: frame 2 \(t = 0.02 ps\) {message}"):
        load_trajectory(path)


def test_implausible_label_magnitudes_are_warned_naming_the_frame(caplog):
    """GFN2-xTB labels of the shipped data pass quietly; the same frame with its energy read as meV-in-eV (×1000)
    or its forces as kcal/mol/Å-in-eV/Å scaled far beyond a liquid's is warned, naming the frame and the unit."""
    import logging

    from ase.io import read

    from harness.io import PLAUSIBLE_ENERGY_EV_ATOM, labelled

    a = read(ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz", 0)
    with caplog.at_level(logging.WARNING, logger="harness.io"):
        labelled(a, where="val_liquid: frame 0")
    assert not caplog.records
    assert abs(a.info["REF_energy"]) / len(a) < PLAUSIBLE_ENERGY_EV_ATOM / 100  # ~ -60 eV/atom: far inside
    with caplog.at_level(logging.WARNING, logger="harness.io"):
        labelled(a, where="val_liquid: frame 0", scale=1000.0)  # meV labels declared as eV
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert msg.startswith("val_liquid: frame 0: implausible labels") and "--energy-unit" in msg
