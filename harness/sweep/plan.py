"""Expand a sweep spec into the task graph: train member → NPT/NVT runs → observe → score.

Keys are content hashes (``Task.key``): a training task's parameters carry the committee key (which
hashes the training frames and hyperparameters), an MD task's carry the protocol hash (the analysis
section excluded) and an observe/score task's the analysis settings, so changing one parameter changes
only the keys downstream of it. With ``nvt.density_g_cm3: reference`` every NVT run depends on a
``ref_density`` task over the reference committee's NPT observables. Q uses replica 0 of each member.

The pieces are reused by active learning (:mod:`harness.al.plan`) and transfer runs: :func:`train_tasks`
(one committee; its training data may come from a dependency, e.g. a generation's labelled frames) and
:func:`plan_validation` (MD, observables and Q of any set of committees against a reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from harness.sweep.execute import Task
from harness.sweep.spec import SweepSpec

__all__ = ["plan_sweep", "train_tasks", "plan_validation", "FORMAT"]

_T = "harness.sweep.tasks:"
#: bumped when a task kind's result format changes, so stored results of the old format are recomputed
#: (a plain code change does not invalidate finished work: training and MD are expensive)
FORMAT = {"train": 1, "md": 1, "observe": 1, "ref_density": 1, "score": 2}


def train_tasks(c: dict[str, Any], *, dataset: Path, seeds: Sequence[int], common: dict[str, Any],
                deps: tuple[str, ...] = (), committee_key: str | None = None) -> list[Task]:
    """One training task per member of committee ``c`` (a dict as from ``SweepSpec.committees()``).

    Optional keys of ``c``: ``extra_frames`` (a labelled file trained on besides the subset; its hash is
    a parameter), ``name`` (committee directory label) and ``tags`` (copied into every downstream result,
    e.g. an AL generation). With ``deps``, a dependency's ``al_frames`` result is the extra training file
    (the committee key is then unknown at planning time and not checked).
    """
    from harness.io import sha256_file

    extra = c.get("extra_frames")
    out = []
    for k, seed in enumerate(seeds):
        params = {**common, "dataset": str(dataset), "subset": c["subset"], "arch": c["arch"], "preset": c["preset"],
                  "overrides": c["overrides"], "max_train_frames": c["max_train_frames"], "seed": seed, "member": k,
                  "committee_key": committee_key, "committee": c["id"], "format": FORMAT["train"]}
        if extra:
            params["extra_frames"] = str(extra)
            params["extra_frames_sha256"] = sha256_file(extra)
        for key in ("name", "tags"):
            if c.get(key):
                params[key] = c[key]
        out.append(Task("train", _T + "train", params, deps, f"train {c['id']} member {k}"))
    return out


def plan_validation(members: dict[str, list[Task]], committees: dict[str, dict[str, Any]], ref: str, *,
                    protocol: Path, analysis, replicas: int, common: dict[str, Any]) -> list[Task]:
    """NPT/NVT runs, observables and the Q score of every committee in ``members`` against ``ref``."""
    from harness.md.protocol import load_protocol, protocol_hash

    proto = load_protocol(protocol)
    analysis = analysis or proto.analysis
    obs_params = {"analysis": analysis.model_dump(mode="json"), "equilibration_ps": proto.equilibration_ps,
                  "tau_ps": proto.horizon_ps}
    md_params = {**common, "protocol": str(protocol), "protocol_hash": protocol_hash(proto), "format": FORMAT["md"]}
    tasks: list[Task] = []

    def runs(cid: str, ensemble: str, extra=()) -> dict[tuple[int, int], Task]:
        out = {}
        for k, tr in enumerate(members[cid]):
            for r in range(replicas):
                out[(k, r)] = Task("md", _T + "md", {**md_params, "ensemble": ensemble, "replica": r},
                                   (tr.key, *extra), f"md {ensemble} {cid} member {k} r{r}")
        return out

    def observed(runs_: dict) -> dict[tuple[int, int], Task]:
        params = {**obs_params, "format": FORMAT["observe"]}
        return {kr: Task("observe", _T + "observe", params, (t.key,), t.label.replace("md ", "observe ", 1))
                for kr, t in runs_.items()}

    npt = {c: runs(c, "npt") for c in members}
    npt_obs = {c: observed(v) for c, v in npt.items()}
    for c in members:
        tasks += [*npt[c].values(), *npt_obs[c].values()]
    extra: tuple[str, ...] = ()
    if proto.nvt.density_g_cm3 == "reference":
        rd = Task("ref_density", _T + "ref_density", {"reference": ref, "tau_ps": proto.horizon_ps,
                                                            "format": FORMAT["ref_density"]},
                  tuple(t.key for t in npt_obs[ref].values()), f"reference NPT density ({ref})")
        tasks.append(rd)
        extra = (rd.key,)
    nvt_obs = {}
    for c in members:
        nvt = runs(c, "nvt", extra)
        nvt_obs[c] = observed(nvt)
        tasks += [*nvt.values(), *nvt_obs[c].values()]
    for cid in members:
        c = committees[cid]
        deps = [t.key for obs in (npt_obs, nvt_obs) for cc in dict.fromkeys([cid, ref]) for (k, r), t in obs[cc].items()
                if r == 0]
        params = {**obs_params, "committee": cid, "arch": c["arch"], "subset": c["subset"], "reference": ref,
                  "reference_is_self": cid == ref, "format": FORMAT["score"]}
        if c.get("tags"):
            params["tags"] = c["tags"]
        tasks.append(Task("score", _T + "score", params, tuple(deps), f"score {cid}"))
    return tasks


def plan_sweep(spec: SweepSpec, files: dict[str, Path], workspace: str | Path) -> list[Task]:
    from harness.config import load_yaml
    from harness.models.train import plan_committee
    from harness.observables.analysis import AnalysisSpec

    workspace = str(Path(workspace).resolve())
    analysis = load_yaml(files["analysis"], AnalysisSpec) if "analysis" in files else None
    common = {"workspace": workspace, "threads": spec.threads_per_task, "device": spec.device}
    tasks: list[Task] = []
    members: dict[str, list[Task]] = {}
    committees = {c["id"]: c for c in spec.committees()}
    ref = next(cid for cid, c in committees.items() if c["reference"])
    for cid, c in committees.items():
        plan = plan_committee(files["dataset"], c["subset"], c["arch"], preset=c["preset"], workspace=workspace,
                              overrides=c["overrides"], device=spec.device, max_train_frames=c["max_train_frames"],
                              extra_frames=c.get("extra_frames"), name=c.get("name"))
        c["directory"] = str(plan.directory)
        members[cid] = train_tasks(c, dataset=files["dataset"], seeds=spec.member_seeds, common=common,
                                   committee_key=plan.key)
        tasks += members[cid]
    tasks += plan_validation(members, committees, ref, protocol=files["protocol"], analysis=analysis,
                             replicas=spec.replicas, common=common)
    return tasks
