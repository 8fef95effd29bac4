"""Task functions of a sweep, run in worker processes: ``fn(params, deps) -> result``.

Each is idempotent and resumable on its own (a trained member is reused, an MD run resumes from its
checkpoint, observables are cached per analysis hash), so a task killed with its worker just runs
again. Results are small JSON; files are listed under ``_outputs`` for the store to hash.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import InputError

__all__ = ["train", "md", "ref_density", "observe", "score"]


def _threads(n: int) -> None:
    """Pin every threading layer a task may touch (torch, OpenMP/MKL, deepmd, xTB) to ``n`` threads, so
    that workers × threads never oversubscribes the machine."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
        os.environ[var] = str(n)
    os.environ["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


_META = ("arch", "subset", "seed", "member", "committee", "tags")


def _meta(d: dict) -> dict:
    """The identity of a member carried through its runs and observables."""
    return {k: d[k] for k in _META if k in d}


def _committee_plan(p: dict, deps: dict):
    from harness.models.train import plan_committee

    extra = p.get("extra_frames")
    for d in deps.values():  # an AL generation trains on the frames labelled so far
        if "al_frames" in d:
            extra = d["al_frames"]
    return plan_committee(p["dataset"], p["subset"], p["arch"], preset=p["preset"], workspace=p["workspace"],
                          overrides=p["overrides"], device=p["device"], max_train_frames=p["max_train_frames"],
                          extra_frames=extra, name=p.get("name"))


def train(p: dict, deps: dict) -> dict:
    """One committee member; writes/updates committee.json with the members present so far."""
    from harness.models.base import ModelArtifact
    from harness.models.train import train_member

    _threads(p["threads"])
    plan = _committee_plan(p, deps)
    if p["committee_key"] and plan.key[:10] != p["committee_key"][:10]:
        raise InputError(f"{p['arch']} on {p['subset']}: the training data changed since the sweep was planned")
    plan.directory.mkdir(parents=True, exist_ok=True)
    init = None
    if p.get("warm_start"):  # AL: start from the previous generation's member (a dependency)
        prev = next((d for d in deps.values() if "workdir" in d), None)
        if prev is not None:
            init = Path(prev["workdir"]) / "model.ckpt.pt"
            if not init.exists():
                raise InputError(f"warm start: {init} not found (the previous generation's checkpoint)")
    art = train_member(p["arch"], plan.train, plan.valid, hyperparameters=plan.hyperparameters, preset=p["preset"],
                       seed=p["seed"], workdir=plan.member_dir(p["member"], p["seed"]), dataset=plan.dataset,
                       device=p["device"], dtype=plan.dtype, threads=p["threads"], init_model=init, e0=plan.e0)
    arts = [ModelArtifact.load(q.parent) for q in sorted(plan.directory.glob("*/artifact.json"))]
    plan.write_json(arts)
    if art.status != "ok":
        raise RuntimeError(f"member {p['member']} (seed {p['seed']}) failed to train: "
                           f"{(art.error or '').splitlines()[0] if art.error else 'unknown error'}")
    files = [Path(art.workdir) / "artifact.json", *(art.path(r) for r in art.files)]
    return {"workdir": art.workdir, "arch": p["arch"], "subset": p["subset"], "seed": p["seed"],
            "member": p["member"], "committee": p["committee"], "committee_dir": str(plan.directory),
            "n_train": len(plan.train), "metrics": art.metrics, "train_seconds": art.train_seconds,
            **({"tags": p["tags"]} if p.get("tags") else {}), "_outputs": [str(f) for f in files]}


def md(p: dict, deps: dict) -> dict:
    """One NPT or NVT trajectory of one member (NVT density from the reference when the protocol says so)."""
    from harness.md.launch import model_calculator, run_protocol
    from harness.md.protocol import load_protocol

    _threads(p["threads"])
    member = next(d for d in deps.values() if "workdir" in d)
    proto = load_protocol(p["protocol"])
    rho = None
    if p["ensemble"] == "nvt":
        ref = [d for d in deps.values() if "nvt_density_g_cm3" in d]
        rho = ref[0]["nvt_density_g_cm3"] if ref else None
    calc, name, species = model_calculator(member["workdir"], device=p["device"])
    result, outdir = run_protocol(proto, p["ensemble"], calc, name, workspace=p["workspace"], replica=p["replica"],
                                  species=species, nvt_density=rho, label=member["workdir"])
    files = [outdir / f for f in ("result.json", "thermo.parquet", "trajectory.h5md")]
    return {"run_dir": str(outdir), "ensemble": p["ensemble"], "t_stab_ps": result.t_stab_ps,
            "failure": result.failure, **_meta(member), "ns_per_day": result.ns_per_day,
            "_outputs": [str(f) for f in files if f.exists()]}


def _analysis(p: dict):
    from harness.observables.analysis import AnalysisSpec

    return AnalysisSpec.model_validate(p["analysis"])


def observe(p: dict, deps: dict) -> dict:
    """Observables of one run (cached next to it)."""
    from harness.observables.analysis import analysis_hash, observe_run

    run = next(iter(deps.values()))
    spec = _analysis(p)
    obs = observe_run(run["run_dir"], spec, equilibration_ps=p["equilibration_ps"], tau_ps=p["tau_ps"])
    out = {k: v for k, v in obs.items() if k != "density_samples"}
    out.update(_meta(run))
    cache = Path(run["run_dir"]) / f"observables-{analysis_hash(spec)}.json"
    return {**out, "_outputs": [str(cache)]}


def ref_density(p: dict, deps: dict) -> dict:
    """Mean NPT density of the reference members that reached the horizon: the NVT density of every model."""
    import numpy as np

    dens = [d["density_g_cm3"]["mean"] for d in deps.values() if d.get("reached_tau")]
    if not dens:
        raise InputError(f"no reference member ({p['reference']}) stayed stable in NPT for the horizon "
                         f"({p['tau_ps']:g} ps): the NVT density 'reference' is undefined")
    return {"nvt_density_g_cm3": float(np.mean(dens)), "members_used": len(dens), "members": len(deps)}


def score(p: dict, deps: dict) -> dict:
    """Q of one committee against the reference committee."""
    from harness.observables.analysis import RunSet, score as score_fn

    runs: dict[tuple[str, int], dict] = {}
    for d in deps.values():
        role = "reference" if d["committee"] == p["reference"] else "model"
        entry = runs.setdefault((role, d["member"]), {"name": f"member-{d['member']}-seed{d['seed']}"})
        entry[d["ensemble"]] = Path(d["run"])

    def sets(role: str) -> list[RunSet]:
        return [RunSet(v["name"], v.get("npt"), v.get("nvt")) for (r, _), v in sorted(runs.items()) if r == role]

    model = sets("reference") if p["reference_is_self"] else sets("model")
    res = score_fn(model, sets("reference"), _analysis(p), tau_ps=p["tau_ps"], equilibration_ps=p["equilibration_ps"])
    return {**res, "committee_id": p["committee"], "arch": p["arch"], "subset": p["subset"],
            "reference_committee": p["reference"], **({"tags": p["tags"]} if p.get("tags") else {})}
