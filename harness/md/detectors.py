"""Failure detectors: small stateful checks that end a trajectory (SCIENCE.md §5).

Each detector has a check ``interval`` (steps) and a ``patience`` (consecutive failing checks
before it fires; 1 = at once), ``reset(atoms)`` at the start of a run and ``check(atoms, step,
time_ps)`` returning a :class:`FailureEvent` or ``None``. Detectors never write files.

Validation rules: any initial covalent bond longer than equilibrium + 0.5 Å; NPT density outside
[0.2, 2.0] g/cm³; non-finite energy/forces/positions. Active-learning rules: bond > 2 × equilibrium;
density outside [0.2, 1.2] g/cm³; committee sigma2_F > 0.5 eV²/Å².
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from ase import Atoms

from harness.systems.topology import Topology
from harness.units import density_g_cm3

__all__ = ["FailureEvent", "Detector", "BondStretch", "DensityWindow", "NonFinite", "CommitteeVariance",
           "validation_detectors", "active_learning_detectors"]


@dataclass(frozen=True)
class FailureEvent:
    """The first failure of a trajectory: which detector, when, and the offending value."""

    detector: str
    step: int
    time_ps: float
    value: float
    threshold: float | tuple[float, float]
    message: str = ""

    def as_dict(self) -> dict:
        return {"detector": self.detector, "step": self.step, "time_ps": self.time_ps, "value": self.value,
                "threshold": self.threshold, "message": self.message}


class Detector(Protocol):
    name: str
    interval: int
    patience: int

    def reset(self, atoms: Atoms) -> None: ...

    def check(self, atoms: Atoms, step: int, time_ps: float) -> FailureEvent | None: ...


@dataclass
class _Patient:
    interval: int = 1
    patience: int = 1
    _strikes: int = field(default=0, init=False, repr=False)

    def _judge(self, bad: bool) -> bool:
        self._strikes = self._strikes + 1 if bad else 0
        return self._strikes >= self.patience


@dataclass
class BondStretch(_Patient):
    """A covalent bond of the initial topology is stretched beyond its limit.

    ``max_stretch_A`` (absolute: length > r_eq + max_stretch_A) or ``max_ratio`` (relative:
    length > max_ratio × r_eq). ``equilibrium_A`` overrides the per-bond equilibrium lengths
    (otherwise GFN2-xTB-relaxed isolated molecules, cached).
    """

    max_stretch_A: float | None = 0.5
    max_ratio: float | None = None
    bond_length_method: str = "gfn2"
    name: str = "bond_stretch"

    def reset(self, atoms: Atoms) -> None:
        self._strikes = 0
        self.topology = Topology.from_atoms(atoms)
        r_eq = self.topology.equilibrium_lengths(method=self.bond_length_method)
        if self.max_ratio is not None:
            self.limit = self.max_ratio * r_eq
        else:
            self.limit = r_eq + float(self.max_stretch_A)
        self.r_eq = r_eq

    def stretch(self, atoms: Atoms) -> np.ndarray:
        """Current length minus equilibrium length of every bond (Å)."""
        return self.topology.bond_lengths(atoms) - self.r_eq

    def check(self, atoms, step, time_ps):
        lengths = self.topology.bond_lengths(atoms)
        excess = lengths - self.limit
        k = int(np.argmax(excess))
        if self._judge(bool(excess[k] > 0)):
            i, j = self.topology.bonds[k]
            thr = float(self.max_ratio) if self.max_ratio is not None else float(self.max_stretch_A)
            return FailureEvent(self.name, step, time_ps, float(lengths[k]), thr,
                                f"bond {i}-{j} is {lengths[k]:.3f} Å (equilibrium {self.r_eq[k]:.3f} Å)")
        return None


@dataclass
class DensityWindow(_Patient):
    """Mass density outside ``density_window_g_cm3`` (NPT only)."""

    density_window_g_cm3: tuple[float, float] = (0.2, 2.0)
    name: str = "density"

    def reset(self, atoms: Atoms) -> None:
        self._strikes = 0

    def check(self, atoms, step, time_ps):
        rho = density_g_cm3(atoms)
        lo, hi = self.density_window_g_cm3
        if self._judge(not (lo <= rho <= hi)):
            return FailureEvent(self.name, step, time_ps, rho, (lo, hi), f"density {rho:.3f} g/cm³")
        return None


@dataclass
class NonFinite(_Patient):
    """Non-finite energy, forces or positions."""

    name: str = "non_finite"

    def reset(self, atoms: Atoms) -> None:
        self._strikes = 0

    def check(self, atoms, step, time_ps):
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        bad = []
        if not np.all(np.isfinite(atoms.positions)):
            bad.append("positions")
        if "energy" in results and not np.isfinite(results["energy"]):
            bad.append("energy")
        if "forces" in results and not np.all(np.isfinite(results["forces"])):
            bad.append("forces")
        if self._judge(bool(bad)):
            return FailureEvent(self.name, step, time_ps, float("nan"), 0.0, f"non-finite {', '.join(bad)}")
        return None


@dataclass
class CommitteeVariance(_Patient):
    """Committee force variance sigma2_F above ``max_sigma2_F_eV2_A2``.

    Either the driving calculator is a :class:`~harness.models.committee.CommitteeCalculator` (sigma2_F
    read from its results), or ``others`` holds the committee's other members and the trajectory is
    driven by one member (active learning: the primary model runs, the committee is evaluated only at the
    checks, every ``interval`` steps). Then sigma2_F from the driver's forces and the others' is written
    into the driver's results, so the thermo row of that step records it.
    """

    max_sigma2_F_eV2_A2: float = 0.5
    others: list = field(default_factory=list, repr=False)
    name: str = "committee_variance"

    def reset(self, atoms: Atoms) -> None:
        self._strikes = 0

    def _sigma2_F(self, atoms: Atoms, results: dict) -> float | None:
        if not self.others:
            return float(results["sigma2_F"]) if "sigma2_F" in results else None
        from harness.models.committee import force_deviation

        if "forces" not in results:
            atoms.get_forces()
        forces = [np.asarray(atoms.calc.results["forces"])]
        for calc in self.others:
            a = atoms.copy()
            a.calc = calc
            forces.append(a.get_forces(apply_constraint=False))
        s2, _ = force_deviation(np.array(forces))
        atoms.calc.results["sigma2_F"] = s2
        return s2

    def check(self, atoms, step, time_ps):
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        s2 = self._sigma2_F(atoms, results)
        if s2 is None:
            return None
        if self._judge(not (s2 <= self.max_sigma2_F_eV2_A2)):  # NaN counts as above
            return FailureEvent(self.name, step, time_ps, s2, self.max_sigma2_F_eV2_A2,
                                f"sigma2_F {s2:.3f} eV²/Å²")
        return None


def validation_detectors(npt: bool, *, interval: int = 10, bond_length_method: str = "gfn2") -> list:
    """The paper's validation rules (SCIENCE.md §5)."""
    dets = [BondStretch(interval=interval, max_stretch_A=0.5, bond_length_method=bond_length_method),
            NonFinite(interval=1)]
    if npt:
        dets.append(DensityWindow(interval=interval, density_window_g_cm3=(0.2, 2.0)))
    return dets


def active_learning_detectors(npt: bool, *, interval: int = 10, bond_length_method: str = "gfn2",
                              max_sigma2_F_eV2_A2: float = 0.5, max_bond_ratio: float = 2.0,
                              density_window_g_cm3: tuple[float, float] = (0.2, 1.2), others=()) -> list:
    """The paper's active-learning stop rules (SCIENCE.md §5, §8); ``others``: see :class:`CommitteeVariance`."""
    dets = [BondStretch(interval=interval, max_stretch_A=None, max_ratio=max_bond_ratio,
                        bond_length_method=bond_length_method),
            NonFinite(interval=1), CommitteeVariance(interval=interval, max_sigma2_F_eV2_A2=max_sigma2_F_eV2_A2,
                                                     others=list(others))]
    if npt:
        dets.append(DensityWindow(interval=interval, density_window_g_cm3=tuple(density_window_g_cm3)))
    return dets
