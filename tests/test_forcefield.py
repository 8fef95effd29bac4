"""OPLS-AA typing and OpenMM systems for the six carbonates."""

import numpy as np
import pytest

from harness.forcefields.opls import TypingError, bonded_terms, build_system, total_charge, type_molecule
from harness.systems.molecules import Molecule, get_molecule

# Golden typing from ../shared/forcefields/OPLS-AA-carbonates.md (atom order = RDKit order)
GOLDEN = {
    "EC": "774 774 773 772 771 773 777 777 777 777",
    "EMC": "135 490 467 465 466 467 468 140 140 140 469 469 469 469 469",
    "DEC": "135 490 467 465 466 467 490 135 140 140 140 469 469 469 469 140 140 140",
    "PC": "776 775 774 773 772 771 773 779 779 779 778 777 777",
    "VC": "VC_CM VC_CM VC_OS VC_C2 VC_O2 VC_OS VC_HC VC_HC",
    "DMC": "468 467 465 466 467 468 469 469 469 469 469 469",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_typing_matches_reference_table(name):
    types = type_molecule(get_molecule(name))
    assert " ".join(t.replace("opls_", "") for t in types) == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_neutral_and_every_bonded_term_present(name):
    mol = get_molecule(name)
    assert total_charge(mol) == pytest.approx(0.0, abs=1e-9)
    terms = bonded_terms(mol)  # raises TypingError on any missing parameter
    degree = np.bincount(np.array(mol.bonds).ravel(), minlength=mol.n_atoms)
    assert len(terms.bonds) == len(mol.bonds)
    assert len(terms.angles) == int(sum(d * (d - 1) // 2 for d in degree))
    n_dihedrals = sum((degree[i] - 1) * (degree[j] - 1) for i, j in mol.bonds)
    assert len(terms.torsions) == n_dihedrals
    assert len(terms.impropers) == 1  # the carbonyl carbon
    # 1-2 and 1-3 pairs excluded, 1-4 pairs scaled, never both
    assert not set(terms.excluded) & set(terms.pairs14)


def test_unsupported_chemistry_names_the_atom():
    with pytest.raises(TypingError, match=r"OPLS-AA typing of ETOH \(CCO\): atom 1 \(C\) is not part of a carbonate"):
        type_molecule(Molecule("ETOH", "CCO"))


def test_isolated_molecule_system_energy_is_finite():
    import openmm

    from harness.systems.topology import tag_molecules

    mol = get_molecule("PC")
    atoms = tag_molecules(mol.atoms(), [mol])
    system = build_system(atoms)
    assert system.getNumParticles() == 13 and not system.usesPeriodicBoundaryConditions()
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(atoms.positions / 10)
    energy = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    assert np.isfinite(energy)


def test_nve_energy_conservation_of_a_small_mixture(small_box):
    """Velocity Verlet, 0.5 fs, 2 ps of 4 EC + 8 EMC after minimisation: the total energy drifts by
    less than 1 % of the kinetic energy (measured: ~0.2 % over 10 ps; PME/cut-off noise)."""
    from harness.datasets.classical_md import ClassicalMD

    md = ClassicalMD(small_box, 300.0, None, seed=1, threads=2)
    md.minimize()
    md.run_ps(1.0)
    nve = ClassicalMD(md.frame(), 300.0, None, timestep_fs=0.5, integrator="verlet", seed=1, threads=2)
    totals, kinetic = [], []
    for _ in range(8):
        nve.run_ps(0.25)
        pot, kin = nve.energies_kJ_mol()
        totals.append(pot + kin)
        kinetic.append(kin)
    drift = max(abs(t - totals[0]) for t in totals)
    assert drift < 0.01 * np.mean(kinetic)
    assert np.mean(kinetic) > 100  # it is moving (~600 kJ/mol at 300 K for 160 atoms)
