"""Batched MD: many trajectories advanced together, one model evaluation per step for all of them.

Each trajectory is an ordinary :func:`harness.md.runner.run_md` run (its own integrator, thermostat
random stream, detectors, failure time, H5MD/Parquet outputs and checkpoint), driven in its own thread.
Its calculator is a :class:`BatchSlot`: when the integrator asks for forces, the slot hands its
structure to the shared :class:`BatchCoordinator` and waits. When every trajectory still running has
asked, the coordinator evaluates all requests at once — grouped by evaluator, one batched call per
model (:mod:`harness.models.batch` builds the batched evaluators for MACE and DeePMD; any ASE
calculator works one structure at a time) — and wakes the threads. So

- the dynamics of each trajectory is exactly the unbatched one (same ASE integrator, same random
  numbers): a batch of one reproduces ``run_md`` with the model's own calculator to the model's float
  tolerance, and the ensemble tests of the ASE path hold unchanged;
- a trajectory that fails (a detector fires, the model returns NaN or raises for its structure) or
  finishes leaves the batch; the others go on. A batched call that raises is retried one structure at
  a time, so the error reaches only the trajectory whose structure caused it;
- a killed batch resumes every trajectory from its own checkpoint; finished ones are returned as they are.

The integrators' per-step work stays on the host (numpy, one Python thread per trajectory, serialised by
the GIL); the model evaluation, where the time goes for MLIPs, is one call per step per model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from harness.md.runner import MDResult, RunSettings, run_md

__all__ = ["BatchEvaluator", "EachEvaluator", "BatchCoordinator", "BatchSlot", "BatchJob", "run_batched"]

logger = logging.getLogger(__name__)


class BatchEvaluator(Protocol):
    """Energies (eV), forces (eV/Å) and Voigt stresses (eV/Å³) of several structures for one model."""

    name: str

    def evaluate(self, frames: Sequence[Atoms]) -> list[dict[str, Any]]:
        """One result dict (``energy``, ``free_energy``, ``forces``, ``stress``) per frame, in order."""
        ...


class EachEvaluator:
    """Any ASE calculator as a batch evaluator: the structures one at a time (GAP, stand-ins)."""

    def __init__(self, calculator: Calculator):
        self.calculator = calculator
        self.name = type(calculator).__name__

    def evaluate(self, frames: Sequence[Atoms]) -> list[dict[str, Any]]:
        out = []
        calc = self.calculator
        for atoms in frames:
            props = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
            # every structure is new: one direct calculation (ASE's cache check compares whole structures,
            # which costs more than an ideal gas or LJ evaluation); the raw results, no constraint applied
            calc.reset()
            calc.calculate(atoms, props, all_changes)
            out.append(dict(calc.results))
        return out


class BatchCoordinator:
    """A dynamic barrier: evaluates when every active slot has asked, then wakes them all."""

    def __init__(self, evaluators: Sequence[BatchEvaluator]):
        self.evaluators = list(evaluators)
        self._cond = threading.Condition()
        self._active: set[int] = set()
        self._slot_evaluator: dict[int, int] = {}
        self._pending: dict[int, Atoms] = {}
        self._answers: dict[int, Any] = {}
        self.calls = 0  # batched evaluations made (one per model and step)
        self.steps = 0  # evaluation rounds (one per step of the batch)
        self.structures = 0  # structures evaluated, over all rounds

    def join(self, slot: int, evaluator: int) -> None:
        with self._cond:
            self._active.add(slot)
            self._slot_evaluator[slot] = evaluator

    def leave(self, slot: int) -> None:
        with self._cond:
            self._active.discard(slot)
            self._pending.pop(slot, None)
            self._maybe_evaluate()

    def request(self, slot: int, atoms: Atoms) -> dict[str, Any]:
        with self._cond:
            if slot not in self._active:
                raise RuntimeError(f"batch slot {slot} asked for forces after leaving the batch")
            self._pending[slot] = atoms
            self._maybe_evaluate()
            while slot not in self._answers:
                self._cond.wait()
            answer = self._answers.pop(slot)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _maybe_evaluate(self) -> None:
        # called with the lock held; every active slot is waiting here, so nothing else runs meanwhile
        if not self._pending or set(self._pending) != self._active:
            return
        pending, self._pending = self._pending, {}
        groups: dict[int, list[int]] = {}
        for slot in sorted(pending):
            groups.setdefault(self._slot_evaluator[slot], []).append(slot)
        self.steps += 1
        self.structures += len(pending)
        for ev_index, slots in groups.items():
            ev = self.evaluators[ev_index]
            self.calls += 1
            try:
                results = ev.evaluate([pending[s] for s in slots])
                if len(results) != len(slots):
                    raise RuntimeError(f"{ev.name} returned {len(results)} results for {len(slots)} structures")
                answers: dict[int, Any] = dict(zip(slots, results))
            except Exception as exc:  # find whose structure raised: one at a time
                if len(slots) == 1:
                    answers = {slots[0]: exc}
                else:
                    logger.info("batched %s call failed (%s); evaluating %d structures one by one", ev.name, exc,
                                len(slots))
                    answers = {}
                    for s in slots:
                        try:
                            answers[s] = ev.evaluate([pending[s]])[0]
                        except Exception as one:
                            answers[s] = one
            self._answers.update(answers)
        self._cond.notify_all()


class BatchSlot(Calculator):
    """The calculator of one trajectory in a batch: forwards its structure to the coordinator."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, coordinator: BatchCoordinator, slot: int, *, provenance_name: str = "BatchSlot"):
        super().__init__()
        self.coordinator, self.slot = coordinator, slot
        self.provenance_name = provenance_name

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = dict(self.coordinator.request(self.slot, self.atoms))


@dataclass
class BatchJob:
    """One trajectory of a batch: what :func:`run_md` takes, and which evaluator gives its forces."""

    atoms: Atoms
    settings: RunSettings
    outdir: str | Path
    evaluator: int = 0
    seed: int = 0
    detectors: Sequence = ()
    meta: dict = field(default_factory=dict)


def run_batched(jobs: Sequence[BatchJob], evaluators: Sequence[BatchEvaluator], *,
                stop_after_steps: int | None = None) -> list[MDResult | BaseException]:
    """Run (or resume, or return) every job's trajectory, advanced together.

    Returns one entry per job, in order: its :class:`MDResult`, or the exception that stopped it
    before it could record a failure (bad input; a model that raises is a recorded failure, as in
    :func:`run_md`). ``stop_after_steps`` interrupts every trajectory (tests of restart).
    """
    for i, job in enumerate(jobs):
        if not 0 <= job.evaluator < len(evaluators):
            raise ValueError(f"batch job {i} names evaluator {job.evaluator}; {len(evaluators)} given")
    coordinator = BatchCoordinator(evaluators)
    out: list[MDResult | BaseException | None] = [None] * len(jobs)
    for i, job in enumerate(jobs):
        coordinator.join(i, job.evaluator)

    def one(i: int, job: BatchJob) -> None:
        try:
            slot = BatchSlot(coordinator, i, provenance_name=evaluators[job.evaluator].name)
            meta = {**job.meta, "batch": {"size": len(jobs), "slot": i, "evaluator": evaluators[job.evaluator].name}}
            out[i] = run_md(job.atoms, slot, job.settings, outdir=job.outdir, seed=job.seed,
                            detectors=job.detectors, meta=meta, stop_after_steps=stop_after_steps)
        except BaseException as exc:  # noqa: BLE001 - reported per job; the batch goes on
            out[i] = exc
        finally:
            coordinator.leave(i)

    threads = [threading.Thread(target=one, args=(i, job), name=f"md-batch-{i}", daemon=True)
               for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.info("batched MD: %d trajectories, %d model calls, mean %.1f structures per step", len(jobs),
                coordinator.calls, coordinator.structures / max(coordinator.steps, 1))
    return out  # type: ignore[return-value]
