"""Expand an AL spec into one task graph over all generations (executed and resumed like a sweep).

Per chain (initial subset) and generation ``g``: ``train`` × committee (on the subset + the AL frames of
the previous generation's ``al_set`` task) → ``explore`` × (compositions × starts), each on the primary
member with the committee evaluated at the checks → ``label`` per run (oracle) → ``al_set`` (the
cumulative AL frames) → generation ``g + 1``. The starts
(``al_start``, OPLS-AA) are shared by all generations and chains. With ``validation``, every generation's
committee and the reference committee get the sweep's MD/observe/score tasks (Q per generation).
Keys are content hashes of parameters and dependency keys, so a rerun reuses every finished task.
"""

from __future__ import annotations

from pathlib import Path

from harness.al.contract import ALSetParams, ALStartParams, ExploreParams, LabelParams, exploration_hash
from harness.al.spec import ALSpec
from harness.validation.committee import Committee, reference_committee
from harness.validation.context import PlanContext, PlanInputs
from harness.al import tasks as _workers  # noqa: F401  (registers the workers of these kinds)
from harness.workflow.task import Task

__all__ = ["plan_al", "committee_id"]


def committee_id(arch: str, chain: str, generation: int) -> str:
    return f"{arch}/{chain}@g{generation}"


def _oracle(spec: ALSpec, dataset: Path) -> dict:
    """The campaign's oracle settings, checked now (a name that is no calculator, an unknown option) rather
    than at the first labelling, generations later."""
    from harness.errors import InputError
    from harness.datasets.spec import dataset_oracle
    from harness.reference import make_oracle

    oracle = spec.oracle.model_dump(mode="json") if spec.oracle is not None else \
        dataset_oracle(dataset, spec.threads_per_task)
    try:
        make_oracle(oracle["name"], oracle["options"])
    except InputError as exc:
        raise InputError(f"oracle: {exc}") from None
    return oracle


def plan_al(spec: ALSpec, inputs: PlanInputs, workspace: str | Path) -> list[Task]:
    from harness.datasets.spec import params_hash
    from harness.models.train import plan_committee
    from harness.validation.plan import plan_validation, train_tasks

    ctx = PlanContext.make(workspace, inputs, threads=spec.threads_per_task, device=spec.device)
    workspace = ctx.workspace
    e = spec.exploration
    ehash = exploration_hash(e)
    oracle = _oracle(spec, ctx.dataset)
    tasks: list[Task] = []
    starts: dict[str, Task] = {}
    for ci, comp in enumerate(e.compositions):
        fields = {"composition": comp, "n": e.starts_per_composition, "start": e.start, "temperature_K": e.temperature_K,
                  "stride_ps": e.start_stride_ps, "seed": 1000 * e.start.seed + ci}
        digest = params_hash({k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in fields.items()})
        path = Path(workspace) / "al" / "starts" / f"{comp.replace('=', '').replace(',', '-')}-{digest}.extxyz"
        starts[comp] = ALStartParams(**fields, path=str(path)).task(label=f"OPLS-AA starts {comp}")
        tasks.append(starts[comp])

    members: dict[str, list[Task]] = {}
    committees: dict[str, Committee] = {}
    for chain in spec.initial_subsets:
        prev_set: Task | None = None
        prev_members: list[Task] = []
        for g in range(spec.generations):
            cid = committee_id(spec.architecture, chain, g)
            tags = {"campaign": spec.name, "chain": chain, "generation": g}
            name = f"{chain}+AL.{spec.name}.g{g}" + (".warm" if spec.warm_start else "") if g else None
            c = Committee(id=cid, arch=spec.architecture, subset=chain, preset=spec.preset, overrides=spec.overrides,
                          max_train_frames=spec.max_train_frames, tags=tags, name=name)
            key = None
            if prev_set is None:  # generation 0: the data is known now, so its key is checked
                key = plan_committee(ctx.dataset, chain, spec.architecture, preset=spec.preset,
                                     workspace=workspace, overrides=spec.overrides, device=spec.device,
                                     max_train_frames=spec.max_train_frames).key
            tr = train_tasks(c, ctx, seeds=spec.member_seeds, al_set=prev_set, previous=prev_members,
                             committee_key=key, warm_start=spec.warm_start)
            tasks += tr
            members[cid], committees[cid] = tr, c
            prev_members = tr
            if g == spec.generations - 1 and not spec.explore_last:
                break
            explores = []
            for ci, comp in enumerate(e.compositions):
                for k in range(e.starts_per_composition):
                    params = ExploreParams(**ctx.worker, exploration=e, exploration_hash=ehash, composition=comp, start=k,
                                           index=ci * e.starts_per_composition + k, generation=g, chain=chain,
                                           campaign=spec.name, arch=spec.architecture)
                    explores.append(params.task({"members": tr, "start": [starts[comp]]},
                                                f"explore {cid} {comp} start {k}"))
            tasks += explores
            label_params = LabelParams(**ctx.worker, oracle=oracle, campaign=spec.name)
            labels = [label_params.task({"run": [x]}, x.label.replace("explore ", "label ", 1)) for x in explores]
            tasks += labels
            directory = Path(workspace) / "al" / spec.name / chain.replace("/", "_") / f"g{g}"
            lab = ALSetParams(campaign=spec.name, chain=chain, generation=g, directory=str(directory)).task(
                {"labels": labels, "previous": [prev_set] if prev_set else []},
                f"AL set after {cid} ({len(explores)} runs)")
            tasks.append(lab)
            prev_set = lab

    if spec.validation is not None:
        v = spec.validation
        # the campaign's overrides and training budget are its architecture's: the reference has only its own
        ref = reference_committee(v.reference, preset=spec.preset, overrides=None, max_train_frames=None,
                                  seeds=spec.member_seeds)
        plan = plan_committee(ctx.dataset, ref.subset, ref.arch, preset=ref.preset, workspace=workspace,
                              overrides=ref.overrides, device=spec.device, max_train_frames=ref.max_train_frames)
        members[ref.id] = train_tasks(ref, ctx, seeds=ref.seeds or spec.member_seeds, committee_key=plan.key)
        committees[ref.id] = ref
        tasks += members[ref.id]
        tasks += plan_validation(members, committees, ref.id, ctx, replicas=v.replicas).tasks
    return tasks
