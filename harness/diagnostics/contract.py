"""Task kinds of the diagnostics (SCIENCE.md §9), typed like the sweep's (:mod:`harness.validation.contract`).

``vscan``: a committee's energies on a validation set of rigid-molecule volume scans, E(ρ) rows and the
baseline shift per composition. ``relabel``: frames of one MD run every Δt labelled with the reference
method (resumable; each frame labelled once, beside the run). ``traj_errors``: a member's errors on the
relabelled frames of its own run (a validation NVT run, or an NPT run in an out-of-distribution liquid).
``liquid``: one committee in one out-of-distribution liquid: every member's NPT stability and errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from harness.workflow.contract import TaskParams, TaskResult, WorkerParams

from harness.validation.contract import MemberIdentity

__all__ = ["VScanParams", "VScanResult", "RelabelParams", "RelabelResult", "TrajErrorsParams", "TrajErrorsResult",
           "LiquidParams", "LiquidResult"]


class VScanResult(TaskResult):
    committee: str
    arch: str
    subset: str | None = None
    validation_set: str
    rows: list[dict[str, Any]] = Field(description="one per frame and member (diagnostics.volume_scan.scan_table)")
    shifts: list[dict[str, Any]] = Field(description="baseline shift per composition")
    errors: dict[str, dict[str, Any]] = Field(description="member -> energy/force errors on the set")
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


class RelabelResult(MemberIdentity):
    run_dir: str
    ensemble: str
    t_stab_ps: float
    liquid: str | None = None
    labelled_file: str | None = None
    n_selected: int = 0
    n_labelled: int = 0
    failed: list[dict[str, Any]] = Field(default_factory=list)
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
    frames: list[dict[str, Any]] = Field(description="per relabelled frame (diagnostics.trajectory.frame_errors)")
    summary: dict[str, Any]
    by_reference: list[dict[str, Any]] = Field(default_factory=list)
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
    members: list[dict[str, Any]] = Field(description="member, seed, t_stab_ps, reached_tau, failure, errors")


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
