"""Active-learning specs (``protocols/al/*.yaml``): SCIENCE.md §8 as data, for any architecture.

A campaign runs one AL *chain* per initial subset. Generation ``g`` trains a committee on the initial
subset plus every frame labelled in generations ``< g``; every generation but the last (all of them with
``explore_last``) explores (the
primary member drives ``len(compositions) × starts_per_composition`` NPT trajectories, the committee
evaluated every ``check_interval`` steps), selects one frame per trajectory and relabels it with the
oracle. With ``validation`` every generation's committee gets the sweep's MD + Q against a reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from harness.config import (MAX_COMMITTEE, MAX_GENERATIONS, MAX_PARALLEL, MAX_REPLICAS, MAX_STARTS, HarnessModel,
                            load_yaml)
from harness.md.protocol import RunSpec, StartSpec
from harness.models.base import ARCHITECTURES as ARCHS
from harness.config import resolve_path
from harness.validation.committee import ReferenceSpec
from harness.validation.context import PlanInputs

__all__ = ["ALSpec", "ExplorationSpec", "ValidationSpec", "OracleSpec", "load_al", "PAPER_COMPOSITIONS"]

#: the paper's exploration cells: 12 molecules, EC:EMC 2:10 ... 10:2
PAPER_COMPOSITIONS = ["EC=2,EMC=10", "EC=4,EMC=8", "EC=6,EMC=6", "EC=8,EMC=4", "EC=10,EMC=2"]


#: what an exploration run is unless the spec says otherwise (the paper's: 500 ps NPT at 500 K and 1 atm,
#: 0.5 fs, the active-learning stop rules, OPLS-AA starts packed at 1 g/cm³ and equilibrated 10 ps)
EXPLORATION_DEFAULTS: dict[str, Any] = {
    "temperature_K": 500.0, "pressure_atm": 1.0, "timestep_fs": 0.5, "npt": {"length_ps": 500.0},
    "detectors": {"rules": "active_learning"}, "start": {"density_g_cm3": 1.0},
}
#: the flat keys of earlier AL specs -> their place in the exploration's MD configuration (still read)
_FLAT_KEYS = {
    "length_ps": ("npt", "length_ps"), "tdamp_fs": ("npt", "tdamp_fs"), "pdamp_fs": ("npt", "pdamp_fs"),
    "checkpoint_interval": ("output", "checkpoint_interval"),
    "max_sigma2_F_eV2_A2": ("detectors", "max_sigma2_F_eV2_A2"), "max_bond_ratio": ("detectors", "max_bond_ratio"),
    "density_window_g_cm3": ("detectors", "density_window_g_cm3"),
    "bond_length_method": ("detectors", "bond_length_method"),
    "start_density_g_cm3": ("start", "density_g_cm3"), "start_equilibration_ps": ("start", "classical_equilibration_ps"),
    "classical_cutoff_nm": ("start", "classical_cutoff_nm"), "seed": ("start", "seed"),
}


class ExplorationSpec(RunSpec):
    """The exploration trajectories of one generation (SCIENCE.md §5, §8): an MD configuration
    (:class:`~harness.md.protocol.RunSpec`, NPT; detectors with the active-learning rules) plus what
    exploration adds — the compositions, the OPLS-AA starts per composition and the committee check
    interval. Frames and thermo rows follow ``output``; the committee's checks are recorded besides.
    """

    compositions: list[str] = Field(default_factory=lambda: list(PAPER_COMPOSITIONS), min_length=1)
    starts_per_composition: int = Field(5, ge=1, le=MAX_STARTS,
                                        description="OPLS-AA starting frames per composition")
    start: StartSpec = Field(description="how each composition's starting liquid is made")
    start_stride_ps: float = Field(2.0, gt=0, description="OPLS-AA time between starting frames")
    check_interval: int = Field(10, gt=0, description="steps between committee evaluations (and, unless "
                                "detectors.interval is given, between the other checks)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for flat, (section, key) in _FLAT_KEYS.items():
            if flat in data:
                data[section] = {**dict(data.get(section) or {}), key: data.pop(flat)}
        for key, value in EXPLORATION_DEFAULTS.items():
            if isinstance(value, dict):
                data[key] = {**value, **dict(data.get(key) or {})}
            else:
                data.setdefault(key, value)
        if "interval" not in data["detectors"]:
            data["detectors"]["interval"] = data.get("check_interval", 10)
        return data

    @field_validator("compositions")
    @classmethod
    def _compositions(cls, v):
        from harness.systems.composition import Composition

        parsed = [Composition.parse(c) for c in v]
        out = [str(c) for c in parsed]
        if len({tuple(sorted(c.counts)) for c in parsed}) != len(out):
            raise ValueError("compositions must not repeat")
        return out

    @property
    def max_sigma2_F_eV2_A2(self) -> float:
        """The selection threshold: the committee rule's."""
        return float(self.detectors.threshold("max_sigma2_F_eV2_A2"))


class ValidationSpec(HarnessModel):
    """Per-generation validation with the sweep machinery: MD under ``protocol``, Q against ``reference``."""

    protocol: str
    reference: ReferenceSpec
    analysis: str | None = None
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)


class OracleSpec(HarnessModel):
    name: str = Field("xtb", description="xtb or ase:package.module.Class")
    options: dict[str, Any] = Field(default_factory=dict)


class ALSpec(HarnessModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    dataset: str = Field(description="dataset definition YAML")
    initial_subsets: list[str] = Field(min_length=1, description="one AL chain per starting subset")
    architecture: str
    preset: str = "mini"
    committee: int = Field(5, ge=2, le=MAX_COMMITTEE, description="members per committee (the variance needs two)")
    seeds: list[int] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="hyperparameter overrides")
    max_train_frames: int | None = Field(None, ge=1, description="evenly spaced sample of the initial subset")
    generations: int = Field(ge=1, le=MAX_GENERATIONS,
                             description="committees trained per chain; all but the last explore")
    explore_last: bool = Field(False, description="the last generation explores and labels too (its frames are "
                               "the campaign's output, e.g. an AL subset for a dataset)")
    warm_start: bool = Field(False, description="initialise member k from generation g-1's member k (deepmd)")
    oracle: OracleSpec | None = Field(None, description="default: the dataset's reference")
    exploration: ExplorationSpec = ExplorationSpec()
    validation: ValidationSpec | None = None
    threads_per_task: int = Field(1, ge=1, le=MAX_PARALLEL)
    device: str = Field("cpu", pattern="^(cpu|cuda)$")

    @model_validator(mode="after")
    def _check(self):
        if self.architecture not in ARCHS:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHS)}")
        if self.validation and self.validation.reference.model is not None:
            raise ValueError("validation.reference: an active-learning campaign trains its reference; give arch and "
                             "subset, not model")
        if self.validation and self.validation.reference.arch not in ARCHS:
            raise ValueError(f"unknown reference architecture {self.validation.reference.arch!r}")
        if self.seeds is not None and (len(self.seeds) != self.committee or len(set(self.seeds)) != self.committee):
            raise ValueError(f"seeds must be {self.committee} distinct integers, got {self.seeds}")
        if len(set(self.initial_subsets)) != len(self.initial_subsets):
            raise ValueError("initial_subsets must not repeat")
        if self.warm_start and self.architecture != "deepmd":
            raise ValueError(f"warm_start is supported for deepmd (dp --init-model), not {self.architecture}: "
                             "GAP fits are closed-form; train MACE from fresh weights")
        return self

    @property
    def member_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else list(range(self.committee))


def load_al(path: str | Path) -> tuple[ALSpec, PlanInputs]:
    """The validated spec and its resolved files (dataset; protocol and analysis of the validation)."""
    path = Path(path)
    spec = load_yaml(path, ALSpec)
    dataset = resolve_path(spec.dataset, path, "dataset")
    from harness.datasets.spec import check_subsets

    check_subsets(path, dataset, {("initial_subsets",): list(spec.initial_subsets)})
    v = spec.validation
    return spec, PlanInputs(
        dataset=dataset, protocol=resolve_path(v.protocol, path, "validation.protocol") if v else None,
        analysis=resolve_path(v.analysis, path, "validation.analysis") if v and v.analysis else None)
