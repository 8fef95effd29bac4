import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from harness.errors import InputError
from harness.systems.box import build_box, min_intermolecular_distance
from harness.systems.composition import Composition
from harness.systems.topology import Topology
from harness.units import density_g_cm3


def _same_partition(labels_a, labels_b) -> bool:
    pairs = set(zip(labels_a.tolist(), labels_b.tolist()))
    return len(pairs) == len(set(labels_a.tolist())) == len(set(labels_b.tolist()))


def test_density_within_one_percent(small_box):
    assert density_g_cm3(small_box) == pytest.approx(1.1, rel=0.01)
    assert small_box.pbc.all() and small_box.info["composition"] == "EC=4,EMC=8"
    assert len(small_box) == 160


def test_no_intermolecular_pair_closer_than_tolerance(small_box):
    assert min_intermolecular_distance(small_box) >= 2.0


def test_mol_id_matches_bond_graph_and_distances(small_box):
    from ase.neighborlist import natural_cutoffs, neighbor_list

    topo = Topology.from_atoms(small_box)
    n = len(small_box)
    b = topo.bonds
    graph = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    assert ncomp == 12
    assert _same_partition(comp, small_box.arrays["mol_id"])
    # covalent contacts by distance give the same molecules: none cut, none fused
    i, j = neighbor_list("ij", small_box, natural_cutoffs(small_box, mult=1.1))
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    assert ncomp == 12 and _same_partition(comp, small_box.arrays["mol_id"])


def test_molecules_whole_and_centres_inside(small_box):
    topo = Topology.from_atoms(small_box)
    lengths = topo.bond_lengths(small_box)
    assert lengths.max() < 1.6  # unwrapped: no bond spans the cell
    masses = small_box.get_masses()
    edge = small_box.cell[0, 0]
    for idx in topo.molecules:
        com = masses[idx] @ small_box.positions[idx] / masses[idx].sum()
        assert np.all(com >= 0) and np.all(com < edge)


def test_seeded_and_reproducible():
    comp = Composition.parse("EC=2,EMC=2")
    a = build_box(comp, 1.0, seed=5)
    b = build_box(comp, 1.0, seed=5)
    c = build_box(comp, 1.0, seed=6)
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_unreachable_density_is_a_clear_error():
    with pytest.raises(InputError, match=r"density 5.0 g/cm³ cannot be reached by packmol for EC=4"):
        build_box(Composition.parse("EC=4"), 5.0, seed=0, nloop=5)


@pytest.mark.parametrize("rho", [0.0, -1.0, float("nan")])
def test_nonpositive_density(rho):
    with pytest.raises(InputError, match="density must be a positive number"):
        build_box(Composition.parse("EC=1"), rho)
