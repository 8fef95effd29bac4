"""Foundation models offline (issue #17 item 1): shipped weights by name, hash-checked; user-supplied files
with a clear message when missing; an optional D3(BJ) term."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

from harness.errors import InputError
from harness.models.foundation import FOUNDATIONS, weights_file
from harness.models.load import ModelSource, load_model, model_stamp, run_name, sources_from_cli

ROOT = Path(__file__).resolve().parents[1]


def _ethanol():
    a = molecule("CH3CH2OH")
    a.center(vacuum=5.0)
    a.pbc = True
    return a


def test_sevennet_by_name_is_the_packages_model_with_checked_weights():
    """foundation:sevennet-0 is the SevenNet calculator of the shipped 7net-0 checkpoint (same energy and
    forces as sevenn's own calculator by name), its weights' SHA-256 is the one pinned for sevenn 0.10.4, and
    +d3 adds exactly dftd3's D3(BJ)-PBE energy and forces."""
    from harness.models.compat import torch_weights_only_workaround

    torch_weights_only_workaround()
    from dftd3.ase import DFTD3
    from sevenn.calculator import SevenNetCalculator

    (src,) = sources_from_cli(["foundation:sevennet-0"])
    assert src.arch == "sevennet"
    stamp = model_stamp(src)
    assert stamp["sha256"] == FOUNDATIONS["sevennet-0"].sha256 and stamp["versions"]["sevenn"] == "0.10.4"
    a = _ethanol()
    a.calc = load_model(src).calculator
    e, f = a.get_potential_energy(), a.get_forces()
    b = _ethanol()
    b.calc = SevenNetCalculator(model="7net-0", device="cpu")
    assert e == pytest.approx(b.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(f, b.get_forces(), atol=1e-6)
    assert abs(f.sum(axis=0)).max() < 1e-3  # no net force
    (d3src,) = sources_from_cli(["foundation:sevennet-0+d3"])
    c = _ethanol()
    c.calc = load_model(d3src).calculator
    d = _ethanol()
    d.calc = DFTD3(method="PBE", damping="d3bj")
    ed = d.get_potential_energy()
    assert ed < 0 and c.get_potential_energy() == pytest.approx(e + ed, abs=1e-6)
    np.testing.assert_allclose(c.get_forces(), f + d.get_forces(), atol=1e-6)
    assert run_name(d3src) != run_name(src) and run_name(src).startswith("foundation-sevennet-0-")


def test_user_supplied_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MODELS_DIR", str(tmp_path))
    f = FOUNDATIONS["mace-off23-small"]
    with pytest.raises(InputError, match=f"weights not found at {tmp_path}/MACE-OFF23_small.model.*never downloaded"
                                         ".*HARNESS_MODELS_DIR"):
        load_model(ModelSource(kind="foundation", name="mace-off23-small"))
    (tmp_path / f.file).write_bytes(b"not the real weights")
    import hashlib

    real = hashlib.sha256(b"not the real weights").hexdigest()
    assert weights_file(f, sha256=real) == tmp_path / f.file
    with pytest.raises(InputError, match="has SHA-256 .* expected 0000"):
        weights_file(f, sha256="0" * 64)


def test_foundation_bad_input():
    with pytest.raises(InputError, match="unknown foundation model 'nope'; known: sevennet-0"):
        sources_from_cli(["foundation:nope"])
    with pytest.raises(InputError, match="foundation:NAME or foundation:NAME\\+d3"):
        sources_from_cli(["foundation:sevennet-0+d4"])
    from harness.models.foundation import foundation_calculator

    with pytest.raises(InputError, match="unknown option\\(s\\) cutoff"):
        foundation_calculator("sevennet-0", options={"cutoff": 3})
    with pytest.raises(InputError, match="already include dispersion"):
        from harness.models.foundation import d3_calculator

        d3_calculator("wb97m-d3bj", True)


def test_sweep_models_entry_takes_a_foundation(tmp_path):
    from harness.sweep.spec import ModelEntry

    e = ModelEntry(name="7net", foundation="sevennet-0", options={"d3": True})
    (src,) = e.sources(tmp_path / "spec.yaml")
    assert src.kind == "foundation" and src.options == {"d3": True}
    assert e.committee_entry([src]).arch == "sevennet"
    with pytest.raises(ValueError, match="exactly one of files, committee, calculator, foundation"):
        ModelEntry(name="x", foundation="sevennet-0", calculator="ase:ase.calculators.emt.EMT")
    family = ModelEntry(name="7net-family", foundation=["sevennet-0", "sevennet-0-22may2024"])
    members = family.sources(tmp_path / "spec.yaml")  # a committee of the family's versions
    assert [m.name for m in members] == ["sevennet-0", "sevennet-0-22may2024"]
    assert {model_stamp(m)["sha256"] for m in members} == {FOUNDATIONS["sevennet-0"].sha256,
                                                          FOUNDATIONS["sevennet-0-22may2024"].sha256}


@pytest.mark.slow
def test_ci_foundation_zero_shot():
    """After `make ci-foundation`: SevenNet-0 + D3 from the wheel ran NPT and NVT and was scored against the ci
    reference like any committee, its weights' hash and the dispersion in the score's provenance."""
    import os
    from pathlib import Path

    from harness.workflow.store import Store

    root = Path(__file__).resolve().parents[1]
    ws = Path(os.environ.get("HARNESS_CI_WORKSPACE", root / "runs" / "ci")).resolve()
    if not (ws / "harness.sqlite").exists():
        pytest.fail(f"{ws}: no ci workspace (run `make ci-foundation` first, or set HARNESS_CI_WORKSPACE)")
    store = Store(ws / "harness.sqlite")
    scores = [r["result"] for r in store.tasks(kind="score", status="done") if
              r["result"]["committee_id"] == "model:sevennet-0-d3"]
    store.close()
    assert len(scores) >= 1
    sc = scores[-1]
    assert sc["reference_committee"] == "ref:gap/OPLS+VS"
    (m,) = sc["members"]
    assert m["t_stab_npt_ps"] > 0 and m["t_stab_nvt_ps"] > 0 and np.isfinite(m["Q"])
    stamp = sc["models"]["member-0"]
    assert stamp["sha256"] == FOUNDATIONS["sevennet-0"].sha256 and stamp["options"] == {"d3": True}
    assert "dftd3" in stamp["versions"] and "sevenn" in stamp["versions"]


def test_d3_on_any_model_file(tmp_path):
    """A model file (here the shipped carbonate MACE) with options {d3: pbe}: its energy and forces plus exactly
    dftd3's D3(BJ)-PBE term; stamped and named apart from the plain file; d3 without a functional is refused."""
    from ase.io import read
    from dftd3.ase import DFTD3

    from harness.sweep.spec import ModelEntry

    model = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"
    entry = ModelEntry(name="c", files=[str(model)], options={"d3": "pbe"})
    (src,) = entry.sources(tmp_path / "spec.yaml")
    plain = ModelSource(kind="file", path=str(model))
    atoms = read(ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz", index=0)
    a, b, d = atoms.copy(), atoms.copy(), atoms.copy()
    a.calc, b.calc = load_model(src).calculator, load_model(plain).calculator
    d.calc = DFTD3(method="PBE", damping="d3bj")
    e_d3 = d.get_potential_energy()
    assert e_d3 < -1.0  # a dense liquid of 170 atoms: several eV of dispersion
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy() + e_d3, abs=1e-6)
    assert np.allclose(a.get_forces(), b.get_forces() + d.get_forces(), atol=1e-6)
    stamp = model_stamp(src)
    assert stamp["d3"] == "pbe" and "dftd3" in stamp["versions"] and "d3" not in model_stamp(plain)
    assert run_name(src) == run_name(plain) + "+d3-pbe"
    for options, message in (({"d3": True}, "functional of the model's training data"),
                             ({"d4": "pbe"}, "unknown option")):
        with pytest.raises(InputError, match=message):
            load_model(ModelSource(kind="file", path=str(model), options=options))
