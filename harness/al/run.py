"""Run an AL campaign (``harness al run``) and summarise one from its store (``harness al status``, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

__all__ = ["run_al", "al_tables"]


def run_al(spec_path: str | Path, workspace: str | Path, *, scheduler: str | None = None, workers: int | None = None,
           sync: bool = False, slurm: str | Path | None = None, progress: Callable[[dict], None] | None = None,
           say: Callable[[str], None] | None = None, gpu_workers: int | None = None,
           walltime_min: float | None = None) -> tuple[dict[str, int], str]:
    """Build the dataset if needed, plan every generation, execute (resuming); (counts, campaign name)."""
    from harness.al.plan import plan_al
    from harness.al.spec import load_al
    from harness.datasets.build import ensure_built
    from harness.workflow.run import default_gpu_workers, execute_plan

    spec, inputs = load_al(spec_path)
    ensure_built(inputs.dataset, say)
    tasks = plan_al(spec, inputs, workspace)
    counts = execute_plan(tasks, spec.name, workspace, threads_per_task=spec.threads_per_task, scheduler=scheduler,
                          workers=workers, sync=sync, slurm=slurm, progress=progress, say=say,
                          gpu_workers=default_gpu_workers(gpu_workers, spec.device), walltime_min=walltime_min)
    return counts, spec.name


def al_tables(workspace: str | Path, campaign: str | None = None) -> dict[str, pd.DataFrame]:
    """Tables of the AL campaign(s) in a workspace's store.

    ``generations``: per campaign, chain and generation — members trained, training frames, exploration
    runs done/planned, threshold hits, frames selected/labelled/failed, oracle calls, Q ± SE, mean t_stab.
    ``selected``: one row per labelled frame (composition, source trajectory, time of selection, sigma2_F,
    rule). ``hits``: fraction of exploration runs that crossed the threshold per generation and composition.
    """
    from harness.workflow.store import Store

    store = Store(Path(workspace) / "harness.sqlite")
    try:
        rows = [r for r in store.tasks(sweep=campaign) if r["status"] != "superseded"]
    finally:
        store.close()
    gens: dict[tuple, dict] = {}

    def entry(p: dict) -> dict:
        k = (p["campaign"], p["chain"], p["generation"])
        return gens.setdefault(k, {"campaign": k[0], "chain": k[1], "generation": k[2], "members_trained": 0,
                                   "members": 0, "n_train": None, "explore_done": 0, "explore_planned": 0,
                                   "threshold_hits": 0, "selected": 0, "labelled": None, "label_failed": None,
                                   "oracle_calls": None, "Q": None, "Q_se": None, "Q_low": None, "Q_high": None, "t_stab_npt_ps": None})

    from harness.al.contract import ALSetParams, ExploreParams
    from harness.validation.contract import ScoreParams, TrainParams
    from harness.workflow.contract import stored_params
    from harness.workflow.task import result_of

    kinds = {"train": TrainParams, "explore": ExploreParams, "al_set": ALSetParams, "score": ScoreParams}
    selected, hits = [], []
    for r in rows:
        cls = kinds.get(r["kind"])
        p = stored_params(r, cls) if cls is not None else None
        if p is None:
            continue  # another kind, or a row of another schema
        res = result_of(cls, r["result"] or {}) if r["status"] == "done" else None
        tags = getattr(p, "tags", None) or {}
        if r["kind"] == "train" and tags.get("campaign"):
            e = entry(tags)
            e["members"] += 1
            if res is not None:
                e["members_trained"] += 1
                e["n_train"] = res.n_train
        elif r["kind"] == "explore":
            e = entry(p.model_dump(include={"campaign", "chain", "generation"}))
            e["explore_planned"] += 1
            if res is not None:
                e["explore_done"] += 1
                e["threshold_hits"] += bool(res.hit_threshold)
                e["selected"] += bool(res.selected_file)
                hits.append({"campaign": p.campaign, "chain": p.chain, "generation": p.generation,
                             "composition": p.composition, "hit": bool(res.hit_threshold),
                             "t_stop_ps": res.t_stop_ps, "stopped_by": res.stopped_by})
        elif r["kind"] == "al_set" and res is not None:
            e = entry(p.model_dump(include={"campaign", "chain", "generation"}))
            e.update(labelled=res.n_new, label_failed=len(res.failed), oracle_calls=res.oracle_calls)
            for f in res.frames:
                selected.append({"campaign": p.campaign, "chain": p.chain, "generation": p.generation,
                                 **f.model_dump()})
        elif r["kind"] == "score" and res is not None and tags.get("campaign"):
            e = entry(tags)
            q = res.committee.Q
            e["Q"], e["Q_se"], e["Q_low"], e["Q_high"] = q.mean, q.sem, q.low, q.high
            ts = [m.t_stab_npt_ps for m in res.members]
            e["t_stab_npt_ps"] = sum(ts) / len(ts) if ts else None
    gen = pd.DataFrame(sorted(gens.values(), key=lambda d: (d["campaign"], d["chain"], d["generation"])))
    hit = pd.DataFrame(hits)
    if len(hit):
        hit = (hit.groupby(["campaign", "chain", "generation", "composition"]).agg(
            runs=("hit", "size"), hit_fraction=("hit", "mean"), mean_t_stop_ps=("t_stop_ps", "mean")).reset_index())
    return {"generations": gen, "selected": pd.DataFrame(selected), "hits": hit}
