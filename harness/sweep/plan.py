"""Expand a sweep spec into the task graph: train member → NPT/NVT runs → observe → score.

Keys are content hashes (``Task.key``): a training task's parameters carry the committee key (which
hashes the training frames and hyperparameters), an MD task's carry the protocol hash (the analysis
section excluded) and an observe/score task's the analysis settings, so changing one parameter changes
only the keys downstream of it. With ``nvt.density_g_cm3: reference`` every NVT run depends on a
``ref_density`` task over the reference committee's NPT observables. Q uses replica 0 of each member.
"""

from __future__ import annotations

from pathlib import Path

from harness.sweep.execute import Task
from harness.sweep.spec import SweepSpec

__all__ = ["plan_sweep"]

_T = "harness.sweep.tasks:"
#: bumped when a task kind's result format changes, so stored results of the old format are recomputed
#: (a plain code change does not invalidate finished work: training and MD are expensive)
FORMAT = {"train": 1, "md": 1, "observe": 1, "ref_density": 1, "score": 2}


def plan_sweep(spec: SweepSpec, files: dict[str, Path], workspace: str | Path) -> list[Task]:
    from harness.config import load_yaml
    from harness.md.protocol import load_protocol, protocol_hash
    from harness.models.train import plan_committee
    from harness.observables.analysis import AnalysisSpec

    workspace = str(Path(workspace).resolve())
    proto = load_protocol(files["protocol"])
    analysis = load_yaml(files["analysis"], AnalysisSpec) if "analysis" in files else proto.analysis
    common = {"workspace": workspace, "threads": spec.threads_per_task, "device": spec.device}
    obs_params = {"analysis": analysis.model_dump(mode="json"), "equilibration_ps": proto.equilibration_ps,
                  "tau_ps": proto.horizon_ps}
    tasks: list[Task] = []
    members: dict[str, list[Task]] = {}
    committees = {c["id"]: c for c in spec.committees()}
    ref = next(cid for cid, c in committees.items() if c["reference"])
    for cid, c in committees.items():
        plan = plan_committee(files["dataset"], c["subset"], c["arch"], preset=c["preset"], workspace=workspace,
                              overrides=c["overrides"], device=spec.device, max_train_frames=c["max_train_frames"])
        c["directory"] = str(plan.directory)
        members[cid] = []
        for k, seed in enumerate(spec.member_seeds):
            t = Task("train", _T + "train", {
                **common, "dataset": str(files["dataset"]), "subset": c["subset"], "arch": c["arch"],
                "preset": c["preset"], "overrides": c["overrides"], "max_train_frames": c["max_train_frames"],
                "seed": seed, "member": k, "committee_key": plan.key, "committee": cid, "format": FORMAT["train"]},
                (), f"train {cid} member {k}")
            tasks.append(t)
            members[cid].append(t)

    md_params = {**common, "protocol": str(files["protocol"]), "protocol_hash": protocol_hash(proto),
                 "format": FORMAT["md"]}

    def runs(cid: str, ensemble: str, extra=()) -> dict[tuple[int, int], Task]:
        out = {}
        for k, tr in enumerate(members[cid]):
            for r in range(spec.replicas):
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
    for cid, c in committees.items():
        deps = [t.key for obs in (npt_obs, nvt_obs) for cc in dict.fromkeys([cid, ref]) for (k, r), t in obs[cc].items()
                if r == 0]
        tasks.append(Task("score", _T + "score", {**obs_params, "committee": cid, "arch": c["arch"],
                                                 "subset": c["subset"], "reference": ref,
                                                 "reference_is_self": cid == ref, "format": FORMAT["score"]},
                          tuple(deps), f"score {cid}"))
    return tasks
