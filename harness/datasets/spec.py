"""Dataset definitions (``datasets/*.yaml``): sources by config type, ablation subsets, validation sets.

A *source* makes frames of one config type (SCIENCE.md §3) and labels them with the reference:
``liquid_md`` (classical OPLS-AA runs of a packed box; the OPLS type), ``isolated_md`` (gas-phase
molecules; SM), ``isolated_atoms`` (one free atom per element: the E0s of every backend),
``volume_scan`` (rigid-molecule scans of liquid frames; VS) and ``import`` (frames
from a file, e.g. active-learned frames with their tags, or external data with foreign label keys).
A *subset* is a union of sources (or of other subsets), with optional per-frame weights or a
fraction of training samples per member; validation sets are subsets never used for training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from harness.config import MAX_PARALLEL, HarnessModel, line_of, load_yaml, yaml_lines
from harness.errors import ConfigError

__all__ = ["DatasetSpec", "load_dataset_spec", "SubsetItem", "params_hash", "IsolatedAtomsSource",
           "GROUND_STATE_MULTIPLICITY", "check_subsets", "dataset_oracle"]

Ensemble = Literal["npt", "nvt"]


class LiquidRun(HarnessModel):
    """One classical trajectory of a liquid source."""

    ensemble: Ensemble
    temperature_K: float = Field(gt=0)
    n_frames: int = Field(gt=0)
    pressure_bar: float | None = Field(None, gt=0, description="NPT only")
    density_g_cm3: float | None = Field(None, gt=0, description="NVT: the fixed density; NPT: the packing density")

    @model_validator(mode="after")
    def _ensemble_fields(self):
        if self.ensemble == "npt" and self.pressure_bar is None:
            raise ValueError("an npt run needs pressure_bar")
        if self.ensemble == "nvt" and self.density_g_cm3 is None:
            raise ValueError("an nvt run needs density_g_cm3")
        if self.ensemble == "nvt" and self.pressure_bar is not None:
            raise ValueError("an nvt run takes no pressure_bar")
        return self


class _Source(HarnessModel):
    config_type: str = Field(min_length=1, description="OPLS, SM, VS, AL or any tag")
    description: str = ""


class LiquidMDSource(_Source):
    kind: Literal["liquid_md"]
    composition: str
    runs: list[LiquidRun] = Field(min_length=1)
    stride_ps: float = Field(2.0, gt=0, description="time between frames (decorrelation)")
    equilibration_ps: float = Field(20.0, ge=0)
    timestep_fs: float = Field(1.0, gt=0)
    cutoff_nm: float = Field(0.55, gt=0)
    packing_density_g_cm3: float = Field(1.0, gt=0, description="density at which NPT boxes are packed")


class IsolatedMDSource(_Source):
    kind: Literal["isolated_md"]
    molecules: dict[str, int] = Field(min_length=1, description="frames per species")
    temperatures_K: list[float] = Field(min_length=1)
    stride_ps: float = Field(0.5, gt=0)
    equilibration_ps: float = Field(5.0, ge=0)
    timestep_fs: float = Field(0.5, gt=0)

    @field_validator("molecules")
    @classmethod
    def _positive(cls, v):
        bad = [k for k, n in v.items() if n <= 0]
        if bad:
            raise ValueError(f"frame counts must be positive ({', '.join(bad)})")
        return v


#: Ground-state spin multiplicities of free atoms (Hund's rules), for ``isolated_atoms`` sources
GROUND_STATE_MULTIPLICITY = {"H": 2, "He": 1, "Li": 2, "Be": 1, "B": 2, "C": 3, "N": 4, "O": 3, "F": 2, "Ne": 1,
                             "Na": 2, "Mg": 1, "Al": 2, "Si": 3, "P": 4, "S": 3, "Cl": 2, "Ar": 1}


class IsolatedAtomsSource(_Source):
    """Single free atoms of each element, labelled by the reference: the isolated-atom energies (E0s)
    every backend takes as its zero-density baseline (SCIENCE.md §4).

    Spin: each atom is labelled with ``multiplicity`` (default: its ground state by Hund's rules,
    H 2, C 3, O 3), passed to the reference as initial magnetic moments (2S unpaired electrons),
    with the dataset's reference settings unchanged (for GFN2-xTB: no spin-polarisation term,
    the same Hamiltonian as every other label).
    """

    kind: Literal["isolated_atoms"]
    elements: list[str] = Field(min_length=1, description="chemical symbols")
    multiplicity: dict[str, int] = Field(default_factory=dict,
                                         description="2S+1 per element (default: the ground state)")

    @model_validator(mode="after")
    def _known(self):
        from ase.data import chemical_symbols

        bad = [e for e in self.elements if e not in chemical_symbols[1:]]
        if bad:
            raise ValueError(f"unknown element(s) {', '.join(bad)}")
        if len(set(self.elements)) != len(self.elements):
            raise ValueError("elements are listed twice")
        extra = set(self.multiplicity) - set(self.elements)
        if extra:
            raise ValueError(f"multiplicity given for element(s) not listed: {', '.join(sorted(extra))}")
        missing = [e for e in self.elements if e not in self.multiplicity and e not in GROUND_STATE_MULTIPLICITY]
        if missing:
            raise ValueError(f"no default multiplicity for {', '.join(missing)}: give multiplicity")
        for e, m in self.multiplicity.items():
            if m < 1:
                raise ValueError(f"multiplicity of {e} must be >= 1, got {m}")
        return self

    def multiplicities(self) -> dict[str, int]:
        """2S+1 of every listed element."""
        return {e: int(self.multiplicity.get(e, GROUND_STATE_MULTIPLICITY.get(e, 1))) for e in self.elements}


class DensityGrid(HarnessModel):
    low_g_cm3: float = Field(gt=0)
    high_g_cm3: float = Field(gt=0)
    n: int = Field(ge=2)

    @model_validator(mode="after")
    def _order(self):
        if self.low_g_cm3 >= self.high_g_cm3:
            raise ValueError("low_g_cm3 must be below high_g_cm3")
        return self


class VolumeScanSource(_Source):
    kind: Literal["volume_scan"]
    composition: str
    n_scans: int = Field(gt=0, description="number of liquid frames scanned")
    grid: DensityGrid
    start_density_g_cm3: float = Field(1.1, gt=0, description="NVT liquid the scanned frames come from")
    start_temperature_K: float = Field(300.0, gt=0)
    equilibration_ps: float = Field(10.0, ge=0)
    stride_ps: float = Field(5.0, gt=0)
    timestep_fs: float = Field(1.0, gt=0)
    cutoff_nm: float = Field(0.55, gt=0)


class ImportSource(_Source):
    kind: Literal["import"]
    file: str = Field(description="extxyz file, relative to the dataset YAML")
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str | None = "REF_stress"
    energy_unit: Literal["eV", "meV", "Ha", "kcal/mol", "kJ/mol"] = "eV"
    config_type_key: str | None = Field(None, description="per-frame info key holding the config type")
    config_type_map: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str | int | float] = Field(default_factory=dict, description="added to every frame")


Source = Annotated[Union[LiquidMDSource, IsolatedMDSource, IsolatedAtomsSource, VolumeScanSource, ImportSource],
                   Field(discriminator="kind")]


class SubsetItem(HarnessModel):
    """A member of a subset: a source or another subset, optionally filtered and weighted."""

    source: str | None = None
    subset: str | None = None
    species: str | None = Field(None, description="keep frames of this single species (isolated molecules)")
    composition: str | None = Field(None, description="keep frames of this composition")
    count: int | None = Field(None, gt=0, description="keep the first N frames after filtering")
    weight: float | None = Field(None, gt=0, le=1000, description="per-frame weight")
    sampling_fraction: float | None = Field(None, gt=0, lt=1,
                                            description="share of training samples drawn from this member")

    @model_validator(mode="after")
    def _one_target(self):
        if (self.source is None) == (self.subset is None):
            raise ValueError("give exactly one of source or subset")
        if self.weight is not None and self.sampling_fraction is not None:
            raise ValueError("give weight or sampling_fraction, not both")
        return self


def _items(v):
    if isinstance(v, (str, dict)):
        v = [v]
    return [{"source": x} if isinstance(x, str) else x for x in v]


class Split(HarnessModel):
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


class ReferenceSpec(HarnessModel):
    name: str = "xtb"
    options: dict = Field(default_factory=dict)


class DatasetSpec(HarnessModel):
    name: str
    description: str = ""
    data_dir: str = Field(description="folder of the built data, relative to the YAML file")
    reference: ReferenceSpec = ReferenceSpec()
    seed: int = 0
    threads: int | None = Field(None, gt=0, le=MAX_PARALLEL)
    split: Split = Split()
    sources: dict[str, Source] = Field(min_length=1)
    subsets: dict[str, list[SubsetItem]] = Field(min_length=1)
    validation: dict[str, list[SubsetItem]] = Field(default_factory=dict)

    _path: Path | None = None

    @field_validator("subsets", "validation", mode="before")
    @classmethod
    def _normalise(cls, v):
        if isinstance(v, dict):
            return {k: _items(x) for k, x in v.items()}
        return v

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RuntimeError("spec was not loaded from a file")
        return self._path

    @property
    def data_path(self) -> Path:
        return (self.path.parent / self.data_dir).resolve()

    def source_names(self, group: str) -> list[str]:
        """Every source a subset or validation set draws from (recursively)."""
        groups = {**self.subsets, **self.validation}
        out: list[str] = []
        for item in groups[group]:
            names = [item.source] if item.source else self.source_names(item.subset)  # type: ignore[arg-type]
            out += [n for n in names if n not in out]
        return out


def params_hash(obj: HarnessModel | dict, *extra) -> str:
    """Stable 12-hex hash of a config object (plus extra JSON-able values)."""
    data = obj.model_dump(mode="json") if isinstance(obj, HarnessModel) else obj
    text = json.dumps([data, *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_groups(spec: DatasetSpec, path: Path) -> None:
    """Cross-references between sources, subsets and validation sets, with file:line errors."""
    from harness.config import line_of, yaml_lines

    lines = yaml_lines(path)

    def fail(section: str, name: str, msg: str, *more) -> ConfigError:
        line = line_of(lines, section, name, *more)
        return ConfigError(f"{path}:{line}: {section}.{name}: {msg}")

    groups = {**spec.subsets, **spec.validation}
    section = {**{k: "subsets" for k in spec.subsets}, **{k: "validation" for k in spec.validation}}
    for name in set(spec.subsets) & set(spec.validation):
        raise fail("validation", name, "name already used by a subset")
    for name, items in groups.items():
        if not items:
            raise fail(section[name], name, "subset is empty")
        for k, item in enumerate(items):
            if item.source is not None and item.source not in spec.sources:
                raise fail(section[name], name, f"unknown source {item.source!r} (sources: {', '.join(spec.sources)})", k)
            if item.subset is not None and item.subset not in groups:
                raise fail(section[name], name, f"unknown subset {item.subset!r}", k)

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            raise fail(section[stack[0]], stack[0], f"subset refers to itself ({' -> '.join([*stack, name])})")
        for item in groups[name]:
            if item.subset is not None:
                visit(item.subset, [*stack, name])

    for name in groups:
        visit(name, [])
    for name, items in groups.items():
        total = sum(i.sampling_fraction or 0 for i in items)
        if total >= 1:
            raise fail(section[name], name, f"sampling fractions add up to {total:g} (must be < 1)")
    val_sources = {s for v in spec.validation for s in spec.source_names(v)}
    for name in spec.subsets:
        overlap = val_sources & set(spec.source_names(name))
        if overlap:
            raise fail("subsets", name, f"trains on validation source(s) {', '.join(sorted(overlap))}")


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a dataset YAML; errors name the file, line and key."""
    path = Path(path)
    spec = load_yaml(path, DatasetSpec)
    spec._path = path.resolve()
    _check_groups(spec, path)
    return spec


def check_subsets(path: str | Path, dataset: str | Path, named: dict[tuple, list[str]]) -> None:
    """Refuse a spec naming subsets its dataset lacks. ``named``: key path in the spec (e.g. ``("subsets",)``) ->
    the subset names written there; the error names the spec file, line and key."""
    ds = load_dataset_spec(dataset)
    known = {**ds.subsets, **ds.validation}
    for key, names in named.items():
        bad = [n for n in names if n not in known]
        if bad:
            line = line_of(yaml_lines(path), *key)
            raise ConfigError(f"{path}{f':{line}' if line else ''}: {'.'.join(map(str, key))}: unknown subset(s) "
                              f"{', '.join(map(repr, bad))} of {Path(dataset).name}; subsets: {', '.join(ds.subsets)}")


def dataset_oracle(dataset, threads: int) -> dict[str, Any]:
    """The oracle settings (``{"name", "options"}``) of a dataset definition's reference method, xTB pinned to
    ``threads`` threads: what relabels frames for that dataset's models (AL, trajectory errors)."""
    ds = load_dataset_spec(dataset)
    options = dict(ds.reference.options)
    if ds.reference.name == "xtb":
        options["threads"] = threads
    return {"name": ds.reference.name, "options": options}
