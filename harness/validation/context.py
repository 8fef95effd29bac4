"""What every task of one plan shares, in one frozen object instead of dicts passed around.

:class:`PlanInputs` are the files a spec names, resolved against the spec's folder and checked by its loader
(:func:`harness.sweep.spec.load_sweep`, :func:`harness.al.spec.load_al`, the transfer loader): the dataset spec,
the MD protocol and analysis settings, the models of a sweep's ``models:`` entries and a fine-tuning's foundation
and data. :class:`PlanContext` adds where and how the tasks run (the workspace, threads per task, device) and the
parsed protocol and analysis; the planners (:mod:`harness.validation.plan`, sweeps, active learning, transfer
runs, diagnostics, fine-tuning, ``harness validate``) take it. Its :attr:`PlanContext.worker` fields are those of
every :class:`~harness.workflow.contract.WorkerParams`, so a task's key depends on them exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.md.protocol import MDProtocol
from harness.models.load import ModelSource
from harness.observables.analysis import AnalysisSpec

__all__ = ["PlanInputs", "PlanContext"]


@dataclass(frozen=True)
class PlanInputs:
    """The files a spec names, resolved and checked by its loader."""

    dataset: Path | None = None
    protocol: Path | None = None
    analysis: Path | None = None
    #: a sweep's ``models:`` entries: name -> the sources of its members
    models: dict[str, list[ModelSource]] = field(default_factory=dict)
    #: fine-tuning: the foundation ``.model`` file, the replay data set and the held-out data set
    foundation: Path | None = None
    replay_dataset: Path | None = None
    forgetting_dataset: Path | None = None

    def need(self, name: str) -> Path:
        """The file ``name``, which the loader must have resolved for the plan asking for it."""
        value = getattr(self, name)
        if value is None:  # a planner asked for a file its spec does not name: a bug, not bad input
            raise RuntimeError(f"the plan needs the {name} file, which its spec's loader did not resolve")
        return value


@dataclass(frozen=True)
class PlanContext:
    """The workspace, threads per task and device of one plan, its inputs, and their parsed protocol and analysis
    (``None`` where the spec names none)."""

    workspace: str
    threads: int
    device: str
    inputs: PlanInputs
    protocol: MDProtocol | None = None
    analysis: AnalysisSpec | None = None
    #: the engine of batched MD tasks (``md_batch``): ase (harness.md.batched) or torchsim (harness.md.torchsim)
    engine: str = "ase"

    @classmethod
    def make(cls, workspace: str | Path, inputs: PlanInputs, *, threads: int, device: str,
             engine: str = "ase") -> "PlanContext":
        """Resolve the workspace and parse the protocol and analysis files of ``inputs``."""
        from harness.config import load_yaml
        from harness.md.protocol import load_protocol

        return cls(workspace=str(Path(workspace).resolve()), threads=threads, device=device, inputs=inputs,
                   engine=engine,
                   protocol=load_protocol(inputs.protocol) if inputs.protocol else None,
                   analysis=load_yaml(inputs.analysis, AnalysisSpec) if inputs.analysis else None)

    @property
    def dataset(self) -> Path:
        return self.inputs.need("dataset")

    @property
    def worker(self) -> dict[str, Any]:
        """The :class:`~harness.workflow.contract.WorkerParams` fields of this plan's tasks."""
        return {"workspace": self.workspace, "threads": self.threads, "device": self.device}

    def md_protocol(self) -> MDProtocol:
        """The protocol, which a plan with MD needs."""
        if self.protocol is None:
            raise RuntimeError("the plan runs MD but its spec's loader resolved no protocol")
        return self.protocol
