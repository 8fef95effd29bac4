"""Classical OPLS-AA molecular dynamics with OpenMM: the sampler of the OPLS and SM config types.

Liquid frames come from NPT (Monte Carlo barostat) or NVT runs of a packed box; isolated-molecule
frames from gas-phase runs without cut-offs. Integrator: Langevin middle (BAOAB-like), flexible
bonds. Frames come back as ASE Atoms with whole (unwrapped) molecules and the input's topology.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms

from harness.errors import InputError
from harness.systems.topology import Topology
from harness.units import density_g_cm3

__all__ = ["ClassicalMD", "sample_frames"]

logger = logging.getLogger(__name__)


@dataclass
class ClassicalMD:
    """An OpenMM simulation of a harness frame with the OPLS-AA carbonate force field.

    Parameters
    ----------
    atoms
        Starting frame (periodic liquid or one isolated molecule) with molecular topology.
    temperature_K
        Thermostat temperature.
    pressure_bar
        Barostat pressure; ``None`` runs NVT (or gas phase for non-periodic frames).
    timestep_fs, friction_per_ps
        Langevin middle integrator settings.
    seed
        Seeds velocities, the integrator and the barostat.
    cutoff_nm
        Real-space cut-off for periodic cells.
    threads
        CPU platform threads (``None``: OpenMM's default); used only when ``deterministic`` is off.
    deterministic
        Single-threaded, deterministic forces: the same seed reproduces the same trajectory.
    """

    atoms: Atoms
    temperature_K: float
    pressure_bar: float | None = None
    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    seed: int = 0
    cutoff_nm: float = 0.6
    threads: int | None = None
    barostat_interval: int = 25
    integrator: Literal["langevin", "verlet"] = "langevin"
    deterministic: bool = True

    def __post_init__(self) -> None:
        import openmm
        from openmm import app
        from openmm import unit as u

        from harness.forcefields.opls import build_system

        if self.temperature_K <= 0:
            raise InputError(f"temperature must be positive, got {self.temperature_K} K")
        self.topology = Topology.from_atoms(self.atoms)
        self.periodic = bool(self.atoms.pbc.all())
        system = build_system(self.atoms, topology=self.topology, cutoff_nm=self.cutoff_nm)
        if self.pressure_bar is not None:
            if not self.periodic:
                raise InputError("NPT needs a periodic cell")
            baro = openmm.MonteCarloBarostat(self.pressure_bar * u.bar, self.temperature_K * u.kelvin,
                                             self.barostat_interval)
            baro.setRandomNumberSeed(int(self.seed) + 1)
            system.addForce(baro)
        if self.integrator == "langevin":
            integ = openmm.LangevinMiddleIntegrator(self.temperature_K * u.kelvin, self.friction_per_ps / u.picosecond,
                                                    self.timestep_fs * u.femtosecond)
            integ.setRandomNumberSeed(int(self.seed) + 2)
        else:
            integ = openmm.VerletIntegrator(self.timestep_fs * u.femtosecond)
        # OpenMM's CPU platform costs ~0.5 ms per step in thread overhead alone; for a lone gas-phase
        # molecule the single-threaded Reference platform is ~10x faster.
        if self.periodic:
            platform = openmm.Platform.getPlatformByName("CPU")
            if self.deterministic:
                # Measured with OpenMM 8.6.1: with 2 CPU threads forces differ run to run by ~5e-4
                # kJ/mol/nm even with DeterministicForces, and trajectories diverge; one thread makes
                # the same seed give the same frames, run after run (reproducible datasets/starts).
                props = {"DeterministicForces": "true", "Threads": "1"}
            else:
                props = {"Threads": str(self.threads)} if self.threads else {}
        else:
            platform, props = openmm.Platform.getPlatformByName("Reference"), {}
        self.context = openmm.Context(system, integ, platform, props)
        self.integ = integ
        self.system = system
        self.context.setPositions(self.atoms.positions / 10.0)
        if self.periodic:
            self.context.setPeriodicBoxVectors(*(np.asarray(self.atoms.cell[:]) / 10.0))
        self.context.setVelocitiesToTemperature(self.temperature_K * u.kelvin, int(self.seed) + 3)
        self.time_ps = 0.0
        self._app = app

    def minimize(self, *, tolerance_kJ_mol_nm: float = 10.0, max_iterations: int = 2000) -> None:
        import openmm

        openmm.LocalEnergyMinimizer.minimize(self.context, tolerance_kJ_mol_nm, max_iterations)
        from openmm import unit as u

        self.context.setVelocitiesToTemperature(self.temperature_K * u.kelvin, int(self.seed) + 4)

    def run_ps(self, duration_ps: float) -> None:
        steps = int(round(duration_ps * 1000.0 / self.timestep_fs))
        self.integ.step(steps)
        self.time_ps += steps * self.timestep_fs / 1000.0

    def energies_kJ_mol(self) -> tuple[float, float]:
        """(potential, kinetic) energy in kJ/mol."""
        state = self.context.getState(getEnergy=True)
        from openmm import unit as u

        return (state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
                state.getKineticEnergy().value_in_unit(u.kilojoule_per_mole))

    def frame(self) -> Atoms:
        """The current configuration as a harness frame (Å; molecules whole)."""
        from openmm import unit as u

        state = self.context.getState(getPositions=True, enforcePeriodicBox=False)
        pos = state.getPositions(asNumpy=True).value_in_unit(u.angstrom)
        out = self.atoms.copy()
        out.calc = None
        out.positions = pos
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.angstrom)
            out.set_cell(box, scale_atoms=False)
            # re-centre each molecule (rigidly) so its centre of mass lies inside the cell
            masses = out.get_masses()
            inv = np.linalg.inv(out.cell[:])
            for idx in self.topology.molecules:
                com = masses[idx] @ out.positions[idx] / masses[idx].sum()
                shift = np.floor(com @ inv) @ out.cell[:]
                out.positions[idx] -= shift
            out.info["density_g_cm3"] = density_g_cm3(out)
        out.info["time_ps"] = round(self.time_ps, 6)
        return out


def sample_frames(
    atoms: Atoms,
    *,
    ensemble: Literal["npt", "nvt", "gas"],
    temperature_K: float,
    n_frames: int,
    stride_ps: float,
    equilibration_ps: float,
    pressure_bar: float = 1.0,
    timestep_fs: float = 1.0,
    seed: int = 0,
    threads: int | None = None,
    cutoff_nm: float = 0.6,
) -> list[Atoms]:
    """Minimise, equilibrate and take ``n_frames`` frames every ``stride_ps``.

    Every frame records ``ensemble``, ``temperature_K``, ``pressure_bar`` (NPT), ``time_ps``,
    ``sampler_seed`` and ``sampler="OPLS-AA/OpenMM"``.
    """
    if n_frames <= 0 or stride_ps <= 0 or equilibration_ps < 0:
        raise InputError("n_frames and stride_ps must be positive and equilibration_ps non-negative")
    md = ClassicalMD(atoms, temperature_K, pressure_bar if ensemble == "npt" else None, timestep_fs=timestep_fs,
                     seed=seed, threads=threads, cutoff_nm=cutoff_nm)
    t0 = time.perf_counter()
    md.minimize()
    md.run_ps(equilibration_ps)
    frames = []
    for _ in range(n_frames):
        md.run_ps(stride_ps)
        f = md.frame()
        f.info.update({"ensemble": ensemble, "temperature_K": float(temperature_K), "sampler_seed": int(seed),
                       "sampler": "OPLS-AA/OpenMM"})
        if ensemble == "npt":
            f.info["pressure_bar"] = float(pressure_bar)
        frames.append(f)
    dt = time.perf_counter() - t0
    logger.info("%s %s K: %d frames, %.1f ps in %.1f s (%.1f ns/day)", ensemble, temperature_K, n_frames,
                md.time_ps, dt, md.time_ps / 1000 / (dt / 86400) if dt > 0 else float("nan"))
    return frames
