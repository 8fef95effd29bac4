import pytest

from harness.errors import InputError
from harness.systems.composition import Composition, parse_counts, parse_ratio, resolve_ratio


def test_paper_validation_cell_resolves():
    # SCIENCE.md §2: 3:7 EC:EMC by weight, 640 atoms = 16 EC + 32 EMC
    comp = resolve_ratio({"EC": 3, "EMC": 7}, basis="weight", n_atoms=640)
    assert comp.as_dict() == {"EC": 16, "EMC": 32}
    assert comp.n_atoms() == 640


def test_paper_training_cell_resolves():
    assert resolve_ratio(parse_ratio("EC:EMC=3:7"), basis="weight", n_atoms=160).as_dict() == {"EC": 4, "EMC": 8}
    assert resolve_ratio({"EC": 1, "EMC": 2}, basis="mole", n_molecules=12).as_dict() == {"EC": 4, "EMC": 8}


def test_volume_ratio_uses_liquid_densities():
    # 1:1 v/v EC:DEC: moles ∝ rho/M -> EC:DEC = (1.32/88.06):(0.975/118.13) = 1.816:1
    comp = resolve_ratio({"EC": 1, "DEC": 1}, basis="volume", n_molecules=48).as_dict()
    assert comp["EC"] + comp["DEC"] == 48
    assert comp["EC"] / comp["DEC"] == pytest.approx(1.816, rel=0.05)


def test_counts_parse_and_format():
    comp = Composition.parse("EC=16, EMC=32")
    assert str(comp) == "EC=16,EMC=32" and comp.n_molecules == 48


@pytest.mark.parametrize("text, match", [
    ("EC=1.5,EMC=2", "whole number of molecules"),
    ("EC=-1", "whole number"),
    ("EC=a", "is not a number"),
    ("EC16", "must look like NAME=NUMBER"),
    ("EC=0,EMC=0", "has no molecules"),
    ("EC=1,EC=2", "more than once"),
    ("", "is empty"),
])
def test_bad_counts(text, match):
    with pytest.raises(InputError, match=match):
        parse_counts(text)


def test_ratio_that_does_not_resolve_to_whole_molecules():
    # 1:1 EC:EMC molecules cannot total 641 atoms (10a + 15b is a multiple of 5)
    with pytest.raises(InputError, match="does not resolve to whole molecules totalling 641 atoms"):
        resolve_ratio({"EC": 1, "EMC": 1}, n_atoms=641)
    # 1:1 in 3 molecules is off by 1/6 in mole fraction, beyond the default tolerance
    with pytest.raises(InputError, match="closest"):
        resolve_ratio({"EC": 1, "EMC": 1}, n_molecules=3)


def test_ratio_needs_exactly_one_size():
    with pytest.raises(InputError, match="exactly one"):
        resolve_ratio({"EC": 1}, n_atoms=10, n_molecules=1)
    with pytest.raises(InputError, match="unknown molecule"):
        resolve_ratio({"XX": 1}, n_molecules=4)
