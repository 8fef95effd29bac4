"""The kinds every study validates committees with: ``train`` / ``model`` (a member ready for MD), ``md`` and
``md_batch`` (NPT/NVT runs), ``observe``, ``ref_density`` and ``score`` (Q against a reference).

Typed on the bases of :mod:`harness.workflow.contract`; an MD protocol travels as an
:class:`~harness.md.protocol.MDProtocol`, never as a path to re-parse. A stored result of another schema (an
older harness) is not reused: the task runs again, and its worker reuses the trained model or finished
trajectory on disk, so nothing expensive is redone. Used by sweeps, active learning, transfer runs, the
diagnostics, fine-tuning and ``harness validate``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_serializer, model_validator

from harness.md.protocol import MDProtocol
from harness.models.finetune import Finetune
from harness.models.load import ModelSource
from harness.observables.analysis import AnalysisSpec
from harness.workflow.contract import TaskParams, TaskResult, WorkerParams, recorded

__all__ = ["AnalysisParams", "TrainParams", "ModelParams", "MemberResult",
           "MDParams", "RunResult", "MDBatchParams", "MDBatchResult", "BatchRun", "ObserveParams", "ObserveResult", "RefDensityParams", "RefDensityResult",
           "ScoreParams", "ScoreResult", "MemberIdentity"]


class AnalysisParams(TaskParams):
    """Parameters of a task that analyses runs under the comparison's shared settings."""

    analysis: AnalysisSpec
    equilibration_ps: float = Field(ge=0)
    tau_ps: float = Field(gt=0)


# -- members ---------------------------------------------------------------------------------------------

class MemberIdentity(TaskResult):
    """Which committee member a result belongs to, with the model's provenance stamp."""

    committee: str
    arch: str
    subset: str | None = None
    member: int
    seed: int | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    stamp: dict[str, Any] = Field(default_factory=dict, description="architecture, file SHA-256, versions")

    def identity(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in MemberIdentity.model_fields if k != "outputs"}


class MemberResult(MemberIdentity):
    """A committee member ready for MD: trained here (``train``) or brought (``model``)."""

    model: ModelSource
    run_name: str
    workdir: str | None = Field(None, description="a trained member's directory")
    committee_dir: str | None = None
    n_train: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    train_seconds: float | None = None


class TrainParams(WorkerParams):
    KIND: ClassVar[str] = "train"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:train"
    RESULT: ClassVar[type[TaskResult]] = MemberResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"al_set": ("al_set",), "previous": ("train",)}

    dataset: str
    subset: str
    arch: str
    preset: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    max_train_frames: int | None = None
    seed: int
    member: int
    committee: str
    committee_key: str | None = Field(None, description="None when the data comes from a dependency")
    extra_frames: str | None = None
    extra_frames_sha256: str | None = None
    name: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    warm_start: bool = False
    finetune: Finetune | None = Field(None, description="start from a foundation model (left out of the key "
                                      "when None: keys of other trainings unchanged)")

    @model_serializer(mode="wrap")
    def _drop_none(self, handler):
        out = handler(self)
        if self.finetune is None:
            out.pop("finetune", None)
        return out


class ModelParams(TaskParams):
    """A model not trained by this sweep entering it as a committee member (SCIENCE.md's Q for any model)."""

    KIND: ClassVar[str] = "model"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:model"
    RESULT: ClassVar[type[TaskResult]] = MemberResult

    source: ModelSource
    sha256: str | None = Field(None, description="the model file's hash when planned")
    committee: str
    arch: str
    subset: str | None = None
    member: int
    tags: dict[str, Any] = Field(default_factory=dict)


# -- MD, observables, Q -------------------------------------------------------------------------------------

class RunResult(MemberIdentity):
    run_dir: str
    ensemble: str
    t_stab_ps: float
    failure: dict[str, Any] | None = None
    ns_per_day: float = 0.0


class MDParams(WorkerParams):
    KIND: ClassVar[str] = "md"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:md"
    RESULT: ClassVar[type[TaskResult]] = RunResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"member": ("train", "model"), "ref_density": ("ref_density",),
                                                   "batch": ("md_batch",)}

    protocol: MDProtocol
    protocol_hash: str
    ensemble: str = Field(pattern="^(npt|nvt)$")
    replica: int = Field(ge=0)


class BatchRun(TaskResult):
    """One trajectory of a batch: where it is and how it ended (``error``: it could not run in the batch;
    its own ``md`` task then runs it alone and reports)."""

    member: int
    replica: int
    run_dir: str | None = None
    t_stab_ps: float | None = None
    completed: bool = False
    error: str | None = None


class MDBatchResult(TaskResult):
    runs: list[BatchRun]
    evaluators: list[str] = Field(default_factory=list)
    wall_s: float = 0.0


class MDBatchParams(WorkerParams):
    """Several trajectories (members × replicas of one architecture) advanced together: one model call per
    model and step (:mod:`harness.md.batched`). Each trajectory's own ``md`` task depends on the batch and
    returns its result."""

    KIND: ClassVar[str] = "md_batch"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:md_batch"
    RESULT: ClassVar[type[TaskResult]] = MDBatchResult
    VERSION: ClassVar[int] = 1
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"members": ("train", "model"), "ref_density": ("ref_density",)}

    protocol: MDProtocol
    protocol_hash: str
    ensemble: str = Field(pattern="^(npt|nvt)$")
    runs: list[tuple[int, int]] = Field(min_length=1, description="(index into the members dependency, replica)")


class ObserveResult(MemberIdentity):
    run: str
    ensemble: str
    t_stab_ps: float
    length_ps: float
    failure: dict[str, Any] | None = None
    equilibration_ps: float
    tau_ps: float
    analysis_hash: str
    reached_tau: bool
    density_g_cm3: dict[str, Any] | None = None
    density_samples: list[float] | None = Field(None, description="the NPT density after the equilibration cut "
                                                "(g/cm³): what the score's KL term needs, so it reads no file")
    density_stationarity: dict[str, Any] | None = None
    diffusion: dict[str, Any] | None = None
    timestep_fs: float | None = None
    check_interval_steps: int | None = None

    @model_validator(mode="after")
    def _samples(self):
        recorded(not (self.ensemble == "npt" and self.reached_tau) or self.density_samples is not None,
                 "the density samples of an NPT run that reached tau")
        return self


class ObserveParams(AnalysisParams):
    KIND: ClassVar[str] = "observe"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:observe"
    RESULT: ClassVar[type[TaskResult]] = ObserveResult
    VERSION: ClassVar[int] = 4  # 3: beta, Yeh-Hummer and density stationarity; 4: observables version 3
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"run": ("md",)}


class RefDensityResult(TaskResult):
    nvt_density_g_cm3: float
    members_used: int
    members: int


class RefDensityParams(TaskParams):
    KIND: ClassVar[str] = "ref_density"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:ref_density"
    RESULT: ClassVar[type[TaskResult]] = RefDensityResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"observed": ("observe",)}

    reference: str
    tau_ps: float = Field(gt=0)


class ScoreResult(TaskResult):
    members: list[dict[str, Any]]
    committee: dict[str, Any]
    reference: dict[str, Any]
    settings: dict[str, Any]
    committee_id: str
    arch: str
    subset: str | None = None
    reference_committee: str
    tags: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="member -> provenance stamp")

    @model_validator(mode="after")
    def _facts(self):
        recorded("timestep_fs" in self.settings, "the runs' timestep (the verdicts read it here)")
        return self


class ScoreParams(AnalysisParams):
    KIND: ClassVar[str] = "score"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:score"
    RESULT: ClassVar[type[TaskResult]] = ScoreResult
    VERSION: ClassVar[int] = 5  # 4: the reference's R resolution, members' density stationarity; 5: observables v3
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"observed": ("observe",)}

    committee: str
    arch: str
    subset: str | None = None
    reference: str
    reference_is_self: bool
    tags: dict[str, Any] = Field(default_factory=dict)
