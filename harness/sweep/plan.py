"""Expand a sweep spec into its task graph: the committees of the grid (and the reference, external models,
fine-tuned foundation models) through the validation graph (:mod:`harness.validation.plan`), then the paper's
diagnostics and the fine-tuning's forgetting when the spec asks for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.observables.analysis import AnalysisSpec
from harness.sweep.spec import SweepSpec
from harness.validation.plan import model_tasks, plan_validation, train_tasks
from harness.workflow.task import Task

__all__ = ["plan_sweep"]


def plan_sweep(spec: SweepSpec, files: dict[str, Any], workspace: str | Path) -> list[Task]:
    from harness.config import load_yaml
    from harness.md.protocol import load_protocol
    from harness.models.train import plan_committee

    workspace = str(Path(workspace).resolve())
    analysis = load_yaml(files["analysis"], AnalysisSpec) if "analysis" in files else None
    common = {"workspace": workspace, "threads": spec.threads_per_task, "device": spec.device}
    tasks: list[Task] = []
    members: dict[str, list[Task]] = {}
    committees = {c.id: c for c in spec.committees()}
    ref = next(cid for cid, c in committees.items() if c.reference)
    if spec.finetune is not None:
        from harness.finetune.plan import finetune_committees

        committees.update({c.id: c for c in finetune_committees(
            spec.finetune, files, subsets=spec.subsets, preset=spec.preset,
            max_train_frames=spec.max_train_frames, seeds=spec.member_seeds)})
    for cid, c in committees.items():
        plan = plan_committee(files["dataset"], c.subset, c.arch, preset=c.preset, workspace=workspace,
                              overrides=c.overrides, device=spec.device, max_train_frames=c.max_train_frames,
                              extra_frames=c.extra_frames, name=c.name, finetune=c.finetune)
        members[cid] = train_tasks(c, dataset=files["dataset"], seeds=c.seeds or spec.member_seeds,
                                   common=common, committee_key=plan.key)
        tasks += members[cid]
    for entry in spec.models:
        sources = files["models"][entry.name]
        c = entry.committee_entry(sources)
        committees[c.id] = c
        members[c.id] = model_tasks(c, sources)
        tasks += members[c.id]
    if spec.finetune is not None and spec.finetune.zero_shot:
        from harness.finetune.plan import zero_shot_committee

        c, sources = zero_shot_committee(spec.finetune, files)
        committees[c.id] = c
        members[c.id] = model_tasks(c, sources)
        tasks += members[c.id]
    protocol = load_protocol(files["protocol"])
    validation = plan_validation(members, committees, ref, protocol=protocol, analysis=analysis,
                                 replicas=spec.replicas, common=common, md_batch=spec.md_batch)
    tasks += validation.tasks
    if spec.diagnostics is not None and not spec.diagnostics.empty:
        from harness.diagnostics.plan import plan_diagnostics

        tasks += plan_diagnostics(spec.diagnostics, validation, members, committees, protocol=protocol,
                                  dataset=files["dataset"], common=common, md_batch=spec.md_batch)
    if spec.finetune is not None:
        from harness.finetune.plan import plan_forgetting

        tasks += plan_forgetting(spec.finetune, files, members, committees, common=common)
    return tasks
