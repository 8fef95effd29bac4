"""Expand a sweep spec into its task graph: the committees of the grid (and the reference, external models,
fine-tuned foundation models) through the validation graph (:mod:`harness.validation.plan`), then the paper's
diagnostics and the fine-tuning's forgetting when the spec asks for them."""

from __future__ import annotations

from pathlib import Path

from harness.sweep.spec import SweepSpec
from harness.validation.context import PlanContext, PlanInputs
from harness.validation.plan import model_tasks, plan_validation, train_tasks
from harness.workflow.task import Task

__all__ = ["plan_sweep"]


def plan_sweep(spec: SweepSpec, inputs: PlanInputs, workspace: str | Path) -> list[Task]:
    from harness.models.train import plan_committee

    ctx = PlanContext.make(workspace, inputs, threads=spec.threads_per_task, device=spec.device, engine=spec.engine)
    tasks: list[Task] = []
    members: dict[str, list[Task]] = {}
    committees = {c.id: c for c in spec.committees()}
    if spec.finetune is not None:
        from harness.finetune.plan import finetune_committees

        committees.update({c.id: c for c in finetune_committees(
            spec.finetune, inputs, subsets=spec.subsets, preset=spec.preset,
            max_train_frames=spec.max_train_frames, seeds=spec.member_seeds)})
    for cid, c in committees.items():
        plan = plan_committee(ctx.dataset, c.subset, c.arch, preset=c.preset, workspace=ctx.workspace,
                              overrides=c.overrides, device=spec.device, max_train_frames=c.max_train_frames,
                              extra_frames=c.extra_frames, name=c.name, finetune=c.finetune)
        members[cid] = train_tasks(c, ctx, seeds=c.seeds or spec.member_seeds, committee_key=plan.key)
        tasks += members[cid]
    for entry in spec.models:
        sources = inputs.models[entry.name]
        c = entry.committee_entry(sources)
        if entry.name == spec.reference.model:
            c = c.model_copy(update={"role": "reference"})
        committees[c.id] = c
        members[c.id] = model_tasks(c, sources)
        tasks += members[c.id]
    if spec.finetune is not None and spec.finetune.zero_shot:
        from harness.finetune.plan import zero_shot_committee

        c, sources = zero_shot_committee(spec.finetune, inputs)
        committees[c.id] = c
        members[c.id] = model_tasks(c, sources)
        tasks += members[c.id]
    ref = next(cid for cid, c in committees.items() if c.reference)
    points = spec.state_points(ctx.md_protocol()) if spec.has_state_axes else [None]
    validation = plan_validation(members, committees, ref, ctx, replicas=spec.replicas, md_batch=spec.md_batch,
                                 state_point=points[0])
    tasks += validation.tasks
    if len(points) > 1:  # every committee at the other state points of the axes (the first is the protocol's own)
        from dataclasses import replace

        from harness.validation.statepoints import state_protocol

        for point in points[1:]:
            at = replace(ctx, protocol=state_protocol(ctx.md_protocol(), point))
            tasks += plan_validation(members, committees, ref, at, replicas=spec.replicas, md_batch=spec.md_batch,
                                     state_point=point).tasks
    if spec.heating_ramp is not None:
        from harness.validation.ramp import plan_ramps

        tasks += plan_ramps(spec.heating_ramp, members, committees, ctx)
    if spec.diagnostics is not None and not spec.diagnostics.empty:
        from harness.diagnostics.plan import plan_diagnostics

        tasks += plan_diagnostics(spec.diagnostics, validation, members, committees, ctx, md_batch=spec.md_batch)
    if spec.finetune is not None:
        from harness.finetune.plan import plan_forgetting

        tasks += plan_forgetting(spec.finetune, ctx, members, committees)
    return tasks
