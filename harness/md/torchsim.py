"""The TorchSim engine (issue #34): validation MD of many trajectories with the integrators on the model's device.

:mod:`harness.md.batched` keeps one ASE integrator per trajectory on the host and batches only the model call;
TorchSim (``torch-sim-atomistic``) keeps positions, momenta, cells and the integrator's variables of every
trajectory of a batch in one set of tensors and advances them together. This module runs the harness's
trajectories that way, with what a harness run has — per trajectory: its own start, seed, temperature,
detectors, failure time, H5MD/Parquet outputs (the layout of :func:`harness.md.runner.run_md`), checkpoint and
``result.json``; a failed trajectory leaves the batch and the others go on; a piece's walltime checkpoints every
trajectory and a rerun resumes each from its own checkpoint. The host sees a trajectory only at its output,
detector and checkpoint steps.

Integrators are adopted one by one, only where they pass the ensemble tests the ASE path passes
(``tests/test_torchsim.py``: the kinetic-energy distribution of each trajectory of a batch at its own temperature,
the ideal-gas NPT volume distribution); :data:`INTEGRATORS` records what was measured, and a protocol that needs a
refused one is refused with the measured reason (:class:`EngineRefused`), never run on a wrong ensemble.

Models: MACE through TorchSim's own ``MaceModel`` (graph, forces and stress on the device); anything else
(DeePMD: equal-size structures as frames of one ``DeepPot.eval``; GAP; stand-ins) through :class:`EvaluatorModel`,
which hands the batch to a :class:`harness.md.batched.BatchEvaluator` (one call per step, through the host).

Random numbers: TorchSim draws the thermostat noise of a batch from torch's generator of the device, seeded here
from the trajectories' seeds; a trajectory's noise therefore depends on its batch (statistically equivalent,
not the bitwise ASE trajectory). Its initial velocities are its own (numpy, its seed, as in ``run_md``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms, units

from harness.errors import InputError
from harness.md.batched import BatchEvaluator, BatchJob
from harness.md.detectors import BondStretch, FailureEvent
from harness.md.prefailure import PreFailureFrames
from harness.md.runner import PRESSURE_MEANING, MDResult, RunSettings, _write_json, read_result, thermo_pressure_GPa
from harness.h5md import H5MDWriter, ThermoTable
from harness.provenance import MLIP_GROUPS, run_context
from harness.units import ATM_TO_EV_PER_A3, density_g_cm3

__all__ = ["Integrator", "INTEGRATORS", "EngineRefused", "integrator_for", "EvaluatorModel", "run_torchsim",
           "torchsim_version", "routed_model"]

logger = logging.getLogger(__name__)


class EngineRefused(InputError):
    """The TorchSim engine cannot run these settings correctly (the integrator failed the ensemble tests, or
    TorchSim has none for them)."""


@dataclass(frozen=True)
class Integrator:
    """One TorchSim integrator as the harness uses it, with what its ensemble tests measured."""

    name: str  #: TorchSim's function (``torch_sim.integrators``)
    ensemble: str  #: nvt / npt
    runs: str  #: the harness setting it stands for
    momentum_conserved: bool  #: the total momentum is conserved (3N - 3 kinetic degrees of freedom) or not (3N)
    adopted: bool
    measured: str  #: what tests/test_torchsim.py measured; the reason when refused


#: every (ensemble, harness thermostat) the protocols can ask for, and TorchSim's integrator for it, with what
#: tests/test_torchsim.py measured on torch-sim-atomistic 0.3.0 (the newest release for Python 3.11; 0.4 and later
#: need Python >= 3.12): a batch of two trajectories, each at its own temperature where the integrator allows it
INTEGRATORS: dict[tuple[str, str], Integrator | None] = {
    ("nvt", "langevin"): Integrator(
        "nvt_langevin", "nvt", "NVT, Langevin thermostat (friction_per_ps)", False, True,
        "BAOAB with per-trajectory temperatures: Lennard-Jones argon (32 atoms) at 40 and 44 K in one batch, "
        "kinetic energies every 100 steps of 10 fs follow Gamma(3N/2, kT) of each trajectory's own T (KS p 0.22, "
        "0.20; read as 3N - 3 degrees of freedom: p 1e-6, 1e-5; the other trajectory's T: p < 1e-17): the total "
        "momentum is not conserved (per-atom noise); physical_validation: both kinetic-energy distributions and "
        "the 40/44 K ensemble check pass"),
    # the harness's default NVT thermostat: TorchSim 0.3 has no stochastic velocity rescaling
    ("nvt", "bussi"): None,
    ("npt", "mtk"): Integrator(
        "npt_nose_hoover", "npt", "NPT, isotropic MTK barostat with Nose-Hoover chains (the ASE path's)", True,
        False, "one thermostat chain and one barostat chain for the whole batch: a batch of two raises in the "
        "chain update (RuntimeError: expand ... the number of sizes provided (0)), with one temperature or two"),
}

#: TorchSim integrators measured and not standing for any harness setting (recorded, never used)
MEASURED_OTHERS: dict[str, Integrator] = {
    "nvt_nose_hoover": Integrator(
        "nvt_nose_hoover", "nvt", "NVT, Nose-Hoover chain", True, False,
        "one chain for the whole batch: per-trajectory temperatures fail at the start (size mismatch of the chain "
        "masses) and a batch of two at one temperature raises in the chain update"),
    "npt_langevin": Integrator(
        "npt_langevin", "npt", "NPT, Langevin piston (flexible cell)", False, False,
        "ideal gas (N = 8) at 300 and 450 K, 1000 atm, 40 000 steps of 5 fs: the volume distribution is not "
        "Gamma(N + 1, kT/P) (mean 0.976 and 0.923 of the exact one; KS p 2e-8, 2e-29)"),
}


def torchsim_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torch-sim-atomistic")
    except Exception:
        return None


def integrator_for(settings: RunSettings) -> Integrator:
    """The adopted TorchSim integrator for a trajectory's settings, or :class:`EngineRefused` with the reason."""
    key = (settings.ensemble, settings.thermostat if settings.ensemble == "nvt" else "mtk")
    it = INTEGRATORS.get(key)
    if it is None:
        raise EngineRefused(f"engine torchsim: TorchSim {torchsim_version() or '(not installed)'} has no integrator "
                            f"for {key[0].upper()} with the {key[1]} thermostat; run it with engine ase")
    if not it.adopted:
        raise EngineRefused(f"engine torchsim: {it.name} (for {it.runs}) is refused: {it.measured}; run it with "
                            "engine ase")
    if settings.final_temperature_K is not None:
        raise EngineRefused("engine torchsim: heating ramps run with engine ase")
    return it


def _model_base():
    from torch_sim.models.interface import ModelInterface

    return ModelInterface


class EvaluatorModel:
    """A TorchSim model from a harness :class:`~harness.md.batched.BatchEvaluator` (DeePMD, GAP, stand-ins): the
    batch's structures go to the evaluator in one call (through the host) and come back as TorchSim tensors."""

    def __new__(cls, evaluator: BatchEvaluator, symbols: Sequence[Sequence[str]] | None = None, *,
                device: str = "cpu", dtype: str = "float64"):
        import torch

        base = _model_base()

        class _EvaluatorModel(base):
            def __init__(self):
                super().__init__()
                self._device = torch.device(device)
                self._dtype = getattr(torch, dtype)
                self._compute_stress = True
                self._compute_forces = True
                self._memory_scales_with = "n_atoms"
                self.evaluator = evaluator
                self.calls = 0

            def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
                cells = state.cell.detach().transpose(-1, -2).cpu().numpy()  # TorchSim: column vectors; ASE: rows
                pos = state.positions.detach().cpu().numpy()
                numbers = state.atomic_numbers.detach().cpu().numpy()
                idx = state.system_idx.detach().cpu().numpy()
                frames = []
                for i in range(len(cells)):
                    sel = idx == i
                    frames.append(Atoms(numbers=numbers[sel], positions=pos[sel], cell=cells[i], pbc=True))
                results = self.evaluator.evaluate(frames)
                self.calls += 1
                energy = np.array([float(r["energy"]) for r in results])
                forces = np.concatenate([np.asarray(r["forces"], dtype=float) for r in results])
                from ase.stress import voigt_6_to_full_3x3_stress

                stress = np.stack([voigt_6_to_full_3x3_stress(np.asarray(r["stress"], dtype=float))
                                   if "stress" in r else np.zeros((3, 3)) for r in results])
                as_t = lambda a: torch.as_tensor(a, device=self._device, dtype=self._dtype)  # noqa: E731
                return {"energy": as_t(energy), "forces": as_t(forces), "stress": as_t(stress)}

        return _EvaluatorModel()


def routed_model(models: Sequence, owners: Sequence[int]):
    """One TorchSim model over several (the members of committees in one batch): system ``k`` of the batch is
    evaluated by ``models[owners[k]]``, one call per model and step. ``keep(indices)`` follows the batch when
    trajectories leave it; ``probe(state, k)`` evaluates system ``k`` alone with its own model."""
    import torch

    if len(models) == 1:
        return models[0]
    base = _model_base()
    first = models[0]

    class _Routed(base):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.ModuleList([m for m in models])
            self.owners = list(owners)
            self._device, self._dtype = first.device, first.dtype
            self._compute_stress, self._compute_forces = True, True
            self._memory_scales_with = getattr(first, "memory_scales_with", "n_atoms")

        def keep(self, indices: Sequence[int]) -> None:
            self.owners = [self.owners[k] for k in indices]

        def probe(self, state, k: int):
            return self.inner[self.owners[k]](state[[k]])

        def forward(self, state, **kwargs):
            n_sys = state.n_systems
            energy = torch.zeros(n_sys, device=self._device, dtype=self._dtype)
            forces = torch.zeros_like(state.positions)
            stress = torch.zeros((n_sys, 3, 3), device=self._device, dtype=self._dtype)
            owners = torch.as_tensor(self.owners, device=state.system_idx.device)
            for m, model in enumerate(self.inner):
                systems = [k for k, o in enumerate(self.owners) if o == m]
                if not systems:
                    continue
                out = model(state[systems])
                sel = torch.as_tensor(systems, device=self._device)
                energy[sel] = out["energy"].to(self._dtype)
                forces[owners[state.system_idx] == m] = out["forces"].to(self._dtype)
                if out.get("stress") is not None:
                    stress[sel] = out["stress"].to(self._dtype)
            return {"energy": energy, "forces": forces, "stress": stress}

    return _Routed()


def build_integrator(it: Integrator, model, s: RunSettings, kT):
    """TorchSim's (init, update) for the integrator under the run settings. ``kT``: per-system tensor (eV)."""
    import torch
    from torch_sim.integrators import npt, nvt

    dt = torch.tensor(s.timestep_fs * units.fs, device=model.device, dtype=model.dtype)
    if it.name == "nvt_langevin":
        gamma = torch.tensor(s.friction_per_ps / (1000 * units.fs), device=model.device, dtype=model.dtype)
        return nvt.nvt_langevin(model, dt=dt, kT=kT, gamma=gamma)
    if it.name == "nvt_nose_hoover":
        init, update = nvt.nvt_nose_hoover(model=model, dt=dt, kT=kT)
        tau = torch.tensor(s.tdamp_fs * units.fs, device=model.device, dtype=model.dtype)
        return (lambda state: init(state, kT=kT, tau=tau)), update
    pressure = torch.tensor(s.pressure_atm * ATM_TO_EV_PER_A3, device=model.device, dtype=model.dtype)
    if it.name == "npt_langevin":
        alpha = torch.tensor(1.0 / (s.tdamp_fs * units.fs), device=model.device, dtype=model.dtype)
        b_tau = torch.tensor(s.pdamp_fs * units.fs, device=model.device, dtype=model.dtype)
        return npt.npt_langevin(model, dt=dt, kT=kT, external_pressure=pressure, alpha=alpha, b_tau=b_tau)
    if it.name == "npt_nose_hoover":
        init, update = npt.npt_nose_hoover(model=model, kT=kT, external_pressure=pressure, dt=dt)
        t_tau = torch.tensor(s.tdamp_fs * units.fs, device=model.device, dtype=model.dtype)
        b_tau = torch.tensor(s.pdamp_fs * units.fs, device=model.device, dtype=model.dtype)
        return (lambda state: init(state, kT=kT, t_tau=t_tau, b_tau=b_tau)), update
    raise ValueError(f"unknown TorchSim integrator {it.name}")


CHECKPOINT = "checkpoint.pkl"


class _Trajectory:
    """One trajectory of a TorchSim batch: its host-side atoms, detectors, writers and counters."""

    def __init__(self, index: int, job: BatchJob, settings: RunSettings, n_dof: int):
        self.index, self.job, self.s = index, job, settings
        self.outdir = Path(job.outdir)
        self.atoms = job.atoms.copy()
        self.atoms.calc = None
        self.detectors = list(job.detectors)
        for det in self.detectors:
            det.reset(self.atoms)
        self.bond = next((d for d in self.detectors if isinstance(d, BondStretch)), None)
        names = tuple(dict.fromkeys(n for d in self.detectors for n in getattr(d, "observed_names", ())))
        for stale in [*self.outdir.glob("*.tmp"), *self.outdir.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        self.h5 = H5MDWriter(self.outdir / "trajectory.h5md", self.atoms, observables=names)
        self.thermo = ThermoTable(self.outdir / "thermo.parquet")
        self.before = PreFailureFrames(self.atoms, min(d.interval for d in self.detectors)) if self.detectors \
            else None
        self.n_dof = n_dof
        self.step = self.start = 0
        self.wall_before = 0.0
        self.resumed_at: list[int] = []
        self.kinetic_pressure = True  # thermo pressure_GPa with its kinetic term (runner.thermo_pressure_GPa)
        self.failure: FailureEvent | None = None
        self.energy = math.nan
        self.stress: np.ndarray | None = None
        self.extra: dict[str, np.ndarray] = {}
        self.rng_state = None

    @property
    def dt_ps(self) -> float:
        return self.s.timestep_fs / 1000.0

    def load_checkpoint(self) -> bool:
        import pickle

        path = self.outdir / CHECKPOINT
        if not path.exists():
            return False
        with open(path, "rb") as fh:
            ck = pickle.load(fh)
        if ck.get("engine") != "torchsim":
            logger.warning("%s: its checkpoint is another engine's; the run starts again with TorchSim", self.outdir)
            return False
        if self.h5.n_frames < ck["n_frames"]:
            logger.warning("%s: %d of the checkpoint's %d frames are readable; the run starts again", self.outdir,
                           self.h5.n_frames, ck["n_frames"])
            return False
        self.atoms.set_cell(ck["cell"], scale_atoms=False)
        self.atoms.positions = ck["positions"]
        self.atoms.set_momenta(ck["momenta"], apply_constraint=False)
        self.step = self.start = ck["step"]
        self.h5.truncate(ck["n_frames"])
        self.thermo.truncate_after(self.start)
        self.wall_before = ck["wall_s"]
        self.resumed_at = [*ck.get("resumed_at", []), self.start]
        self.kinetic_pressure = bool(ck.get("kinetic_pressure", False))  # a checkpoint of before: its meaning kept
        self.extra = ck.get("extra", {})
        self.rng_state = ck.get("rng")
        logger.info("resuming %s at step %d (TorchSim)", self.outdir, self.start)
        return True

    def fresh(self) -> None:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

        rng = np.random.default_rng(self.job.seed)
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=self.s.temperature_K, rng=rng)
        Stationary(self.atoms)
        self.h5.truncate(0)
        self.thermo.reset()

    def needs_host(self, step: int) -> bool:
        s = self.s
        return (step >= s.n_steps or step % s.thermo_interval == 0 or step % s.frame_interval == 0
                or step % s.checkpoint_interval == 0 or any(step % d.interval == 0 for d in self.detectors))

    def record(self, step: int, observed: dict[str, float] | None = None) -> None:
        atoms = self.atoms
        ekin = atoms.get_kinetic_energy()
        row = {"step": step, "time_ps": step * self.dt_ps, "temperature_K": 2.0 * ekin / (self.n_dof * units.kB),
               "potential_eV": float(self.energy), "kinetic_eV": float(ekin),
               "volume_A3": float(atoms.get_volume()), "density_g_cm3": density_g_cm3(atoms)}
        if self.stress is not None:
            row["pressure_GPa"] = thermo_pressure_GPa(self.stress, ekin, row["volume_A3"], kinetic=self.kinetic_pressure)
        if self.bond is not None:
            row["max_bond_stretch_A"] = float(np.max(self.bond.stretch(atoms)))
        row.update(observed or {})
        self.thermo.append(row)

    def checkpoint(self, wall_s: float, rng) -> None:
        import pickle

        self.h5.flush()
        self.thermo.flush()
        ck = {"engine": "torchsim", "step": self.step, "positions": self.atoms.positions.copy(),
              "momenta": self.atoms.get_momenta(), "cell": np.array(self.atoms.cell[:]), "extra": self.extra,
              "rng": rng, "n_frames": self.h5.n_frames, "wall_s": self.wall_before + wall_s,
              "resumed_at": self.resumed_at, "kinetic_pressure": self.kinetic_pressure}
        path = self.outdir / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(ck, fh)
        os.replace(tmp, path)

    def close(self) -> None:
        for w in (self.h5, self.thermo):
            try:
                w.close()
            except Exception:  # already closed
                pass

    def finish(self, wall_s: float, meta: dict) -> MDResult:
        self.h5.flush()
        self.close()
        if self.failure is not None and self.before is not None:
            self.before.write(self.outdir)
        wall = self.wall_before + wall_s
        simulated = self.step * self.dt_ps
        f = self.failure
        result = MDResult(ensemble=self.s.ensemble, t_stab_ps=f.time_ps if f else simulated,
                          length_ps=self.s.length_ps, completed=True, failure=f.as_dict() if f else None,
                          n_steps=self.step, n_frames=self.h5.n_frames, wall_s=round(wall, 3),
                          ns_per_day=(simulated / 1000) / (wall / 86400) if wall > 0 else 0.0,
                          settings=asdict(self.s), meta={**self.job.meta, **meta, "seed": self.job.seed,
                                                         "pressure": PRESSURE_MEANING[self.kinetic_pressure],
                                                         **({"resumed_at_steps": self.resumed_at}
                                                            if self.resumed_at else {})})
        _write_json(self.outdir / "result.json", asdict(result))
        (self.outdir / CHECKPOINT).unlink(missing_ok=True)
        return result

    def interrupted(self, wall_s: float) -> MDResult:
        self.close()
        return MDResult(self.s.ensemble, self.step * self.dt_ps, self.s.length_ps, False, None, self.step,
                        self.h5.n_frames, self.wall_before + wall_s, 0.0, asdict(self.s), dict(self.job.meta))


def _batch_seed(trajs: Sequence[_Trajectory]) -> int:
    text = "/".join(f"{t.job.seed}:{t.start}" for t in trajs)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def _rng_get(device) -> Any:
    import torch

    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _rng_set(device, state) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _system_extras(state) -> list[str]:
    """The per-system integrator variables a checkpoint keeps besides cell, energy and stress."""
    return sorted(k for k in type(state)._system_attributes if k not in ("cell", "energy", "stress"))


def run_torchsim(jobs: Sequence[BatchJob], model, *, stop_after_steps: int | None = None) -> list[MDResult | BaseException]:
    """Run (or resume, or return) every job's trajectory in one TorchSim batch on ``model`` (a TorchSim model:
    TorchSim's ``MaceModel``, an :class:`EvaluatorModel`).

    The jobs share their settings apart from the temperature. Returns one entry per job, in order: its
    :class:`MDResult`, or the exception that stopped it before it could record a failure. ``stop_after_steps``
    interrupts every trajectory after that many steps of this call (tests of restart)."""
    from contextlib import ExitStack

    from harness.deadline import deadline
    from harness.md.lock import run_lock

    if not jobs:
        return []
    base = jobs[0].settings
    from dataclasses import replace

    for i, job in enumerate(jobs):
        if replace(job.settings, temperature_K=base.temperature_K) != base:
            raise ValueError(f"TorchSim batch job {i}: its settings differ from job 0's in more than the temperature")
    it = integrator_for(base)
    out: list[MDResult | BaseException | None] = [None] * len(jobs)
    with ExitStack() as stack:
        trajs: list[_Trajectory] = []
        for i, job in enumerate(jobs):
            Path(job.outdir).mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(job.outdir))
            done = read_result(job.outdir)
            if done is not None:
                (Path(job.outdir) / CHECKPOINT).unlink(missing_ok=True)
                out[i] = done
                continue
            n = len(job.atoms)
            t = _Trajectory(i, job, job.settings, 3 * n - 3 if it.momentum_conserved else 3 * n)
            stack.callback(t.close)
            if not t.load_checkpoint():
                t.fresh()
            trajs.append(t)
        if trajs:
            _integrate(trajs, it, model, base, out, stop_after_steps, deadline())
    return out  # type: ignore[return-value]


def _integrate(trajs: list[_Trajectory], it: Integrator, model, base: RunSettings, out: list, stop_after_steps,
               stop_at) -> None:
    import torch
    import torch_sim as ts
    from torch_sim.integrators.md import MDState

    device, dtype = model.device, model.dtype
    sim = ts.initialize_state([t.atoms for t in trajs], device=device, dtype=dtype)
    momenta = torch.as_tensor(np.concatenate([t.atoms.get_momenta() for t in trajs]), device=device, dtype=dtype)
    zeros_e = torch.zeros(len(trajs), device=device, dtype=dtype)
    start = MDState(positions=sim.positions, momenta=momenta, energy=zeros_e, forces=torch.zeros_like(momenta),
                    masses=sim.masses, cell=sim.cell, pbc=sim.pbc, system_idx=sim.system_idx,
                    atomic_numbers=sim.atomic_numbers)
    kT = torch.tensor([units.kB * t.s.temperature_K for t in trajs], device=device, dtype=dtype)
    routed = model
    model = _keeping_stress(model)
    init, update = build_integrator(it, model, base, kT)
    resumed = [t for t in trajs if t.rng_state is not None]
    torch.manual_seed(_batch_seed(trajs))
    state = init(start)
    if resumed:  # the batch's noise continues where the first resumed trajectory's batch left it
        _rng_set(device, resumed[0].rng_state)
    for k, t in enumerate(trajs):  # integrator variables a checkpoint kept (none for the adopted integrators)
        for name, value in t.extra.items():
            getattr(state, name)[k] = torch.as_tensor(value, device=device, dtype=dtype)
    meta = {"engine": "torchsim", "integrator": it.name, "torchsim": torchsim_version(),
            "calculator": type(model).__name__, "context": run_context(("core", *MLIP_GROUPS))}
    t0 = time.perf_counter()
    active = list(trajs)
    host = _Host(state, model)
    for k, t in enumerate(active):  # frame and row 0 of a fresh start
        if t.step == 0:
            host.pull(k, t)
            t.record(0)
            t.h5.write(t.atoms, 0, 0.0)
            t.checkpoint(0.0, _rng_get(device))
    calls = 0
    kT_active = kT  # the running trajectories' kT, rebuilt (one host-to-device copy) only when the batch changes
    while active:
        before = state.clone()
        try:
            state = update(state, kT=kT_active)
            calls += 1
        except Exception as exc:  # the model raised: find whose structure, record its failure, go on
            state, active, keep = _drop_raising(before, active, routed, exc, out, t0, meta)
            if hasattr(routed, "keep"):
                routed.keep(keep)
            kT_active = kT_active[keep] if keep else kT_active
            continue
        for t in active:
            t.step += 1
        host = _Host(state, model)
        leaving: list[int] = []
        wall = time.perf_counter() - t0
        stop = stop_at is not None and time.time() >= stop_at
        for k, t in enumerate(active):
            limit = stop_after_steps is not None and t.step - t.start >= stop_after_steps
            if not (t.needs_host(t.step) or limit or stop):
                continue
            host.pull(k, t)
            _host_step(t)
            if t.failure is not None or t.step >= t.s.n_steps:
                out[t.index] = t.finish(wall, meta)
                leaving.append(k)
                continue
            if t.step % t.s.checkpoint_interval == 0:
                t.checkpoint(wall, _rng_get(device))
            if limit or stop:
                if stop:
                    logger.info("%s: walltime reached at step %d; checkpointed", t.outdir, t.step)
                t.checkpoint(wall, _rng_get(device))
                out[t.index] = t.interrupted(wall)
                leaving.append(k)
        if leaving:
            keep = [k for k in range(len(active)) if k not in leaving]
            active = [active[k] for k in keep]
            if active:
                state = state[keep]
                kT_active = kT_active[keep]
                if hasattr(routed, "keep"):
                    routed.keep(keep)
    logger.info("TorchSim %s: %d trajectories, %d batched steps", it.name, len(trajs), calls)


def _keeping_stress(model):
    """The model, keeping its last output's stress (``last_stress``) for the thermo table's pressure."""
    base = _model_base()

    class _Keeping(base):
        def __init__(self):
            super().__init__()
            self.inner = model
            self._device, self._dtype = model.device, model.dtype
            self._compute_stress, self._compute_forces = True, True
            self._memory_scales_with = getattr(model, "memory_scales_with", "n_atoms")
            self.last_stress = None

        def forward(self, state, **kwargs):
            out = self.inner(state, **kwargs)
            self.last_stress = out.get("stress")
            return out

    return _Keeping()


class _Host:
    """A batch state's tensors on the host, fetched once per step at which some trajectory needs them."""

    def __init__(self, state, model):
        self.state, self.model = state, model
        self._cache = None

    def _fetch(self):
        if self._cache is None:
            st = self.state
            idx = st.system_idx.detach().cpu().numpy()
            stress = getattr(st, "stress", None)
            if stress is None:  # NVT states keep no stress: the model's last output (this step's, this batch's)
                stress = self.model.last_stress
            extras = {n: getattr(st, n).detach().cpu().numpy() for n in _system_extras(st)}
            self._cache = (idx, st.positions.detach().cpu().numpy(), st.momenta.detach().cpu().numpy(),
                           st.cell.detach().transpose(-1, -2).cpu().numpy(), st.energy.detach().cpu().numpy(),
                           None if stress is None else stress.detach().cpu().numpy(), extras)
        return self._cache

    def pull(self, k: int, t: _Trajectory) -> None:
        idx, pos, mom, cells, energy, stress, extras = self._fetch()
        sel = idx == k
        t.atoms.set_cell(cells[k], scale_atoms=False)
        t.atoms.positions = pos[sel]
        t.atoms.set_momenta(mom[sel], apply_constraint=False)
        t.energy = float(energy[k])
        t.stress = None if stress is None else stress[k]
        t.extra = {n: v[k] for n, v in extras.items()}


def _host_step(t: _Trajectory) -> None:
    """Detectors, thermo row, frame and pre-failure buffer of a trajectory at its current step (on the host)."""
    step, t_ps = t.step, t.step * t.dt_ps
    observed: dict[str, float] = {}
    for det in t.detectors:
        if step % det.interval == 0:
            ev = det.check(t.atoms, step, t_ps)
            if hasattr(det, "observed"):
                observed.update(det.observed())
            if ev is not None:
                t.failure = ev
                break
    if t.before is not None:
        t.before.observe(t.atoms, step, t_ps, force=t.failure is not None)
    last = t.failure is not None or step >= t.s.n_steps
    if last or step % t.s.thermo_interval == 0 or observed:
        t.record(step, observed)
    if last or step % t.s.frame_interval == 0 or observed:
        t.h5.write(t.atoms, step, t_ps, observed)


def _drop_raising(before, active, model, exc, out, t0, meta):
    """The batched step raised: step each trajectory alone to find whose structure makes the model raise, record
    a ``calculator_error`` failure for those (as ``run_md`` does) and go on with the others from the state before
    the step."""
    bad = []
    if len(active) == 1:
        bad = [0]
    else:
        for k in range(len(active)):
            try:
                model.probe(before, k) if hasattr(model, "probe") else model(before[[k]])
            except Exception:
                bad.append(k)
        if not bad:  # only the batch raises: a batch-level error, not a trajectory's
            raise exc
    wall = time.perf_counter() - t0
    for k in bad:
        t = active[k]
        t.step += 1
        t.failure = FailureEvent("calculator_error", t.step, t.step * t.dt_ps, math.nan, 0.0,
                                 f"{type(exc).__name__}: {exc}"[:500])
        out[t.index] = t.finish(wall, meta)
    keep = [k for k in range(len(active)) if k not in bad]
    return (before[keep] if keep else before), [active[k] for k in keep], keep
