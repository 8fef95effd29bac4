"""Task kind ``forgetting`` (issue #17): one fine-tuned member against its foundation, typed like the sweep's."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from harness.workflow.contract import TaskResult, WorkerParams

from harness.validation.contract import MemberIdentity

__all__ = ["ForgettingParams", "ForgettingResult"]


class ForgettingResult(MemberIdentity):
    strategy: str
    lr: float
    target: dict[str, dict[str, Any]] = Field(description="original/tuned errors on the target's validation frames")
    held_out: dict[str, dict[str, Any]] = Field(description="set -> change of predictions (and errors, if labelled)")
    summary: dict[str, float]


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
