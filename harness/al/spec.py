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

from harness.config import HarnessModel, load_yaml
from harness.sweep.spec import ARCHS, ReferenceSpec, resolve_path

__all__ = ["ALSpec", "ExplorationSpec", "ValidationSpec", "OracleSpec", "load_al", "PAPER_COMPOSITIONS"]

#: the paper's exploration cells: 12 molecules, EC:EMC 2:10 ... 10:2
PAPER_COMPOSITIONS = ["EC=2,EMC=10", "EC=4,EMC=8", "EC=6,EMC=6", "EC=8,EMC=4", "EC=10,EMC=2"]


class ExplorationSpec(HarnessModel):
    """The exploration trajectories of one generation and their stop rules (SCIENCE.md §5, §8)."""

    compositions: list[str] = Field(default_factory=lambda: list(PAPER_COMPOSITIONS), min_length=1)
    starts_per_composition: int = Field(5, ge=1, description="OPLS-AA starting frames per composition")
    length_ps: float = Field(500.0, gt=0, description="maximum length of a trajectory (paper: 500 ps)")
    temperature_K: float = Field(500.0, gt=0)
    pressure_atm: float = Field(1.0, gt=0)
    timestep_fs: float = Field(0.5, gt=0, le=5)
    tdamp_fs: float = Field(50.0, gt=0)
    pdamp_fs: float = Field(500.0, gt=0)
    check_interval: int = Field(10, gt=0, description="steps between committee evaluations (= frames kept)")
    checkpoint_interval: int = Field(2000, gt=0)
    max_sigma2_F_eV2_A2: float = Field(0.5, gt=0, description="selection threshold and stop rule")
    max_bond_ratio: float = Field(2.0, gt=1, description="stop when a bond exceeds this × its equilibrium length")
    density_window_g_cm3: tuple[float, float] = (0.2, 1.2)
    bond_length_method: str = Field("gfn2", pattern="^(gfn2|mmff)$")
    start_density_g_cm3: float = Field(1.0, gt=0, description="packing density of the starting boxes")
    start_equilibration_ps: float = Field(10.0, ge=0, description="OPLS-AA NVT before the first start frame")
    start_stride_ps: float = Field(2.0, gt=0, description="OPLS-AA time between starting frames")
    classical_cutoff_nm: float = Field(0.55, gt=0)
    seed: int = Field(0, ge=0)

    @field_validator("compositions")
    @classmethod
    def _compositions(cls, v):
        from harness.systems.composition import Composition

        parsed = [Composition.parse(c) for c in v]
        out = [str(c) for c in parsed]
        if len({tuple(sorted(c.counts)) for c in parsed}) != len(out):
            raise ValueError("compositions must not repeat")
        return out

    @model_validator(mode="after")
    def _window(self):
        lo, hi = self.density_window_g_cm3
        if not 0 < lo < hi:
            raise ValueError(f"density_window_g_cm3 must be 0 < low < high, got {list(self.density_window_g_cm3)}")
        return self


class ValidationSpec(HarnessModel):
    """Per-generation validation with the sweep machinery: MD under ``protocol``, Q against ``reference``."""

    protocol: str
    reference: ReferenceSpec
    analysis: str | None = None
    replicas: int = Field(1, ge=1)


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
    committee: int = Field(5, ge=2, description="members per committee (the variance needs two)")
    seeds: list[int] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="hyperparameter overrides")
    max_train_frames: int | None = Field(None, ge=1, description="evenly spaced sample of the initial subset")
    generations: int = Field(ge=1, description="committees trained per chain; all but the last explore")
    explore_last: bool = Field(False, description="the last generation explores and labels too (its frames are "
                               "the campaign's output, e.g. an AL subset for a dataset)")
    warm_start: bool = Field(False, description="initialise member k from generation g-1's member k (deepmd)")
    oracle: OracleSpec | None = Field(None, description="default: the dataset's reference")
    exploration: ExplorationSpec = ExplorationSpec()
    validation: ValidationSpec | None = None
    threads_per_task: int = Field(1, ge=1)
    device: str = Field("cpu", pattern="^(cpu|cuda)$")

    @model_validator(mode="after")
    def _check(self):
        if self.architecture not in ARCHS:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHS)}")
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


def load_al(path: str | Path) -> tuple[ALSpec, dict[str, Path]]:
    """The validated spec and its resolved files (dataset; protocol and analysis of the validation)."""
    path = Path(path)
    spec = load_yaml(path, ALSpec)
    files = {"dataset": resolve_path(spec.dataset, path, "dataset")}
    if spec.validation:
        files["protocol"] = resolve_path(spec.validation.protocol, path, "validation.protocol")
        if spec.validation.analysis:
            files["analysis"] = resolve_path(spec.validation.analysis, path, "validation.analysis")
    return spec, files
