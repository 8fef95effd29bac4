"""``harness evaluate``: errors of a model on labelled frames (harness.models.evaluate; issue #16 item 1)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator

from harness.errors import InputError
from harness.io import read_frames, write_frames
from harness.models.evaluate import calibration, error_table, predict, read_labelled

ROOT = Path(__file__).resolve().parents[1]


class Offset(Calculator):
    """Reference labels shifted by known amounts: energy +de per atom, every force component +df, stress +ds."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, de=0.0, df=0.0, ds=0.0):
        super().__init__()
        self.de, self.df, self.ds = de, df, ds

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        self.results = {"energy": a.info["REF_energy"] + self.de * len(a), "forces": a.arrays["REF_forces"] + self.df,
                        "stress": np.asarray(a.info.get("REF_stress", np.zeros(6))) + self.ds}


def _frames():
    return read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[:2] + \
        read_frames(ROOT / "datasets" / "ec-emc-xtb" / "sm.extxyz.gz")[:3]


def test_known_offsets_give_known_errors_per_group(tmp_path):
    write_frames(tmp_path / "d.extxyz", _frames())
    frames = read_labelled(tmp_path / "d.extxyz")
    t = error_table(frames, predict(Offset(de=0.004, df=0.05, ds=0.002), frames))
    for group in (t["all"], t["config_type"]["OPLS"], t["config_type"]["SM"], t["composition"]["EC=4,EMC=8"]):
        assert group["energy_rmse_meV_atom"] == pytest.approx(4.0) and group["energy_mae_meV_atom"] == pytest.approx(4.0)
        assert group["forces_rmse_meV_A"] == pytest.approx(50.0) and group["forces_mae_meV_A"] == pytest.approx(50.0)
    assert t["config_type"]["OPLS"]["n_frames"] == 2 and t["config_type"]["SM"]["n_frames"] == 3
    assert t["all"]["stress_rmse_meV_A3"] == pytest.approx(2.0) and t["all"]["n_stress_frames"] == 2  # liquids only
    assert "stress_rmse_meV_A3" not in t["config_type"]["SM"]


def test_foreign_keys_and_units_are_mapped(tmp_path):
    frames = _frames()[:2]
    for a in frames:  # labels in kcal/mol under other names
        a.info["E_dft"] = a.info.pop("REF_energy") / 0.0433641043
        a.arrays["F_dft"] = a.arrays.pop("REF_forces") / 0.0433641043
        a.info.pop("REF_stress")
    write_frames(tmp_path / "d.extxyz", frames)
    with pytest.raises(InputError, match=r"d.extxyz: frame 0: no label\(s\) REF_energy, REF_forces"):
        read_labelled(tmp_path / "d.extxyz")
    mapped = read_labelled(tmp_path / "d.extxyz", energy_key="E_dft", forces_key="F_dft", energy_unit="kcal/mol")
    ref = _frames()[:2]
    assert mapped[1].info["REF_energy"] == pytest.approx(ref[1].info["REF_energy"], rel=1e-12)
    assert np.allclose(mapped[1].arrays["REF_forces"], ref[1].arrays["REF_forces"])
    with pytest.raises(InputError, match="energy unit 'Ry'"):
        read_labelled(tmp_path / "d.extxyz", energy_key="E_dft", forces_key="F_dft", energy_unit="Ry")


def test_unseen_species_and_a_committee_calibration(tmp_path):
    from ase.calculators.lj import LennardJones

    from harness.models.committee import CommitteeCalculator

    frames = read_labelled_list(_frames()[2:], tmp_path)
    with pytest.raises(InputError, match="frame 0 has element\\(s\\) O the model never saw"):
        predict(Offset(), frames, species=["C", "H"], where="x.extxyz")
    committee = CommitteeCalculator([Offset(df=0.1), Offset(df=-0.1), LennardJones(sigma=2.0, epsilon=0.001, rc=4.0)])
    preds = predict(committee, frames)
    sigma, err = calibration(frames, preds)
    assert sigma.shape == err.shape == (sum(len(a) for a in frames),) and np.all(sigma > 0)
    assert calibration(frames, predict(Offset(), frames)) is None


def read_labelled_list(frames, tmp_path):
    write_frames(tmp_path / "f.extxyz", frames)
    return read_labelled(tmp_path / "f.extxyz")


def test_agrees_with_mace_eval_configs(tmp_path):
    """The same MACE model (its architecture with initial weights, float64) on 3 liquid and 3 molecule frames:
    the energy and force RMSEs from ``mace_eval_configs``' predictions and from ``harness evaluate`` agree to
    0.1 meV/atom and 0.1 meV/Å."""
    from typer.testing import CliRunner

    from harness.cli.main import app
    from harness.models.mace import untrained_model
    from harness.tools import find_executable

    model = untrained_model(tmp_path / "m.model", {"num_channels": 8, "max_L": 0, "r_max": 4.0, "num_interactions": 2,
                                                   "correlation": 2, "max_ell": 2, "num_radial_basis": 6})
    frames = read_frames(ROOT / "datasets" / "ec-emc-xtb" / "opls.extxyz.gz")[:3] + \
        read_frames(ROOT / "datasets" / "ec-emc-xtb" / "sm.extxyz.gz")[:3]
    write_frames(tmp_path / "d.extxyz", frames)
    subprocess.run([find_executable("mace_eval_configs"), "--configs", str(tmp_path / "d.extxyz"), "--model",
                    str(model), "--output", str(tmp_path / "mace.xyz"), "--default_dtype", "float64"],
                   check=True, capture_output=True, env={**__import__("os").environ,
                                                         "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    theirs = read_frames(tmp_path / "mace.xyz")
    de = [(m.info["MACE_energy"] - a.info["REF_energy"]) / len(a) for m, a in zip(theirs, frames)]
    df = np.concatenate([(m.arrays["MACE_forces"] - a.arrays["REF_forces"]).ravel() for m, a in zip(theirs, frames)])
    out = CliRunner().invoke(app, ["evaluate", str(tmp_path / "d.extxyz"), "-m", str(model), "--json",
                                   "-o", str(tmp_path / "out")])
    assert out.exit_code == 0, out.output
    ours = json.loads(out.output[out.output.index("{"):])["errors"]["all"]
    assert ours["energy_rmse_meV_atom"] == pytest.approx(1000 * np.sqrt(np.mean(np.square(de))), abs=0.1)
    assert ours["forces_rmse_meV_A"] == pytest.approx(1000 * np.sqrt(np.mean(np.square(df))), abs=0.1)
    assert (tmp_path / "out" / "parity.png").exists() and (tmp_path / "out" / "errors.json").exists()


def test_cli_bad_inputs_are_one_line_errors(tmp_path, runner):
    from harness.cli.main import app

    (tmp_path / "bare.extxyz").write_text("1\nProperties=species:S:1:pos:R:3 pbc=\"F F F\"\nH 0 0 0\n")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "bare.extxyz"), "-m", "ase:ase.calculators.lj.LennardJones"])
    assert r.exit_code == 2 and "frame 0: no label(s) REF_energy, REF_forces" in r.output
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]])
    a.info["REF_energy"] = "abc"
    a.arrays["REF_forces"] = np.zeros((2, 3))
    write_frames(tmp_path / "abc.extxyz", [a])
    r = runner.invoke(app, ["evaluate", str(tmp_path / "abc.extxyz"), "-m", "ase:ase.calculators.lj.LennardJones"])
    assert r.exit_code == 2 and "REF_energy='abc' is not a number" in r.output
    # foreign keys without a mapping: the error names what the frame has and how to map it
    b = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]])
    b.info["dft_energy"] = -1.0
    b.arrays["dft_forces"] = np.zeros((2, 3))
    write_frames(tmp_path / "foreign.extxyz", [b])
    r = runner.invoke(app, ["evaluate", str(tmp_path / "foreign.extxyz"), "-m", "ase:ase.calculators.lj.LennardJones"])
    assert r.exit_code == 2 and "frame 0: no label(s) REF_energy, REF_forces; it has dft_energy, dft_forces" in r.output
    assert "--energy-key" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "foreign.extxyz"), "-m", "ase:ase.calculators.lj.LennardJones",
                            "--energy-key", "dft_energy", "--forces-key", "dft_forces"])
    assert r.exit_code == 0, r.output
