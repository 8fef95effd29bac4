"""The diagnostics of a workspace (SCIENCE.md §9) as tables, figures and a report section, from the store.

Tables (CSV in the report folder): ``vscan_frames`` (E(ρ) per frame and member), ``vscan_shifts`` (the
baseline shift per committee, validation set and composition), ``traj_errors`` (per relabelled frame),
``traj_error_summary`` (per committee and run kind), ``liquids`` (per committee and liquid: t_stab and
errors). Figures: ``fig4_volume_scans`` (paper Figs 3–4), ``fig5_trajectory_errors`` (§4.4) and
``fig6_generalisation`` (Fig. 5); ``calibration`` and ``calibration_curve`` (per committee: its force uncertainty
against its error on the relabelled frames) with ``fig9_calibration``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.report.figures import _plt, _save

__all__ = ["diagnostics_tables", "diagnostics_section", "fig_volume_scans", "fig_trajectory_errors",
           "fig_generalisation", "fig_calibration_curves"]


def diagnostics_tables(workspace: str | Path, sweep: str | None = None) -> dict[str, pd.DataFrame]:
    """The diagnostics results of ``workspace``'s store (typed: :mod:`harness.diagnostics.contract`) as tidy tables
    (empty when none ran)."""
    from harness.diagnostics.contract import CalibrationParams, LiquidParams, TrajErrorsParams, VScanParams
    from harness.workflow.contract import stored_results
    from harness.workflow.store import Store

    path = Path(workspace) / "harness.sqlite"
    if not path.exists():
        return {}
    store = Store(path)
    try:
        def typed(kind, params):
            return stored_results(store.tasks(kind=kind, status="done", sweep=sweep), params)

        vscan, errs = typed("vscan", VScanParams), typed("traj_errors", TrajErrorsParams)
        liquids, calib = typed("liquid", LiquidParams), typed("calibration", CalibrationParams)
    finally:
        store.close()
    out: dict[str, pd.DataFrame] = {}

    def ident(r) -> dict:
        return {"committee": r.committee, "arch": r.arch, "subset": r.subset}

    if vscan:
        out["vscan_frames"] = pd.DataFrame([{**ident(v), "validation_set": v.validation_set, **row.model_dump()}
                                            for v in vscan for row in v.rows])
        out["vscan_shifts"] = pd.DataFrame([
            {**ident(v), "validation_set": v.validation_set,
             **{k: getattr(s, k) for k in ("composition", "n_atoms", "shift_meV_atom", "shift_meV_atom_std", "shift_eV",
                                           "shifted", "shape_rmse_meV_atom", "dilute_frames", "tolerance_meV_atom")},
             "median_abs_shift_meV_atom": s.median_abs_shift_meV_atom, "members_shifted": s.members_shifted,
             "verdict": s.verdict or "undetermined", "verdict_why": s.verdict_why or "computed by an older harness",
             "members": len(s.members),
             "energy_rmse_meV_atom": float(np.mean([e.energy_rmse_meV_atom for e in v.errors.values()])),
             "forces_rmse_meV_A": float(np.mean([e.forces_rmse_meV_A for e in v.errors.values()]))}
            for v in vscan for s in v.shifts])
    if errs:
        def kind(e) -> str:
            return f"{e.ensemble} {e.liquid}" if e.liquid else e.ensemble

        out["traj_errors"] = pd.DataFrame([{**ident(e), "member": e.member, "seed": e.seed, "run": kind(e),
                                            "liquid": e.liquid, "t_stab_ps": e.t_stab_ps, "run_failed": e.run_failed,
                                            **f.model_dump()} for e in errs for f in e.frames])
        summ = pd.DataFrame([{**ident(e), "member": e.member, "run": kind(e),
                              "n_frames": e.summary.n_frames, "failed_labels": e.failed_labels,
                              "frames_from_failed_runs": e.summary.n_frames if e.run_failed else 0,
                              "energy_rmse_meV_atom": e.summary.energy_rmse_meV_atom,
                              "forces_rmse_meV_A": e.summary.forces_rmse_meV_A,
                              "forces_rmse_slope_meV_A_per_ps": e.summary.forces_rmse_slope_meV_A_per_ps}
                             for e in errs])
        num = ["energy_rmse_meV_atom", "forces_rmse_meV_A", "forces_rmse_slope_meV_A_per_ps"]
        summ[num] = summ[num].astype(float)
        g = summ.groupby(["committee", "arch", "subset", "run"], dropna=False, sort=True)
        table = g[num].mean().join(g[["n_frames", "failed_labels", "frames_from_failed_runs"]].sum())
        table["members_with_frames"] = g.n_frames.apply(lambda s: int((s > 0).sum()))
        out["traj_error_summary"] = table.reset_index()
    if liquids:
        rows = []
        for lq in liquids:
            m = lq.members
            t = np.array([x.t_stab_ps for x in m])
            with_errors = [x for x in m if x.errors is not None and x.errors.n_frames]
            fr = [x.errors.forces_rmse_meV_A for x in with_errors]
            rows.append({**ident(lq), "liquid": lq.liquid, "composition": lq.composition,
                         "members": len(m), "reached_tau": sum(bool(x.reached_tau) for x in m),
                         "horizon_ps": lq.horizon_ps, "t_stab_npt_ps": float(t.mean()),
                         "t_stab_npt_ps_se": float(t.std(ddof=1) / np.sqrt(len(t))) if len(t) > 1 else np.nan,
                         "failures": ", ".join(sorted({x.failure for x in m if x.failure})) or "–",
                         "forces_rmse_meV_A": float(np.mean(fr)) if fr else np.nan,
                         "members_with_errors": len(fr),
                         # frames of a failed run lead up to its failure: their errors describe the way out
                         "errors_from_failed_runs": sum(x.failure is not None for x in with_errors)})
        out["liquids"] = pd.DataFrame(rows)
    if calib:
        keys = ("members", "frames", "n_atoms", "scale", "ence", "spearman", "mean_sigma_eV_A", "rmse_eV_A",
                "al_threshold_expected_error_eV_A")
        out["calibration"] = pd.DataFrame([{**ident(c), **{k: getattr(c, k) for k in keys}} for c in calib])
        out["calibration_curve"] = pd.DataFrame([{"committee": c.committee, "arch": c.arch, "bin": k,
                                                  **b.model_dump()} for c in calib for k, b in enumerate(c.curve)])
    return out


def fig_calibration_curves(curve: pd.DataFrame, path: Path) -> Path:
    """Each committee's calibration curve: RMS actual force error against RMS predicted σ per equal-count bin of
    σ (eV/Å), log axes, the diagonal (calibrated) dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for k, (cid, df) in enumerate(curve.groupby("committee", sort=False)):
        ax.plot(df.rms_sigma_eV_A, df.rmse_eV_A, "o-", ms=3, lw=1, color=f"C{k}", label=cid)
    lo = float(np.nanmin(curve[["rms_sigma_eV_A", "rmse_eV_A"]].to_numpy()))
    hi = float(np.nanmax(curve[["rms_sigma_eV_A", "rmse_eV_A"]].to_numpy()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="calibrated")
    ax.axvline(np.sqrt(0.5), color="grey", lw=0.8, ls=":", label="AL threshold σ_F 0.71 eV/Å")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("RMS predicted σ_F per atom (eV/Å)")
    ax.set_ylabel("RMS error of the committee mean (eV/Å)")
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def fig_volume_scans(frames: pd.DataFrame, shifts: pd.DataFrame, path: Path) -> Path:
    """Per composition (columns): E(ρ) of the committees' mean (markers) and of each member (thin lines: members
    can be shifted in opposite directions) against the reference, per atom and relative to the reference's most
    dilute frame of the same scan (top); parity of the committee means (bottom). A baseline shift is a curve
    displaced by a constant that the parity points share; the legend gives the median |shift| over members."""
    plt = _plt()
    comps = sorted(frames.composition.unique())
    fig, axes = plt.subplots(2, len(comps), figsize=(5 * len(comps), 8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    committees = list(dict.fromkeys(frames.committee))
    for j, comp in enumerate(comps):
        f = frames[frames.composition == comp]
        top, bottom = axes[0, j], axes[1, j]
        lo = []
        for i, cid in enumerate(committees):
            c = f[f.committee == cid]
            if c.empty:
                continue
            mean = c.groupby(["scan_id", "frame"], sort=True).agg(
                density=("density_g_cm3", "first"), e=("energy_eV", "mean"), ref=("energy_ref_eV", "first"),
                n=("n_atoms", "first")).reset_index()
            for k, (sid, s) in enumerate(mean.groupby("scan_id")):
                s = s.sort_values("density")
                e0 = s.ref.iloc[0]
                y_ref, y = 1000 * (s.ref - e0) / s.n, 1000 * (s.e - e0) / s.n
                if i == 0:
                    top.plot(s.density, y_ref, "k-", lw=2, label="reference" if k == 0 else None, zorder=5)
                sh = shifts[(shifts.committee == cid) & (shifts.composition == comp)]
                tag = ""
                if len(sh):
                    med = sh["median_abs_shift_meV_atom"].iloc[0] if "median_abs_shift_meV_atom" in sh else \
                        abs(sh.shift_meV_atom.iloc[0])
                    tag = f" (median |shift| {med:.0f}, mean {sh.shift_meV_atom.iloc[0]:+.0f} meV/atom)"
                for _, mem in c[c.scan_id == sid].groupby("member"):
                    mem = mem.sort_values("density_g_cm3")
                    top.plot(mem.density_g_cm3, 1000 * (mem.energy_eV - e0) / mem.n_atoms, "-",
                             color=colors[i % len(colors)], lw=0.7, alpha=0.4)
                top.plot(s.density, y, "o--", color=colors[i % len(colors)], ms=3,
                         label=f"{cid}{tag}" if k == 0 else None)
                bottom.plot(y_ref, y, "o", color=colors[i % len(colors)], ms=3, label=cid if k == 0 else None)
                lo += [y_ref.min(), y_ref.max()]
        top.set_xlabel("density (g/cm³)")
        top.set_ylabel("E − E_ref(most dilute) (meV/atom)")
        top.set_title(f"rigid-molecule volume scans, {comp}", fontsize=10)
        top.legend(fontsize=7)
        if lo:
            lim = [min(lo), max(lo)]
            bottom.plot(lim, lim, "k:", lw=1)
        bottom.set_xlabel("reference (meV/atom)")
        bottom.set_ylabel("committee mean (meV/atom)")
        bottom.set_title("parity", fontsize=10)
    return _save(plt, fig, path)


def fig_trajectory_errors(errors: pd.DataFrame, path: Path) -> Path:
    """Errors on relabelled frames of each member's own trajectory: force RMSE and energy error against time
    (committee means) and the energy error against the reference energy (every frame)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    keys = list(dict.fromkeys(zip(errors.committee, errors.run)))
    for i, (cid, run) in enumerate(keys):
        e = errors[(errors.committee == cid) & (errors.run == run)]
        g = e.groupby("time_ps").agg(f=("forces_rmse_meV_A", lambda x: np.sqrt(np.mean(np.square(x)))),
                                     en=("energy_error_meV_atom", lambda x: np.sqrt(np.mean(np.square(x)))))
        c = colors[i % len(colors)]
        label = f"{cid} ({run})"
        axes[0].plot(g.index, g.f, "o-", color=c, ms=3, label=label)
        axes[1].plot(g.index, g.en, "o-", color=c, ms=3, label=label)
        axes[2].plot(e.energy_ref_eV_atom, e.energy_error_meV_atom, "o", color=c, ms=3, label=label)
    axes[0].set_ylabel("force RMSE (meV/Å)")
    axes[1].set_ylabel("energy RMSE (meV/atom)")
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    for ax in axes[:2]:
        ax.set_xlabel("time in the run (ps)")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[2].set_xlabel("reference energy (eV/atom)")
    axes[2].set_ylabel("energy error (meV/atom)")
    axes[2].axhline(0, color="k", lw=0.8)
    axes[0].set_title("errors along each model's own trajectory", fontsize=10)
    axes[0].legend(fontsize=6)
    return _save(plt, fig, path)


def fig_generalisation(liquids: pd.DataFrame, path: Path) -> Path:
    """(a) NPT t_stab per liquid and committee (mean ± SE over members, the horizon marked); (b) force RMSE on
    frames of each model's own run in each liquid (members with frames)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    names = list(dict.fromkeys(liquids.liquid))
    committees = list(dict.fromkeys(liquids.committee))
    width = 0.8 / max(len(committees), 1)
    x = np.arange(len(names))
    for i, cid in enumerate(committees):
        c = liquids[liquids.committee == cid].set_index("liquid").reindex(names)
        pos = x + (i - (len(committees) - 1) / 2) * width
        axes[0].bar(pos, c.t_stab_npt_ps, width, yerr=np.nan_to_num(c.t_stab_npt_ps_se), capsize=2, label=cid)
        axes[1].bar(pos, c.forces_rmse_meV_A, width, label=cid)
    axes[0].axhline(liquids.horizon_ps.iloc[0], color="k", ls="--", lw=1)
    axes[0].set_ylabel("t_stab NPT (ps)")
    axes[0].set_title("(a) stability in liquids the models never saw", fontsize=10)
    axes[1].set_ylabel("force RMSE on own frames (meV/Å)")
    axes[1].set_title("(b) force errors on their own trajectories", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, names)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, path)


def diagnostics_section(tables: dict[str, pd.DataFrame], outdir: Path, files: dict[str, Path],
                        img: Callable[[Path], str]) -> str:
    """Write the CSVs and figures into ``outdir`` (recorded in ``files``) and return the HTML section."""
    if not tables:
        return ""
    from harness.report.data import write_tables

    write_tables(tables, outdir, files)
    parts = ["<h2>Diagnostics: why a model fails (SCIENCE.md §9)</h2>"]

    def figure(key: str, caption: str) -> None:
        parts.append(f"<figure><img src='{img(files[key])}' alt='{key}'><figcaption>{html.escape(caption)}"
                     "</figcaption></figure>")

    if "vscan_shifts" in tables:
        s = tables["vscan_shifts"]
        files["fig4"] = fig_volume_scans(tables["vscan_frames"], s, outdir / "fig4_volume_scans.png")
        tol = s.tolerance_meV_atom.iloc[0]
        parts += ["<h3>Volume-scan validation and the zero-density baseline shift</h3>",
                  "<p>Held-out rigid-molecule scans (molecules rigid, centres of mass scaled from the dilute limit to "
                  "2 g/cm³). The shift is the committee's mean model − reference energy over the dilute frames "
                  f"(the sum of the molecules' own energies); <i>shifted</i>: the median |shift| over members exceeds {tol:g} "
                  "meV/atom; <i>verdict</i>: the statistic (each member's one-sided 95 % bound on |shift| against the "
                  "tolerance, a majority of at least 3 members; else undetermined). "
                  "A model trained on one composition without isolated molecules can distribute the molecules' "
                  "energies freely as long as the training mix adds up: at another composition its whole E(ρ) is "
                  "displaced (paper Figs 3–4).</p>",
                  s.round(3).to_html(index=False)]
        figure("fig4", "fig4: E(ρ) of the scans per composition (top) and parity (bottom), committee means")
    if "traj_error_summary" in tables:
        files["fig5"] = fig_trajectory_errors(tables["traj_errors"], outdir / "fig5_trajectory_errors.png") \
            if "traj_errors" in tables else None
        parts += ["<h3>Errors along each model's own trajectory</h3>",
                  "<p>Frames of each member's run every Δt, relabelled with the reference method; RMSE over the "
                  "frames, mean over members (slope: change of the force RMSE per ps of the run). A member that "
                  "failed before the first Δt has no frames.</p>",
                  tables["traj_error_summary"].round(3).to_html(index=False)]
        if files.get("fig5"):
            figure("fig5", "fig5: errors against time and against the reference energy")
        else:
            files.pop("fig5", None)
    if "calibration" in tables:
        curve = tables.get("calibration_curve")
        parts += ["<h3>Is the committee's uncertainty calibrated?</h3>",
                  "<p>On the relabelled frames of its members' own runs: the committee's per-atom force spread σ "
                  "(the per-atom term of σ²_F) against the error of its mean force. <i>scale</i> s = "
                  "sqrt(Σ|e|²/Σσ²): the factor that makes σ the RMS error to expect (s &gt; 1: the committee is "
                  "overconfident); <i>ence</i>: mean over ten equal-count bins of |RMSE − RMσ|/RMσ (0 when "
                  "calibrated); <i>spearman</i>: whether σ orders the errors. The AL threshold σ²_F = 0.5 eV²/Å² "
                  "(σ_F = 0.71 eV/Å, called “10× a typical error”) expects an error of "
                  "s × 0.71 eV/Å on the worst atom (last column); to aim the AL rule at an expected error e_max, use "
                  "max_sigma2_F_eV2_A2 = (e_max/s)².</p>",
                  tables["calibration"].round(3).to_html(index=False)]
        if curve is not None and len(curve):
            files["fig9"] = fig_calibration_curves(curve, outdir / "fig9_calibration.png")
            figure("fig9", "fig9: calibration curves (RMS error against RMS predicted σ)")
    if "liquids" in tables:
        files["fig6"] = fig_generalisation(tables["liquids"], outdir / "fig6_generalisation.png")
        parts += ["<h3>Chemical generalisation: liquids the models never saw</h3>",
                  "<p>NPT at the protocol's temperature and pressure from an OPLS-AA-equilibrated start; t_stab mean "
                  "± SE over members, how many reached the horizon, the failure detectors that fired, and the force "
                  "RMSE on frames of each member's own run (paper §4.5, Fig. 5).</p>",
                  tables["liquids"].round(3).to_html(index=False)]
        figure("fig6", "fig6: t_stab and force errors per liquid and committee")
    return "\n".join(parts)
