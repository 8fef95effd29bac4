"""Failure detectors: small stateful checks that end a trajectory (SCIENCE.md §5).

Each detector has a check ``interval`` (steps) and a ``patience`` (consecutive failing checks
before it fires; 1 = at once), ``reset(atoms)`` at the start of a run and ``check(atoms, step,
time_ps)`` returning a :class:`FailureEvent` or ``None``. Detectors never write files.

Validation rules: any initial covalent bond longer than equilibrium + 0.5 Å; NPT density outside
[0.2, 2.0] g/cm³; non-finite energy/forces/positions. Active-learning rules: bond > 2 × equilibrium;
density outside [0.2, 1.2] g/cm³; committee sigma2_F > 0.5 eV²/Å². These thresholds are defined once,
in :data:`RULES`; :class:`DetectorSpec` (the ``detectors:`` section of an MD protocol or of an AL
exploration) picks a rule set and may override any threshold, and :func:`detectors_from_spec` builds
the detectors of a run from it.

A detector may also *record* what it measured: :class:`CommitteeVariance` reports ``sigma2_F`` at its
checks (``observed()``), and the runner writes a frame carrying it at exactly those steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from ase import Atoms
from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from harness.config import HarnessModel

from harness.systems.topology import Topology
from harness.units import density_g_cm3

__all__ = ["FailureEvent", "Failure", "Detector", "BondStretch", "DensityWindow", "NonFinite", "CommitteeVariance",
           "DetectorSpec", "RULES", "detectors_from_spec", "validation_detectors", "active_learning_detectors"]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FailureEvent:
    """The first failure of a trajectory: which detector, when, and the offending value. Also the record the
    store's MD, observable and score results hold (validated on every read: a missing or unknown key is
    refused); ``value`` is None only where JSON could not hold a number."""

    detector: str
    step: int
    time_ps: float
    value: float | None
    threshold: float | tuple[float, float]
    message: str = ""

    def as_dict(self) -> dict:
        return {"detector": self.detector, "step": self.step, "time_ps": self.time_ps, "value": self.value,
                "threshold": self.threshold, "message": self.message}


#: the name results use for it
Failure = FailureEvent


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

    ``committee``: an ASE calculator with a ``sigma2_F`` property (a
    :class:`~harness.models.committee.CommitteeCalculator` over every member, the driving one
    included: its forces at this step come from its cache), asked only at the checks, every
    ``interval`` steps — active learning drives the trajectory with one member. None: the driving
    calculator is itself a committee and ``sigma2_F`` is read from its results. Each checked value is
    offered to the runner (``observed``), which records it with a frame at that step.
    """

    max_sigma2_F_eV2_A2: float = 0.5
    committee: Any = field(default=None, repr=False)
    name: str = "committee_variance"
    observed_names: tuple[str, ...] = ("sigma2_F",)

    def reset(self, atoms: Atoms) -> None:
        self._strikes = 0
        self._last: float | None = None

    def observed(self) -> dict[str, float]:
        """What the last check measured (empty when the committee gave nothing)."""
        return {} if self._last is None else {"sigma2_F": self._last}

    def check(self, atoms, step, time_ps):
        if self.committee is not None:
            try:
                s2 = float(self.committee.get_property("sigma2_F", atoms))
            except Exception:  # a member that cannot evaluate this frame: as uncertain as it gets
                s2 = float("nan")
        else:
            results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
            s2 = float(results["sigma2_F"]) if "sigma2_F" in results else None
        self._last = s2
        if s2 is None:
            return None
        if self._judge(not (s2 <= self.max_sigma2_F_eV2_A2)):  # NaN counts as above
            return FailureEvent(self.name, step, time_ps, s2, self.max_sigma2_F_eV2_A2,
                                f"sigma2_F {s2:.3f} eV²/Å²")
        return None


#: the paper's two rule sets (SCIENCE.md §5, §8): every default threshold, defined here only
RULES: dict[str, dict[str, Any]] = {
    "validation": {"max_bond_stretch_A": 0.5, "max_bond_ratio": None, "density_window_g_cm3": (0.2, 2.0),
                   "max_sigma2_F_eV2_A2": None},
    "active_learning": {"max_bond_stretch_A": None, "max_bond_ratio": 2.0, "density_window_g_cm3": (0.2, 1.2),
                        "max_sigma2_F_eV2_A2": 0.5},
}


class DetectorSpec(HarnessModel):
    """The failure detectors of a run: a rule set and, optionally, any of its thresholds overridden."""

    rules: Literal["validation", "active_learning"] = "validation"
    interval: int = Field(10, gt=0, description="steps between checks")
    patience: int = Field(1, gt=0, description="consecutive failing checks before a detector fires")
    bond_length_method: Literal["gfn2", "mmff"] = "gfn2"
    max_bond_stretch_A: float | None = Field(None, gt=0, description="bond > r_eq + this (validation: 0.5)")
    max_bond_ratio: float | None = Field(None, gt=1, description="bond > this x r_eq (active learning: 2)")
    density_window_g_cm3: tuple[float, float] | None = Field(
        None, description="NPT density window (validation: [0.2, 2.0], active learning: [0.2, 1.2])")
    max_sigma2_F_eV2_A2: float | None = Field(
        None, gt=0, description="committee force variance limit (active learning: 0.5; validation: off)")

    @model_validator(mode="after")
    def _check(self):
        w = self.density_window_g_cm3
        if w is not None and not 0 < w[0] < w[1]:
            raise ValueError(f"density_window_g_cm3 must be 0 < low < high, got {list(w)}")
        if self.max_bond_stretch_A is not None and self.max_bond_ratio is not None:
            raise ValueError("give max_bond_stretch_A or max_bond_ratio, not both")
        return self

    def threshold(self, name: str):
        """A threshold as the run uses it: the value given here, else the rule set's default."""
        value = getattr(self, name)
        if value is not None:
            return value
        if name.startswith("max_bond_") and (self.max_bond_stretch_A or self.max_bond_ratio):
            return None  # the other bond rule was chosen
        return RULES[self.rules][name]


def detectors_from_spec(spec: DetectorSpec, npt: bool, *, committee=None, committee_interval: int | None = None) -> list:
    """The detectors of one run. The committee rule needs a sigma2_F: from ``committee`` (a calculator
    asked at the checks, every ``committee_interval`` steps, default the spec's interval) or from the
    driving calculator's results; without a threshold it is off."""
    ratio, stretch = spec.threshold("max_bond_ratio"), spec.threshold("max_bond_stretch_A")
    common = {"interval": spec.interval, "patience": spec.patience}
    dets: list = [BondStretch(max_stretch_A=stretch, max_ratio=ratio, bond_length_method=spec.bond_length_method,
                              **common),
                  NonFinite(interval=1, patience=spec.patience)]
    s2 = spec.threshold("max_sigma2_F_eV2_A2")
    if s2 is not None:  # after the bond rule: a frame with a broken bond is that rule's, not the committee's
        dets.append(CommitteeVariance(max_sigma2_F_eV2_A2=s2, committee=committee, patience=spec.patience,
                                      interval=committee_interval or spec.interval))
    if npt:
        dets.append(DensityWindow(density_window_g_cm3=tuple(spec.threshold("density_window_g_cm3")), **common))
    return dets


def validation_detectors(npt: bool, *, interval: int = 10, bond_length_method: str = "gfn2") -> list:
    """The paper's validation rules (SCIENCE.md §5) with their default thresholds."""
    return detectors_from_spec(DetectorSpec(rules="validation", interval=interval,
                                            bond_length_method=bond_length_method), npt)


def active_learning_detectors(npt: bool, *, interval: int = 10, bond_length_method: str = "gfn2",
                              committee=None, **thresholds) -> list:
    """The paper's active-learning stop rules (SCIENCE.md §5, §8); ``committee``: see :class:`CommitteeVariance`."""
    return detectors_from_spec(DetectorSpec(rules="active_learning", interval=interval,
                                            bond_length_method=bond_length_method, **thresholds), npt,
                               committee=committee)
