"""Committee training behind one interface: real gap_fit, dp --pt, mace_run_train on shipped data.

Each backend trains a tiny model on 20 labelled frames of the shipped GFN2-xTB data (16 isolated
molecules + 4 liquid cells); select one backend with ``-m gap``, ``-m deepmd`` or ``-m mace``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import InputError, ToolError
from harness.io import read_frames
from harness.models.base import ModelArtifact, evaluate, get_trainer
from harness.models.train import resolve_hyperparameters, train_member

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "ec-emc-xtb"


@pytest.fixture(scope="module")
def frames():
    sm = read_frames(DATA / "sm.extxyz.gz")
    opls = read_frames(DATA / "opls.extxyz.gz")
    picked = sm[::19][:16] + opls[::45][:4]
    assert len(picked) == 20
    return picked


def _force_rms(frames):
    return float(np.sqrt(np.mean(np.concatenate([a.arrays["REF_forces"].ravel() for a in frames]) ** 2)))


# Bounds measured on this data (see the closing notes of issue #4); a model that learned nothing has
# a force RMSE equal to the RMS reference force.
BACKENDS = [
    pytest.param("gap", {}, marks=pytest.mark.gap, id="gap"),
    # compressed as the study's cpu preset is (dp compress after freezing): the member is the compressed model
    pytest.param("deepmd", {"training": {"numb_steps": 800}, "compress": True}, marks=pytest.mark.deepmd, id="deepmd"),
    pytest.param("mace", {"max_num_epochs": 20, "batch_size": 2, "dtype": "float64"}, marks=pytest.mark.mace,
                 id="mace"),
]
# force RMSE on the training frames / RMS reference force must be below these (measured here:
# gap 0.43, deepmd 0.81 after 800 steps, mace 0.31 after 20 epochs); 1.0 means nothing was learned
RMSE_BOUND = {"gap": 0.55, "deepmd": 0.9, "mace": 0.5}


@pytest.fixture(scope="module")
def e0():
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import dataset_e0

    values, info = dataset_e0(load_dataset_spec(ROOT / "datasets" / "ec-emc-xtb.yaml"))
    assert info["method"] == "isolated_atoms" and info["multiplicity"] == {"H": 2, "C": 3, "O": 3}
    return values


@pytest.fixture(scope="module")
def trained(frames, e0, tmp_path_factory):
    cache = {}

    def get(arch, overrides):
        if arch not in cache:
            hp = resolve_hyperparameters(arch, "mini", overrides)
            weighted = [a.copy() for a in frames]
            weighted[0].info["weight"] = 4.0
            work = tmp_path_factory.mktemp(arch) / "member"
            art = train_member(arch, weighted[:18], weighted[18:], hyperparameters=hp, preset="mini", seed=3,
                               workdir=work, dtype=hp.get("dtype", "float64"), e0=e0,
                               threads=1)  # make test runs 2 xdist workers on 2 cores: 2 threads would oversubscribe
            cache[arch] = (art, weighted)
        return cache[arch]

    return get


@pytest.mark.parametrize("arch, overrides", BACKENDS)
def test_trains_and_fits_its_training_frames(trained, arch, overrides):
    art, frames = trained(arch, overrides)
    assert art.status == "ok", art.error
    assert art.arch == arch and art.seed == 3 and art.e0["method"] == "isolated_atoms"
    assert art.metrics["train_forces_rmse_meV_A"] / 1000 < RMSE_BOUND[arch] * _force_rms(frames[:18])
    assert art.metrics["valid_n_frames"] == 2
    saved = json.loads((Path(art.workdir) / "artifact.json").read_text())
    assert saved["file_sha256"]["model"] and saved["versions"]
    if arch == "deepmd":  # the compressed member and the frozen model it came from give the same forces
        assert art.files == {"model": "model-compressed.pth", "frozen": "model.pth"}
        log = (Path(art.workdir) / "train.log").read_text()  # train and freeze in one process (dp_session)
        assert "harness.models.dp_session" in log and "$ dp --pt freeze -o model.pth" in log
        assert saved["hyperparameters"]["compress"] is True
        trainer = get_trainer("deepmd")
        a, b = frames[18].copy(), frames[18].copy()
        a.calc = trainer.calculator(art)
        b.calc = trainer.load_file(art.path("frozen"), dtype=art.dtype)
        fa, fb = a.get_forces(), b.get_forces()
        assert not np.array_equal(fa, fb)  # really another (tabulated) model
        assert np.abs(fa - fb).max() < 5e-3 * max(1.0, np.abs(fb).max())


@pytest.mark.parametrize("arch, overrides", BACKENDS)
def test_isolated_atom_energies_are_the_backend_e0s(trained, e0, arch, overrides):
    """The GFN2-xTB free-atom energies reach each backend: GAP's e0, DeePMD's per-type energy bias, MACE's
    E0s (a lone MACE atom has exactly E0; a least-squares average, the fallback, is eV away)."""
    from ase import Atoms

    art, _ = trained(arch, overrides)
    assert art.e0["values"] == pytest.approx(e0)
    work = Path(art.workdir)
    if arch == "gap":
        # gap_fit stores e0 per species in the potential file (isolated-atom SOAP is not zero, so the
        # energy of a lone atom is e0 plus a small descriptor term: check the stored value)
        import re

        text = (work / "gap.xml").read_text()
        got = {int(z): float(v) for z, v in re.findall(r'<e0 Z="(\d+)" value="([-0-9.eE+]+)"', text)}
        assert {z: got[z] for z in (1, 6, 8)} == pytest.approx({1: e0["H"], 6: e0["C"], 8: e0["O"]}, abs=1e-6)
        # one 2-body term per species pair and one turbo-SOAP per central species: 6 + 3 coordinates
        # (gap_fit's default add_species=T made it 6 + 9, three identical SOAP sets)
        assert re.findall(r'n_coordinate="(\d+)"', text) == ["9"]
        return
    if arch == "deepmd":
        # the per-type bias is E0; a lone atom gets E0 plus the fitting net's output at a zero descriptor
        config = json.loads((work / "input.json").read_text())
        assert config["model"]["preset_out_bias"]["energy"] == pytest.approx([e0[s] for s in config["model"]["type_map"]])
        assert config["model"]["descriptor"]["set_davg_zero"] is True
        return
    calc = get_trainer(arch).calculator(art)
    for symbol in ("H", "C", "O"):
        atom = Atoms(symbol, positions=[[5.0, 5.0, 5.0]], cell=[10.0, 10.0, 10.0], pbc=False)
        atom.calc = calc
        assert atom.get_potential_energy() == pytest.approx(e0[symbol], abs=1e-4), symbol


@pytest.mark.parametrize("arch, overrides", BACKENDS)
def test_forces_are_minus_energy_gradient(trained, arch, overrides):
    art, frames = trained(arch, overrides)
    calc = get_trainer(arch).calculator(art)
    atoms = frames[1].copy()  # an isolated molecule
    atoms.calc = calc
    forces = atoms.get_forces()
    h = 1e-3
    for i, k in [(0, 0), (2, 1), (5, 2)]:
        e = []
        for sign in (1, -1):
            b = atoms.copy()
            b.positions[i, k] += sign * h
            b.calc = calc
            e.append(b.get_potential_energy())
        assert forces[i, k] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=5e-3)


@pytest.mark.parametrize("arch, overrides", BACKENDS)
def test_artifact_reloads_to_the_same_numbers(trained, arch, overrides):
    art, frames = trained(arch, overrides)
    again = ModelArtifact.load(art.workdir)
    again.verify()
    a = evaluate(get_trainer(arch).calculator(art), frames[18:])
    b = evaluate(get_trainer(arch).calculator(again), frames[18:])
    assert a == pytest.approx(b, rel=1e-9)
    # a finished member is reused, not retrained
    reused = train_member(arch, frames[:18], frames[18:], hyperparameters=art.hyperparameters, preset="mini",
                          seed=3, workdir=Path(art.workdir))
    assert reused.train_seconds == art.train_seconds


@pytest.mark.parametrize("arch, overrides", BACKENDS)
def test_weights_reach_the_backend_inputs(trained, arch, overrides):
    art, _ = trained(arch, overrides)
    work = Path(art.workdir)
    if arch == "mace":
        first = read_frames(work / "train.xyz")[0]
        assert first.info["config_weight"] == 4.0
    elif arch == "gap":
        first = read_frames(work / "train.xyz")[0]
        sigma = art.hyperparameters["default_sigma"]
        assert first.info["energy_sigma"] == pytest.approx(sigma[0] / 2.0)
        assert first.info["force_sigma"] == pytest.approx(sigma[1] / 2.0)
    else:
        config = json.loads((work / "input.json").read_text())
        data = config["training"]["training_data"]
        weights = []
        for path in data["systems"]:
            n = len(np.load(work / path / "set.000" / "energy.npy"))
            weights.append(n)
        # the weight-4 frame sits in its own system with 4x the probability of a weight-1 frame
        probs = np.array(data["sys_probs"])
        single = [p for p, n in zip(probs, weights) if n == 1]
        assert any(pytest.approx(4 * probs.sum() / (17 + 4)) == p for p in single)


def test_backend_crash_is_recorded_with_log_tail(frames, tmp_path):
    hp = resolve_hyperparameters("gap", "mini", {"extra_args": ["not_an_option=3"]})
    art = train_member("gap", frames[:4], [], hyperparameters=hp, preset="mini", seed=0, workdir=tmp_path / "m")
    assert art.status == "failed" and "gap_fit exited with status" in art.error
    assert str(tmp_path / "m") in art.error and (tmp_path / "m" / "artifact.json").exists()


def test_bad_training_inputs(frames, tmp_path):
    bad = [a.copy() for a in frames[:3]]
    bad[1].arrays["REF_forces"][0, 0] = np.nan
    hp = resolve_hyperparameters("mace", "mini")
    with pytest.raises(InputError, match=r"training frames: frame 1 .*NaN or infinite labels"):
        train_member("mace", bad, [], hyperparameters=hp, preset="mini", seed=0, workdir=tmp_path / "x")
    with pytest.raises(InputError, match="training frames: no frames"):
        train_member("mace", [], [], hyperparameters=hp, preset="mini", seed=0, workdir=tmp_path / "y")
    with pytest.raises(InputError, match="unknown architecture 'nequip'; available: gap, deepmd, mace"):
        get_trainer("nequip")
    with pytest.raises(InputError, match="unknown preset 'huge' for gap"):
        resolve_hyperparameters("gap", "huge")


def test_missing_backend_tool(frames, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_GAP_FIT", str(tmp_path / "nope"))
    hp = resolve_hyperparameters("gap", "mini")
    with pytest.raises(ToolError, match="HARNESS_GAP_FIT"):
        train_member("gap", frames[:3], [], hyperparameters=hp, preset="mini", seed=0, workdir=tmp_path / "m")


def test_unseen_species_in_validation(frames, tmp_path):
    from ase import Atoms

    n2 = Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]])
    n2.info["REF_energy"] = -10.0
    n2.arrays["REF_forces"] = np.zeros((2, 3))
    hp = resolve_hyperparameters("gap", "mini")
    with pytest.raises(InputError, match="element\\(s\\) N absent from the training frames"):
        train_member("gap", frames[:3], [n2], hyperparameters=hp, preset="mini", seed=0, workdir=tmp_path / "m")


@pytest.mark.gap
def test_cli_trains_a_committee_and_lists_it(runner, tmp_path):
    from harness.cli.main import app

    ws = tmp_path / "ws"
    args = ["train", "--dataset", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "--subset", "OPLS+EC+EMC",
            "--arch", "gap", "--committee", "2", "--workspace", str(ws), "--max-train-frames", "8",
            "--options", '{"soap_turbo": {"n_sparse": 40}}']
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "member 0 (seed 0): ok" in result.stderr and "member 1 (seed 1): ok" in result.stderr
    assert "committee:" in result.stdout
    committee = json.loads(next(ws.glob("models/gap/OPLS+EC+EMC/*/committee.json")).read_text())
    assert committee["status"] == ["ok", "ok"] and committee["hyperparameters"]["soap_turbo"]["n_sparse"] == 40
    listed = runner.invoke(app, ["models", "list", "--workspace", str(ws)])
    assert listed.exit_code == 0 and listed.stdout.count("OPLS+EC+EMC") >= 2
    # rerun: nothing retrained, same table
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    # the committee as one calculator: sigma2_F from two members with different sparse points
    from harness.models.train import load_committee

    calc = load_committee(next(ws.glob("models/gap/OPLS+EC+EMC/*")))
    atoms = read_frames(DATA / "sm.extxyz.gz")[0]
    atoms.calc = calc
    atoms.get_forces()
    assert calc.results["sigma2_F"] > 0 and len(calc.results["energy_comm"]) == 2
