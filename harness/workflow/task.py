"""A task of the workflow engine: a kind, its worker, its parameters and the keys of what it depends on.

Its key is the hash of the kind, the worker's name, the parameters (with their schema id when typed) and the
dependency keys, so a changed parameter changes the key of the task and of everything downstream. The worker's
name in the key is :attr:`TaskParams.KEY_NAME <harness.workflow.contract.TaskParams.KEY_NAME>` for a typed task
— frozen when the kind was first written, so that moving code never changes a key (and never reruns work in
an existing workspace; ``tests/test_task_keys.py`` pins the keys of every shipped spec) — and the import path
for an untyped one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Task", "only_kinds", "result_of"]


def _typed(params) -> bool:
    return hasattr(params, "schema_id")


def only_kinds(tasks: list[Task], kinds: set[str]) -> list[Task]:
    """The tasks of ``kinds`` and everything they depend on, in plan order (e.g. ``{"train"}``: train the
    committees now, run their MD later)."""
    by_key = {t.key: t for t in tasks}
    keep: set[str] = set()
    todo = [t.key for t in tasks if t.kind in kinds]
    while todo:
        k = todo.pop()
        if k not in keep:
            keep.add(k)
            todo += by_key[k].dep_keys
    return [t for t in tasks if t.key in keep]


@dataclass(frozen=True)
class Task:
    kind: str
    #: the worker function (typed tasks: registered with :func:`harness.workflow.contract.worker`), or its
    #: import path ``"package.module:function"`` (untyped tasks); Dask pickles a function by reference, so a
    #: worker process imports its module
    fn: Callable | str
    params: Any = field(default_factory=dict)  # a JSON dict, or a typed TaskParams object
    deps: tuple[str, ...] | dict[str, tuple[str, ...]] = ()  # keys, or role -> keys (typed tasks)
    label: str = ""
    #: where it runs on a node with GPU workers: "gpu", "cpu", or None (the GPU when its params say device
    #: cuda); not part of the key
    resources: str | None = field(default=None, compare=False)

    @property
    def needs_gpu(self) -> bool:
        if self.resources is not None:
            return self.resources == "gpu"
        device = getattr(self.params, "device", None) if _typed(self.params) else (self.params or {}).get("device")
        return device == "cuda"

    @property
    def dep_keys(self) -> tuple[str, ...]:
        if isinstance(self.deps, dict):
            return tuple(k for keys in self.deps.values() for k in keys)
        return tuple(self.deps)

    def params_json(self) -> dict:
        if _typed(self.params):
            return {"schema": self.params.schema_id(), **self.params.model_dump(mode="json")}
        return self.params

    @property
    def key_name(self) -> str:
        """The worker's name in the key: the kind's frozen ``KEY_NAME`` (typed), else the import path."""
        return self.params.KEY_NAME if _typed(self.params) else self.fn

    @property
    def key(self) -> str:
        deps = ({r: sorted(k) for r, k in self.deps.items()} if isinstance(self.deps, dict) else sorted(self.deps))
        blob = json.dumps([self.kind, self.key_name, self.params_json(), deps], sort_keys=True, default=str)
        return f"{self.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def typed_result(self, stored: dict | None):
        """A stored result as this task's result object; None when it is of another schema (or corrupt)."""
        if stored is None or not _typed(self.params):
            return stored
        return result_of(type(self.params), stored)

    def dep_payload(self, results: dict[str, Any]):
        if isinstance(self.deps, dict):
            return {role: [results[k] for k in keys] for role, keys in self.deps.items()}
        return {d: results[d] for d in self.deps}


def result_of(params: type, stored: dict):
    """A stored result (``{"schema": ..., **fields}``) as the typed result of the ``params`` kind; None when it is of
    another schema or does not validate (an older harness's, or corrupt): such a result is never reused."""
    if stored.get("schema") != params.schema_id():
        return None
    try:
        return params.RESULT.model_validate({k: v for k, v in stored.items() if k != "schema"})
    except ValueError:
        return None
