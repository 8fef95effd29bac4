"""Task kinds of the diagnostics (SCIENCE.md §9), typed like the sweep's (:mod:`harness.validation.contract`).

``vscan``: a committee's energies on a validation set of rigid-molecule volume scans, E(ρ) rows and the
baseline shift per composition. ``relabel``: frames of one MD run every Δt labelled with the reference
method (resumable; each frame labelled once, beside the run). ``traj_errors``: a member's errors on the
relabelled frames of its own run (a validation NVT run, or an NPT run in an out-of-distribution liquid).
``liquid``: one committee in one out-of-distribution liquid: every member's NPT stability and errors.
``calibration``: a committee's predicted force uncertainty against its actual error on the relabelled frames of
its members' runs (:mod:`harness.diagnostics.calibration`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_serializer, model_validator

from harness.workflow.contract import Record, TaskParams, TaskResult, WorkerParams, drop_none

from harness.validation.contract import FrameSetErrors, MemberIdentity

__all__ = ["VScanParams", "VScanResult", "ScanRow", "BaselineShift", "RelabelParams", "RelabelResult", "TrajErrorsParams", "TrajErrorsResult",
           "LiquidParams", "LiquidResult", "FailedLabel", "FrameError", "ForceBin", "ErrorSummary", "LiquidMember",
           "CalibrationBin", "CalibrationResult", "CalibrationParams"]


class ScanRow(Record):
    """One frame of a volume scan and one member's energy on it (:func:`~harness.diagnostics.volume_scan.scan_table`)."""

    member: str
    frame: int
    scan_id: str
    composition: str
    density_g_cm3: float
    n_atoms: int
    energy_ref_eV: float
    energy_eV: float


_SHIFT_VERDICT = ("verdict", "verdict_why", "member_status", "test", "level", "min_members")


class BaselineShift(Record):
    """A committee's zero-density baseline shift at one composition
    (:func:`~harness.diagnostics.volume_scan.baseline_shifts`) and its verdict as a statistic (absent from results
    computed before the verdict existed: the report says so and calls them undetermined)."""

    composition: str
    n_atoms: int
    dilute_frames: int
    shift_eV: float
    shift_meV_atom: float
    shift_meV_atom_std: float
    members: dict[str, float] = Field(description="member -> shift (meV/atom)")
    shape_rmse_meV_atom: float
    median_abs_shift_meV_atom: float
    members_shifted: int
    shifted: bool
    rule: str
    tolerance_meV_atom: float
    dilute_g_cm3: float
    verdict: Literal["shifted", "not shifted", "undetermined"] | None = None
    verdict_why: str | None = None
    member_status: dict[str, Literal["above", "below", "undecided"]] | None = None
    test: str | None = None
    level: float | None = None
    min_members: int | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        return drop_none(handler(self), _SHIFT_VERDICT)


class VScanResult(TaskResult):
    committee: str
    arch: str
    subset: str | None = None
    validation_set: str
    rows: list[ScanRow]
    shifts: list[BaselineShift]
    errors: dict[str, FrameSetErrors] = Field(description="member -> energy/force errors on the set")
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="member -> provenance stamp")


class VScanParams(WorkerParams):
    KIND: ClassVar[str] = "vscan"
    KEY_NAME: ClassVar[str] = "harness.diagnostics.tasks:vscan"
    RESULT: ClassVar[type[TaskResult]] = VScanResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"members": ("train", "model")}

    dataset: str
    validation_set: str
    frames_hash: str = Field(description="the set's frames when planned")
    committee: str
    arch: str
    subset: str | None = None
    dilute_g_cm3: float = Field(gt=0)
    tolerance_meV_atom: float = Field(gt=0)


class FailedLabel(Record):
    """A frame the reference method could not label, and why."""

    frame: int
    error: str | None = None


class FrameError(Record):
    """One relabelled frame (:func:`harness.diagnostics.trajectory.frame_errors`)."""

    time_ps: float
    n_atoms: int
    energy_ref_eV_atom: float
    energy_error_meV_atom: float
    forces_rmse_meV_A: float


class ForceBin(Record):
    """Force-component RMSE in one bin of the reference component's magnitude (eV/Å)."""

    ref_low_eV_A: float
    ref_high_eV_A: float | None = Field(description="None: open above (the last bin's infinite edge, as JSON holds it)")
    n: int
    forces_rmse_meV_A: float


class ErrorSummary(Record):
    """RMSE over a run's relabelled frames and the force RMSE's slope in time (None with fewer than 3 frames)."""

    n_frames: int
    energy_rmse_meV_atom: float | None
    forces_rmse_meV_A: float | None
    forces_rmse_slope_meV_A_per_ps: float | None

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data):  # an empty summary was stored with the slope under a shorter name until 2026-12-07
        if isinstance(data, dict) and "forces_rmse_slope" in data:
            data = {k: v for k, v in data.items() if k != "forces_rmse_slope"} | {
                "forces_rmse_slope_meV_A_per_ps": data["forces_rmse_slope"]}
        return data


class LiquidMember(Record):
    """One member in an out-of-distribution liquid: its NPT stability and its errors on its own frames."""

    member: str
    seed: int | None
    t_stab_ps: float
    reached_tau: bool
    failure: str | None = Field(description="the detector that ended the run")
    errors: ErrorSummary | None
    failed_labels: int | None


class RelabelResult(MemberIdentity):
    run_dir: str
    ensemble: str
    t_stab_ps: float
    liquid: str | None = None
    labelled_file: str | None = None
    n_selected: int = 0
    n_labelled: int = 0
    failed: list[FailedLabel] = Field(default_factory=list)
    run_failed: bool | None = Field(None, description="the run ended in a failure (its frames lead up to it)")


class RelabelParams(WorkerParams):
    KIND: ClassVar[str] = "relabel"
    KEY_NAME: ClassVar[str] = "harness.diagnostics.tasks:relabel"
    RESULT: ClassVar[type[TaskResult]] = RelabelResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"run": ("md",)}

    oracle: dict[str, Any]
    every_ps: float = Field(gt=0)
    max_frames: int = Field(ge=1)
    composition: str
    liquid: str | None = None


class TrajErrorsResult(MemberIdentity):
    run_dir: str
    ensemble: str
    liquid: str | None = None
    t_stab_ps: float
    frames: list[FrameError]
    summary: ErrorSummary
    by_reference: list[ForceBin] = Field(default_factory=list)
    failed_labels: int = 0
    run_failed: bool | None = Field(None, description="the run ended in a failure (its frames lead up to it)")


class TrajErrorsParams(WorkerParams):
    KIND: ClassVar[str] = "traj_errors"
    KEY_NAME: ClassVar[str] = "harness.diagnostics.tasks:traj_errors"
    RESULT: ClassVar[type[TaskResult]] = TrajErrorsResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"labels": ("relabel",), "member": ("train", "model")}

    liquid: str | None = None


class LiquidResult(TaskResult):
    liquid: str
    composition: str
    committee: str
    arch: str
    subset: str | None = None
    horizon_ps: float
    members: list[LiquidMember]


class LiquidParams(TaskParams):
    KIND: ClassVar[str] = "liquid"
    KEY_NAME: ClassVar[str] = "harness.diagnostics.tasks:liquid"
    RESULT: ClassVar[type[TaskResult]] = LiquidResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"runs": ("md",), "errors": ("traj_errors",)}

    liquid: str
    composition: str
    committee: str
    arch: str
    subset: str | None = None
    horizon_ps: float = Field(gt=0)


class CalibrationBin(Record):
    """One equal-count bin of predicted σ: atoms, RMS σ, RMS error (eV/Å) and their ratio."""

    n: int
    rms_sigma_eV_A: float
    rmse_eV_A: float
    ratio: float | None


class CalibrationResult(TaskResult):
    committee: str
    arch: str
    subset: str | None = None
    members: int
    frames: int
    n_atoms: int
    scale: float | None = Field(description="recalibration factor s: σ_calibrated = s·σ (None below the minimum)")
    ence: float | None
    spearman: float | None
    mean_sigma_eV_A: float | None
    rmse_eV_A: float | None
    al_threshold_sigma_F_eV_A: float
    al_threshold_expected_error_eV_A: float | None
    curve: list[CalibrationBin]


class CalibrationParams(WorkerParams):
    KIND: ClassVar[str] = "calibration"
    KEY_NAME: ClassVar[str] = "harness.diagnostics.tasks:calibration"
    RESULT: ClassVar[type[TaskResult]] = CalibrationResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"labels": ("relabel",), "members": ("train", "model")}

    committee: str
    arch: str
    subset: str | None = None
