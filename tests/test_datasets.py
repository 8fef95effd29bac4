"""Dataset specs, building (with a cheap EMT stand-in reference), subsets, splits, weights, imports."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT

from harness.datasets.build import build_dataset, source_file
from harness.datasets.spec import load_dataset_spec
from harness.datasets.subsets import assemble, is_validation, training_fraction
from harness.errors import ConfigError, InputError
from harness.io import frame_uid, read_frames, write_frames
from harness.systems.molecules import get_molecule

SPEC = """\
name: toy
data_dir: data
seed: 1
threads: 1
reference: {{name: "ase:ase.calculators.emt.EMT"}}
split: {{valid_fraction: 0.25, seed: 3}}
sources:
  liquid:
    config_type: OPLS
    kind: liquid_md
    composition: EC=4
    cutoff_nm: 0.4
    stride_ps: 0.1
    equilibration_ps: 0.1
    runs:
      - {{ensemble: nvt, temperature_K: 300, density_g_cm3: 0.9, n_frames: 4}}
  mols:
    config_type: SM
    kind: isolated_md
    molecules: {{EC: 3, EMC: 3}}
    temperatures_K: [300]
    stride_ps: 0.05
    equilibration_ps: 0.1
  scan:
    config_type: VS
    kind: volume_scan
    composition: EC=4
    n_scans: 1
    grid: {{low_g_cm3: 0.2, high_g_cm3: 1.8, n: 3}}
    start_density_g_cm3: 0.9
    equilibration_ps: 0.1
    stride_ps: 0.1
    cutoff_nm: 0.4
  ext:
    config_type: AL
    kind: import
    file: ext.extxyz
    energy_key: energy_xtb
    forces_key: forces_xtb
    energy_unit: {unit}
    tags: {{architecture: gap, generation: 3}}
  extv:
    config_type: OPLS
    kind: import
    file: ext.extxyz
    energy_key: energy_xtb
    forces_key: forces_xtb
subsets:
  A: [liquid]
  B: [liquid, scan]
  W:
    - liquid
    - {{source: mols, species: EC, count: 1, sampling_fraction: 0.05}}
    - {{source: mols, species: EMC, count: 1, sampling_fraction: 0.05}}
  X: [liquid, ext]
  N: [{{subset: B}}, mols]
validation:
  V: [extv]
"""


def _external(path, n=3, key_e="energy_xtb", key_f="forces_xtb"):
    frames = []
    for k in range(n):
        a = get_molecule("EMC").atoms()
        a.positions += 0.01 * k
        a.rattle(0.02, seed=k)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = None
        a.info[key_e] = e
        a.arrays[key_f] = f
        frames.append(a)
    write_frames(path, frames)
    return frames


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    (root / "toy.yaml").write_text(SPEC.format(unit="eV"))
    _external(root / "ext.extxyz")
    spec = load_dataset_spec(root / "toy.yaml")
    manifest = build_dataset(spec)
    return spec, manifest


def test_build_writes_labelled_sources_and_manifest(built):
    spec, manifest = built
    counts = {k: v["n_frames"] for k, v in manifest["sources"].items()}
    assert counts == {"liquid": 4, "mols": 6, "scan": 3, "ext": 3, "extv": 3}
    liquid = read_frames(source_file(spec, "liquid"))
    assert all("REF_energy" in a.info and a.arrays["REF_forces"].shape == (40, 3) for a in liquid)
    assert {a.info["config_type"] for a in liquid} == {"OPLS"}
    m = manifest["sources"]["liquid"]
    assert m["by_composition"] == {"EC=4": 4} and m["reference"]["method"] == "ase.calculators.emt.EMT"
    assert m["command"].endswith("--only liquid") and m["file_sha256"] and m["frames_hash"]
    assert manifest["rebuild"].startswith("harness dataset build")


def test_rebuild_is_a_no_op_and_manifest_hash_stable(built):
    spec, manifest = built
    before = json.dumps(manifest["sources"], sort_keys=True)
    again = build_dataset(spec)
    assert json.dumps(again["sources"], sort_keys=True) == before


def test_deleted_output_relabels_only_from_cached_samples(built, monkeypatch):
    spec, _ = built
    path = source_file(spec, "mols")
    old = read_frames(path)
    path.unlink()
    calls = []
    import harness.datasets.build as build_mod

    real = build_mod.sample_source
    monkeypatch.setattr(build_mod, "sample_source", lambda *a, **k: calls.append(1) or real(*a, **k))
    build_dataset(spec, only=["mols"])
    assert calls == []  # the sampled frames were reused, not resampled
    new = read_frames(path)
    assert [frame_uid(a) for a in new] == [frame_uid(a) for a in old]


def test_import_maps_foreign_keys_tags_and_molecules(built):
    spec, _ = built
    frames = read_frames(source_file(spec, "ext"))
    a = frames[0]
    assert "REF_energy" in a.info and "energy_xtb" not in a.info and "forces_xtb" not in a.arrays
    assert a.info["architecture"] == "gap" and a.info["generation"] == 3 and a.info["config_type"] == "AL"
    assert a.info["composition"] == "EMC=1" and a.arrays["mol_id"].max() == 0  # found by connectivity


def test_import_energy_unit_conversion(tmp_path):
    (tmp_path / "toy.yaml").write_text(SPEC.format(unit="kcal/mol"))
    raw = _external(tmp_path / "ext.extxyz")
    spec = load_dataset_spec(tmp_path / "toy.yaml")
    build_dataset(spec, only=["ext"])
    got = read_frames(source_file(spec, "ext"))
    assert got[0].info["REF_energy"] == pytest.approx(raw[0].info["energy_xtb"] * 0.0433641043)


def test_import_without_labels_names_the_frame(tmp_path):
    (tmp_path / "toy.yaml").write_text(SPEC.format(unit="eV"))
    _external(tmp_path / "ext.extxyz", key_e="energy_other")
    spec = load_dataset_spec(tmp_path / "toy.yaml")
    with pytest.raises(InputError, match=r"ext.extxyz: frame 0: no label\(s\) energy_xtb"):
        build_dataset(spec, only=["ext"])


def test_subsets_union_split_and_weights(built):
    spec, _ = built
    a, b = assemble(spec, "A"), assemble(spec, "B")
    assert len(a.frames) == 4 and len(b.frames) == 7
    assert {f.info["split"] for f in a.frames} <= {"train", "valid"}
    # deterministic: same seed, same split
    assert [f.info["split"] for f in assemble(spec, "A").frames] == [f.info["split"] for f in a.frames]
    # union does not reshuffle: liquid frames keep their split inside B
    split_a = {f.info["uid"]: f.info["split"] for f in a.frames}
    assert all(split_a[f.info["uid"]] == f.info["split"] for f in b.frames if f.info["uid"] in split_a)
    nested = assemble(spec, "N")
    assert len(nested.frames) == 7 + 6
    v = assemble(spec, "V")
    assert v.role == "validation" and all(f.info["split"] == "valid" for f in v.frames)


def test_sampling_fraction_weights(built):
    spec, _ = built
    w = assemble(spec, "W")
    singles = [f for f in w.frames if f.info["source"] == "mols"]
    assert [f.info["composition"] for f in singles] == ["EC=1", "EMC=1"]
    assert all(f.info["split"] == "train" for f in singles)
    # each isolated molecule carries 5 % of the training weight
    weights = np.array([f.info["weight"] for f in w.train])
    for f in singles:
        assert f.info["weight"] / weights.sum() == pytest.approx(0.05, rel=1e-12)
    assert training_fraction(w, "mols") == pytest.approx(0.10)


def test_split_is_stable_when_frames_are_added():
    uids = [f"u{k:015x}" for k in range(2000)]
    first = {u: is_validation(u, 0.1, 7) for u in uids[:1000]}
    assert all(is_validation(u, 0.1, 7) == first[u] for u in uids[:1000])
    share = np.mean([is_validation(u, 0.1, 7) for u in uids])
    assert 0.08 < share < 0.12
    assert [is_validation(u, 0.1, 8) for u in uids[:50]] != [first[u] for u in uids[:50]]


def _bad(tmp_path, old, new):
    text = SPEC.format(unit="eV")
    assert old in text
    (tmp_path / "toy.yaml").write_text(text.replace(old, new, 1))
    return tmp_path / "toy.yaml"


@pytest.mark.parametrize("old, new, match", [
    ("  A: [liquid]", "  A: [liquidd]", r"toy.yaml:\d+: subsets.A: unknown source 'liquidd'"),
    ("  A: [liquid]", "  A: [{subset: A}]", r"subsets.A: subset refers to itself \(A -> A\)"),
    ("  A: [liquid]", "  A: []", r"subsets.A: subset is empty"),
    ("sampling_fraction: 0.05}\n    - {source: mols, species: EMC", "sampling_fraction: 1.5}\n    - {source: mols, species: EMC",
     r"toy.yaml:\d+: subsets.W.1.sampling_fraction: Input should be less than 1"),
    ("  A: [liquid]", "  A: [{source: liquid, weight: -1}]", r"subsets.A.0.weight: Input should be greater than 0"),
    ("  V: [extv]", "  V: [liquid]", r"subsets.A: trains on validation source\(s\) liquid"),
    ("    energy_unit: eV", "    energy_unit: hartree", r"sources.ext.import.energy_unit: Input should be"),
    ("      - {ensemble: nvt, temperature_K: 300, density_g_cm3: 0.9, n_frames: 4}",
     "      - {ensemble: nvt, temperature_K: 300, n_frames: 4}", r"an nvt run needs density_g_cm3"),
])
def test_bad_specs(tmp_path, old, new, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset_spec(_bad(tmp_path, old, new))


def test_unknown_subset_and_unbuilt_source(tmp_path, built):
    spec, _ = built
    with pytest.raises(InputError, match="unknown subset 'Z'"):
        assemble(spec, "Z")
    (tmp_path / "toy.yaml").write_text(SPEC.format(unit="eV"))
    fresh = load_dataset_spec(tmp_path / "toy.yaml")
    with pytest.raises(InputError, match="source 'liquid' of toy.yaml is not built yet"):
        assemble(fresh, "A")
    with pytest.raises(InputError, match="unknown source"):
        build_dataset(fresh, only=["nope"])


def test_frames_lacking_labels_are_refused(built, tmp_path):
    spec, _ = built
    path = source_file(spec, "liquid")
    frames = read_frames(path)
    del frames[2].info["REF_energy"]
    backup = path.read_bytes()
    try:
        write_frames(path, frames)
        with pytest.raises(InputError, match=r"liquid.extxyz.gz: frame 2 lacks reference labels"):
            assemble(spec, "A")
    finally:
        path.write_bytes(backup)


def test_dataset_cli_show_and_export(built, runner, tmp_path):
    from harness.cli.main import app

    spec, _ = built
    result = runner.invoke(app, ["dataset", "show", str(spec.path)])
    assert result.exit_code == 0, result.output
    for name in ("liquid", "A", "W", "V", "validation"):
        assert name in result.stdout
    result = runner.invoke(app, ["dataset", "show", str(spec.path), "--json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)["subsets"]}
    assert rows["B"]["n_frames"] == 7
    out = tmp_path / "w.extxyz"
    result = runner.invoke(app, ["dataset", "export", str(spec.path), "W", "--split", "train", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_frames(out)) == len(assemble(spec, "W").train)
    result = runner.invoke(app, ["dataset", "export", str(spec.path), "nope", "-o", str(out)])
    assert result.exit_code == 2 and "unknown subset or source 'nope'" in result.stderr


# --- the shipped dataset: thinning and isolated-atom energies (issue #13 items 2-3) ---

SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "ec-emc-xtb.yaml"


def _by_source(frames):
    from collections import Counter

    return Counter(str(a.info["source"]) for a in frames)


def test_thinning_keeps_pinned_molecules_and_sets_their_weight_after():
    """OPLS+EC+EMC at 60 frames: the single EC and EMC stay and still carry 5 % of the weight each
    (the old evenly spaced thinning after weighting dropped both)."""
    spec = load_dataset_spec(SHIPPED)
    sub = assemble(spec, "OPLS+EC+EMC", max_train_frames=60)
    train = sub.train
    assert len(train) == 60
    singles = [a for a in train if a.info["source"] == "sm"]
    assert sorted(str(a.info["composition"]) for a in singles) == ["EC=1", "EMC=1"]
    total = sum(a.info["weight"] for a in train)
    for a in singles:
        assert a.info["weight"] / total == pytest.approx(0.05, rel=1e-9)
    # validation is never thinned
    assert len(sub.valid) == len(assemble(spec, "OPLS+EC+EMC").valid)


def test_thinning_shares_the_budget_between_sources_in_proportion():
    spec = load_dataset_spec(SHIPPED)
    full = _by_source(assemble(spec, "Full").train)
    thinned = _by_source(assemble(spec, "Full", max_train_frames=60).train)
    assert sum(thinned.values()) == 60 and set(thinned) == set(full)
    n = sum(full.values())
    for source, count in full.items():
        assert abs(thinned[source] - 60 * count / n) < 1.0, (source, thinned, full)


def test_thinning_refuses_a_budget_below_the_pinned_frames():
    from ase import Atoms

    from harness.datasets.subsets import thin

    frames = [Atoms("H") for _ in range(5)]
    for k, a in enumerate(frames):
        a.info["source"] = "s"
        a.info["weight"] = 2.0 if k < 3 else 1.0
    assert len(thin(frames, 4)) == 4 and all(a in thin(frames, 4) for a in frames[:3])
    with pytest.raises(InputError, match="smaller than the 3 pinned or weighted"):
        thin(frames, 2)


def test_isolated_atoms_ship_and_are_every_subsets_e0(tmp_path):
    """GFN2-xTB free atoms in their ground-state multiplicity are the E0s of a committee on OPLS, a subset
    that does not list them; they enter the committee key."""
    from harness.datasets.subsets import dataset_e0
    from harness.models.train import plan_committee

    spec = load_dataset_spec(SHIPPED)
    manifest = json.loads((spec.data_path / "manifest.json").read_text())["sources"]["atoms"]
    assert manifest["spin"]["multiplicity"] == {"H": 2, "C": 3, "O": 3}
    assert manifest["reference"]["method"] == "GFN2-xTB" and "spin-polarisation" in manifest["spin"]["treatment"]
    values, info = dataset_e0(spec)
    # GFN2-xTB (tblite 0.8.0, 300 K electronic temperature) free atoms, doublet H and triplet C/O
    assert values == pytest.approx({"H": -10.7072, "C": -48.7981, "O": -102.5218}, abs=1e-3)
    plan = plan_committee(SHIPPED, "OPLS", "gap", workspace=tmp_path)
    assert not any(len(a) == 1 for a in plan.train)
    assert plan.e0 == pytest.approx(values) and plan.dataset["e0"]["method"] == "isolated_atoms"
    # the E0s are part of the key: a dataset without the source plans another committee
    text = SHIPPED.read_text()
    start = text.index("  atoms:\n")
    end = text.index("  vs:\n")
    (tmp_path / "d").mkdir()
    alt = tmp_path / "d" / "ec-emc-xtb.yaml"
    alt.write_text(text[:start] + text[end:])
    (tmp_path / "d" / "ec-emc-xtb").symlink_to(spec.data_path)
    other = plan_committee(alt, "OPLS", "gap", workspace=tmp_path)
    assert other.e0 is None and other.dataset["e0"] == {"method": "average", "values": None}
    assert other.key != plan.key
