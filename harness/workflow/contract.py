"""The task contract's bases: typed parameters, typed results, named dependencies, registered workers.

A task kind is a :class:`TaskParams` subclass (pydantic: validated when built, frozen, unknown keys refused)
naming its kind, its result class and schema version, and its dependency roles with the kinds each accepts;
its worker function is registered on the function itself with :func:`worker`. A planner builds these objects
from validated specs and turns them into executor tasks with :meth:`TaskParams.task` (which refuses a kind with
no registered worker, so a missing or misnamed worker shows when planning, not in a worker). A worker receives
the same object and its dependencies' typed results by role (``deps["member"][0].run_name``), checks the hashes
it was planned with (:func:`check_hash`), and returns its :class:`TaskResult`; the store keeps it with
``schema = "<kind>/<version>"``. A stored result of another schema (written by an older harness) is not reused.

The kinds live with the study kinds that own them: :mod:`harness.validation.contract` (train, model, md,
observe, ref_density, score: what every study validates with), :mod:`harness.al.contract`,
:mod:`harness.diagnostics.contract`, :mod:`harness.finetune.contract`.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Mapping, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from harness.config import HarnessModel
from harness.errors import InputError
from harness.workflow.task import Task, result_of

__all__ = ["Record", "drop_none", "TaskParams", "TaskResult", "WorkerParams", "Deps", "check_hash", "recorded", "worker", "task_kinds", "stored_results"]

#: dependency role -> the typed results of the tasks in it
Deps = Mapping[str, Sequence["TaskResult"]]


class Record(BaseModel):
    """A part of a task result with fixed keys (a failure, metrics, a score row): validated on every read, so a
    misspelt or unknown key is refused instead of reaching the report as a silent NaN."""

    model_config = ConfigDict(extra="forbid")


def drop_none(data: dict, keys=None) -> dict:
    """``data`` without the None values of ``keys`` (all keys when None): a record stored as its producer wrote it,
    optional parts only where computed."""
    return {k: v for k, v in data.items() if v is not None or (keys is not None and k not in keys)}


class TaskResult(BaseModel):
    """What a task returns; ``outputs`` (files the store hashes to verify the result later) is not stored
    in the result itself."""

    model_config = ConfigDict(extra="forbid")
    outputs: list[str] = Field(default_factory=list, exclude=True)


class TaskParams(HarnessModel):
    KIND: ClassVar[str]
    #: the worker's name in the task key: frozen when the kind was first written (an import path then), so that
    #: moving the worker never changes a key (:mod:`harness.workflow.task`)
    KEY_NAME: ClassVar[str]
    RESULT: ClassVar[type[TaskResult]]
    VERSION: ClassVar[int] = 1
    #: dependency role -> kinds it accepts
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.KIND}/{cls.VERSION}"

    def task(self, deps: Mapping[str, Sequence[Task]] | None = None, label: str = "") -> Task:
        """The executor task of these parameters, its dependencies named by role."""
        deps = {role: list(ts) for role, ts in (deps or {}).items() if ts}
        for role, ts in deps.items():
            if role not in self.DEPS:
                raise ValueError(f"{self.KIND}: unknown dependency role {role!r} (roles: {', '.join(self.DEPS)})")
            bad = [t.kind for t in ts if t.kind not in self.DEPS[role]]
            if bad:
                raise ValueError(f"{self.KIND}: dependency {role!r} takes {self.DEPS[role]}, not {bad}")
        fn = _WORKERS.get(type(self))
        if fn is None:
            raise TypeError(f"{type(self).__name__} ({self.KIND}): no worker registered; decorate its function "
                            f"with @worker({type(self).__name__}) in a module the planner imports")
        return Task(self.KIND, fn, self, {role: tuple(t.key for t in ts) for role, ts in deps.items()},
                    label or self.KIND)


class WorkerParams(TaskParams):
    """Parameters of a task that works in a workspace with threads on a device (training, MD, labelling)."""

    workspace: str
    threads: int = Field(ge=1)
    device: str = Field(pattern="^(cpu|cuda)$")


def check_hash(what: str, planned: str | None, actual: str) -> None:
    """Refuse to work on inputs that differ from those the task was planned with."""
    if planned is not None and planned != actual:
        raise InputError(f"{what} hash {actual} differs from the {planned} this task was planned with: the input "
                         "changed since planning; plan again (rerun the sweep/campaign command)")



def recorded(present: bool, what: str) -> None:
    """In a result's validator: a field added to a kind's result later. A result stored by an older harness lacks
    it and so does not validate: its task runs again under the same key (from its dependencies' results or the
    files on disk; nothing expensive), instead of a reader working around the gap."""
    if not present:
        raise ValueError(f"{what} not recorded (a result stored by an older harness)")

#: params class -> its worker function
_WORKERS: dict[type[TaskParams], Callable] = {}
F = TypeVar("F", bound=Callable)


def worker(params: type[TaskParams]) -> Callable[[F], F]:
    """Register the decorated function as the worker of the ``params`` kind (one worker per kind)."""
    def register(fn: F) -> F:
        old = _WORKERS.get(params)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise TypeError(f"{params.__name__}: worker {old.__module__}.{old.__qualname__} already registered")
        _WORKERS[params] = fn
        return fn

    return register


def task_kinds() -> dict[str, type[TaskParams]]:
    """Every task kind defined so far (the modules that define them imported): kind -> its params class."""
    out: dict[str, type[TaskParams]] = {}
    todo = list(TaskParams.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        kind = getattr(cls, "KIND", None)
        if isinstance(kind, str) and getattr(cls, "RESULT", None) is not None:
            out.setdefault(kind, cls)
    return out


def stored_params(row: dict, params: type[TaskParams]) -> TaskParams | None:
    """A store row's parameters (``{"schema": ..., **fields}``) as ``params``; None when they are of another schema
    or do not validate (a row an older harness planned)."""
    stored = dict(row.get("params") or {})
    if stored.pop("schema", None) != params.schema_id():
        return None
    try:
        return params.model_validate(stored)
    except ValueError:
        return None


def stored_results(rows: list[dict], params: type[TaskParams]) -> list[TaskResult]:
    """The results of store rows (``Store.tasks``) of one kind as its typed result class; those the executor would
    not reuse (:func:`~harness.workflow.task.result_of`: another schema, or not valid) are left out."""
    return [res for r in rows if (res := result_of(params, r.get("result") or {})) is not None]
