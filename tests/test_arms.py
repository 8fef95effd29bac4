"""One difference per arm (SCIENCE.md §11): within a preset, every subset trains the same architecture settings.

The commands and inputs each backend would run are built (no training) for OPLS and Full of the shipped data:
they differ only in the data files; DeePMD's neighbour selection is an explicit list covering the densest
frames of every subset (``sel: auto`` resolved it from each subset's own statistics); every architecture trains
on the virials of periodic frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from harness.datasets.spec import load_dataset_spec
from harness.datasets.subsets import assemble, dataset_e0
from harness.models.base import TrainInputs, reference_virial

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "datasets" / "ec-emc-xtb.yaml"


@pytest.fixture(scope="module")
def subsets():
    spec = load_dataset_spec(DATASET)
    e0, _ = dataset_e0(spec)
    out = {}
    for name in ("OPLS", "Full"):
        s = assemble(spec, name)
        # a thin but representative sample: every source's frames, the densest volume-scan frames included
        train = s.train[::8] + [a for a in s.train if a.info.get("config_type") == "VS"][-3:]
        out[name] = TrainInputs(train=train, valid=s.valid[:4], species=("C", "H", "O"), e0=e0, seed=3,
                                dtype="float32")
    return out


def _strip_data(config: dict) -> dict:
    c = json.loads(json.dumps(config))
    for part in ("training_data", "validation_data"):
        c["training"].pop(part, None)
    return c


@pytest.mark.parametrize("preset", ["mini", "cpu", "study", "paper"])
def test_deepmd_settings_equal_across_subsets(subsets, preset, tmp_path):
    from harness.models.deepmd import PRESETS, deepmd_input

    configs = {name: deepmd_input(inp, json.loads(json.dumps(PRESETS[preset])), tmp_path / name)
               for name, inp in subsets.items()}
    assert _strip_data(configs["OPLS"]) == _strip_data(configs["Full"])
    desc = configs["Full"]["model"]["descriptor"]
    sel = desc["sel"]
    assert isinstance(sel, list) and all(isinstance(k, int) for k in sel), f"sel must be explicit, got {sel!r}"
    # the selection covers the largest neighbour count of every element in either subset's frames
    type_map = configs["Full"]["model"]["type_map"]
    for inp in subsets.values():
        for a in inp.train + inp.valid:
            if not a.pbc.all():
                continue
            i, j = neighbor_list("ij", a, desc["rcut"])
            sym = np.array(a.get_chemical_symbols())
            for k, s in enumerate(type_map):
                counts = np.bincount(i[sym[j] == s], minlength=len(a))
                assert counts.max() <= sel[k], f"{s}: {counts.max()} neighbours within {desc['rcut']} Å > sel {sel[k]}"
    # the virial is in the loss and in the data
    assert configs["Full"]["loss"]["limit_pref_v"] > 0
    assert list(tmp_path.glob("Full/data/train/*/set.000/virial.npy"))


def test_deepmd_sel_names_every_species(tmp_path, subsets):
    from harness.errors import InputError
    from harness.models.deepmd import PRESETS, deepmd_input

    hp = json.loads(json.dumps(PRESETS["cpu"]))
    del hp["model"]["descriptor"]["sel"]["O"]
    with pytest.raises(InputError, match="sel names C, H, not O"):
        deepmd_input(subsets["OPLS"], hp, tmp_path)


@pytest.mark.parametrize("preset", ["mini", "cpu", "study", "paper"])
def test_mace_command_equal_across_subsets_with_virials(subsets, preset, tmp_path):
    from ase.io import read

    from harness.models.mace import PRESETS, mace_command

    cmds = {}
    for name, inp in subsets.items():
        (tmp_path / name).mkdir()
        cmds[name] = mace_command(inp, dict(PRESETS[preset]), tmp_path / name)
    assert cmds["OPLS"][1:] == cmds["Full"][1:]
    assert "--loss=virials" in cmds["Full"] and "--virials_key=REF_virials" in cmds["Full"]
    frames = read(tmp_path / "Full" / "train.xyz", ":")
    periodic = [a for a in frames if a.pbc.all()]
    assert periodic and all("REF_virials" in a.info for a in periodic)
    assert not any("REF_virials" in a.info for a in frames if not a.pbc.any())
    # W = -V sigma of the original labels
    src = [a for a in subsets["Full"].train if a.pbc.all()][0]
    np.testing.assert_allclose(periodic[0].info["REF_virials"], reference_virial(src), rtol=1e-6)


@pytest.mark.parametrize("preset", ["mini", "cpu", "study", "paper"])
def test_gap_command_equal_across_subsets_with_virials(subsets, preset, tmp_path):
    from ase.io import read

    from harness.models.gap import PRESETS, gap_command

    cmds = {}
    for name, inp in subsets.items():
        (tmp_path / name).mkdir()
        cmds[name] = gap_command(inp, dict(PRESETS[preset]), tmp_path / name)
    assert cmds["OPLS"][1:] == cmds["Full"][1:]
    assert "virial_parameter_name=REF_virial" in cmds["Full"]
    sigma = next(a for a in cmds["Full"] if a.startswith("default_sigma="))
    assert float(sigma.strip("default_sigma={}").split()[2]) > 0, "a zero virial sigma drops the virials"
    frames = read(tmp_path / "Full" / "train.xyz", ":")
    assert all("REF_virial" in a.info for a in frames if a.info.get("config_type") in ("OPLS", "VS"))


def test_reference_virial_sign_and_shape():
    """W = -V·sigma: a cell under tension (positive ASE stress) has a negative virial trace."""
    from ase import Atoms

    a = Atoms("H", positions=[[0, 0, 0]], cell=[2.0, 3.0, 4.0], pbc=True)
    a.info["REF_stress"] = np.array([0.01, 0.02, 0.03, 0.0, 0.0, 0.004])
    w = reference_virial(a).reshape(3, 3)
    assert w[0, 0] == pytest.approx(-24 * 0.01) and w[2, 2] == pytest.approx(-24 * 0.03)
    assert w[0, 1] == pytest.approx(-24 * 0.004) and w[1, 0] == w[0, 1]
    a.pbc = False
    assert reference_virial(a) is None
