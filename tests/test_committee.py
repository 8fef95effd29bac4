import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.lj import LennardJones

from harness.models.committee import CommitteeCalculator, force_deviation


class Fixed(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, energy, forces):
        super().__init__()
        self.e, self.f = energy, np.asarray(forces, dtype=float)

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": self.e, "forces": self.f.copy(), "stress": np.full(6, self.e)}


def _dimer():
    return Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]], cell=[5, 5, 5], pbc=True)


def test_sigma2_F_hand_computation():
    # atom 0: members (1,0,0), (3,0,0) -> mean (2,0,0), per-atom variance ((1)^2 + (1)^2)/2 = 1
    # atom 1: members (0,0,0), (0,2,2) -> mean (0,1,1), deviations |(0,-1,-1)|^2 = 2 each -> 2
    forces = [[[1, 0, 0], [0, 0, 0]], [[3, 0, 0], [0, 2, 2]]]
    s2, devi = force_deviation(np.array(forces))
    assert s2 == pytest.approx(2.0) and devi == pytest.approx(np.sqrt(2.0))
    calc = CommitteeCalculator([Fixed(1.0, forces[0]), Fixed(3.0, forces[1])])
    atoms = _dimer()
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(2.0)
    assert np.allclose(atoms.get_forces(), [[2, 0, 0], [0, 1, 1]])
    assert calc.results["sigma2_F"] == pytest.approx(2.0)
    assert calc.results["energy_var"] == pytest.approx(1.0)
    assert np.allclose(calc.results["forces_var"], [[1, 0, 0], [0, 1, 1]])
    assert calc.results["forces_comm"].shape == (2, 2, 3)
    assert np.allclose(atoms.get_stress(), 2.0)


def test_mean_of_real_members_and_zero_spread_for_identical():
    atoms = Atoms("Ar3", positions=[[0, 0, 0], [3.6, 0, 0], [0, 3.9, 0.2]], cell=[12, 12, 12], pbc=True)
    members = [LennardJones(sigma=3.4, epsilon=e, rc=6.0) for e in (0.010, 0.012, 0.014)]
    committee = CommitteeCalculator(members)
    atoms.calc = committee
    e = atoms.get_potential_energy()
    singles = []
    for m in members:
        a = atoms.copy()
        a.calc = m
        singles.append((a.get_potential_energy(), a.get_forces()))
    assert e == pytest.approx(np.mean([s[0] for s in singles]))
    assert np.allclose(atoms.get_forces(), np.mean([s[1] for s in singles], axis=0))
    assert committee.results["sigma2_F"] > 0
    same = CommitteeCalculator([LennardJones(sigma=3.4, epsilon=0.01, rc=6.0) for _ in range(5)])
    atoms.calc = same
    atoms.get_forces()
    assert same.results["sigma2_F"] < 1e-30 and same.results["energy_var"] < 1e-30


def test_empty_committee():
    with pytest.raises(ValueError):
        CommitteeCalculator([])
