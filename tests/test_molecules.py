import numpy as np
import pytest

from harness.errors import InputError
from harness.systems.molecules import LIBRARY, MoleculeRegistry, get_molecule, parse_molecule_definition

# atom count, Hill formula and number of covalent bonds (from the structural formulas)
EXPECTED = {
    "EC": (10, "C3H4O3", 10),
    "EMC": (15, "C4H8O3", 14),
    "DEC": (18, "C5H10O3", 17),
    "PC": (13, "C4H6O3", 13),
    "VC": (8, "C3H2O3", 8),
    "DMC": (12, "C3H6O3", 11),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_molecule_counts_and_formulas(name):
    mol = get_molecule(name)
    n, formula, n_bonds = EXPECTED[name]
    assert mol.n_atoms == n
    assert mol.formula == formula
    assert len(mol.bonds) == n_bonds
    atoms = mol.atoms()
    assert len(atoms) == n and np.allclose(atoms.get_center_of_mass(), 0, atol=1e-8)
    # covalent bond lengths of the 3D geometry are chemical (0.9–1.6 Å)
    b = np.array(mol.bonds)
    lengths = np.linalg.norm(atoms.positions[b[:, 0]] - atoms.positions[b[:, 1]], axis=1)
    assert lengths.min() > 0.9 and lengths.max() < 1.6


def test_library_is_the_six_carbonates():
    assert set(LIBRARY) == set(EXPECTED)


def test_molar_masses():
    assert get_molecule("EC").mass_amu == pytest.approx(88.062, abs=0.01)
    assert get_molecule("EMC").mass_amu == pytest.approx(104.105, abs=0.01)


def test_geometry_is_deterministic():
    a, b = get_molecule("EMC").atoms(), get_molecule("EMC").atoms()
    assert np.array_equal(a.positions, b.positions)


def test_unknown_molecule_name():
    with pytest.raises(InputError, match=r"unknown molecule 'XYZ'; known: EC, EMC"):
        MoleculeRegistry()["XYZ"]


def test_user_smiles_with_name():
    fec = parse_molecule_definition("FEC=C1C(F)OC(=O)O1")
    reg = MoleculeRegistry({"FEC": fec})
    assert reg["FEC"].formula == "C3H3FO3"


@pytest.mark.parametrize("text, match", [
    ("BAD=C1CC(", "invalid SMILES 'C1CC\\(' for molecule 'BAD'"),
    ("NOSMILES", "must look like NAME=SMILES"),
    ("ION=[Na+]", "is charged"),
    ("a b=CC", "may contain only"),
])
def test_bad_user_molecules(text, match):
    with pytest.raises(InputError, match=match):
        parse_molecule_definition(text)
