import numpy as np
import pytest

from harness.errors import InputError
from harness.systems.molecules import get_molecule
from harness.systems.topology import Topology, equilibrium_bond_lengths, tag_molecules


def test_topology_of_a_box(small_box):
    topo = Topology.from_atoms(small_box, frame="box")
    assert topo.species == ("EC",) * 4 + ("EMC",) * 8
    assert len(topo.bonds) == 4 * 10 + 8 * 14
    # packed molecules are rigid copies: bond lengths equal the template's
    ec = get_molecule("EC")
    b = np.array(ec.bonds)
    ref = np.linalg.norm(ec.atoms().positions[b[:, 0]] - ec.atoms().positions[b[:, 1]], axis=1)
    assert np.allclose(topo.bond_lengths(small_box)[:10], ref, atol=1e-6)


def test_missing_mol_id_names_the_frame(small_box):
    atoms = small_box.copy()
    del atoms.arrays["mol_id"]
    with pytest.raises(InputError, match=r"^frame 7: no per-atom 'mol_id'"):
        Topology.from_atoms(atoms, frame="frame 7")


def test_atom_order_mismatch_is_refused(small_box):
    atoms = small_box.copy()
    numbers = atoms.numbers.copy()
    numbers[[0, 9]] = numbers[[9, 0]]  # swap a C and an H of the first EC
    atoms.numbers = numbers
    with pytest.raises(InputError, match=r"molecule 0 \(EC\) has atoms .* expected C3O3H4|molecule 0 \(EC\)"):
        Topology.from_atoms(atoms)


def test_user_species_read_back_from_frame():
    from harness.systems.molecules import parse_molecule_definition

    fec = parse_molecule_definition("FEC=C1C(F)OC(=O)O1")
    atoms = tag_molecules(fec.atoms(), [fec])
    topo = Topology.from_atoms(atoms)
    assert topo.species == ("FEC",) and len(topo.bonds) == len(fec.bonds)


@pytest.mark.parametrize("method", ["mmff", "gfn2"])
def test_equilibrium_bond_lengths_are_chemical(method):
    ec = get_molecule("EC")
    lengths = equilibrium_bond_lengths(ec, method=method)
    symbols = ec.symbols
    kinds = {}
    for (i, j), d in zip(ec.bonds, lengths):
        kinds.setdefault("".join(sorted(symbols[i] + symbols[j])), []).append(d)
    # C=O ~1.19-1.21, C-H ~1.09-1.10, C-O ~1.33-1.45 Å
    assert 1.17 < min(kinds["CO"]) < 1.23
    assert all(1.07 < d < 1.12 for d in kinds["CH"])
    assert 1.3 < max(kinds["CO"]) < 1.48
    # second call comes from the cache and is identical
    assert np.array_equal(lengths, equilibrium_bond_lengths(ec, method=method))
