"""Typed parameters and results of the active-learning task kinds (see :mod:`harness.validation.contract`).

``al_start`` (OPLS-AA starting frames of one composition) → ``explore`` (one trajectory of a
generation's primary member, the committee asked for sigma2_F at the checks; its selected frame) →
``label`` (the oracle's label of that frame) → ``al_set`` (the cumulative AL frames of a chain).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_serializer

from harness.al.spec import ExplorationSpec
from harness.md.protocol import StartSpec
from harness.workflow.contract import Record, TaskParams, TaskResult, WorkerParams, drop_none

__all__ = ["ALStartParams", "ALStartResult", "ExploreParams", "ExploreResult", "LabelParams", "LabelResult",
           "ALSetParams", "ALSetResult", "Selection", "ALFrame", "RunNote", "exploration_hash"]


def exploration_hash(e: ExplorationSpec) -> str:
    """Hash of what determines an exploration trajectory (every setting but which compositions and how many
    starts there are, which name other trajectories)."""
    from harness.datasets.spec import params_hash

    return params_hash(e.model_dump(mode="json", exclude={"compositions", "starts_per_composition"}))


class ALStartResult(TaskResult):
    path: str
    n: int
    composition: str


class ALStartParams(TaskParams):
    KIND: ClassVar[str] = "al_start"
    KEY_NAME: ClassVar[str] = "harness.al.tasks:al_start"
    RESULT: ClassVar[type[TaskResult]] = ALStartResult
    VERSION: ClassVar[int] = 2

    composition: str
    n: int = Field(ge=1)
    start: StartSpec
    temperature_K: float = Field(gt=0)
    stride_ps: float = Field(gt=0)
    seed: int = Field(ge=0)
    path: str


class Selection(Record):
    """What an exploration run's committee checks picked (``harness.al.tasks``): the frame's sigma2_F, step and
    time, how many checks there were and their largest sigma2_F, what stopped the run and whether its last frame
    was left out; or only why nothing was picked (``reason``, with ``stopped_by`` where known)."""

    reason: str
    stopped_by: str | None = None
    sigma2_F: float | None = None
    step: int | None = None
    time_ps: float | None = None
    n_checks: int | None = None
    max_sigma2_F: float | None = None
    stop_frame_excluded: bool | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler):  # stored as the worker wrote it: a selection's keys, or the reason alone
        out = handler(self)
        return out if self.sigma2_F is not None else drop_none(out)


class ALFrame(Record):
    """A labelled AL frame's tags: its composition, trajectory, time, sigma2_F, why it was picked, its uid."""

    composition: str | None
    run: str | None
    time_ps: float | None
    sigma2_F: float | None
    reason: str | None
    uid: str | None


class RunNote(Record):
    """A trajectory that added no frame to the AL set, and why (``error``: the oracle failed; ``reason``: nothing
    was selected)."""

    trajectory: str
    error: str | None = None
    reason: str | None = None

    @model_serializer(mode="wrap")
    def _one_key(self, handler):
        return drop_none(handler(self), ("error", "reason"))


class ChainResult(TaskResult):
    """Where in a campaign a result belongs: its chain and generation."""

    campaign: str
    chain: str
    generation: int


class ExploreResult(ChainResult):
    run_dir: str
    composition: str
    start: int
    arch: str
    t_stop_ps: float
    stopped_by: str | None = None
    length_ps: float
    hit_threshold: bool
    wall_s: float
    selection: Selection
    selected_file: str | None = None


class ExploreParams(WorkerParams):
    KIND: ClassVar[str] = "explore"
    KEY_NAME: ClassVar[str] = "harness.al.tasks:explore"
    RESULT: ClassVar[type[TaskResult]] = ExploreResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"members": ("train",), "start": ("al_start",)}

    exploration: ExplorationSpec
    exploration_hash: str
    composition: str
    start: int = Field(ge=0)
    index: int = Field(ge=0)
    generation: int = Field(ge=0)
    chain: str
    campaign: str
    arch: str


class LabelResult(ChainResult):
    composition: str
    start: int
    run_dir: str
    labelled_file: str | None = None
    oracle_calls: int = 0
    error: str | None = None
    skipped: str | None = None
    frame: ALFrame | None = None


class LabelParams(WorkerParams):
    KIND: ClassVar[str] = "label"
    KEY_NAME: ClassVar[str] = "harness.al.tasks:label"
    RESULT: ClassVar[type[TaskResult]] = LabelResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"run": ("explore",)}

    oracle: dict[str, Any]
    campaign: str


class ALSetResult(ChainResult):
    n_selected: int
    n_new: int
    n_total: int
    oracle_calls: int
    failed: list[RunNote]
    skipped: list[RunNote]
    frames: list[ALFrame]
    al_frames: str | None = None


class ALSetParams(TaskParams):
    KIND: ClassVar[str] = "al_set"
    KEY_NAME: ClassVar[str] = "harness.al.tasks:al_set"
    RESULT: ClassVar[type[TaskResult]] = ALSetResult
    VERSION: ClassVar[int] = 2
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"labels": ("label",), "previous": ("al_set",)}

    campaign: str
    chain: str
    generation: int = Field(ge=0)
    directory: str
