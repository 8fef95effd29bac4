"""Worker functions of the diagnostics task kinds (:mod:`harness.diagnostics.contract`)."""

from __future__ import annotations

from pathlib import Path

from harness.diagnostics.contract import (CalibrationParams, CalibrationResult, LiquidParams, LiquidResult,
                                          RelabelParams, RelabelResult, TrajErrorsParams, TrajErrorsResult, VScanParams,
                                          VScanResult)
from harness.errors import InputError
from harness.workflow.contract import Deps, check_hash, worker

__all__ = ["vscan", "relabel", "traj_errors", "calibration", "liquid", "validation_frames"]


def validation_frames(dataset: str | Path, name: str):
    """The frames of validation set ``name`` of a dataset, with their content hash."""
    from harness.datasets.build import frames_hash
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble

    spec = load_dataset_spec(dataset)
    if name not in spec.validation:
        raise InputError(f"{dataset}: no validation set {name!r} (validation sets: "
                         f"{', '.join(spec.validation) or 'none'})")
    frames = assemble(spec, name).frames
    return frames, frames_hash(frames)


def _member_name(m) -> str:
    return f"member-{m.member}" + (f"-seed{m.seed}" if m.seed is not None else "")


@worker(VScanParams)
def vscan(p: VScanParams, deps: Deps) -> VScanResult:
    """Every member's energies on the scans; E(ρ) rows, baseline shift per composition, errors."""
    from harness.diagnostics.volume_scan import baseline_shifts, scan_table
    from harness.models.evaluate import error_table, predict
    from harness.models.load import load_model
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    frames, h = validation_frames(p.dataset, p.validation_set)
    check_hash(f"validation set {p.validation_set}", p.frames_hash, h)
    where = f"{p.dataset}: validation set {p.validation_set}"
    energies, errors, stamps = {}, {}, {}
    for m in sorted(deps["members"], key=lambda m: m.member):
        loaded = load_model(m.model, device=p.device)
        preds = predict(loaded.calculator, frames, species=loaded.species, where=where, stress=False)
        name = _member_name(m)
        energies[name] = [x.energy for x in preds]
        errors[name] = error_table(frames, preds)["all"]
        stamps[name] = m.stamp
    table = scan_table(frames, energies, where=where)
    shifts = baseline_shifts(table, dilute_g_cm3=p.dilute_g_cm3, tolerance_meV_atom=p.tolerance_meV_atom)
    keep = ["member", "frame", "scan_id", "composition", "density_g_cm3", "n_atoms", "energy_ref_eV", "energy_eV"]
    return VScanResult(committee=p.committee, arch=p.arch, subset=p.subset, validation_set=p.validation_set,
                       rows=table[keep].to_dict("records"), shifts=shifts, errors=errors, models=stamps)


@worker(RelabelParams)
def relabel(p: RelabelParams, deps: Deps) -> RelabelResult:
    """Frames of one run every Δt (up to its failure) labelled with the reference method, written beside
    the run (``relabelled-<Δt>ps-<n>frames-<oracle>.extxyz``); an interrupted labelling resumes, a finished
    one is reused, a frame labelled for another selection of the same run is not labelled again; frames the
    reference cannot label are left out and listed."""
    from harness.diagnostics.trajectory import run_frames, select_frames
    from harness.h5md import read_h5md
    from harness.io import read_frames
    from harness.reference import make_oracle, oracle_key
    from harness.reference.batch import label_to_file, manifest_path_for
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    (run,) = deps["run"]
    base = {**run.identity(), "run_dir": run.run_dir, "ensemble": run.ensemble, "t_stab_ps": run.t_stab_ps,
            "liquid": p.liquid, "run_failed": run.failure is not None}
    traj = Path(run.run_dir) / "trajectory.h5md"
    if not traj.exists():
        raise InputError(f"{run.run_dir}: no trajectory.h5md to relabel")
    times = read_h5md(traj)["time_ps"]
    idx = select_frames(times, p.every_ps, t_end_ps=run.t_stab_ps, max_frames=p.max_frames)
    if not idx:
        return RelabelResult(**base)
    oracle = make_oracle(p.oracle["name"], p.oracle["options"])
    key = oracle_key(oracle)
    out = Path(run.run_dir) / f"relabelled-{p.every_ps:g}ps-{len(idx)}frames-{key}.extxyz"
    failed: list[dict] = []
    if not out.exists():
        frames = run_frames(traj, idx, info={"composition": p.composition, "config_type": "trajectory",
                                             "run": run.run_dir})
        # a frame another selection of this run already labelled (another Δt or frame count) is reused
        reuse = {a.info["uid"]: a for f in sorted(Path(run.run_dir).glob(f"relabelled-*-{key}.extxyz"))
                 for a in read_frames(f) if "uid" in a.info}
        rep = label_to_file(frames, out, oracle, source=str(traj), reuse=reuse,
                            command=f"relabel {run.run_dir} every {p.every_ps:g} ps")
        failed = [{"frame": r.index, "error": r.error} for r in rep.records if r.status == "failed"]
    elif manifest_path_for(out).exists():  # a finished labelling: its failures from its manifest
        import json

        records = json.loads(manifest_path_for(out).read_text()).get("frames", [])
        failed = [{"frame": r["index"], "error": r.get("error")} for r in records if r.get("status") == "failed"]
    n = len(read_frames(out)) if out.exists() else 0
    return RelabelResult(**base, labelled_file=str(out) if n else None, n_selected=len(idx), n_labelled=n,
                         failed=failed, outputs=[str(out)] if n else [])


@worker(TrajErrorsParams)
def traj_errors(p: TrajErrorsParams, deps: Deps) -> TrajErrorsResult:
    """The member's energy and force errors on the relabelled frames of its own run."""
    from harness.diagnostics.trajectory import force_error_by_reference, frame_errors, summary
    from harness.io import read_frames
    from harness.models.evaluate import predict
    from harness.models.load import load_model
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    (lab,) = deps["labels"]
    (member,) = deps["member"]
    base = {**member.identity(), "run_dir": lab.run_dir, "ensemble": lab.ensemble, "liquid": p.liquid,
            "t_stab_ps": lab.t_stab_ps, "failed_labels": len(lab.failed), "run_failed": lab.run_failed}
    if not lab.labelled_file:
        return TrajErrorsResult(**base, frames=[], summary=summary([]))
    frames = read_frames(lab.labelled_file)
    loaded = load_model(member.model, device=p.device)
    preds = predict(loaded.calculator, frames, species=loaded.species, where=lab.labelled_file, stress=False)
    rows = frame_errors(frames, [x.energy for x in preds], [x.forces for x in preds])
    return TrajErrorsResult(**base, frames=rows, summary=summary(rows),
                            by_reference=force_error_by_reference(frames, [x.forces for x in preds]))


@worker(CalibrationParams)
def calibration(p: CalibrationParams, deps: Deps) -> CalibrationResult:
    """The committee's mean force and per-atom spread on every relabelled frame of its members' runs, against the
    reference forces: the calibration curve and summary (:func:`~harness.diagnostics.calibration.calibration_summary`)."""
    import numpy as np

    from harness.diagnostics.calibration import calibration_curve, calibration_summary
    from harness.io import read_frames
    from harness.models.committee import CommitteeCalculator
    from harness.models.evaluate import calibration as sigma_and_error
    from harness.models.evaluate import predict
    from harness.models.load import load_model
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    frames = [a for lab in deps["labels"] if lab.labelled_file for a in read_frames(lab.labelled_file)]
    members = deps["members"]
    base = {"committee": p.committee, "arch": p.arch, "subset": p.subset, "members": len(members),
            "frames": len(frames)}
    sigma, err = np.zeros(0), np.zeros(0)
    if frames and len(members) > 1:
        loaded = [load_model(m.model, device=p.device) for m in members]
        known = [m.species for m in loaded if m.species]
        species = sorted(set.intersection(*map(set, known))) if known else None
        preds = predict(CommitteeCalculator([m.calculator for m in loaded]), frames, species=species,
                        where=f"relabelled frames of {p.committee}", stress=False)
        sigma, err = sigma_and_error(frames, preds)
    summary = calibration_summary(sigma, err)
    nan = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in summary.items()}
    curve = [{**r, "ratio": None if not np.isfinite(r["ratio"]) else r["ratio"]}
             for r in calibration_curve(sigma, err).to_dict("records")]
    return CalibrationResult(**base, n_atoms=nan["n_atoms"], scale=nan["scale"], ence=nan["ence"],
                             spearman=nan["spearman"], mean_sigma_eV_A=nan["mean_sigma_eV_A"],
                             rmse_eV_A=nan["rmse_eV_A"], al_threshold_sigma_F_eV_A=nan["al_threshold_sigma_F_eV_A"],
                             al_threshold_expected_error_eV_A=nan["al_threshold_expected_error_eV_A"], curve=curve)


@worker(LiquidParams)
def liquid(p: LiquidParams, deps: Deps) -> LiquidResult:
    """One committee in one out-of-distribution liquid: t_stab of every member's NPT run (reached the
    horizon or how it failed) and its errors on its own relabelled frames (when planned)."""
    errors = {(e.member, e.seed): e for e in deps.get("errors", [])}
    members = []
    for r in sorted(deps["runs"], key=lambda r: r.member):
        e = errors.get((r.member, r.seed))
        members.append({"member": _member_name(r), "seed": r.seed, "t_stab_ps": r.t_stab_ps,
                        "reached_tau": r.failure is None and r.t_stab_ps >= p.horizon_ps - 1e-9,
                        "failure": r.failure.detector if r.failure else None,
                        "errors": e.summary if e is not None else None,
                        "failed_labels": e.failed_labels if e is not None else None})
    return LiquidResult(liquid=p.liquid, composition=p.composition, committee=p.committee, arch=p.arch,
                        subset=p.subset, horizon_ps=p.horizon_ps, members=members)
