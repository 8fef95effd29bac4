"""Shipped committees (harness.models.ship, models/demo/): the copy holds the trained models themselves, loads
from anywhere, and carries its provenance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.io import sha256_file
from harness.models.base import ModelArtifact
from harness.models.load import committee_sources
from harness.models.ship import export, export_committee

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"


def _committee(tmp_path: Path) -> Path:
    """A committee directory as training leaves it: two members (one failed), inputs and scratch beside."""
    c = tmp_path / "ws" / "models" / "mace" / "OPLS" / "mini-abc"
    for k, status in ((0, "ok"), (1, "failed")):
        m = c / f"member-{k}-seed{k}"
        (m / "checkpoints").mkdir(parents=True)
        (m / "checkpoints" / "epoch-9.pt").write_bytes(b"scratch")
        (m / "train.xyz").write_text("training frames\n")
        (m / "member.model").write_bytes(f"weights {k}".encode())
        (m / "train.log").write_text("log\n")
        ModelArtifact(arch="mace", preset="mini", seed=k, workdir=str(m), files={"model": "member.model"},
                      file_sha256={"model": sha256_file(m / "member.model")}, status=status, log="train.log",
                      dataset={"spec": str(ROOT / "datasets" / "ec-emc-xtb.yaml")},
                      metrics={"valid_forces_rmse_meV_A": 320.0}).save()
    (c / "committee.json").write_text(json.dumps({"arch": "mace", "subset": "OPLS", "preset": "mini",
                                                  "dataset": {"spec": str(ROOT / "datasets" / "ec-emc-xtb.yaml")}}))
    return c


def test_export_copies_what_loading_needs_and_nothing_else(tmp_path):
    src = _committee(tmp_path)
    manifest = export(tmp_path / "ship", [src])
    out = tmp_path / "ship" / "mace-OPLS"
    assert sorted(p.name for p in out.iterdir()) == ["committee.json", "member-0-seed0"]  # the failed one left
    assert sorted(p.name for p in (out / "member-0-seed0").iterdir()) == ["artifact.json", "member.model", "train.log"]
    shutil.rmtree(tmp_path / "ws")  # the copy stands alone
    (member,) = committee_sources(out)
    art = ModelArtifact.load(member.path)
    art.verify()
    assert art.file_sha256["model"] == sha256_file(out / "member-0-seed0" / "member.model")
    assert art.dataset["spec"] == "datasets/ec-emc-xtb.yaml"  # repository paths made relative
    entry = json.loads(manifest.read_text())["committees"][0]
    assert entry["committee"] == "mace-OPLS" and entry["members"][0]["valid_forces_rmse_meV_A"] == 320.0
    with pytest.raises(InputError, match="exists"):
        export_committee(out, tmp_path / "ship")
    (out / "member-0-seed0" / "member.model").write_bytes(b"another model")
    with pytest.raises(InputError, match="changed since training"):
        export_committee(out, tmp_path / "again")
    assert not list((tmp_path / "again").glob("*"))  # nothing half-written


@pytest.mark.parametrize("name", ["gap-OPLS", "deepmd-OPLS+VS", "mace-Full"])
def test_shipped_demo_members_are_the_trained_models(name, tmp_path):
    """Each shipped member, evaluated on its own validation frames (rebuilt from the dataset by the recipe in
    committee.json), gives the validation errors recorded when it was trained: the files are the models kept."""
    from harness.models.base import evaluate, get_trainer
    from harness.models.train import _frames_key, plan_committee

    committee = json.loads((DEMO / name / "committee.json").read_text())
    plan = plan_committee(ROOT / committee["dataset"]["spec"], committee["subset"], committee["arch"],
                          preset=committee["preset"], workspace=tmp_path,
                          max_train_frames=committee["dataset"]["max_train_frames"])
    assert _frames_key(plan.valid) == committee["dataset"]["valid_key"]
    art = ModelArtifact.load(committee_sources(DEMO / name)[0].path)
    got = evaluate(get_trainer(art.arch).calculator(art), plan.valid)
    assert got["forces_rmse_meV_A"] == pytest.approx(art.metrics["valid_forces_rmse_meV_A"], rel=1e-5)
    assert got["energy_rmse_meV_atom"] == pytest.approx(art.metrics["valid_energy_rmse_meV_atom"], rel=1e-4, abs=1e-3)
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert {c["committee"] for c in manifest["committees"]} == {p.name for p in DEMO.iterdir() if p.is_dir()}


def test_the_demo_spec_names_every_shipped_committee_in_its_subset():
    """protocols/sweeps/demo.yaml: every shipped committee, each in the row of the subset it was trained on, and
    the live grid is the reference alone."""
    from harness.sweep.spec import load_sweep

    spec, files = load_sweep(ROOT / "protocols" / "sweeps" / "demo.yaml")
    shipped = {e.name: e for e in spec.models if e.committee}
    assert set(shipped) == {p.name for p in DEMO.iterdir() if p.is_dir()}
    for name, entry in shipped.items():
        committee = json.loads((DEMO / name / "committee.json").read_text())
        assert entry.subset == committee["subset"] and name == f"{committee['arch']}-{committee['subset']}"
        assert len(files.models[name]) == 2
    assert (spec.architectures, spec.subsets) == (["gap"], ["Full"])
    assert (spec.reference.arch, spec.reference.subset) == ("gap", "Full")


STUDY = ROOT / "models" / "study-cpu"


@pytest.mark.parametrize("name", sorted(p.name for p in STUDY.iterdir() if (p / "committee.json").is_file()))
def test_shipped_study_members_give_their_recorded_validation_errors(name, tmp_path):
    """Issue #29: every committee the CPU study has exported so far (models/study-cpu), its first member evaluated on
    its validation frames (rebuilt from the dataset by the recipe in committee.json): the errors recorded when it was
    trained, so the shipped files are the models the study runs."""
    from harness.models.base import evaluate, get_trainer
    from harness.models.train import _frames_key, plan_committee

    committee = json.loads((STUDY / name / "committee.json").read_text())
    plan = plan_committee(ROOT / committee["dataset"]["spec"], committee["subset"], committee["arch"],
                          preset=committee["preset"], workspace=tmp_path,
                          max_train_frames=committee["dataset"]["max_train_frames"])
    assert _frames_key(plan.valid) == committee["dataset"]["valid_key"]
    art = ModelArtifact.load(committee_sources(STUDY / name, members_present=True)[0].path)
    got = evaluate(get_trainer(art.arch).calculator(art), plan.valid)
    assert got["forces_rmse_meV_A"] == pytest.approx(art.metrics["valid_forces_rmse_meV_A"], rel=1e-4)
    assert got["energy_rmse_meV_atom"] == pytest.approx(art.metrics["valid_energy_rmse_meV_atom"], rel=1e-3, abs=1e-3)


def _packable_member(tmp_path: Path, arch: str = "mace") -> Path:
    """A committee of one member with a file gzip shrinks (repetitive text) and one it does not (random bytes)."""
    import numpy as np

    c = tmp_path / "ws" / "models" / arch / "OPLS" / "mini-abc"
    m = c / "member-0-seed0"
    m.mkdir(parents=True)
    (m / "member.model").write_text("0.125 " * 20000)
    (m / "member.model.sparse").write_bytes(np.random.default_rng(0).bytes(20000))
    files = {"model": "member.model", "sparse": "member.model.sparse"}
    ModelArtifact(arch=arch, preset="mini", seed=0, workdir=str(m), files=files,
                  file_sha256={k: sha256_file(m / f) for k, f in files.items()}).save()
    (c / "committee.json").write_text(json.dumps({"arch": arch, "subset": "OPLS", "preset": "mini"}))
    return c


def test_a_shipped_member_is_stored_packed_and_loads_as_trained(tmp_path, monkeypatch):
    """Packing (harness.models.packing): the compressible file gzipped, the other stored as is; loading unpacks into
    the cache the very bytes trained (hash-checked), reuses them, and redoes a cache copy that was changed; a packed
    file changed after shipping is caught before anything is unpacked."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    src = _packable_member(tmp_path)
    trained = {n: (src / "member-0-seed0" / n).read_bytes() for n in ("member.model", "member.model.sparse")}
    manifest = export(tmp_path / "ship", [src])
    shutil.rmtree(tmp_path / "ws")
    member = tmp_path / "ship" / "mace-OPLS" / "member-0-seed0"
    assert sorted(p.name for p in member.iterdir()) == ["artifact.json", "member.model.gz", "member.model.sparse"]
    assert (member / "member.model.gz").stat().st_size < 0.05 * len(trained["member.model"])
    entry = json.loads(manifest.read_text())["committees"][0]["members"][0]
    assert entry["stored_bytes"] == sum(p.stat().st_size for p in member.iterdir())
    art = ModelArtifact.load(member)
    art.verify()
    assert art.packed["model"]["how"] == "gzip" and "sparse" not in art.packed
    path = art.path("model")
    assert path.parent.parent == tmp_path / "cache" / "members" and path.read_bytes() == trained["member.model"]
    assert art.path("sparse").read_bytes() == trained["member.model.sparse"]
    assert art.path("sparse").parent == path.parent  # one folder: a GAP model finds its sparse-point files
    path.write_text("tampered")
    assert ModelArtifact.load(member).path("model").read_bytes() == trained["member.model"]
    (member / "member.model.gz").write_bytes(b"\x1f\x8b broken")
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(InputError, match="member.model.gz changed"):
        ModelArtifact.load(member).path("model")
    assert not (tmp_path / "cache" / "members").exists() or not list((tmp_path / "cache" / "members").iterdir())


def test_a_file_made_at_load_is_checked_against_its_training_hash(tmp_path, monkeypatch):
    """A role made at load from another file (a DeePMD member's compressed model: dp compress of the frozen one),
    here through a stand-in derivation: stored only as its source, made and hash-checked at load; a tool that makes
    another file than at training is an InputError naming the file and the cause, and leaves no cache entry."""
    from harness.models import base, packing

    def twice(src: Path, dest: Path) -> None:  # the stand-in tool: deterministic, like dp compress
        dest.write_bytes(src.read_bytes() * 2)

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(base.DERIVED, "twice", f"{__name__}:_twice")
    monkeypatch.setattr(packing, "_derivations", lambda art: {"model": {"how": "twice", "from": "sparse"}})
    globals()["_twice"] = twice
    src = _packable_member(tmp_path)
    m = src / "member-0-seed0"
    twice(m / "member.model.sparse", m / "member.model")
    art = ModelArtifact.load(m)
    art.file_sha256["model"] = sha256_file(m / "member.model")
    art.save()
    export(tmp_path / "ship", [src])
    member = tmp_path / "ship" / "mace-OPLS" / "member-0-seed0"
    assert sorted(p.name for p in member.iterdir()) == ["artifact.json", "member.model.sparse"]
    assert ModelArtifact.load(member).path("model").read_bytes() == (m / "member.model").read_bytes()
    globals()["_twice"] = lambda a, b: b.write_bytes(a.read_bytes() * 3)  # another version of the tool
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(InputError, match=r"member.model does not unpack to the file trained .*twice of its sparse"):
        ModelArtifact.load(member).path("model")
    assert not list((tmp_path / "cache" / "members").iterdir())


def test_a_torchscript_archive_is_compared_by_its_content(tmp_path):
    """torchscript_content_sha256: the same model written by two installations (other top folder, debug records
    with other source paths, another serialization id) has one content hash; a changed weight record another."""
    import zipfile

    from harness.models.packing import torchscript_content_sha256

    def archive(name, top, debug, sid, weight):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr(f"{top}/data.pkl", b"pickled model")
            z.writestr(f"{top}/data/0", weight)
            z.writestr(f"{top}/code/__torch__/se_a.py", b"def forward(): ...")
            z.writestr(f"{top}/code/__torch__/se_a.py.debug_pkl", debug)
            z.writestr(f"{top}/.data/serialization_id", sid)
        return torchscript_content_sha256(tmp_path / name)

    a = archive("a.pth", "model-compressed", b"/venv-a/site-packages/deepmd/se_a.py", b"111", b"\x01\x02")
    assert a == archive("b.pth", "model-compressed", b"/venv-b/site-packages/deepmd/se_a.py", b"222", b"\x01\x02")
    assert a == archive("c.pth", "other-name", b"x", b"3", b"\x01\x02")
    assert a != archive("d.pth", "model-compressed", b"/venv-a/site-packages/deepmd/se_a.py", b"111", b"\x01\x03")
