"""Task kind ``forgetting`` (issue #17): one fine-tuned member against its foundation, typed like the sweep's."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_serializer

from harness.workflow.contract import Record, TaskResult, WorkerParams, drop_none

from harness.validation.contract import FrameSetErrors, MemberIdentity

__all__ = ["ForgettingParams", "ForgettingResult", "TargetErrors", "HeldOutChange", "ForgettingSummary"]


class TargetErrors(Record):
    """The foundation's (``original``) and the fine-tuned member's (``tuned``) errors on the target's validation
    frames."""

    original: FrameSetErrors
    tuned: FrameSetErrors


_LABELLED = ("original", "tuned", "forces_rmse_original_meV_A", "forces_rmse_tuned_meV_A",
             "energy_rmse_offset_removed_original_meV_atom", "energy_rmse_offset_removed_tuned_meV_atom",
             "forces_error_increase_meV_A", "energy_error_increase_meV_atom")


class HeldOutChange(Record):
    """One held-out set: how far fine-tuning moved the predictions
    (:func:`~harness.finetune.forgetting.prediction_change`), and where the set is labelled both models' errors and
    their increase (:func:`~harness.finetune.forgetting.error_increase`; positive is forgetting)."""

    n_frames: int
    n_atoms: int
    energy_change_rms_meV_atom: float
    energy_change_mean_meV_atom: float
    energy_change_rms_shifted_meV_atom: float
    forces_change_rms_meV_A: float
    original: FrameSetErrors | None = None
    tuned: FrameSetErrors | None = None
    forces_rmse_original_meV_A: float | None = None
    forces_rmse_tuned_meV_A: float | None = None
    energy_rmse_offset_removed_original_meV_atom: float | None = None
    energy_rmse_offset_removed_tuned_meV_atom: float | None = None
    forces_error_increase_meV_A: float | None = None
    energy_error_increase_meV_atom: float | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        return drop_none(handler(self), _LABELLED)


class ForgettingSummary(Record):
    """One member's gain on the target and forgetting on the held-out sets
    (:func:`~harness.finetune.forgetting.gain_and_forgetting`); the held-out terms only where there were sets."""

    target_forces_rmse_before_meV_A: float
    target_forces_rmse_after_meV_A: float
    target_energy_rmse_before_meV_atom: float
    target_energy_rmse_after_meV_atom: float
    target_forces_gain_meV_A: float
    target_energy_gain_meV_atom: float
    prediction_change_forces_meV_A: float | None = None
    prediction_change_energy_meV_atom: float | None = None
    forgetting_forces_meV_A: float | None = None
    forgetting_energy_meV_atom: float | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        return drop_none(handler(self))


class ForgettingResult(MemberIdentity):
    strategy: str
    lr: float
    target: TargetErrors
    held_out: dict[str, HeldOutChange] = Field(description="set -> change of predictions (and errors, if labelled)")
    summary: ForgettingSummary


class ForgettingParams(WorkerParams):
    KIND: ClassVar[str] = "forgetting"
    KEY_NAME: ClassVar[str] = "harness.finetune.tasks:forgetting"
    RESULT: ClassVar[type[TaskResult]] = ForgettingResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"member": ("train",)}

    foundation: str
    foundation_sha256: str
    target_dataset: str
    target_subset: str
    target_hash: str = Field(description="the target's validation frames when planned")
    held_out_dataset: str | None = None
    held_out_sets: list[str] = Field(default_factory=list)
    held_out_max_frames: int | None = None
    held_out_hash: str | None = Field(None, description="the held-out frames when planned")
