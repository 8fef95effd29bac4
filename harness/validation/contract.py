"""The kinds every study validates committees with: ``train`` / ``model`` (a member ready for MD), ``md`` and
``md_batch`` (NPT/NVT runs), ``observe``, ``ref_density`` and ``score`` (Q against a reference).

Typed on the bases of :mod:`harness.workflow.contract`; an MD protocol travels as an
:class:`~harness.md.protocol.MDProtocol`, never as a path to re-parse. A stored result of another schema (an
older harness) is not reused: the task runs again, and its worker reuses the trained model or finished
trajectory on disk, so nothing expensive is redone. Used by sweeps, active learning, transfer runs, the
diagnostics, fine-tuning and ``harness validate``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_serializer, model_validator

from harness.md.detectors import Failure
from harness.md.protocol import MDProtocol
from harness.models.finetune import Finetune
from harness.models.load import ModelSource
from harness.observables.analysis import AnalysisSpec
from harness.observables.density import DensityGrid
from harness.observables.diffusion import DiffusionSpec
from harness.validation.statepoints import StatePoint
from harness.workflow.contract import Record, TaskParams, TaskResult, WorkerParams, drop_none, recorded

__all__ = ["AnalysisParams", "TrainParams", "ModelParams", "MemberResult", "TrainMetrics", "FrameSetErrors", "DensityStats", "DensityStationarity", "Diffusion",
           "SpeciesDiffusion", "YehHummer", "MemberQ", "TermStats", "QStats", "CommitteeQ", "KLResolution",
           "ReferenceSummary", "ScoreSettings",
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


class TrainMetrics(Record):
    """A trained member's errors on its training frames (a thinned copy of at most ``max_train_eval``) and its
    validation frames: :func:`harness.models.base.evaluate`'s keys, prefixed ``train_`` / ``valid_``; the stress
    ones only where frames have a reference stress. Empty for a model brought from outside (not trained here)."""

    train_energy_rmse_meV_atom: float | None = None
    train_forces_rmse_meV_A: float | None = None
    train_stress_rmse_meV_A3: float | None = None
    train_n_frames: int | None = None
    train_n_stress_frames: int | None = None
    valid_energy_rmse_meV_atom: float | None = None
    valid_forces_rmse_meV_A: float | None = None
    valid_stress_rmse_meV_A3: float | None = None
    valid_n_frames: int | None = None
    valid_n_stress_frames: int | None = None

    @model_serializer(mode="wrap")
    def _drop_none(self, handler):  # stored as before: the keys evaluate() gave, no others
        return drop_none(handler(self))


class FrameSetErrors(Record):
    """A model's errors on a set of labelled frames (:func:`harness.models.evaluate.error_table`'s ``all``); the
    stress ones only where the predictions had a stress."""

    n_frames: int
    n_atoms: int
    energy_rmse_meV_atom: float
    energy_mae_meV_atom: float
    forces_rmse_meV_A: float
    forces_mae_meV_A: float
    n_stress_frames: int | None = None
    stress_rmse_meV_A3: float | None = None
    stress_mae_meV_A3: float | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        return drop_none(handler(self), ("n_stress_frames", "stress_rmse_meV_A3", "stress_mae_meV_A3"))


class MemberResult(MemberIdentity):
    """A committee member ready for MD: trained here (``train``) or brought (``model``)."""

    model: ModelSource
    run_name: str
    workdir: str | None = Field(None, description="a trained member's directory")
    committee_dir: str | None = None
    n_train: int | None = None
    metrics: TrainMetrics = Field(default_factory=TrainMetrics)
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
    failure: Failure | None = None
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
    #: the engine that ran the batch, and why not the one asked for where it fell back
    engine: str = "ase"
    engine_note: str | None = None


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
    engine: Literal["ase", "torchsim"] = Field("ase", description="ase: harness.md.batched; torchsim: "
                                               "harness.md.torchsim where its integrator is adopted (left out of "
                                               "the key when ase: batches planned before engines kept their keys)")

    @model_serializer(mode="wrap")
    def _drop_engine(self, handler):
        out = handler(self)
        if self.engine == "ase":
            out.pop("engine", None)
        return out


class DensityStats(Record):
    """An NPT run's density after the equilibration cut (g/cm³): mean, std, the autocorrelation-corrected SEM."""

    mean: float
    std: float
    sem: float
    n: int
    n_eff: float


class DensityStationarity(Record):
    """:class:`harness.observables.stats.Stationarity` as stored (None for a statistic of an unchecked series)."""

    n: int
    mser_truncation: int
    halves_z: float | None
    halves_p: float | None
    stationary: bool | None
    rule: str


class SpeciesDiffusion(Record):
    """One molecular species' COM diffusivity (block scheme; kinisi's interval when asked for) and the MSD's
    local exponent β with its 95 % interval (``diffusive``: None when the interval straddles the threshold)."""

    n_molecules: int
    D_block_A2_ps: float
    sem_block_A2_ps: float
    n_blocks: int
    beta: float
    beta_low: float | None = None  # absent from results stored before the interval was computed
    beta_high: float | None = None
    diffusive: bool | None
    D_kinisi_A2_ps: float | None = None
    kinisi_low_A2_ps: float | None = None
    kinisi_high_A2_ps: float | None = None


class YehHummer(Record):
    temperature_K: float
    viscosity_mPa_s: float | None
    coefficient_A2_ps_mPa_s: float
    delta_D_A2_ps: float | None


class Diffusion(Record):
    """An NVT run's diffusivities (:func:`harness.observables.analysis.observe_run`): per species, the
    composition-weighted D that enters Q, the β check of every species, the cell length and the Yeh-Hummer term."""

    species: dict[str, SpeciesDiffusion]
    D_weighted_block_A2_ps: float
    diffusive: bool | None
    beta_threshold: float
    cell_length_A: float
    yeh_hummer: YehHummer | None = None
    D_weighted_kinisi_A2_ps: float | None = None
    D_weighted_kinisi_low_A2_ps: float | None = None
    D_weighted_kinisi_high_A2_ps: float | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler):  # stored as observe_run wrote it: the optional parts only where computed
        out = drop_none(handler(self), ("yeh_hummer", "D_weighted_kinisi_A2_ps", "D_weighted_kinisi_low_A2_ps",
                                        "D_weighted_kinisi_high_A2_ps"))
        kinisi = ("D_kinisi_A2_ps", "kinisi_low_A2_ps", "kinisi_high_A2_ps")
        return {**out, "species": {k: drop_none(s, kinisi) for k, s in out["species"].items()}}


class ObserveResult(MemberIdentity):
    run: str
    ensemble: str
    t_stab_ps: float
    length_ps: float
    failure: Failure | None = None
    equilibration_ps: float
    tau_ps: float
    analysis_hash: str
    reached_tau: bool
    density_g_cm3: DensityStats | None = None
    density_samples: list[float] | None = Field(None, description="the NPT density after the equilibration cut "
                                                "(g/cm³): what the score's KL term needs, so it reads no file")
    density_stationarity: DensityStationarity | None = None
    diffusion: Diffusion | None = None
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


class MemberQ(Record):
    """One member's row of a score: its runs, how long each stayed stable and how it failed, the NPT density and
    its stationarity, the KL divergence, the NVT diffusion, and S, R, V, Q (SCIENCE.md §6)."""

    name: str
    t_stab_npt_ps: float
    t_stab_nvt_ps: float
    npt_failure: Failure | None
    nvt_failure: Failure | None
    npt_run: str
    nvt_run: str
    density_g_cm3: DensityStats | None
    kl: float | None
    density_stationarity: DensityStationarity | None = None
    diffusion: Diffusion | None
    S: float
    R: float
    V: float
    Q: float
    # the terms' and Q's intervals (harness.observables.uncertainty; S is exact; R or V = 0 exactly for a run that
    # did not reach the horizon); None in results stored before score/6
    R_low: float | None = None
    R_high: float | None = None
    V_low: float | None = None
    V_high: float | None = None
    Q_low: float | None = None
    Q_high: float | None = None


class TermStats(Record):
    """A term over the committee's members: mean, std (ddof 1; 0 for one member) and standard error."""

    mean: float
    std: float
    sem: float


class QStats(TermStats):
    """Q over the committee's members, with its interval (:func:`harness.quality.committee_interval`)."""

    low: float | None = None
    high: float | None = None
    basis: str | None = None
    level: float | None = None


class CommitteeQ(Record):
    S: TermStats
    R: TermStats
    V: TermStats
    Q: QStats


class KLResolution(Record):
    """What the density term can see (:func:`harness.observables.analysis.kl_resolution`)."""

    sigma_g_cm3: float
    delta_min_g_cm3: float
    min_n_eff: float
    informative: bool
    why: str


class ReferenceSummary(Record):
    """The reference side of a score: its members, those whose NPT runs made P_ref and its KL baseline, D_ref and
    the members behind it, the mean density, and R's resolution."""

    members: list[str]
    npt_members_used: list[str]
    kl_baseline: float
    kl_pairs: int
    D_ref_A2_ps: float
    nvt_members_used: int
    density_g_cm3: float
    R_resolution: KLResolution | None = None  # absent from results stored before score/4 (those are rerun)


class ScoreSettings(Record):
    """The comparison's shared settings, as the verdicts read them (the runs' timestep and check interval too)."""

    tau_ps: float
    equilibration_ps: float
    kl_rule: dict[str, str | float]
    timestep_fs: float | None
    check_interval_steps: int | None
    density_grid: DensityGrid
    diffusion: DiffusionSpec
    D_in_Q: str
    analysis_hash: str


class ScoreResult(TaskResult):
    members: list[MemberQ]
    committee: CommitteeQ
    reference: ReferenceSummary
    settings: ScoreSettings
    committee_id: str
    arch: str
    subset: str | None = None
    reference_committee: str
    tags: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="member -> provenance stamp")
    state_point: StatePoint | None = Field(None, description="the temperature and composition of a sweep with "
                                           "state-point axes (None: the protocol's own, in a sweep without axes)")



class ScoreParams(AnalysisParams):
    KIND: ClassVar[str] = "score"
    KEY_NAME: ClassVar[str] = "harness.sweep.tasks:score"
    RESULT: ClassVar[type[TaskResult]] = ScoreResult
    VERSION: ClassVar[int] = 6  # 4: the reference's R resolution, members' density stationarity; 5: observables v3;
    # 6: Q's intervals
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"observed": ("observe",)}

    committee: str
    arch: str
    subset: str | None = None
    reference: str
    reference_is_self: bool
    tags: dict[str, Any] = Field(default_factory=dict)
    state_point: StatePoint | None = Field(None, description="left out of the key when None: scores of sweeps "
                                           "without state-point axes keep their keys")

    @model_serializer(mode="wrap")
    def _drop_state(self, handler):
        out = handler(self)
        if self.state_point is None:
            out.pop("state_point", None)
        return out
