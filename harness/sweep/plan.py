"""Expand a sweep spec into the task graph: train member (or bring a model) → NPT/NVT runs → observe → score.

Tasks are typed (:mod:`harness.sweep.contract`) and keyed by content: a training task's parameters carry
the committee key (which hashes the training frames and hyperparameters), an MD task's the protocol and
its hash (the analysis section excluded), an observe/score task's the analysis settings, so changing one
parameter changes only the keys downstream of it. With ``nvt.density_g_cm3: reference`` every NVT run
depends on a ``ref_density`` task over the reference committee's NPT observables. Q uses replica 0.

The pieces are reused by active learning (:mod:`harness.al.plan`), transfer runs and ``harness validate``:
:func:`train_tasks` (one committee; its training data may come from a dependency, e.g. a generation's
labelled frames), :func:`model_tasks` (a committee of models not trained here: files, ASE calculators,
trained members) and :func:`plan_validation` (MD, observables and Q of any committees against a reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from harness.md.protocol import MDProtocol
from harness.models.load import ModelSource
from harness.observables.analysis import AnalysisSpec
from harness.sweep.contract import (MDBatchParams, MDParams, ModelParams, ObserveParams, RefDensityParams, ScoreParams,
                                    TrainParams)
from harness.sweep.execute import Task
from harness.sweep.spec import SweepSpec

__all__ = ["plan_sweep", "train_tasks", "model_tasks", "plan_validation", "batch_tasks"]


def train_tasks(c: dict[str, Any], *, dataset: Path, seeds: Sequence[int], common: dict[str, Any],
                al_set: Task | None = None, previous: Sequence[Task] = (), committee_key: str | None = None,
                warm_start: bool = False) -> list[Task]:
    """One training task per member of committee ``c`` (a dict as from ``SweepSpec.committees()``).

    Optional keys of ``c``: ``extra_frames`` (a labelled file trained on besides the subset; its hash is
    a parameter, checked by the worker), ``name`` (committee directory label) and ``tags`` (copied into
    every downstream result, e.g. an AL generation). With ``al_set``, that task's AL frames are the extra
    training file (the committee key is then unknown at planning time and not checked); ``previous``: the
    previous generation's members (warm start).
    """
    from harness.io import sha256_file

    extra = c.get("extra_frames")
    out = []
    for k, seed in enumerate(seeds):
        params = TrainParams(**common, dataset=str(dataset), subset=c["subset"], arch=c["arch"], preset=c["preset"],
                             overrides=c["overrides"], max_train_frames=c["max_train_frames"], seed=seed, member=k,
                             committee_key=committee_key, committee=c["id"], name=c.get("name"),
                             tags=c.get("tags") or {}, warm_start=warm_start and bool(previous),
                             finetune=c.get("finetune"),
                             extra_frames=str(extra) if extra else None,
                             extra_frames_sha256=sha256_file(extra) if extra else None)
        deps = {"al_set": [al_set] if al_set else [], "previous": [previous[k]] if warm_start and previous else []}
        out.append(_placed(params.task(deps, f"train {c['id']} member {k}"), c["arch"]))
    return out


def model_tasks(c: dict[str, Any], sources: Sequence[ModelSource]) -> list[Task]:
    """One ``model`` task per member of a committee of models not trained by the sweep."""
    from harness.io import sha256_file

    out = []
    for k, src in enumerate(sources):
        sha = sha256_file(src.path) if src.kind == "file" else None
        params = ModelParams(source=src, sha256=sha, committee=c["id"], arch=c["arch"], subset=c.get("subset"),
                             member=k, tags=c.get("tags") or {})
        out.append(params.task(label=f"model {c['id']} member {k}"))
    return out


def _placed(task: Task, arch: str) -> Task:
    """A task of a CPU-only architecture (GAP) runs on CPU workers even in a cuda sweep."""
    from dataclasses import replace

    from harness.models.base import CPU_ONLY_ARCHITECTURES

    return replace(task, resources="cpu") if arch in CPU_ONLY_ARCHITECTURES else task


#: architectures whose models evaluate many structures in one call (harness.models.batch)
BATCHED_ARCHS = ("mace", "deepmd")


def batch_tasks(members: dict[str, list[Task]], committees: dict[str, dict[str, Any]], *, protocol: MDProtocol,
                protocol_hash: str, ensemble: str, replicas: int, md_batch: int, common: dict[str, Any],
                ref_density: Task | None = None, label: str = "") -> tuple[list[Task], dict[tuple[str, int, int], Task]]:
    """``md_batch`` tasks of up to ``md_batch`` trajectories for the runs of one ensemble of every member of a
    batched architecture (MACE, DeePMD), and (committee, member, replica) -> its batch; none when
    ``md_batch`` is 1. ``label`` is added to the task labels (e.g. a liquid's name)."""
    by_arch: dict[str, list[tuple[str, int, int, Task]]] = {}
    if md_batch > 1:
        for cid in members:
            if committees[cid]["arch"] in BATCHED_ARCHS:
                by_arch.setdefault(committees[cid]["arch"], []).extend(
                    (cid, k, r, m) for k, m in enumerate(members[cid]) for r in range(replicas))
    made: list[Task] = []
    out: dict[tuple[str, int, int], Task] = {}
    for arch, items in by_arch.items():
        for n, i in enumerate(range(0, len(items), md_batch)):
            chunk = items[i:i + md_batch]
            uniq = list({m.key: m for *_, m in chunk}.values())
            index = {m.key: j for j, m in enumerate(uniq)}
            params = MDBatchParams(**common, protocol=protocol, protocol_hash=protocol_hash, ensemble=ensemble,
                                   runs=[(index[m.key], r) for _, _, r, m in chunk])
            task = params.task({"members": uniq, "ref_density": [ref_density] if ref_density else []},
                               f"md {ensemble}{label} batch {arch} {n} ({len(chunk)} runs)")
            made.append(task)
            out.update({(cid, k, r): task for cid, k, r, _ in chunk})
    return made, out


def plan_validation(members: dict[str, list[Task]], committees: dict[str, dict[str, Any]], ref: str, *,
                    protocol: MDProtocol, analysis: AnalysisSpec | None, replicas: int,
                    common: dict[str, Any], score_reference: bool = True, md_batch: int = 1) -> list[Task]:
    """NPT/NVT runs, observables and the Q score of every committee in ``members`` against ``ref`` (and of
    the reference against itself, its row in a Q table, unless ``score_reference`` is False).

    ``md_batch`` > 1: the runs of each ensemble and batched architecture (MACE, DeePMD; members of every
    committee, replicas) go to ``md_batch`` tasks of up to that many trajectories, advanced together; each
    run's ``md`` task depends on its batch and returns the run (keys of unbatched runs are unchanged)."""
    from harness.md.protocol import protocol_hash

    analysis = analysis or protocol.analysis
    obs = {"analysis": analysis, "equilibration_ps": protocol.equilibration_ps, "tau_ps": protocol.horizon_ps}
    phash = protocol_hash(protocol)
    tasks: list[Task] = []

    def batches(ensemble: str, rd: Task | None) -> dict[tuple[str, int, int], Task]:
        made, index = batch_tasks(members, committees, protocol=protocol, protocol_hash=phash, ensemble=ensemble,
                                  replicas=replicas, md_batch=md_batch, common=common, ref_density=rd)
        tasks.extend(made)
        return index

    def runs(cid: str, ensemble: str, rd: Task | None = None, batch: dict | None = None) -> dict[tuple[int, int], Task]:
        out = {}
        for k, member in enumerate(members[cid]):
            for r in range(replicas):
                params = MDParams(**common, protocol=protocol, protocol_hash=phash, ensemble=ensemble, replica=r)
                b = (batch or {}).get((cid, k, r))
                out[(k, r)] = _placed(params.task({"member": [member], "ref_density": [rd] if rd else [],
                                                   "batch": [b] if b else []}, f"md {ensemble} {cid} member {k} r{r}"),
                                      committees[cid]["arch"])
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
            {"observed": list(npt_obs[ref].values())}, f"reference NPT density ({ref})")
        tasks.append(rd)
    nvt_obs = {}
    nvt_batches = batches("nvt", rd)
    for c in members:
        nvt = runs(c, "nvt", rd, nvt_batches)
        nvt_obs[c] = observed(nvt)
        tasks += [*nvt.values(), *nvt_obs[c].values()]
    for cid in members:
        if cid == ref and not score_reference:
            continue
        c = committees[cid]
        deps = [t for o in (npt_obs, nvt_obs) for cc in dict.fromkeys([cid, ref]) for (k, r), t in o[cc].items()
                if r == 0]
        params = ScoreParams(**obs, committee=cid, arch=c["arch"], subset=c.get("subset"), reference=ref,
                             reference_is_self=cid == ref, tags=c.get("tags") or {})
        tasks.append(params.task({"observed": deps}, f"score {cid}"))
    return tasks


def plan_sweep(spec: SweepSpec, files: dict[str, Any], workspace: str | Path) -> list[Task]:
    from harness.config import load_yaml
    from harness.md.protocol import load_protocol
    from harness.models.train import plan_committee

    workspace = str(Path(workspace).resolve())
    analysis = load_yaml(files["analysis"], AnalysisSpec) if "analysis" in files else None
    common = {"workspace": workspace, "threads": spec.threads_per_task, "device": spec.device}
    tasks: list[Task] = []
    members: dict[str, list[Task]] = {}
    committees = {c["id"]: c for c in spec.committees()}
    ref = next(cid for cid, c in committees.items() if c["reference"])
    if spec.finetune is not None:
        from harness.finetune.plan import finetune_committees

        committees.update({c["id"]: c for c in finetune_committees(
            spec.finetune, files, subsets=spec.subsets, preset=spec.preset,
            max_train_frames=spec.max_train_frames, seeds=spec.member_seeds)})
    for cid, c in committees.items():
        plan = plan_committee(files["dataset"], c["subset"], c["arch"], preset=c["preset"], workspace=workspace,
                              overrides=c["overrides"], device=spec.device, max_train_frames=c["max_train_frames"],
                              extra_frames=c.get("extra_frames"), name=c.get("name"), finetune=c.get("finetune"))
        c["directory"] = str(plan.directory)
        members[cid] = train_tasks(c, dataset=files["dataset"], seeds=c.get("seeds") or spec.member_seeds,
                                   common=common, committee_key=plan.key)
        tasks += members[cid]
    for entry in spec.models:
        sources = files["models"][entry.name]
        c = entry.committee_entry(sources)
        committees[c["id"]] = c
        members[c["id"]] = model_tasks(c, sources)
        tasks += members[c["id"]]
    if spec.finetune is not None and spec.finetune.zero_shot:
        from harness.finetune.plan import zero_shot_committee

        c, sources = zero_shot_committee(spec.finetune, files)
        committees[c["id"]] = c
        members[c["id"]] = model_tasks(c, sources)
        tasks += members[c["id"]]
    protocol = load_protocol(files["protocol"])
    tasks += plan_validation(members, committees, ref, protocol=protocol, analysis=analysis,
                             replicas=spec.replicas, common=common, md_batch=spec.md_batch)
    if spec.diagnostics is not None and not spec.diagnostics.empty:
        from harness.diagnostics.plan import plan_diagnostics

        tasks += plan_diagnostics(spec.diagnostics, tasks, members, committees, protocol=protocol,
                                  dataset=files["dataset"], common=common, md_batch=spec.md_batch)
    if spec.finetune is not None:
        from harness.finetune.plan import plan_forgetting

        tasks += plan_forgetting(spec.finetune, files, members, committees, common=common)
    return tasks
