"""Task functions of an active-learning campaign (run in sweep workers, typed by :mod:`harness.al.contract`).

``al_start``: OPLS-AA starting frames of one exploration composition (shared by every generation).
``explore``: one exploration trajectory of a generation's primary member; a
:class:`~harness.models.committee.CommitteeCalculator` over the whole committee is asked for sigma2_F
at the checks only (every ``check_interval`` steps), and each check's value is stored with the frame it
was measured on; the AL rules stop the run; then one frame is selected. ``label``: that frame relabelled
with the oracle; ``al_set``: the generation's labelled frames appended to the AL set (the next
generation's extra training data). Each is idempotent: a finished trajectory, selection or label is
reused, an interrupted one resumes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from harness.al.contract import (ALSetParams, ALSetResult, ALStartParams, ALStartResult, ExploreParams,
                                 ExploreResult, LabelParams, LabelResult, exploration_hash)
from harness.errors import InputError
from harness.workflow.contract import Deps, check_hash, worker

__all__ = ["al_start", "explore", "label", "al_set", "selected_frame"]

logger = logging.getLogger(__name__)


def _write_json(path: Path, data: dict) -> None:
    from harness.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


@worker(ALStartParams)
def al_start(p: ALStartParams, deps: Deps) -> ALStartResult:
    """The composition's OPLS-AA starting frames (:func:`harness.md.start.equilibrated_frames`: packed,
    minimised, NVT at the exploration temperature, ``n`` frames ``stride_ps`` apart)."""
    from harness.io import read_frames, write_frames
    from harness.md.start import equilibrated_frames

    out = Path(p.path)
    done = ALStartResult(path=str(out), n=p.n, composition=p.composition, outputs=[str(out)])
    if out.exists() and len(read_frames(out)) == p.n:
        return done
    frames = equilibrated_frames(p.composition, p.start, p.temperature_K, seed=p.seed, n=p.n, stride_ps=p.stride_ps)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_frames(out, frames)
    return done


def selected_frame(run_dir: str | Path, threshold: float):
    """(frame with tags, selection dict) of a finished exploration run, or (None, reason dict).

    The candidates are the stored frames that carry a finite sigma2_F (the frames written at the
    committee's checks, whatever the output intervals); the rule is :func:`harness.al.select.select_frame`. When a rule other than the
    variance rule stopped the run (``result.json``: density, bond stretch), its stopping frame is excluded."""
    from ase import Atoms

    from harness.al.select import select_frame
    from harness.h5md import read_h5md

    run_dir = Path(run_dir)
    traj = read_h5md(run_dir / "trajectory.h5md")
    if "sigma2_F" not in traj["observables"]:
        return None, {"reason": "no committee check before the trajectory stopped"}
    s2 = traj["observables"]["sigma2_F"]
    steps = [int(s) for s in traj["step"]]
    cand = [(k, s) for k, s in enumerate(steps) if np.isfinite(s2[k]) and np.all(np.isfinite(traj["positions"][k]))]
    if not cand:
        return None, {"reason": "no stored frame with a finite committee variance"}
    series = np.array([s2[k] for k, _ in cand], dtype=float)
    result_path = run_dir / "result.json"
    failure = json.loads(result_path.read_text()).get("failure") if result_path.exists() else None
    stopped_by = (failure or {}).get("detector")
    stop_index = None
    if failure is not None and stopped_by != "committee_variance":
        stop_index = next((i for i, (_, s) in enumerate(cand) if s == failure["step"]), None)
    try:
        sel = select_frame(series, threshold, stop_index=stop_index)
    except ValueError as exc:
        return None, {"reason": str(exc), "stopped_by": stopped_by}
    k, step = cand[sel.index]
    atoms = Atoms(numbers=traj["numbers"], positions=traj["positions"][k], cell=traj["cells"][k], pbc=True)
    if "mol_id" in traj:
        atoms.arrays["mol_id"] = np.asarray(traj["mol_id"], dtype=int)
    info = {"sigma2_F": sel.sigma2_F, "reason": sel.reason, "step": step, "time_ps": float(traj["time_ps"][k]),
            "n_checks": int(series.size), "max_sigma2_F": float(np.nanmax(series)), "stopped_by": stopped_by,
            "stop_frame_excluded": stop_index is not None}
    return atoms, info


@worker(ExploreParams)
def explore(p: ExploreParams, deps: Deps) -> ExploreResult:
    """One exploration trajectory and its selected frame (``selected.extxyz`` in the run directory)."""
    from harness.io import read_frames, write_frames
    from harness.md.detectors import detectors_from_spec
    from harness.md.launch import PreparedRun, launch, md_seed
    from harness.models.committee import CommitteeCalculator
    from harness.models.load import load_model
    from harness.models.train import model_run_name
    from harness.workflow.run import set_threads

    e = p.exploration
    check_hash("exploration settings", p.exploration_hash, exploration_hash(e))
    set_threads(p.threads)
    members = sorted(deps["members"], key=lambda m: m.member)
    if len(members) < 2:
        raise InputError(f"exploration needs a committee of at least 2 trained members, got {len(members)}")
    (start_dep,) = deps["start"]
    start = read_frames(start_dep.path)[p.start]
    loaded = [load_model(m.model, device=p.device) for m in members]
    primary = loaded[0]
    committee = CommitteeCalculator([m.calculator for m in loaded], names=[m.run_name for m in members])
    tag = p.composition.replace("=", "").replace(",", "-")
    # the run directory names the committee, the start and the exploration settings: a changed setting is a
    # new trajectory, never a stale finished one
    from harness.datasets.spec import params_hash

    run_id = params_hash({"exploration": p.exploration_hash, "start_file": start_dep.path, "index": p.index,
                          "generation": p.generation})[:8]
    outdir = (Path(p.workspace) / "al" / "explore" / model_run_name(members[0].committee_dir) /
              f"{tag}-s{p.start}-{run_id}")
    if primary.species is not None:
        extra = set(start.get_chemical_symbols()) - set(primary.species)
        if extra:
            raise InputError(f"{start_dep.path}: start frame has element(s) {', '.join(sorted(extra))} the "
                             "committee was not trained on")
    dets = detectors_from_spec(e.detectors, True, committee=committee, committee_interval=e.check_interval)
    meta = {"model": members[0].workdir, "committee": [m.workdir for m in members], "purpose": "AL exploration",
            "composition": p.composition, "start": p.start, "start_file": start_dep.path,
            "generation": p.generation, "chain": p.chain, "campaign": p.campaign,
            "model_stamps": [m.stamp for m in members]}
    # one seed rule for every trajectory (harness.md.launch.md_seed): the start's seed, the start's index in the
    # generation and the run's own directory name (which names the committee, start and settings)
    run = PreparedRun(start, e.settings("npt"), outdir, md_seed(e.start.seed, p.index, outdir.name), dets, meta)
    result = launch(run, primary.calculator)
    if not result.completed:  # stopped at a walltime (harness.deadline): resumed by the next run
        from harness.deadline import Interrupted

        raise Interrupted(f"{outdir}: walltime reached at step {result.n_steps}; the next run resumes it")
    sel_file = outdir / "selected.extxyz"
    threshold = e.max_sigma2_F_eV2_A2
    atoms, info = selected_frame(outdir, threshold)
    selected = None
    if atoms is not None:
        atoms.info.update({
            "config_type": "AL", "architecture": p.arch, "generation": p.generation,
            "composition": p.composition, "al_run": f"{p.campaign}/{p.chain}/g{p.generation}/{tag}-s{p.start}",
            "source_trajectory": str(outdir), "al_sigma2_F": info["sigma2_F"], "al_time_ps": info["time_ps"],
            "al_reason": info["reason"], "al_campaign": p.campaign})
        write_frames(sel_file, [atoms])
        selected = str(sel_file)
    files = [outdir / f for f in ("result.json", "thermo.parquet", "trajectory.h5md", "selected.extxyz")]
    stopped_by = (result.failure or {}).get("detector")
    return ExploreResult(run_dir=str(outdir), composition=p.composition, start=p.start, generation=p.generation,
                         chain=p.chain, campaign=p.campaign, arch=p.arch, t_stop_ps=result.t_stab_ps,
                         stopped_by=stopped_by, length_ps=e.npt.length_ps,
                         hit_threshold=stopped_by == "committee_variance", wall_s=result.wall_s, selection=info,
                         selected_file=selected, outputs=[str(f) for f in files if f.exists()])


@worker(LabelParams)
def label(p: LabelParams, deps: Deps) -> LabelResult:
    """Relabel one exploration run's selected frame with the oracle (``labelled.extxyz`` beside it).

    A frame the oracle cannot label (after its retry) is left out with the error; a finished label is
    never recomputed (the file is reused, so a resumed campaign makes no second oracle call)."""
    from harness.io import read_frames
    from harness.reference import make_oracle, oracle_key
    from harness.reference.batch import label_to_file
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    (run,) = deps["run"]
    base = {"campaign": run.campaign, "chain": run.chain, "generation": run.generation,
            "composition": run.composition, "start": run.start, "run_dir": run.run_dir}
    if not run.selected_file:
        return LabelResult(**base, skipped=run.selection.reason or "nothing selected")
    oracle = make_oracle(p.oracle["name"], p.oracle["options"])
    out = Path(run.run_dir) / f"labelled-{oracle_key(oracle)}.extxyz"
    calls, error = 0, None
    if not out.exists():
        rep = label_to_file(read_frames(run.selected_file), out, oracle, source=run.selected_file,
                            command=f"harness al run ({p.campaign})")
        # a label finished before an interruption comes back from the resume file as "cached": it was
        # computed once, by this task, so it counts as this frame's oracle call
        calls = sum(r.status in ("labelled", "cached") for r in rep.records)
        if rep.failed:
            error = rep.failed[0].error
    if not out.exists():
        return LabelResult(**base, oracle_calls=calls, error=error or "labelling failed")
    a = read_frames(out)[0]
    frame = {"composition": a.info.get("composition"), "run": a.info.get("al_run"),
             "time_ps": a.info.get("al_time_ps"), "sigma2_F": a.info.get("al_sigma2_F"),
             "reason": a.info.get("al_reason"), "uid": a.info.get("uid")}
    return LabelResult(**base, labelled_file=str(out), oracle_calls=calls, frame=frame, outputs=[str(out)])


@worker(ALSetParams)
def al_set(p: ALSetParams, deps: Deps) -> ALSetResult:
    """The AL set after a generation: the previous generation's frames + this generation's labelled frames
    (``new.extxyz``, cumulative ``al-frames.extxyz``), with a reason for every run that added none."""
    from harness.io import read_frames, write_frames

    outdir = Path(p.directory)
    outdir.mkdir(parents=True, exist_ok=True)
    labels = sorted(deps.get("labels", []), key=lambda d: (d.composition, d.start))
    previous = deps["previous"][0] if deps.get("previous") else None
    new = []
    for d in labels:
        if d.labelled_file:
            a = read_frames(d.labelled_file)[0]
            a.info["weight"] = 1.0
            new.append(a)
    old = read_frames(previous.al_frames) if previous and previous.al_frames else []
    frames = old + new
    new_file, cum_file = outdir / "new.extxyz", outdir / "al-frames.extxyz"
    if new:
        write_frames(new_file, new)
    if frames:
        write_frames(cum_file, frames)
    result = ALSetResult(campaign=p.campaign, chain=p.chain, generation=p.generation,
                         n_selected=sum(d.skipped is None for d in labels), n_new=len(new), n_total=len(frames),
                         oracle_calls=sum(d.oracle_calls for d in labels),
                         failed=[{"trajectory": d.run_dir, "error": d.error} for d in labels if d.error],
                         skipped=[{"trajectory": d.run_dir, "reason": d.skipped} for d in labels if d.skipped],
                         frames=[d.frame for d in labels if d.frame],
                         al_frames=str(cum_file) if frames else None)
    _write_json(outdir / "al-set.json", result.model_dump(mode="json"))
    result.outputs = [str(f) for f in (new_file, cum_file, outdir / "al-set.json") if f.exists()]
    return result
