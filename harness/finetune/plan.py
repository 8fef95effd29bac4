"""Plan the ``finetune:`` section of a sweep: fine-tuned committees (trained like any, from the foundation), the
foundation itself as a zero-shot committee, and a ``forgetting`` task per fine-tuned member."""

from __future__ import annotations

from typing import Any

from harness.finetune.contract import ForgettingParams
from harness.finetune import tasks as _workers  # noqa: F401  (registers the workers of these kinds)
from harness.finetune.spec import FinetuneSpec
from harness.validation.committee import Committee
from harness.validation.context import PlanContext, PlanInputs
from harness.workflow.task import Task

__all__ = ["finetune_committees", "zero_shot_committee", "plan_forgetting"]


def finetune_committees(ft: FinetuneSpec, inputs: PlanInputs, *, subsets: list[str], preset: str,
                        max_train_frames: int | None, seeds: list[int]) -> list[Committee]:
    """The committees of every fine-tuning subset × strategy, id
    ``ft:<strategy label>/<subset>``, each carrying its :class:`~harness.models.finetune.Finetune` recipe and its
    member ``seeds`` (the sweep's first ``finetune.committee``, default all)."""
    from harness.io import sha256_file
    from harness.models.finetune import Finetune, replay_frames
    from harness.models.train import _frames_key

    foundation = inputs.need("foundation")  # checked by load_sweep (a .model file, its pinned hash)
    sha = sha256_file(foundation)
    replay: dict[str, Any] = {}
    if ft.replay is not None and any(s.strategy == "replay" for s in ft.strategies):
        replay = {"replay_dataset": str(inputs.need("replay_dataset")), "replay_subset": ft.replay.subset,
                  "replay_max_frames": ft.replay.max_frames}
        probe = Finetune(foundation=str(foundation), foundation_sha256=sha, strategy="replay", lr=1.0, **replay)
        replay["replay_key"] = _frames_key(replay_frames(probe))
    out = []
    for s in ft.subsets or subsets:
        for st in ft.strategies:
            recipe = Finetune(foundation=str(foundation), foundation_sha256=sha, strategy=st.strategy, lr=st.lr,
                              freeze=st.freeze_layers, weight_pt_head=st.weight_pt_head,
                              **(replay if st.strategy == "replay" else {}))
            tag = {"foundation": ft.name, "strategy": st.strategy, "name": st.label, "lr": st.lr,
                   "freeze": st.freeze_layers}
            out.append(Committee(id=f"ft:{st.label}/{s}", arch="mace", subset=s, preset=ft.preset or preset,
                                 overrides=dict(ft.overrides), max_train_frames=ft.max_train_frames or max_train_frames,
                                 name=f"{s}@{ft.name}-{st.label}", finetune=recipe, tags={"finetune": tag},
                                 seeds=tuple(seeds[:ft.committee] if ft.committee else seeds)))
    return out


def zero_shot_committee(ft: FinetuneSpec, inputs: PlanInputs):
    """The foundation as a committee of one, ``model:<name>``, and its member's source."""
    from harness.models.load import ModelSource

    c = Committee(id=f"model:{ft.name}", arch="mace", subset=ft.name, role="external",
                  tags={"finetune": {"foundation": ft.name, "strategy": "zero-shot", "name": "zero-shot", "lr": 0.0}})
    return c, [ModelSource(kind="file", path=str(inputs.need("foundation")), arch="mace")]


def plan_forgetting(ft: FinetuneSpec, ctx: PlanContext, members: dict[str, list[Task]],
                    committees: dict[str, Committee]) -> list[Task]:
    """A ``forgetting`` task per fine-tuned member: target gain and the change of its predictions from the
    foundation's on the held-out sets."""
    from harness.finetune.tasks import held_out_frames, target_frames

    held: dict[str, Any] = {}
    if ft.forgetting is not None:
        held_out = ctx.inputs.need("forgetting_dataset")
        _, h = held_out_frames(held_out, ft.forgetting.sets, ft.forgetting.max_frames)
        held = {"held_out_dataset": str(held_out), "held_out_sets": list(ft.forgetting.sets),
                "held_out_max_frames": ft.forgetting.max_frames, "held_out_hash": h}
    targets: dict[str, str] = {}
    out = []
    for cid, c in committees.items():
        if c.finetune is None:
            continue
        if c.subset not in targets:
            targets[c.subset] = target_frames(ctx.dataset, c.subset)[1]
        recipe = c.finetune
        for k, m in enumerate(members[cid]):
            params = ForgettingParams(**ctx.worker, foundation=recipe.foundation,
                                      foundation_sha256=recipe.foundation_sha256, target_dataset=str(ctx.dataset), target_subset=c.subset,
                                      target_hash=targets[c.subset], **held)
            out.append(params.task({"member": [m]}, f"forgetting {cid} member {k}"))
    return out
