"""Units: ASE units inside the harness, conversions at the edges.

Everything internal is in ASE units (eV, Å, amu, ASE time). The constants here convert the few
derived quantities the harness reports: mass density in g/cm³ and diffusivity in cm²/s.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units

__all__ = [
    "units",
    "AMU_PER_A3_TO_G_PER_CM3",
    "A2_PER_PS_TO_CM2_PER_S",
    "A2_PER_PS_TO_1E6_CM2_PER_S",
    "diffusivity_1e6_cm2_s",
    "EV_PER_A3_TO_GPA",
    "ATM_TO_EV_PER_A3",
    "density_g_cm3",
    "volume_for_density_A3",
    "fs",
    "ps",
    "ENERGY_UNITS_EV",
]

#: 1 amu/Å³ in g/cm³ (= 1.66053906660 g/cm³).
AMU_PER_A3_TO_G_PER_CM3: float = units._amu * 1e3 / 1e-24
#: 1 Å²/ps in cm²/s (1e-16 cm² / 1e-12 s = 1e-4).
A2_PER_PS_TO_CM2_PER_S: float = 1e-4
#: 1 Å²/ps in the 1e-6 cm²/s the paper reports diffusivities in (= 100).
A2_PER_PS_TO_1E6_CM2_PER_S: float = A2_PER_PS_TO_CM2_PER_S / 1e-6
#: 1 eV/Å³ in GPa.
EV_PER_A3_TO_GPA: float = 1.0 / units.GPa
#: 1 standard atmosphere (101325 Pa) in eV/Å³.
ATM_TO_EV_PER_A3: float = 101325.0 * units.Pascal

#: ASE time units per femtosecond / picosecond.
fs: float = units.fs
ps: float = 1000.0 * units.fs


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm³.

    Raises
    ------
    ValueError
        If the cell has zero volume (e.g. a non-periodic molecule without a cell).
    """
    volume = atoms.get_volume() if atoms.cell.rank == 3 else 0.0
    if volume <= 0.0:
        raise ValueError("density is undefined for a cell of zero volume")
    return float(np.sum(atoms.get_masses()) / volume * AMU_PER_A3_TO_G_PER_CM3)


def volume_for_density_A3(total_mass_amu: float, density_g_cm3: float) -> float:
    """Cell volume in Å³ that holds ``total_mass_amu`` at ``density_g_cm3``."""
    if density_g_cm3 <= 0.0:
        raise ValueError(f"density must be positive, got {density_g_cm3} g/cm³")
    return total_mass_amu * AMU_PER_A3_TO_G_PER_CM3 / density_g_cm3


def diffusivity_1e6_cm2_s(D_A2_ps: float | None) -> float | None:
    """A diffusivity in Å²/ps (the harness's unit) in the paper's 1e-6 cm²/s; None stays None."""
    return None if D_A2_ps is None else float(D_A2_ps) * A2_PER_PS_TO_1E6_CM2_PER_S

#: eV per unit of an energy label (import sources, ``harness evaluate``)
ENERGY_UNITS_EV = {"eV": 1.0, "meV": 1e-3, "Ha": 27.211386245988, "kcal/mol": 0.0433641043, "kJ/mol": 0.0103642688}
