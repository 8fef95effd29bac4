"""Task functions of an active-learning campaign (run in sweep workers: ``fn(params, deps) -> result``).

``al_start``: OPLS-AA starting frames of one exploration composition (shared by every generation).
``explore``: one exploration trajectory of a generation's primary member with the committee evaluated
every ``check_interval`` steps (stopped by the AL rules), then the selection of one frame.
``label``: one run's selected frame relabelled with the oracle; ``al_set``: the generation's labelled
frames appended to the AL set (the next generation's extra training data).
Each is idempotent: a finished trajectory, selection or label is reused, an interrupted one resumes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from harness.errors import InputError

__all__ = ["al_start", "explore", "label", "al_set", "selected_frame"]

logger = logging.getLogger(__name__)


def _write_json(path: Path, data: dict) -> None:
    from harness.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


def al_start(p: dict, deps: dict) -> dict:
    """Pack a box of the composition, minimise, equilibrate with OPLS-AA (NVT at the exploration
    temperature) and keep ``n`` frames ``stride_ps`` apart (single-threaded OpenMM: reproducible)."""
    from harness.datasets.classical_md import ClassicalMD
    from harness.io import read_frames, write_frames
    from harness.systems.box import build_box
    from harness.systems.composition import Composition

    out = Path(p["path"])
    if out.exists():
        frames = read_frames(out)
        if len(frames) == p["n"]:
            return {"path": str(out), "n": len(frames), "composition": p["composition"], "_outputs": [str(out)]}
    box = build_box(Composition.parse(p["composition"]), p["density_g_cm3"], seed=p["seed"])
    md = ClassicalMD(box, p["temperature_K"], None, seed=p["seed"], cutoff_nm=p["cutoff_nm"])
    md.minimize()
    if p["equilibration_ps"] > 0:
        md.run_ps(p["equilibration_ps"])
    frames = []
    for k in range(p["n"]):
        if k:
            md.run_ps(p["stride_ps"])
        f = md.frame()
        f.info.update({"start": "OPLS-AA equilibrated", "start_index": k, "composition": p["composition"]})
        frames.append(f)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_frames(out, frames)
    return {"path": str(out), "n": len(frames), "composition": p["composition"], "_outputs": [str(out)]}


def _members(deps: dict) -> list[dict]:
    members = sorted((d for d in deps.values() if "workdir" in d), key=lambda d: d["member"])
    if len(members) < 2:
        raise InputError(f"exploration needs a committee of at least 2 trained members, got {len(members)}")
    return members


def selected_frame(run_dir: str | Path, threshold: float):
    """(frame with tags, selection dict) of a finished exploration run, or (None, reason dict).

    The candidates are the stored frames whose step has a finite sigma2_F in the thermo table (the
    committee's checks); the rule is :func:`harness.al.select.select_frame`. When a rule other than the
    variance rule stopped the run (``result.json``: density, bond stretch), its stopping frame is excluded."""
    import pandas as pd
    from ase import Atoms

    from harness.al.select import select_frame
    from harness.md.writers import read_h5md

    run_dir = Path(run_dir)
    thermo = pd.read_parquet(run_dir / "thermo.parquet")
    if "sigma2_F" not in thermo:
        return None, {"reason": "no committee check before the trajectory stopped"}
    s2 = thermo.dropna(subset=["sigma2_F"]).drop_duplicates("step", keep="last").set_index("step")["sigma2_F"]
    traj = read_h5md(run_dir / "trajectory.h5md")
    steps = [int(s) for s in traj["step"]]
    cand = [(k, s) for k, s in enumerate(steps) if s in s2.index and np.all(np.isfinite(traj["positions"][k]))]
    if not cand:
        return None, {"reason": "no stored frame with a finite committee variance"}
    series = np.array([s2[s] for _, s in cand], dtype=float)
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


def explore(p: dict, deps: dict) -> dict:
    """One exploration trajectory and its selected frame (``selected.extxyz`` in the run directory)."""
    from harness.io import read_frames, write_frames
    from harness.md.detectors import active_learning_detectors
    from harness.md.launch import model_calculator
    from harness.md.runner import RunSettings, run_md
    from harness.models.train import model_run_name
    from harness.sweep.tasks import _threads

    _threads(p["threads"])
    e = p["exploration"]
    members = _members(deps)
    start_dep = next(d for d in deps.values() if "composition" in d and "path" in d)
    start = read_frames(start_dep["path"])[p["start"]]
    primary, _, species = model_calculator(members[0]["workdir"], device=p["device"])
    others = [model_calculator(m["workdir"], device=p["device"])[0] for m in members[1:]]
    committee = Path(members[0]["committee_dir"])
    tag = p["composition"].replace("=", "").replace(",", "-")
    from harness.datasets.spec import params_hash

    # the run directory names the committee, the start and the exploration settings: a changed setting is a
    # new trajectory, never a stale finished one
    run_id = params_hash({"exploration": e, "start_file": start_dep["path"], "index": p["index"],
                          "generation": p["generation"]})[:8]
    outdir = (Path(p["workspace"]) / "al" / "explore" / model_run_name(committee) /
              f"{tag}-s{p['start']}-{run_id}")
    if species is not None:
        extra = set(start.get_chemical_symbols()) - set(species)
        if extra:
            raise InputError(f"{start_dep['path']}: start frame has element(s) {', '.join(sorted(extra))} the "
                             "committee was not trained on")
    settings = RunSettings("npt", temperature_K=e["temperature_K"], length_ps=e["length_ps"],
                           timestep_fs=e["timestep_fs"], pressure_atm=e["pressure_atm"], tdamp_fs=e["tdamp_fs"],
                           pdamp_fs=e["pdamp_fs"], frame_interval=e["check_interval"],
                           thermo_interval=e["check_interval"], checkpoint_interval=e["checkpoint_interval"])
    dets = active_learning_detectors(True, interval=e["check_interval"], bond_length_method=e["bond_length_method"],
                                     max_sigma2_F_eV2_A2=e["max_sigma2_F_eV2_A2"], max_bond_ratio=e["max_bond_ratio"],
                                     density_window_g_cm3=tuple(e["density_window_g_cm3"]), others=others)
    meta = {"model": members[0]["workdir"], "committee": [m["workdir"] for m in members], "purpose": "AL exploration",
            "composition": p["composition"], "start": p["start"], "start_file": start_dep["path"],
            "generation": p["generation"], "chain": p["chain"], "campaign": p["campaign"]}
    seed = 1000 * e["seed"] + 100 * p["generation"] + p["index"]
    result = run_md(start, primary, settings, outdir=outdir, seed=seed, detectors=dets, meta=meta)
    out = {"run_dir": str(outdir), "composition": p["composition"], "start": p["start"], "generation": p["generation"],
           "chain": p["chain"], "campaign": p["campaign"], "arch": p["arch"], "t_stop_ps": result.t_stab_ps,
           "stopped_by": (result.failure or {}).get("detector"), "length_ps": e["length_ps"],
           "hit_threshold": (result.failure or {}).get("detector") == "committee_variance",
           "wall_s": result.wall_s}
    sel_file = outdir / "selected.extxyz"
    atoms, info = selected_frame(outdir, e["max_sigma2_F_eV2_A2"])
    out["selection"] = info
    if atoms is not None:
        atoms.info.update({
            "config_type": "AL", "architecture": p["arch"], "generation": p["generation"],
            "composition": p["composition"], "al_run": f"{p['campaign']}/{p['chain']}/g{p['generation']}/{tag}-s{p['start']}",
            "source_trajectory": str(outdir), "al_sigma2_F": info["sigma2_F"], "al_time_ps": info["time_ps"],
            "al_reason": info["reason"], "al_campaign": p["campaign"]})
        write_frames(sel_file, [atoms])
        out["selected_file"] = str(sel_file)
    files = [outdir / f for f in ("result.json", "thermo.parquet", "trajectory.h5md", "selected.extxyz")]
    out["_outputs"] = [str(f) for f in files if f.exists()]
    return out


def label(p: dict, deps: dict) -> dict:
    """Relabel one exploration run's selected frame with the oracle (``labelled.extxyz`` beside it).

    A frame the oracle cannot label (after its retry) is left out with the error; a finished label is
    never recomputed (the file is reused, so a resumed campaign makes no second oracle call)."""
    from harness.io import read_frames
    from harness.reference import make_oracle, oracle_key
    from harness.reference.batch import label_to_file
    from harness.sweep.tasks import _threads

    _threads(p["threads"])
    run = next(iter(deps.values()))
    base = {k: run[k] for k in ("campaign", "chain", "generation", "composition", "start", "run_dir")}
    if not run.get("selected_file"):
        return {**base, "labelled_file": None, "oracle_calls": 0, "error": None,
                "skipped": run["selection"].get("reason", "nothing selected")}
    oracle = make_oracle(p["oracle"]["name"], p["oracle"]["options"])
    out = Path(run["run_dir"]) / f"labelled-{oracle_key(oracle)}.extxyz"
    calls, error = 0, None
    if not out.exists():
        rep = label_to_file(read_frames(run["selected_file"]), out, oracle, source=run["selected_file"],
                            command=f"harness al run ({p['campaign']})")
        # a label finished before an interruption comes back from the resume file as "cached": it was
        # computed once, by this task, so it counts as this frame's oracle call
        calls = sum(r.status in ("labelled", "cached") for r in rep.records)
        if rep.failed:
            error = rep.failed[0].error
    if not out.exists():
        return {**base, "labelled_file": None, "oracle_calls": calls, "error": error or "labelling failed",
                "skipped": None}
    a = read_frames(out)[0]
    frame = {"composition": a.info.get("composition"), "run": a.info.get("al_run"),
             "time_ps": a.info.get("al_time_ps"), "sigma2_F": a.info.get("al_sigma2_F"),
             "reason": a.info.get("al_reason"), "uid": a.info.get("uid")}
    return {**base, "labelled_file": str(out), "oracle_calls": calls, "error": None, "skipped": None, "frame": frame,
            "_outputs": [str(out)]}


def al_set(p: dict, deps: dict) -> dict:
    """The AL set after a generation: the previous generation's frames + this generation's labelled frames
    (``new.extxyz``, cumulative ``al-frames.extxyz``), with a reason for every run that added none."""
    from harness.io import read_frames, write_frames

    outdir = Path(p["directory"])
    outdir.mkdir(parents=True, exist_ok=True)
    labels = sorted((d for d in deps.values() if "labelled_file" in d), key=lambda d: (d["composition"], d["start"]))
    previous = next((d for d in deps.values() if "n_new" in d), None)
    new = []
    for d in labels:
        if d["labelled_file"]:
            a = read_frames(d["labelled_file"])[0]
            a.info["weight"] = 1.0
            new.append(a)
    old = read_frames(previous["al_frames"]) if previous and previous.get("al_frames") else []
    frames = old + new
    new_file, cum_file = outdir / "new.extxyz", outdir / "al-frames.extxyz"
    if new:
        write_frames(new_file, new)
    if frames:
        write_frames(cum_file, frames)
    result = {"campaign": p["campaign"], "chain": p["chain"], "generation": p["generation"],
              "n_selected": sum(d["skipped"] is None for d in labels), "n_new": len(new), "n_total": len(frames),
              "oracle_calls": sum(d["oracle_calls"] for d in labels),
              "failed": [{"trajectory": d["run_dir"], "error": d["error"]} for d in labels if d["error"]],
              "skipped": [{"trajectory": d["run_dir"], "reason": d["skipped"]} for d in labels if d["skipped"]],
              "frames": [d["frame"] for d in labels if d.get("frame")],
              "al_frames": str(cum_file) if frames else None}
    _write_json(outdir / "al-set.json", result)
    outs = [f for f in (new_file, cum_file, outdir / "al-set.json") if f.exists()]
    return {**result, "_outputs": [str(f) for f in outs]}
