"""Classical sampler frames and rigid volume scans."""

import numpy as np
import pytest

from harness.datasets.classical_md import sample_frames
from harness.datasets.volume_scan import density_grid, volume_scan
from harness.errors import InputError
from harness.systems.topology import Topology
from harness.units import density_g_cm3


def test_sampled_liquid_frames_are_whole_molecules(small_box):
    frames = sample_frames(small_box, ensemble="npt", temperature_K=400, n_frames=2, stride_ps=0.2,
                           equilibration_ps=0.2, pressure_bar=1000, seed=4, threads=2)
    assert len(frames) == 2
    for f in frames:
        topo = Topology.from_atoms(f)
        assert topo.bond_lengths(f).max() < 1.9  # unwrapped: no bond spans the cell
        assert f.info["ensemble"] == "npt" and f.info["pressure_bar"] == 1000
        assert f.info["density_g_cm3"] == pytest.approx(density_g_cm3(f))
        assert np.array_equal(f.arrays["mol_id"], small_box.arrays["mol_id"])
    assert frames[1].info["time_ps"] > frames[0].info["time_ps"]


def _intramolecular_distances(atoms, topo):
    return [atoms.get_all_distances()[np.ix_(idx, idx)] for idx in topo.molecules]


def test_rigid_volume_scan_keeps_molecules_and_hits_densities(small_box):
    grid = density_grid(0.1, 2.0, 6)
    scan = volume_scan(small_box, grid, scan_id="t")
    topo = Topology.from_atoms(small_box)
    ref = _intramolecular_distances(small_box, topo)
    masses = small_box.get_masses()
    rho0 = density_g_cm3(small_box)
    for rho, frame in zip(grid, scan):
        assert density_g_cm3(frame) == pytest.approx(rho, rel=1e-12)
        for d0, d1 in zip(ref, _intramolecular_distances(frame, topo)):
            assert np.max(np.abs(d0 - d1)) < 1e-10
        # centres of mass scale isotropically with the cell
        s = (rho0 / rho) ** (1 / 3)
        idx = topo.molecules[3]
        com0 = masses[idx] @ small_box.positions[idx] / masses[idx].sum()
        com1 = masses[idx] @ frame.positions[idx] / masses[idx].sum()
        assert np.allclose(com1, s * com0, atol=1e-9)
        assert frame.info["scan_id"] == "t"
    assert grid[0] == pytest.approx(0.1) and grid[-1] == pytest.approx(2.0)


def test_volume_scan_bad_input(small_box):
    with pytest.raises(InputError, match="positive"):
        volume_scan(small_box, [1.0, -1.0])
    with pytest.raises(InputError, match="low < high"):
        density_grid(2.0, 1.0, 4)
    mol = small_box.copy()
    mol.pbc = False
    with pytest.raises(InputError, match="periodic"):
        volume_scan(mol, [1.0])


def test_isolated_molecule_sampler():
    from harness.datasets.single_molecule import sample_isolated
    from harness.systems.molecules import get_molecule

    frames = sample_isolated(get_molecule("EC"), 5, [300, 500], stride_ps=0.1, equilibration_ps=0.5, seed=3)
    assert len(frames) == 5 and [f.info["temperature_K"] for f in frames] == [300, 300, 300, 500, 500]
    assert not frames[0].pbc.any() and frames[0].info["composition"] == "EC=1"
    # thermal motion: geometries differ from each other and stay bonded
    assert not np.allclose(frames[0].positions, frames[1].positions)
    assert Topology.from_atoms(frames[4]).bond_lengths(frames[4]).max() < 1.7
