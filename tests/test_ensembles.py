"""The harness's NVT and NPT integrators checked by an independent tool: physical_validation (Merz & Shirts,
PLoS ONE 2018), on cheap models whose ensembles are known.

- kinetic energy (Bussi NVT and MTK NPT): the sampled kinetic energies follow Gamma((3N − 3)/2, kT) — the
  centre of mass is fixed, so 3 degrees of freedom are removed — and a run that targeted 3N is rejected;
- two state points (NVT at 40 and 44 K; NPT at two pressures): the ratio of the potential-energy (or volume)
  distributions has the slope the Boltzmann factor dictates (physical_validation's ensemble check, in units of
  its own standard error).

Slow (about a minute): `make ci-ensembles` runs them in CI.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from harness.md.runner import RunSettings, run_md
from harness.units import ATM_TO_EV_PER_A3
from tests.helpers import IdealGas

pytestmark = pytest.mark.slow


def _pv():
    with redirect_stdout(io.StringIO()):  # pymbar's banner about JAX
        import physical_validation as pv
    return pv


class PairLJ(Calculator):
    """Lennard-Jones argon (ε 10.3 meV, σ 3.4 Å) in a cubic periodic cell, all pairs by minimum image within half
    the cell (energy shifted to 0 there): translation-invariant, so the total momentum is conserved and the
    kinetic energy has 3N − 3 degrees of freedom; numpy, ~0.1 ms for 32 atoms."""

    implemented_properties = ["energy", "forces", "stress"]
    eps, sig = 0.0103, 3.4

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        L = atoms.cell[0, 0]
        d = atoms.positions[:, None, :] - atoms.positions[None, :, :]
        d -= L * np.round(d / L)
        r2 = np.sum(d ** 2, axis=-1)
        np.fill_diagonal(r2, np.inf)
        rc2 = (L / 2) ** 2
        inside = r2 < rc2
        s6 = np.where(inside, (self.sig ** 2 / r2) ** 3, 0.0)
        shift = (self.sig ** 2 / rc2) ** 3
        e = 0.5 * np.sum(np.where(inside, 4 * self.eps * (s6 ** 2 - s6 - shift ** 2 + shift), 0.0))
        f_over_r = np.where(inside, 24 * self.eps * (2 * s6 ** 2 - s6) / r2, 0.0)
        forces = np.sum(f_over_r[:, :, None] * d, axis=1)
        virial = -0.5 * np.einsum("ij,ija,ijb->ab", f_over_r, d, d)
        stress = virial / atoms.get_volume()
        self.results = {"energy": float(e), "forces": forces,
                        "stress": stress.reshape(9)[[0, 4, 8, 5, 2, 1]]}


def _units(pv):
    # ASE units: eV, Å, K, fs; pressure in bar for physical_validation (1 eV/Å³ = 1.602e6 bar)
    return pv.data.UnitData(kb=units.kB, energy_conversion=96.485332, length_conversion=0.1, volume_conversion=1e-3,
                            temperature_conversion=1.0, pressure_conversion=1.0, time_conversion=1e-3,
                            energy_str="eV", length_str="A", volume_str="A^3", temperature_str="K",
                            pressure_str="bar", time_str="fs")


def _data(pv, thermo: pd.DataFrame, n: int, ensemble: str, temp: float, pressure_bar: float | None = None,
          dt_fs: float = 10.0):
    system = pv.data.SystemData(natoms=n, nconstraints=0, ndof_reduction_tra=3, ndof_reduction_rot=0)
    ens = pv.data.EnsembleData(ensemble.upper(), natoms=n, temperature=temp,
                               **({"pressure": pressure_bar, "volume": None} if ensemble == "npt" else
                                  {"volume": float(thermo["volume_A3"].iloc[0]) if "volume_A3" in thermo else 1.0}))
    obs = pv.data.ObservableData(kinetic_energy=thermo["kinetic_eV"].to_numpy(),
                                 potential_energy=thermo["potential_eV"].to_numpy(),
                                 **({"volume": thermo["volume_A3"].to_numpy()} if ensemble == "npt" else {}))
    return pv.data.SimulationData(units=_units(pv), dt=dt_fs, system=system, ensemble=ens, observables=obs)


def _solid() -> Atoms:
    from ase.build import bulk

    return bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)  # 32 atoms


def _nvt(tmp_path, temp: float, seed: int, steps: int = 12000) -> pd.DataFrame:
    atoms = _solid()
    s = RunSettings("nvt", temp, length_ps=steps * 10e-3, timestep_fs=10.0, thermostat="bussi", tdamp_fs=100.0,
                    frame_interval=10**9, thermo_interval=10, checkpoint_interval=10**9)
    run_md(atoms, PairLJ(), s, outdir=tmp_path / f"nvt-{temp:g}", seed=seed)
    return pd.read_parquet(tmp_path / f"nvt-{temp:g}" / "thermo.parquet").iloc[100:]


def test_nvt_kinetic_energy_and_two_temperatures(tmp_path):
    """Bussi NVT of a 32-atom Lennard-Jones argon crystal: the kinetic energy distribution of 3N − 3 = 93 degrees
    of freedom passes physical_validation's test; read as 3N = 96 (a thermostat that ignored the fixed centre of
    mass would sample that) it is rejected; 40 K vs 44 K pass the ensemble check (potential energies; the slope
    within 3 of its standard errors)."""
    pv = _pv()
    n = 32
    lo, hi = _nvt(tmp_path, 40.0, 1), _nvt(tmp_path, 44.0, 2)
    with redirect_stdout(io.StringIO()):
        d_mean, d_width = pv.kinetic_energy.distribution(_data(pv, lo, n, "nvt", 40.0), strict=False, verbosity=0)
    assert abs(d_mean) < 3 and abs(d_width) < 3, (d_mean, d_width)
    wrong = pv.data.SystemData(natoms=n, nconstraints=0, ndof_reduction_tra=0, ndof_reduction_rot=0)
    data = _data(pv, lo, n, "nvt", 40.0)
    data.system = wrong
    with redirect_stdout(io.StringIO()):
        w_mean, _ = pv.kinetic_energy.distribution(data, strict=False, verbosity=0)
    assert abs(w_mean) > 4, w_mean
    with redirect_stdout(io.StringIO()):
        q = pv.ensemble.check(_data(pv, lo, n, "nvt", 40.0), _data(pv, hi, n, "nvt", 44.0), verbosity=0)
    assert all(abs(x) < 3 for x in np.atleast_1d(q)), q


def test_npt_ideal_gas_two_pressures(tmp_path):
    """MTK NPT of an ideal gas (N = 8) at 300 K and 1000 / 1100 atm: the kinetic energies pass the Gamma test with
    3N − 3 degrees of freedom and the volume distributions of the two pressures pass the ensemble check."""
    pv = _pv()
    n, temp = 8, 300.0
    out = {}
    for p_atm in (1000.0, 1100.0):
        kT, p = units.kB * temp, p_atm * ATM_TO_EV_PER_A3
        edge = ((n + 1) * kT / p) ** (1 / 3)
        gas = Atoms(f"Ar{n}", positions=np.random.default_rng(0).uniform(0, edge, (n, 3)), cell=[edge] * 3, pbc=True)
        s = RunSettings("npt", temp, length_ps=60.0, timestep_fs=5.0, pressure_atm=p_atm, tdamp_fs=50, pdamp_fs=500,
                        frame_interval=10**9, thermo_interval=25, checkpoint_interval=10**9)
        run_md(gas, IdealGas(), s, outdir=tmp_path / f"p{p_atm:g}", seed=int(p_atm))
        out[p_atm] = pd.read_parquet(tmp_path / f"p{p_atm:g}" / "thermo.parquet").iloc[40:]
    bar = 1.01325
    with redirect_stdout(io.StringIO()):
        d_mean, d_width = pv.kinetic_energy.distribution(_data(pv, out[1000.0], n, "npt", temp, 1000.0 * bar, 5.0),
                                                         strict=False, verbosity=0)
        q = pv.ensemble.check(_data(pv, out[1000.0], n, "npt", temp, 1000.0 * bar, 5.0),
                              _data(pv, out[1100.0], n, "npt", temp, 1100.0 * bar, 5.0), verbosity=0)
    assert abs(d_mean) < 3 and abs(d_width) < 3, (d_mean, d_width)
    assert all(abs(x) < 3 for x in np.atleast_1d(q)), q
