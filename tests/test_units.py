import numpy as np
import pytest
from ase import Atoms

from harness import units as u


def test_density_factor_matches_avogadro():
    # 1 amu/Å³ = 1.66053906660e-24 g / 1e-24 cm³ (CODATA 2018 atomic mass constant)
    assert u.AMU_PER_A3_TO_G_PER_CM3 == pytest.approx(1.66053906660, rel=1e-6)


def test_water_like_cell_density():
    # 1 water molecule (18.015 amu) in 29.915 Å³ is 1.000 g/cm³
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [0, 0.96, 0]], cell=[29.915 ** (1 / 3)] * 3, pbc=True)
    assert u.density_g_cm3(atoms) == pytest.approx(1.0, rel=1e-3)


def test_volume_for_density_inverts_density():
    atoms = Atoms("C", cell=[1, 1, 1], pbc=True)
    v = u.volume_for_density_A3(atoms.get_masses().sum(), 2.5)
    atoms.set_cell([v ** (1 / 3)] * 3)
    assert u.density_g_cm3(atoms) == pytest.approx(2.5, rel=1e-12)


def test_diffusivity_and_pressure_factors():
    assert u.A2_PER_PS_TO_CM2_PER_S == 1e-4
    # paper: D_ref ≈ 48e-6 cm²/s = 0.48 Å²/ps
    assert 0.48 * u.A2_PER_PS_TO_CM2_PER_S == pytest.approx(48e-6)
    assert u.ATM_TO_EV_PER_A3 * u.EV_PER_A3_TO_GPA == pytest.approx(101325e-9, rel=1e-9)
    assert u.ps / u.fs == pytest.approx(1000.0)


def test_density_of_cell_without_volume_is_an_error():
    with pytest.raises(ValueError):
        u.density_g_cm3(Atoms("H"))
    with pytest.raises(ValueError):
        u.volume_for_density_A3(10.0, 0.0)
    assert np.isfinite(u.fs)
