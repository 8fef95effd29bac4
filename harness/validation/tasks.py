"""Worker functions of the validation kinds: ``fn(params, deps) -> result``, typed by
:mod:`harness.validation.contract` and registered with :func:`harness.workflow.contract.worker`.

Each is idempotent and resumable on its own (a trained member is reused, an MD run resumes from its
checkpoint, observables are cached per analysis hash), so a task killed with its worker just runs
again. Each checks the hashes it was planned with before it works.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.deadline import Interrupted
from harness.errors import InputError
from harness.validation.contract import (BatchRun, MDBatchParams, MDBatchResult, MDParams, MemberResult, ModelParams,
                                         ObserveParams, ObserveResult, RefDensityParams, RefDensityResult, RunResult,
                                         ScoreParams, ScoreResult, TrainParams)
from harness.workflow.contract import Deps, check_hash, worker
from harness.workflow.run import set_threads

__all__ = ["train", "model", "md", "md_batch", "ref_density", "observe", "score"]


def _committee_plan(p: TrainParams, deps: Deps):
    from harness.models.train import plan_committee

    extra = p.extra_frames
    if p.extra_frames:
        from harness.io import sha256_file

        if not Path(p.extra_frames).is_file():
            raise InputError(f"extra training frames {p.extra_frames}: no such file")
        check_hash(f"extra training frames {p.extra_frames}", p.extra_frames_sha256, sha256_file(p.extra_frames))
    for s in deps.get("al_set", ()):  # an AL generation trains on the frames labelled so far
        extra = s.al_frames
    return plan_committee(p.dataset, p.subset, p.arch, preset=p.preset, workspace=p.workspace, overrides=p.overrides,
                          device=p.device, max_train_frames=p.max_train_frames, extra_frames=extra, name=p.name,
                          finetune=p.finetune)


@worker(TrainParams)
def train(p: TrainParams, deps: Deps) -> MemberResult:
    """One committee member; writes/updates committee.json with the members present so far."""
    from harness.models.base import ModelArtifact
    from harness.models.load import ModelSource, model_stamp, run_name
    from harness.models.train import train_member

    set_threads(p.threads)
    plan = _committee_plan(p, deps)
    if p.committee_key and plan.key[:10] != p.committee_key[:10]:
        raise InputError(f"{p.arch} on {p.subset}: the training data changed since the sweep was planned "
                         f"(committee key {plan.key[:10]}, planned {p.committee_key[:10]}); plan again")
    plan.directory.mkdir(parents=True, exist_ok=True)
    init = None
    if p.warm_start and deps.get("previous"):  # AL: start from the previous generation's member
        init = Path(deps["previous"][0].workdir) / "model.ckpt.pt"
        if not init.exists():
            raise InputError(f"warm start: {init} not found (the previous generation's checkpoint)")
    art = train_member(p.arch, plan.train, plan.valid, hyperparameters=plan.hyperparameters, preset=p.preset,
                       seed=p.seed, workdir=plan.member_dir(p.member, p.seed), dataset=plan.dataset,
                       device=p.device, dtype=plan.dtype, threads=p.threads, init_model=init, e0=plan.e0,
                       finetune=plan.finetune)
    arts = [ModelArtifact.load(q.parent) for q in sorted(plan.directory.glob("*/artifact.json"))]
    plan.write_json(arts)
    if art.status != "ok":
        raise RuntimeError(f"member {p.member} (seed {p.seed}) failed to train: "
                           f"{(art.error or '').splitlines()[0] if art.error else 'unknown error'}")
    src = ModelSource(kind="member", path=art.workdir)
    files = [Path(art.workdir) / "artifact.json", *(art.path(r) for r in art.files)]
    return MemberResult(committee=p.committee, arch=p.arch, subset=p.subset, member=p.member, seed=p.seed,
                        tags=p.tags, stamp=model_stamp(src), model=src, run_name=run_name(src),
                        workdir=art.workdir, committee_dir=str(plan.directory), n_train=len(plan.train),
                        metrics=art.metrics, train_seconds=art.train_seconds, outputs=[str(f) for f in files])


@worker(ModelParams)
def model(p: ModelParams, deps: Deps) -> MemberResult:
    """A model brought to the sweep (a file or an ASE calculator): checked, stamped, ready for MD."""
    from harness.models.load import model_stamp, run_name

    stamp = model_stamp(p.source)
    if p.source.kind == "file":
        check_hash(f"model file {p.source.path}", p.sha256, stamp["sha256"])
    outputs = [p.source.path] if p.source.kind == "file" else []
    return MemberResult(committee=p.committee, arch=p.arch, subset=p.subset, member=p.member, tags=p.tags,
                        seed=stamp.get("seed"), stamp=stamp, model=p.source, run_name=run_name(p.source, stamp),
                        workdir=stamp.get("member_dir"), outputs=outputs)


def _nvt_density(p, deps: Deps) -> float | None:
    if p.ensemble == "nvt" and deps.get("ref_density"):
        return deps["ref_density"][0].nvt_density_g_cm3
    return None


@worker(MDParams)
def md(p: MDParams, deps: Deps) -> RunResult:
    """One NPT or NVT trajectory of one member (NVT density from the reference when the protocol says so).

    With a ``batch`` dependency the trajectory was integrated there: its finished run is returned as it is
    (the run directory's ``result.json``); one the batch could not run is run here, alone."""
    from harness.md.launch import run_dir, run_protocol
    from harness.md.protocol import protocol_hash
    from harness.md.runner import read_result
    from harness.models.load import load_model

    check_hash(f"MD protocol {p.protocol.name}", p.protocol_hash, protocol_hash(p.protocol))
    set_threads(p.threads)
    (member,) = deps["member"]
    rho = _nvt_density(p, deps)
    outdir = run_dir(p.workspace, member.run_name, p.protocol.name, p.ensemble, p.replica)
    batched = deps.get("batch") and any(r.run_dir == str(outdir) and r.completed for r in deps["batch"][0].runs)
    result = read_result(outdir) if batched else None
    if result is None:
        loaded = load_model(member.model, device=p.device)
        result, outdir = run_protocol(p.protocol, p.ensemble, loaded.calculator, member.run_name,
                                      workspace=p.workspace, replica=p.replica, species=loaded.species,
                                      nvt_density=rho, label=member.workdir or member.run_name,
                                      model_stamp=member.stamp)
    if not result.completed:
        raise Interrupted(f"{outdir}: walltime reached at step {result.n_steps}; the next run resumes it")
    files = [outdir / f for f in ("result.json", "thermo.parquet", "trajectory.h5md")]
    return RunResult(**member.identity(), run_dir=str(outdir), ensemble=p.ensemble, t_stab_ps=result.t_stab_ps,
                     failure=result.failure, ns_per_day=result.ns_per_day,
                     outputs=[str(f) for f in files if f.exists()])


@worker(MDBatchParams)
def md_batch(p: MDBatchParams, deps: Deps) -> MDBatchResult:
    """Several trajectories advanced together (:func:`harness.md.batched.run_batched`): one evaluator per
    member (MACE and DeePMD evaluate all their structures in one call), each trajectory in its own run
    directory exactly as an ``md`` task would write it (so either can resume the other's work)."""
    import time

    from harness.md.batched import BatchJob, run_batched
    from harness.md.launch import prepare_run
    from harness.md.protocol import protocol_hash
    from harness.models.batch import batch_evaluator
    from harness.models.load import load_model

    check_hash(f"MD protocol {p.protocol.name}", p.protocol_hash, protocol_hash(p.protocol))
    set_threads(p.threads)
    t0 = time.perf_counter()
    members = deps["members"]
    rho = _nvt_density(p, deps)
    loaded = [load_model(m.model, device=p.device) for m in members]
    evaluators = [batch_evaluator(x.calculator) for x in loaded]
    runs: list[BatchRun] = []
    jobs, slots = [], []
    for i, r in p.runs:
        m = members[i]
        try:
            prep = prepare_run(p.protocol, p.ensemble, m.run_name, workspace=p.workspace, replica=r,
                               species=loaded[i].species, nvt_density=rho, label=m.workdir or m.run_name,
                               model_stamp=m.stamp)
        except Exception as exc:  # its md task runs it alone and reports the error
            runs.append(BatchRun(member=i, replica=r, error=f"{type(exc).__name__}: {exc}"[:500]))
            continue
        slots.append(len(runs))
        runs.append(BatchRun(member=i, replica=r, run_dir=str(prep.outdir)))
        jobs.append(BatchJob(prep.atoms, prep.settings, prep.outdir, evaluator=i, seed=prep.seed,
                             detectors=prep.detectors, meta=prep.meta))
    engine, note = "ase", None
    if p.engine == "torchsim" and jobs:
        from harness.md.torchsim import EngineRefused, integrator_for, routed_model, run_torchsim
        from harness.models.batch import torchsim_model

        try:
            integrator_for(jobs[0].settings)
            engine = "torchsim"
        except EngineRefused as exc:  # the ensemble TorchSim cannot sample correctly stays on the ASE path
            note = str(exc)
    if engine == "torchsim":
        model = routed_model([torchsim_model(x.calculator, p.device) for x in loaded], [j.evaluator for j in jobs])
        results = run_torchsim(jobs, model)
    else:
        results = run_batched(jobs, evaluators)
    stopped = []
    for k, res in zip(slots, results):
        if isinstance(res, BaseException):
            runs[k].error = f"{type(res).__name__}: {res}"[:500]
        else:
            runs[k].completed, runs[k].t_stab_ps = res.completed, res.t_stab_ps
            if not res.completed:
                stopped.append(f"{runs[k].run_dir} at step {res.n_steps}")
    if stopped:
        raise Interrupted(f"walltime reached; {len(stopped)} batched runs checkpointed ({'; '.join(stopped[:3])}"
                          f"{' ...' if len(stopped) > 3 else ''}); the next run resumes them")
    return MDBatchResult(runs=runs, evaluators=[e.name for e in evaluators],
                         wall_s=round(time.perf_counter() - t0, 3), engine=engine, engine_note=note)


@worker(ObserveParams)
def observe(p: ObserveParams, deps: Deps) -> ObserveResult:
    """Observables of one run (cached next to it)."""
    from harness.observables.analysis import analysis_hash, observe_run

    (run,) = deps["run"]
    obs = observe_run(run.run_dir, p.analysis, equilibration_ps=p.equilibration_ps, tau_ps=p.tau_ps)
    keep = {k: v for k, v in obs.items() if k in ObserveResult.model_fields}
    cache = Path(run.run_dir) / f"observables-{analysis_hash(p.analysis)}.json"
    return ObserveResult(**{**keep, **run.identity()}, outputs=[str(cache)])


@worker(RefDensityParams)
def ref_density(p: RefDensityParams, deps: Deps) -> RefDensityResult:
    """Mean NPT density of the reference members that reached the horizon: the NVT density of every model."""
    import numpy as np

    observed = deps.get("observed", [])
    dens = [d.density_g_cm3.mean for d in observed if d.reached_tau and d.density_g_cm3]
    if not dens:
        raise InputError(f"no reference member ({p.reference}) stayed stable in NPT for the horizon "
                         f"({p.tau_ps:g} ps): the NVT density 'reference' is undefined")
    return RefDensityResult(nvt_density_g_cm3=float(np.mean(dens)), members_used=len(dens), members=len(observed))


@worker(ScoreParams)
def score(p: ScoreParams, deps: Deps) -> ScoreResult:
    """Q of one committee against the reference committee, from its dependencies' typed observables alone (no file
    is read), with every member's model provenance."""
    from harness.observables.analysis import score_observed

    members: dict[tuple[str, int], dict] = {}
    stamps: dict[str, dict] = {}
    for d in deps["observed"]:
        role = "reference" if d.committee == p.reference else "model"
        name = f"member-{d.member}" + (f"-seed{d.seed}" if d.seed is not None else "")
        entry = members.setdefault((role, d.member), {"name": name})
        entry[d.ensemble] = d.model_dump(mode="json")
        if d.committee == p.committee:
            stamps[name] = d.stamp

    def observed(role: str) -> dict[str, dict]:
        out = {}
        for (r, _), v in sorted(members.items()):
            if r != role:
                continue
            missing = " and ".join(e.upper() for e in ("npt", "nvt") if e not in v)
            if missing:
                raise InputError(f"{role} member {v['name']}: no {missing} run observed")
            out[v["name"]] = {"npt": v["npt"], "nvt": v["nvt"]}
        return out

    model = observed("reference") if p.reference_is_self else observed("model")
    res = score_observed(model, observed("reference"), p.analysis, tau_ps=p.tau_ps, equilibration_ps=p.equilibration_ps)
    return ScoreResult(**res, committee_id=p.committee, arch=p.arch, subset=p.subset, reference_committee=p.reference,
                       tags=p.tags, models=stamps, state_point=p.state_point)
