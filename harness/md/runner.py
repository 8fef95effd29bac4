"""The MD loop: ASE dynamics + detectors + writers + checkpoints, resumable (SCIENCE.md §5).

``run_md`` integrates one trajectory (NVT or NPT) of any ASE calculator. It stops at the first
failure (a typed :class:`~harness.md.detectors.FailureEvent`, never an exception: a calculator
that raises mid-run is recorded as the ``calculator_error`` failure), writes an H5MD trajectory,
a Parquet thermo table and ``result.json``. Every ``checkpoint_interval`` steps it saves
positions, momenta, cell, the integrator's internal state (thermostat/barostat variables) and the
random generator's state; a killed run resumes from the last checkpoint, truncating the outputs
back to it, so nothing is duplicated or missing, and records the steps it resumed at (``result.json``:
``meta.resumed_at_steps``). A finished run is never rerun.

Frames are written every ``frame_interval`` steps and, besides, at every step where a detector
recorded a measurement (``observed()``, e.g. the committee's sigma2_F at active-learning checks): that
frame carries the value as an H5MD per-frame observable, and the thermo table gets a row for it, so
what was measured and the configuration it was measured on are stored together whatever the output
intervals.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from harness.md.detectors import BondStretch, FailureEvent
from harness.md.prefailure import PreFailureFrames
from harness.h5md import H5MDWriter, ThermoTable
from harness.provenance import MLIP_GROUPS, run_context
from harness.units import ATM_TO_EV_PER_A3, EV_PER_A3_TO_GPA, density_g_cm3

__all__ = ["RunSettings", "MDResult", "run_md", "read_result", "make_dynamics", "set_target_temperature"]

logger = logging.getLogger(__name__)


#: output intervals (steps) when neither a protocol's ``output:`` section nor the caller sets them: one default each,
#: shared by :class:`RunSettings` and :class:`harness.md.protocol.OutputSpec`
FRAME_INTERVAL, THERMO_INTERVAL, CHECKPOINT_INTERVAL = 100, 10, 2000


@dataclass(frozen=True)
class RunSettings:
    """Integration settings of one trajectory (units in the names)."""

    ensemble: Literal["nvt", "npt"]
    temperature_K: float
    length_ps: float
    timestep_fs: float = 0.5
    pressure_atm: float = 1.0
    thermostat: Literal["langevin", "bussi"] = "bussi"  # global: keeps diffusion; Langevin slows it (SCIENCE.md §5)
    friction_per_ps: float = 1.0
    tdamp_fs: float = 50.0
    pdamp_fs: float = 500.0
    frame_interval: int = FRAME_INTERVAL
    thermo_interval: int = THERMO_INTERVAL
    checkpoint_interval: int = CHECKPOINT_INTERVAL
    #: a heating (or cooling) ramp: the thermostat's target goes linearly from temperature_K at step 0 to this at
    #: the last step (NPT only); None: constant temperature
    final_temperature_K: float | None = None

    @property
    def n_steps(self) -> int:
        return int(round(self.length_ps * 1000.0 / self.timestep_fs))

    def target_K(self, step: int) -> float:
        """The thermostat's target temperature at ``step``."""
        if self.final_temperature_K is None:
            return self.temperature_K
        return self.temperature_K + (self.final_temperature_K - self.temperature_K) * min(step, self.n_steps) / max(
            self.n_steps, 1)


@dataclass
class MDResult:
    """Outcome of one trajectory (``result.json``)."""

    ensemble: str
    t_stab_ps: float
    length_ps: float
    completed: bool
    failure: dict | None
    n_steps: int
    n_frames: int
    wall_s: float
    ns_per_day: float
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def stable(self) -> bool:
        return self.failure is None


def _zero_momentum_mtk(atoms: Atoms, timestep: float, temperature_K: float, pressure_au: float, tdamp: float,
                       pdamp: float):
    """ASE's isotropic MTK NPT (Martyna, Tobias, Klein, J. Chem. Phys. 101, 4177 (1994)) for a system whose
    total momentum is zero, so with N_f = 3N - 3 kinetic degrees of freedom instead of ASE's 3N.

    ASE's Nosé-Hoover chain drives sum p²/m to 3N kT; the total momentum is conserved (zero), so the kinetic
    temperature counted over 3N - 3 degrees of freedom (the thermo table's) would average 3N/(3N - 3) T
    (503 K for 160 atoms at 500 K; SCIENCE.md §5). Only passing T (3N - 3)/(3N) to the integrator would
    fix the kinetic mean but lower the volume: the barostat's force on the volume momentum contains the
    kinetic energy. Here, with the MTK equations for N_f = 3N - 3 and 3N position coordinates (the centre
    of mass still moves with the cell):

    - the first chain element targets N_f kT (a chain built for N - 1 "atoms" at the true T; the later
      elements and the barostat's chain keep the true kT);
    - the momenta and the volume momentum couple through alpha = (3N + 3)/N_f = (N + 1)/(N - 1) (ASE:
      1 + 1/N = (3N + 3)/(3N)): d p/dt = F - alpha (p_eps/W) p, d p_eps/dt = 3V (P - P_ext) + (alpha - 1)
      sum p²/m with P including the kinetic term sum p²/m / (3V). This keeps the conserved energy and makes
      the invariant measure the isothermal-isobaric one at T (V^N exp(-PV/kT) dV for an ideal gas).
    """
    from ase.md.nose_hoover_chain import IsotropicMTKNPT, NoseHooverChainThermostat
    from scipy.special import exprel

    class ZeroMomentumMTKNPT(IsotropicMTKNPT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            n = self._num_atoms_global
            if n < 2:
                raise ValueError("NPT with a fixed total momentum needs at least two atoms")
            th = self._thermostat
            self._thermostat = NoseHooverChainThermostat(num_atoms_global=n - 1, masses=self.masses,
                                                         temperature_K=self._temperature_K, tdamp=th._tdamp,
                                                         tchain=th._tchain, tloop=th._tloop)
            self._alpha = (n + 1) / (n - 1)

        def _integrate_p(self, delta: float) -> None:
            x = self._alpha * self._p_eps * delta / self._barostat.W
            forces = self._get_forces()
            self._p = self._p * np.exp(-x) + delta * forces * exprel(-x)

        def _integrate_p_cell(self, delta: float) -> None:
            pressure, volume = self._get_pressure(), self._get_volume()
            kinetic2 = np.sum(self._p ** 2 / self.masses)
            self._p_eps += delta * (3 * volume * (pressure - self._pressure_au) + (self._alpha - 1) * kinetic2)

    return ZeroMomentumMTKNPT(atoms, timestep, temperature_K=temperature_K, pressure_au=pressure_au, tdamp=tdamp,
                              pdamp=pdamp)


def set_target_temperature(dyn, temperature_K: float) -> None:
    """Move an MTK NPT integrator's target temperature (its thermostat's and barostat's kT; the chain masses keep
    the values of the starting temperature, as in a heating ramp's usual practice)."""
    kT = units.kB * temperature_K
    parts = [dyn, getattr(dyn, "_thermostat", None), getattr(dyn, "_barostat", None)]
    if not all(hasattr(o, "_kT") for o in parts):
        raise ValueError(f"{type(dyn).__name__}: a temperature ramp needs the MTK NPT integrator")
    for o in parts:
        o._kT = kT
    dyn._temperature_K = temperature_K


def make_dynamics(atoms: Atoms, s: RunSettings, rng: np.random.Generator):
    """The ASE integrator for the settings (MTK NPT samples the true NPT volume distribution)."""
    dt = s.timestep_fs * units.fs
    if s.ensemble == "npt":
        # run_md zeroes the total momentum and MTK conserves it: 3N - 3 kinetic degrees of freedom
        return _zero_momentum_mtk(atoms, dt, s.temperature_K, s.pressure_atm * ATM_TO_EV_PER_A3,
                                  s.tdamp_fs * units.fs, s.pdamp_fs * units.fs)
    from ase.constraints import FixCom

    # NVT: fix the centre of mass with a constraint (ASE >= 3.28; Langevin's fixcm=True is deprecated
    # and biased), so both thermostats count 3N - 3 degrees of freedom, as the thermo table does
    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])
    if s.thermostat == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, dt, temperature_K=s.temperature_K, taut=s.tdamp_fs * units.fs, rng=rng)
    from ase.md.langevin import Langevin

    return Langevin(atoms, dt, temperature_K=s.temperature_K, friction=s.friction_per_ps / (1000 * units.fs),
                    rng=rng, fixcm=False)


def thermo_pressure_GPa(stress, kinetic_eV: float, volume_A3: float, *, kinetic: bool = True) -> float:
    """The thermo table's ``pressure_GPa``: the instantaneous pressure, −tr(σ)/3 of the calculator's stress (the
    configurational part) plus the kinetic term 2K/(3V) (ASE's ``include_ideal_gas``), the pressure the NPT
    barostat holds at the target. ``kinetic`` False: the configurational part alone, what runs started before
    2026-12-08 recorded (a run resumed from such a checkpoint keeps it, so one table has one meaning; its
    ``result.json`` says which in ``meta.pressure``)."""
    st = np.asarray(stress, dtype=float)  # Voigt (xx, yy, zz, yz, xz, xy) or 3x3, eV/Å³
    p = -float(np.mean(st[:3] if st.ndim == 1 else np.diag(st)))
    if kinetic:
        p += 2.0 * kinetic_eV / (3.0 * volume_A3)
    return p * EV_PER_A3_TO_GPA


#: ``meta.pressure`` of a run's result: what its thermo table's ``pressure_GPa`` holds
PRESSURE_MEANING = {True: "total (configurational + kinetic)", False: "configurational only (no kinetic term)"}


_SKIP = {"atoms", "observers", "trajectory", "logfile", "comm", "max_steps", "rng"}


def _state(obj) -> dict[str, Any]:
    out = {}
    for k, v in vars(obj).items():
        if k in _SKIP:
            continue
        if isinstance(v, (np.ndarray, float, int, np.generic)) and not isinstance(v, bool):
            out[k] = np.array(v, copy=True) if isinstance(v, np.ndarray) else v
        elif k in ("_thermostat", "_barostat"):
            out[k] = _state(v)
    return out


def _restore(obj, state: dict[str, Any]) -> None:
    for k, v in state.items():
        if isinstance(v, dict):
            _restore(getattr(obj, k), v)
        else:
            setattr(obj, k, v)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def read_result(outdir: str | Path) -> MDResult | None:
    """The finished trajectory's result in ``outdir`` (``result.json``), or None if it has not finished."""
    path = Path(outdir) / "result.json"
    return MDResult(**json.loads(path.read_text())) if path.exists() else None


def run_md(atoms: Atoms, calculator: Calculator, settings: RunSettings, *, outdir: str | Path, seed: int = 0,
           detectors: Sequence = (), meta: dict | None = None, progress: bool = False,
           stop_after_steps: int | None = None) -> MDResult:
    """Run (or resume, or return the finished) trajectory in ``outdir``.

    Parameters
    ----------
    atoms
        Starting frame (copied; with ``mol_id`` when bond detectors are used).
    calculator
        Any ASE calculator (a committee gives ``sigma2_F`` in the thermo table).
    settings
        Ensemble, temperature, length, timestep, coupling and output intervals.
    seed
        Seeds initial velocities and the thermostat's random numbers.
    detectors
        Failure detectors; the first event ends the run and sets ``t_stab``.
    stop_after_steps
        Stop (without finishing) after this many steps in this call: a controlled interruption
        used by tests of restart.
    """
    from harness.md.lock import run_lock

    with run_lock(outdir):  # one writer per run directory (a second process is refused: RunBusy)
        return _run_md(atoms, calculator, settings, outdir=outdir, seed=seed, detectors=detectors, meta=meta,
                       stop_after_steps=stop_after_steps)


def _run_md(atoms: Atoms, calculator: Calculator, settings: RunSettings, *, outdir: str | Path, seed: int,
            detectors: Sequence, meta: dict | None, stop_after_steps: int | None) -> MDResult:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    result_path = outdir / "result.json"
    ckpt_path = outdir / "checkpoint.pkl"
    finished = read_result(outdir)
    if finished is not None:
        ckpt_path.unlink(missing_ok=True)  # killed between writing the result and removing its checkpoint
        return finished
    s = settings
    meta = dict(meta or {})
    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    for det in detectors:
        det.reset(atoms)
    bond = next((d for d in detectors if isinstance(d, BondStretch)), None)
    observed_names = tuple(dict.fromkeys(n for d in detectors for n in getattr(d, "observed_names", ())))
    for stale in [*outdir.glob("*.tmp"), *outdir.glob(".*.tmp"), *outdir.glob("*.parts/.*.tmp")]:
        stale.unlink(missing_ok=True)  # a write killed half-way (this run's folder: its task lock is held)
    h5 = H5MDWriter(outdir / "trajectory.h5md", atoms, observables=observed_names)
    thermo = ThermoTable(outdir / "thermo.parquet")
    dt_ps = s.timestep_fs / 1000.0
    ck = None
    if ckpt_path.exists():
        with open(ckpt_path, "rb") as fh:
            ck = pickle.load(fh)
        if h5.n_frames < ck["n_frames"]:  # frames lost (an older harness's file, killed mid-write)
            logger.warning("%s: %d of the checkpoint's %d frames are readable; the run starts again", outdir,
                           h5.n_frames, ck["n_frames"])
            ck = None
    if ck is not None:
        atoms.set_cell(ck["cell"], scale_atoms=False)
        atoms.positions = ck["positions"]
        atoms.set_momenta(ck["momenta"], apply_constraint=False)
        rng.bit_generator.state = ck["rng"]
        dyn = make_dynamics(atoms, s, rng)
        _restore(dyn, ck["dyn"])
        start = ck["step"]
        h5.truncate(ck["n_frames"])
        thermo.truncate_after(start)
        wall_before = ck["wall_s"]
        resumed_at = [*ck.get("resumed_at", []), start]
        kinetic_pressure = bool(ck.get("kinetic_pressure", False))  # a checkpoint of before: its meaning kept
        logger.info("resuming %s at step %d", outdir, start)
    else:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

        MaxwellBoltzmannDistribution(atoms, temperature_K=s.temperature_K, rng=rng)
        Stationary(atoms)
        dyn = make_dynamics(atoms, s, rng)  # after the velocities: MTK copies momenta at construction
        start = 0
        wall_before = 0.0
        resumed_at = []
        kinetic_pressure = True
        h5.truncate(0)
        thermo.reset()
    failure: FailureEvent | None = None
    # the last frames at the detectors' interval, written only if one of them ends the run (issue #32)
    before = PreFailureFrames(atoms, min(d.interval for d in detectors)) if detectors else None
    # the centre-of-mass momentum is zeroed at the start and conserved (Langevin fixcm, NHC/MTK and
    # Bussi scale momenta): 3N - 3 kinetic degrees of freedom
    n_dof = max(3 * len(atoms) - 3, 1)
    t0 = time.perf_counter()
    n_total = s.n_steps

    def record(step: int, observed: dict[str, float] | None = None) -> None:
        res = atoms.calc.results if atoms.calc is not None else {}
        ekin = atoms.get_kinetic_energy()
        row = {"step": step, "time_ps": step * dt_ps,
               "temperature_K": 2.0 * ekin / (n_dof * units.kB),
               "potential_eV": float(res.get("energy", np.nan)), "kinetic_eV": float(ekin)}
        if atoms.pbc.all():
            row["volume_A3"] = float(atoms.get_volume())
            row["density_g_cm3"] = density_g_cm3(atoms)
            if "stress" in res:
                row["pressure_GPa"] = thermo_pressure_GPa(res["stress"], ekin, row["volume_A3"],
                                                          kinetic=kinetic_pressure)
        if bond is not None:
            row["max_bond_stretch_A"] = float(np.max(bond.stretch(atoms)))
        if "sigma2_F" in res:
            row["sigma2_F"] = float(res["sigma2_F"])
        if s.final_temperature_K is not None:
            row["target_temperature_K"] = s.target_K(step)
        row.update(observed or {})
        thermo.append(row)

    def checkpoint(step: int) -> None:
        h5.flush()
        thermo.flush()
        ck = {"step": step, "positions": atoms.positions.copy(), "momenta": atoms.get_momenta(),
              "cell": np.array(atoms.cell[:]), "dyn": _state(dyn), "rng": rng.bit_generator.state,
              "n_frames": h5.n_frames, "wall_s": wall_before + time.perf_counter() - t0, "resumed_at": resumed_at,
              "kinetic_pressure": kinetic_pressure}
        tmp = ckpt_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(ck, fh)
        os.replace(tmp, ckpt_path)

    from harness.deadline import deadline

    stop_at = deadline()  # a piece's walltime: checkpoint and stop there (resumed by the next piece)
    try:
        if ck is None:  # a fresh start (a run resumed from its step-0 checkpoint already has frame 0 and its row)
            atoms.get_forces()
            record(0)
            h5.write(atoms, 0, 0.0)
            checkpoint(0)
        step = start
        interrupted = False
        ramp = s.final_temperature_K is not None
        if ramp and s.ensemble != "npt":
            raise ValueError("a temperature ramp runs NPT only")
        while step < n_total:
            if ramp:
                set_target_temperature(dyn, s.target_K(step))
            try:
                dyn.step()
            except Exception as exc:  # the calculator raised: a recorded failure, outputs kept
                step += 1
                failure = FailureEvent("calculator_error", step, step * dt_ps, math.nan, 0.0,
                                       f"{type(exc).__name__}: {exc}"[:500])
                break
            step += 1
            t_ps = step * dt_ps
            observed: dict[str, float] = {}
            for det in detectors:
                if step % det.interval == 0:
                    ev = det.check(atoms, step, t_ps)
                    if hasattr(det, "observed"):
                        observed.update(det.observed())
                    if ev is not None:
                        failure = ev
                        break
            if before is not None:
                before.observe(atoms, step, t_ps, force=failure is not None)
            if failure is not None:
                record(step, observed)
                h5.write(atoms, step, t_ps, observed)
                break
            if step % s.thermo_interval == 0 or observed:
                record(step, observed)
            if step % s.frame_interval == 0 or observed:
                h5.write(atoms, step, t_ps, observed)
            if step % s.checkpoint_interval == 0:
                checkpoint(step)
            if stop_after_steps is not None and step - start >= stop_after_steps:
                interrupted = True
                break
            if stop_at is not None and time.time() >= stop_at and step < n_total:
                checkpoint(step)
                interrupted = True
                logger.info("%s: walltime reached at step %d; checkpointed", outdir, step)
                break
        if interrupted:
            h5.close()
            thermo.close()
            return MDResult(s.ensemble, step * dt_ps, s.length_ps, False, None, step, h5.n_frames,
                            wall_before + time.perf_counter() - t0, 0.0, asdict(s), meta)
        h5.flush()
        thermo.close()
    finally:
        try:
            h5.close()
        except Exception:  # already closed
            pass
    if failure is not None and before is not None:
        before.write(outdir)
    wall = wall_before + time.perf_counter() - t0
    simulated = step * dt_ps
    result = MDResult(
        ensemble=s.ensemble, t_stab_ps=failure.time_ps if failure else simulated, length_ps=s.length_ps,
        completed=True, failure=failure.as_dict() if failure else None, n_steps=step, n_frames=h5.n_frames,
        wall_s=round(wall, 3), ns_per_day=(simulated / 1000) / (wall / 86400) if wall > 0 else 0.0,
        settings=asdict(s), meta={**meta, "seed": seed, "calculator": getattr(calculator, "provenance_name", type(calculator).__name__),
                                  "context": run_context(("core", *MLIP_GROUPS)),
                                  "pressure": PRESSURE_MEANING[kinetic_pressure],
                                  **({"resumed_at_steps": resumed_at} if resumed_at else {})})
    _write_json(result_path, asdict(result))
    ckpt_path.unlink(missing_ok=True)
    return result
