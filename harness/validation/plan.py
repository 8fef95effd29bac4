"""The validation graph of committees: train member (or bring a model) → NPT/NVT runs → observe → score.

Tasks are typed (:mod:`harness.validation.contract`) and keyed by content: a training task's parameters carry
the committee key (which hashes the training frames and hyperparameters), an MD task's the protocol and
its hash (the analysis section excluded), an observe/score task's the analysis settings, so changing one
parameter changes only the keys downstream of it. With ``nvt.density_g_cm3: reference`` every NVT run
depends on a ``ref_density`` task over the reference committee's NPT observables. Q uses replica 0.

Every study kind plans with these pieces (sweeps, active learning, transfer runs, diagnostics, fine-tuning and
``harness validate``):
:func:`train_tasks` (one committee; its training data may come from a dependency, e.g. a generation's
labelled frames), :func:`model_tasks` (a committee of models not trained here: files, ASE calculators,
trained members) and :func:`plan_validation` (MD, observables and Q of any committees against a reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from harness.md.protocol import MDProtocol
from harness.models.load import ModelSource
from harness.validation import tasks as _workers  # noqa: F401  (registers the workers of these kinds)
from harness.validation.committee import Committee
from harness.validation.context import PlanContext
from harness.validation.contract import (MDBatchParams, MDParams, ModelParams, ObserveParams, RefDensityParams,
                                         ScoreParams, TrainParams)
from harness.workflow.task import Task

if TYPE_CHECKING:
    from harness.validation.statepoints import StatePoint

__all__ = ["train_tasks", "model_tasks", "plan_validation", "ValidationGraph", "batch_tasks", "placed", "BATCHED_ARCHS"]


def train_tasks(c: Committee, ctx: PlanContext, *, seeds: Sequence[int], al_set: Task | None = None,
                previous: Sequence[Task] = (), committee_key: str | None = None, warm_start: bool = False) -> list[Task]:
    """One training task per member of committee ``c`` (``seeds``: its members' seeds) on the plan's data set.

    ``c.extra_frames`` (a labelled file trained on besides the subset) has its hash in the parameters, checked by
    the worker; ``c.tags`` are copied into every downstream result (e.g. an AL generation). With ``al_set``, that task's AL frames are the extra
    training file (the committee key is then unknown at planning time and not checked); ``previous``: the
    previous generation's members (warm start).
    """
    from harness.io import sha256_file

    extra = c.extra_frames
    out = []
    for k, seed in enumerate(seeds):
        params = TrainParams(**ctx.worker, dataset=str(ctx.dataset), subset=c.subset, arch=c.arch, preset=c.preset,
                             overrides=c.overrides, max_train_frames=c.max_train_frames, seed=seed, member=k,
                             committee_key=committee_key, committee=c.id, name=c.name, tags=c.tags,
                             warm_start=warm_start and bool(previous), finetune=c.finetune,
                             extra_frames=str(extra) if extra else None,
                             extra_frames_sha256=sha256_file(extra) if extra else None)
        deps = {"al_set": [al_set] if al_set else [], "previous": [previous[k]] if warm_start and previous else []}
        out.append(placed(params.task(deps, f"train {c.id} member {k}"), c.arch))
    return out


def model_tasks(c: Committee, sources: Sequence[ModelSource]) -> list[Task]:
    """One ``model`` task per member of a committee of models not trained by the sweep."""
    from harness.io import sha256_file

    out = []
    for k, src in enumerate(sources):
        sha = sha256_file(src.path) if src.kind == "file" else None
        params = ModelParams(source=src, sha256=sha, committee=c.id, arch=c.arch, subset=c.subset, member=k,
                             tags=c.tags)
        out.append(params.task(label=f"model {c.id} member {k}"))
    return out


def placed(task: Task, arch: str) -> Task:
    """A task of a CPU-only architecture (GAP) runs on CPU workers even in a cuda sweep."""
    from dataclasses import replace

    from harness.models.base import CPU_ONLY_ARCHITECTURES

    return replace(task, resources="cpu") if arch in CPU_ONLY_ARCHITECTURES else task


#: architectures whose models evaluate many structures in one call (harness.models.batch)
BATCHED_ARCHS = ("mace", "deepmd")


def batch_tasks(members: dict[str, list[Task]], committees: dict[str, Committee], ctx: PlanContext, *,
                protocol: MDProtocol, protocol_hash: str, ensemble: str, replicas: int, md_batch: int,
                ref_density: Task | None = None, label: str = "") -> tuple[list[Task], dict[tuple[str, int, int], Task]]:
    """``md_batch`` tasks of up to ``md_batch`` trajectories for the runs of one ensemble of every member of a
    batched architecture (MACE, DeePMD), and (committee, member, replica) -> its batch; none when
    ``md_batch`` is 1. ``label`` is added to the task labels (e.g. a liquid's name)."""
    by_arch: dict[str, list[tuple[str, int, int, Task]]] = {}
    if md_batch > 1:
        for cid in members:
            if committees[cid].arch in BATCHED_ARCHS:
                by_arch.setdefault(committees[cid].arch, []).extend(
                    (cid, k, r, m) for k, m in enumerate(members[cid]) for r in range(replicas))
    made: list[Task] = []
    out: dict[tuple[str, int, int], Task] = {}
    for arch, items in by_arch.items():
        for n, i in enumerate(range(0, len(items), md_batch)):
            chunk = items[i:i + md_batch]
            uniq = list({m.key: m for *_, m in chunk}.values())
            index = {m.key: j for j, m in enumerate(uniq)}
            params = MDBatchParams(**ctx.worker, protocol=protocol, protocol_hash=protocol_hash, ensemble=ensemble,
                                   runs=[(index[m.key], r) for _, _, r, m in chunk], engine=ctx.engine)
            task = params.task({"members": uniq, "ref_density": [ref_density] if ref_density else []},
                               f"md {ensemble}{label} batch {arch} {n} ({len(chunk)} runs)")
            made.append(task)
            out.update({(cid, k, r): task for cid, k, r, _ in chunk})
    return made, out


@dataclass(frozen=True)
class ValidationGraph:
    """The validation tasks in plan order, and the MD and observe tasks indexed by (committee, member, ensemble,
    replica), so that the diagnostics and fine-tuning find a run without scanning task parameters."""

    tasks: list[Task]
    runs: dict[tuple[str, int, str, int], Task]
    observed: dict[tuple[str, int, str, int], Task]


def plan_validation(members: dict[str, list[Task]], committees: dict[str, Committee], ref: str, ctx: PlanContext, *,
                    replicas: int, score_reference: bool = True, md_batch: int = 1,
                    state_point: "StatePoint | None" = None) -> ValidationGraph:
    """NPT/NVT runs (the plan's protocol), observables (its analysis settings, else the protocol's) and the Q
    score of every committee in ``members`` against ``ref`` (and of the reference against itself, its row in a
    Q table, unless ``score_reference`` is False).

    ``md_batch`` > 1: the runs of each ensemble and batched architecture (MACE, DeePMD; members of every
    committee, replicas) go to ``md_batch`` tasks of up to that many trajectories, advanced together; each
    run's ``md`` task depends on its batch and returns the run (keys of unbatched runs are unchanged).

    ``state_point``: the :class:`~harness.validation.statepoints.StatePoint` the plan's protocol is at, recorded in
    every score and added to the task labels (None: a plan without state-point axes; keys as before)."""
    from harness.md.protocol import protocol_hash

    protocol = ctx.md_protocol()
    analysis = ctx.analysis or protocol.analysis
    obs = {"analysis": analysis, "equilibration_ps": protocol.equilibration_ps, "tau_ps": protocol.horizon_ps}
    phash = protocol_hash(protocol)
    tasks: list[Task] = []
    at = f" @ {state_point.label}" if state_point is not None and not state_point.primary else ""

    def batches(ensemble: str, rd: Task | None) -> dict[tuple[str, int, int], Task]:
        made, index = batch_tasks(members, committees, ctx, protocol=protocol, protocol_hash=phash, ensemble=ensemble,
                                  replicas=replicas, md_batch=md_batch, ref_density=rd, label=at)
        tasks.extend(made)
        return index

    def runs(cid: str, ensemble: str, rd: Task | None = None, batch: dict | None = None) -> dict[tuple[int, int], Task]:
        out = {}
        for k, member in enumerate(members[cid]):
            for r in range(replicas):
                params = MDParams(**ctx.worker, protocol=protocol, protocol_hash=phash, ensemble=ensemble, replica=r)
                b = (batch or {}).get((cid, k, r))
                out[(k, r)] = placed(params.task({"member": [member], "ref_density": [rd] if rd else [],
                                                   "batch": [b] if b else []}, f"md {ensemble} {cid} member {k} r{r}{at}"),
                                      committees[cid].arch)
        return out

    def observed(runs_: dict) -> dict[tuple[int, int], Task]:
        return {kr: ObserveParams(**obs).task({"run": [t]}, t.label.replace("md ", "observe ", 1))
                for kr, t in runs_.items()}

    npt_batches = batches("npt", None)
    npt = {c: runs(c, "npt", batch=npt_batches) for c in members}
    npt_obs = {c: observed(v) for c, v in npt.items()}
    for c in members:
        tasks += [*npt[c].values(), *npt_obs[c].values()]
    rd = None
    if protocol.nvt.density_g_cm3 == "reference":
        rd = RefDensityParams(reference=ref, tau_ps=protocol.horizon_ps).task(
            {"observed": list(npt_obs[ref].values())}, f"reference NPT density ({ref}){at}")
        tasks.append(rd)
    nvt_obs = {}
    nvt_batches = batches("nvt", rd)
    nvt = {}
    for c in members:
        nvt[c] = runs(c, "nvt", rd, nvt_batches)
        nvt_obs[c] = observed(nvt[c])
        tasks += [*nvt[c].values(), *nvt_obs[c].values()]
    for cid in members:
        if cid == ref and not score_reference:
            continue
        c = committees[cid]
        deps = [t for o in (npt_obs, nvt_obs) for cc in dict.fromkeys([cid, ref]) for (k, r), t in o[cc].items()
                if r == 0]
        params = ScoreParams(**obs, committee=cid, arch=c.arch, subset=c.subset, reference=ref,
                             reference_is_self=cid == ref, tags=c.tags, state_point=state_point)
        tasks.append(params.task({"observed": deps}, f"score {cid}{at}"))
    index = lambda by_ens: {(c, k, ens, r): t for ens, by_c in by_ens.items()  # noqa: E731
                            for c, kr in by_c.items() for (k, r), t in kr.items()}
    return ValidationGraph(tasks, index({"npt": npt, "nvt": nvt}), index({"npt": npt_obs, "nvt": nvt_obs}))
