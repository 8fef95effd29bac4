"""Sweep specs (``protocols/sweeps/*.yaml``): which subsets × architectures, how trained, run and scored.

Relative paths are resolved against the spec file's directory first, then the current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.config import MAX_COMMITTEE, MAX_PARALLEL, MAX_REPLICAS, HarnessModel, load_yaml, resolve_path
from harness.diagnostics.spec import DiagnosticsSpec
from harness.errors import ConfigError
from harness.finetune.spec import FinetuneSpec
from harness.models.base import ARCHITECTURES as ARCHS
from harness.validation.committee import Committee, ReferenceSpec, reference_committee
from harness.validation.context import PlanInputs
from harness.validation.ramp import HeatingRamp
from harness.validation.statepoints import StatePoint

__all__ = ["SweepSpec", "ModelEntry", "load_sweep"]


class ModelEntry(HarnessModel):
    """A committee the sweep does not train: model files (each a member), a trained committee directory,
    or an ASE calculator (a committee of one). Its id is ``model:<name>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    files: list[str] | None = Field(None, min_length=1, description="MACE .model, DeePMD .pth/.pb, GAP .xml")
    arch: str | None = Field(None, description="architecture of the files (default: from their suffix)")
    dtype: str = Field("float64", pattern="^(float32|float64)$")
    committee: str | None = Field(None, description="a committee directory trained by the harness")
    calculator: str | None = Field(None, description="ase:package.module.Class")
    subset: str | None = Field(None, pattern=r"^[A-Za-z0-9_.+-]+$", description="the training subset the committee "
                               "stands for: its row and group in the report (default: its name)")
    members: int | None = Field(None, ge=1, le=MAX_COMMITTEE, description="use the first N members only (of a "
                                "committee directory, in seed order, or of the files as listed)")
    foundation: str | list[str] | None = Field(None, description="a foundation model by name "
                                               "(harness.models.foundation), or several: a committee of the "
                                               "family's sizes or versions (e.g. [mace-mp-0-small, mace-mp-0-medium])")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the ASE calculator; "
                                    "of a foundation model: d3 (true or a functional), sha256 (of a user file); "
                                    "of model files: d3 (the functional of their training data, e.g. pbe)")

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("files", "committee", "calculator", "foundation") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"model {self.name!r}: give exactly one of files, committee, calculator, foundation "
                             f"(got {given or 'none'})")
        if self.arch is not None and self.arch not in ARCHS:
            raise ValueError(f"model {self.name!r}: unknown architecture {self.arch!r}; known: {', '.join(ARCHS)}")
        if self.members is not None and not (self.committee or self.files):
            raise ValueError(f"model {self.name!r}: members selects among a committee's members or files")
        return self

    def sources(self, spec_path: Path):
        """The members as :class:`~harness.models.load.ModelSource` (paths resolved against the spec)."""
        from harness.models.load import ModelSource, arch_of_file, committee_sources

        if self.calculator:
            return [ModelSource(kind="ase", calculator=self.calculator, options=self.options)]
        if self.foundation:
            names = [self.foundation] if isinstance(self.foundation, str) else self.foundation
            return [ModelSource(kind="foundation", name=n, options=self.options) for n in names]
        if self.committee:
            where = resolve_path(self.committee, spec_path, f"models.{self.name}.committee")
            found = committee_sources(where)
        else:
            where = f"models.{self.name}.files"
            paths = [resolve_path(f, spec_path, where) for f in self.files]
            found = [ModelSource(kind="file", path=str(p), arch=arch_of_file(p, self.arch), dtype=self.dtype,
                                 options=self.options) for p in paths]
        if self.members is None:
            return found
        if self.members > len(found):
            raise ConfigError(f"{spec_path}: models.{self.name}.members: {self.members} asked, {where} has "
                              f"{len(found)}")
        return found[:self.members]

    def committee_entry(self, sources=None) -> Committee:
        arch = "ase" if self.calculator else (self.arch or "file")
        if sources:
            arch = sources[0].arch or arch
        return Committee(id=f"model:{self.name}", arch=arch, subset=self.subset or self.name, role="external")


class SweepSpec(HarnessModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    dataset: str = Field(description="dataset definition YAML")
    subsets: list[str] = Field(default_factory=list, description="training subsets of the grid")
    architectures: list[str] = Field(default_factory=list, description="architectures of the grid")
    exclude: list[str] = Field(default_factory=list, description="cells of the grid not trained, as arch/subset "
                               "(e.g. mace/OPLS+SM): a grid that is not a full product")
    models: list[ModelEntry] = Field(default_factory=list, description="committees not trained here, scored alike")
    committee: int = Field(5, ge=1, le=MAX_COMMITTEE, description="members per committee")
    seeds: list[int] | None = Field(None, description="member seeds (default 0..committee-1)")
    preset: str = "mini"
    max_train_frames: int | None = Field(None, ge=1, description="evenly spaced sample of the training frames")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description="per-architecture hyperparameter overrides")
    protocol: str = Field(description="MD protocol YAML")
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    reference: ReferenceSpec
    analysis: str | None = Field(None, description="analysis spec YAML overriding the protocol's analysis section")
    threads_per_task: int = Field(1, ge=1, le=MAX_PARALLEL, description="torch/xTB threads inside each task")
    device: str = Field("cpu", pattern="^(cpu|cuda)$")
    diagnostics: DiagnosticsSpec | None = Field(None, description="the paper's diagnostics beside Q: volume-scan "
                                                "validation, errors along trajectories, chemical generalisation")
    finetune: FinetuneSpec | None = Field(None, description="a foundation model zero-shot and fine-tuned on the "
                                          "subsets (strategies naive, frozen, replay), with forgetting measured")
    temperatures_K: list[float] | None = Field(None, min_length=1, description="state-point axis: validate every "
                                               "committee at these temperatures too (the protocol's is always run)")
    compositions: list[str] | None = Field(None, min_length=1, description="state-point axis: and at these "
                                           "compositions (molecule counts, e.g. EC=2,EMC=10)")
    heating_ramp: HeatingRamp | None = Field(None, description="an NPT heating ramp of every member with the "
                                             "validation detectors: the temperature at failure")
    md_batch: int = Field(1, ge=1, le=MAX_PARALLEL, description="trajectories of one architecture (MACE, DeePMD) "
                          "advanced together in one MD task, one model call per step for all (batched MD; pays on a "
                          "GPU); 1: one trajectory per task")
    engine: Literal["ase", "torchsim"] = Field(
        "ase", description="engine of the batched MD tasks: ase (each trajectory its own ASE integrator, one model "
        "call per step for the batch) or torchsim (TorchSim's integrators on the model's device, for the runs whose "
        "integrator is adopted — harness.md.torchsim.INTEGRATORS; the others stay on ase, as the batch's result "
        "says); needs md_batch > 1")

    @model_validator(mode="after")
    def _check(self):
        if self.engine == "torchsim" and self.md_batch < 2:
            raise ValueError("engine torchsim runs batched MD tasks: set md_batch (trajectories per batch) above 1")
        if self.reference.model is not None and self.reference.model not in {m.name for m in self.models}:
            raise ValueError(f"reference.model {self.reference.model!r} is no entry of models: (have: "
                             f"{', '.join(m.name for m in self.models) or 'none'})")
        for a in [*self.architectures, *([self.reference.arch] if self.reference.arch else [])]:
            if a not in ARCHS:
                raise ValueError(f"unknown architecture {a!r}; known: {', '.join(ARCHS)}")
        for a in self.overrides:
            if a not in ARCHS:
                raise ValueError(f"overrides for unknown architecture {a!r}")
        if self.seeds is not None and (len(self.seeds) != self.committee or len(set(self.seeds)) != self.committee):
            raise ValueError(f"seeds must be {self.committee} distinct integers, got {self.seeds}")
        if len(set(self.subsets)) != len(self.subsets) or len(set(self.architectures)) != len(self.architectures):
            raise ValueError("subsets and architectures must not repeat")
        cells = {f"{a}/{s}" for s in self.subsets for a in self.architectures}
        unknown = [c for c in self.exclude if c not in cells]
        if unknown:
            raise ValueError(f"exclude: {', '.join(map(repr, unknown))} not a cell of the grid (arch/subset of "
                             f"architectures {self.architectures} x subsets {self.subsets})")
        if len(set(self.exclude)) != len(self.exclude):
            raise ValueError("exclude must not repeat")
        if not (cells - set(self.exclude)) and not self.models:
            raise ValueError("nothing to score: give subsets and architectures, or models")
        names = [m.name for m in self.models]
        if self.finetune is not None and self.finetune.zero_shot:
            names.append(self.finetune.name)
        if len(set(names)) != len(names):
            raise ValueError("model names (models and finetune.name) must not repeat")
        if self.finetune is not None and not (self.finetune.subsets or self.subsets):
            raise ValueError("finetune: give subsets (the sweep has none)")
        for axis, values in (("temperatures_K", self.temperatures_K), ("compositions", self.compositions)):
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"{axis} must not repeat")
        if self.temperatures_K is not None and min(self.temperatures_K) <= 0:
            raise ValueError(f"temperatures_K must be positive, got {self.temperatures_K}")
        if self.compositions is not None:
            from harness.validation.statepoints import counts

            for c in self.compositions:
                try:
                    counts(c)
                except Exception as exc:  # noqa: BLE001 - a malformed composition or an unknown molecule
                    raise ValueError(f"compositions: {c!r}: {exc}") from None
        if self.finetune is not None and (self.finetune.committee or 0) > self.committee:
            raise ValueError(f"finetune.committee {self.finetune.committee} exceeds the sweep's committee "
                             f"{self.committee} (its members take the sweep's first seeds)")
        return self

    def state_points(self, protocol) -> list[StatePoint]:
        """The grid temperatures_K × compositions (each axis the protocol's own value when not given), the
        protocol's own point first and marked primary; [that point] alone when the spec has no axes."""
        from harness.validation.statepoints import StatePoint, base_point, counts

        base = base_point(protocol)
        points = [base]
        for t in self.temperatures_K or [base.temperature_K]:
            for c in self.compositions or [base.composition]:
                p = StatePoint(temperature_K=t, composition=counts(c))
                if not any(p.same(q) for q in points):
                    points.append(p)
        return points

    @property
    def has_state_axes(self) -> bool:
        return self.temperatures_K is not None or self.compositions is not None

    @property
    def member_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else list(range(self.committee))

    def committees(self) -> list[Committee]:
        """Every committee to train: the grid of subsets × architectures less ``exclude``, then the reference
        (:func:`~harness.validation.committee.reference_committee`), merged with its grid twin when trained alike
        (the twin keeps its id ``arch/subset`` and takes the reference role), else added as ``ref:arch/subset``."""
        out = [Committee(id=f"{a}/{s}", arch=a, subset=s, preset=self.preset, overrides=self.overrides.get(a) or {},
                         max_train_frames=self.max_train_frames)
               for s in self.subsets for a in self.architectures if f"{a}/{s}" not in self.exclude]
        if self.reference.model is not None:  # an entry of models: (plan_sweep gives it the reference role)
            return out
        ref = reference_committee(self.reference, preset=self.preset, overrides=self.overrides.get(self.reference.arch),
                                  max_train_frames=self.max_train_frames, seeds=self.member_seeds)
        for i, c in enumerate(out):
            if c.trained_alike(ref):
                out[i] = c.model_copy(update={"role": "reference"})
                return out
        return [*out, ref]


def load_sweep(path: str | Path, model: type[SweepSpec] | None = None) -> tuple[SweepSpec, PlanInputs]:
    """The validated spec (``model``: a SweepSpec subclass, e.g. a transfer spec) and its resolved, checked files
    (dataset, protocol, analysis; the members of each entry of ``models:``; the fine-tuning's foundation and data)."""
    path = Path(path)
    spec = load_yaml(path, model or SweepSpec)
    dataset = resolve_path(spec.dataset, path, "dataset")
    from harness.datasets.spec import check_subsets

    named = {("subsets",): list(spec.subsets)}
    if spec.reference.subset is not None:
        named[("reference", "subset")] = [spec.reference.subset]
    if spec.finetune is not None and spec.finetune.subsets:
        named[("finetune", "subsets")] = list(spec.finetune.subsets)
    check_subsets(path, dataset, named)
    files: dict[str, Any] = {"dataset": dataset, "protocol": resolve_path(spec.protocol, path, "protocol")}
    if spec.has_state_axes:  # every state point's protocol, built now: a cell too small is refused before any work
        from harness.md.protocol import load_protocol
        from harness.validation.statepoints import state_protocol

        proto = load_protocol(files["protocol"])
        for point in spec.state_points(proto):
            try:
                state_protocol(proto, point)
            except ValueError as exc:
                raise ConfigError(f"{path}: compositions: {exc}") from None
    if spec.analysis:
        files["analysis"] = resolve_path(spec.analysis, path, "analysis")
    if spec.models:
        files["models"] = {m.name: m.sources(path) for m in spec.models}
    ft = spec.finetune
    if ft is not None:
        files["foundation"] = f = resolve_path(ft.foundation, path, "finetune.foundation")
        if f.suffix != ".model" or not f.is_file():
            raise ConfigError(f"{path}: finetune.foundation: {f} is not a MACE .model file")
        if ft.sha256 is not None:
            from harness.io import sha256_file

            if sha256_file(f) != ft.sha256.lower():
                raise ConfigError(f"{path}: finetune.foundation: {f} has SHA-256 {sha256_file(f)}, not the pinned "
                                  f"{ft.sha256}")
        frozen = [(i, st) for i, st in enumerate(ft.strategies) if st.strategy == "frozen"]
        if frozen:
            from harness.models.mace_freeze import frozen_blocks, load_model_file

            model = load_model_file(f)
            for i, st in frozen:
                try:
                    frozen_blocks(model, st.freeze_layers)
                except ValueError as err:
                    raise ConfigError(f"{path}: finetune.strategies[{i}].freeze: {f.name}: {err}") from None
        if ft.replay is not None:
            files["replay_dataset"] = resolve_path(ft.replay.dataset, path, "finetune.replay.dataset")
        if ft.forgetting is not None:
            files["forgetting_dataset"] = resolve_path(ft.forgetting.dataset, path, "finetune.forgetting.dataset")
    return spec, PlanInputs(**files)
