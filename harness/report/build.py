"""``harness report``: the Q comparison table (Markdown, CSV, LaTeX), Fig. 1 analogues (PNG) and one
self-contained HTML page with provenance, from a workspace's store."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.report.data import (committee_table, density_samples, learning_curves, load_scores, member_table,
                                 member_training,
                                 committee_flags, species_of)
from harness.report import figures
from harness.report.findings import findings_of, run_summary

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["build_report", "q_table", "to_markdown", "to_latex"]


def _pm(m: float, e: float, digits: int = 2) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    return f"{m:.{digits}f} ± {e:.{digits}f}" if np.isfinite(e) else f"{m:.{digits}f}"


def interval_text(low: float, high: float, digits: int = 2) -> str:
    """A 95 % interval as ``1.62–2.10`` (``–`` when there is none)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"{low:.{digits}f}–{high:.{digits}f}"


def _resolution(scores: list[ScoreResult]) -> str:
    """The density shift the reference's KL baseline lets R see, as text (from the first score that has it)."""
    for sc in scores:
        r = sc.reference.R_resolution
        if r:
            return f"δ_min = {r.delta_min_g_cm3:.3g} g/cm³ here ({'informative' if r.informative else 'uninformative'})"
    return "δ_min (not recorded by this workspace's scores)"


def stability_verdict(low: float, high: float) -> str:
    """The paper's reading of Q (Q < 1: no stable liquid dynamics; 1–3: stable), decided by Q's 95 % interval: "stable"
    when it lies above 1, "unstable" below, else "undetermined"."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return "stable" if low > 1 else "unstable" if high < 1 else "undetermined"


def q_table(ct: pd.DataFrame, species: list[str], flags: dict[str, str] | None = None) -> pd.DataFrame:
    """The comparison table: one row per committee, mean ± SE over members, Q's 95 % interval
    (:func:`harness.quality.committee_interval`) and what it says of Q vs 1 (:func:`stability_verdict`), and the verdict
    flags of its members
    (:func:`harness.report.data.committee_flags`: a density transient, R uninformative, D not yet diffusive)."""
    rows = []
    for _, r in ct.iterrows():
        row = {"subset": r.subset, "architecture": r.arch, "committee": r.committee, "members": int(r.members),
               "Q": _pm(r.Q, r.Q_se), "Q 95 % interval": interval_text(r.get("Q_ci_low", np.nan),
                                                                       r.get("Q_ci_high", np.nan)),
               "Q vs 1": stability_verdict(r.get("Q_ci_low", np.nan), r.get("Q_ci_high", np.nan)),
               "S": _pm(r.S, r.S_se), "R": _pm(r.R, r.R_se), "V": _pm(r.V, r.V_se),
               "t_stab NPT (ps)": _pm(r.t_stab_npt_ps, r.t_stab_npt_ps_se, 3),
               "t_stab NVT (ps)": _pm(r.t_stab_nvt_ps, r.t_stab_nvt_ps_se, 3),
               "density (g/cm³)": _pm(r.density_g_cm3, r.density_g_cm3_se, 3)}
        for sp in species:
            row[f"D({sp}) (1e-6 cm²/s)"] = _pm(r.get(f"D_{sp}", np.nan), r.get(f"D_{sp}_se", np.nan), 1)
        row["D(w) (1e-6 cm²/s)"] = _pm(r.D_w, r.D_w_se, 1)
        if flags is not None:
            row["flags"] = flags.get(r.committee, "") or "–"
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    def esc(x) -> str:
        t = str(x)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("³", r"$^3$"), ("²", r"$^2$"), ("–", "--")):
            t = t.replace(a, b)
        return t

    cols = list(df.columns)
    body = [" & ".join(esc(c) for c in cols) + r" \\", r"\midrule"]
    body += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join([r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", *body, r"\bottomrule",
                      r"\end{tabular}"]) + "\n"


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def build_report(workspace: str | Path, outdir: str | Path, *, sweep: str | None = None) -> dict[str, Path]:
    """Write table.{md,csv,tex}, members.csv, fig1a..d PNGs, the members' learning curves (fig3 PNG and
    learning_curves.csv, when members recorded them) and report.html into ``outdir``."""
    from harness import __version__
    from harness.provenance import versions
    from harness.workflow.store import Store

    workspace, outdir = Path(workspace), Path(outdir)
    try:
        scores = load_scores(workspace, sweep)
    except InputError:
        if (workspace / "harness.sqlite").exists():  # an AL campaign without validation: its AL tables alone
            from harness.al.run import al_tables

            if len(al_tables(workspace, sweep)["generations"]):
                outdir.mkdir(parents=True, exist_ok=True)
                return _al_only_report(workspace, outdir, sweep)
        raise
    outdir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    members = member_table(scores)
    # each member's validation RMSEs and learning curve's end beside its t_stab (SCIENCE.md §4: never one without
    # the others); members.csv only (the Q table and findings work from the scores)
    trained = members.merge(member_training(workspace), on=["committee", "member"], how="left")
    ct = committee_table(members)
    species = species_of(members)
    table = q_table(ct, species, committee_flags(members))

    files = {"table.md": outdir / "table.md", "table.csv": outdir / "table.csv", "table.tex": outdir / "table.tex",
             "members.csv": outdir / "members.csv"}
    files["table.md"].write_text(to_markdown(table))
    table.to_csv(files["table.csv"], index=False)
    files["table.tex"].write_text(to_latex(table))
    trained.to_csv(files["members.csv"], index=False)

    settings = scores[0].settings
    reference = scores[0].reference_committee
    subsets = list(dict.fromkeys(members.subset))
    archs = list(dict.fromkeys(members.arch))
    tau = settings.tau_ps
    files["fig1a"] = figures.fig_stability(members, tau, outdir / "fig1a_stability.png", subsets=subsets, archs=archs)
    grid = settings.density_grid
    files["fig1b"] = figures.fig_density(density_samples(workspace, scores), reference, grid, outdir / "fig1b_density.png")
    for panel, sp in zip("cdefg", species or ["EC", "EMC"]):
        files[f"fig1{panel}"] = figures.fig_diffusivity(ct, sp, reference, outdir / f"fig1{panel}_D_{sp}.png",
                                                        subsets=subsets, archs=archs, panel=panel)

    curves = learning_curves(workspace)  # every member that recorded one (SCIENCE.md §4)
    if len(curves):
        files["learning_curves.csv"] = outdir / "learning_curves.csv"
        curves.to_csv(files["learning_curves.csv"], index=False)
        files["fig3"] = figures.fig_learning_curves(curves, outdir / "fig3_learning_curves.png")

    from harness.report.diagnostics import diagnostics_section, diagnostics_tables

    diag_html = diagnostics_section(diagnostics_tables(workspace, sweep), outdir, files, _img)
    from harness.report.finetune import finetune_section, finetune_tables

    ft_html = finetune_section(finetune_tables(workspace, members, sweep), outdir, files, _img)
    from harness.report.forensics import forensics_section

    why_html = forensics_section(workspace, scores, outdir, files, _img, sweep=sweep)
    from harness.report.statemaps import state_section

    state_html = state_section(workspace, sweep, members, outdir, files, _img)
    al_html = ""
    if members.generation.notna().any():
        al_html = _al_section(workspace, sweep, members, tau, outdir, files)

    store = Store(workspace / "harness.sqlite")
    counts = store.counts(sweep)
    store.close()
    caveat = ""
    if tau < 100:
        caveat = (f"<p class='warn'>The horizon here is {tau:g} ps (the paper uses 1 ns) and the models are small: "
                  "this is a demonstration of the machinery, not converged science.</p>")
    prov = {"harness": __version__, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "workspace": str(workspace.resolve()), "reference committee": reference,
            "settings": settings.model_dump(mode="json"),
            "tasks": {f"{k}/{s}": n for (k, s), n in sorted(counts.items())},
            "packages": versions()}
    figs = "".join(f"<figure><img src='{_img(p)}' alt='{k}'><figcaption>{k}</figcaption></figure>"
                   for k, p in files.items() if k.startswith(("fig1", "fig3")))
    # what analysis/findings.py reads from a report folder (members.csv beside it), and the provenance as a file
    files["summary.json"] = outdir / "summary.json"
    summary = run_summary(scores, members)
    files["summary.json"].write_text(json.dumps(summary, indent=1) + "\n")
    files["provenance.json"] = outdir / "provenance.json"
    files["provenance.json"].write_text(json.dumps(prov, indent=1, default=str) + "\n")
    found = findings_of(members, summary)
    findings_html = "<ul>" + "".join(
        f"<li><b>{html.escape(f.verdict)}</b>: {html.escape(f.claim)}<br><small><i>test:</i> {html.escape(f.test)}"
        f"<br>{html.escape(f.measured)}" + "".join(f"<br><b>caveat:</b> {html.escape(c)}" for c in f.caveats)
        + "</small></li>" for f in found) + "</ul>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>harness report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}figure{{display:inline-block;margin:8px}}img{{max-width:520px}}
.warn{{background:#fff3cd;padding:8px}}pre{{background:#f6f6f6;padding:8px;font-size:12px}}</style></head><body>
<h1>Q comparison: which training data makes which architecture stable and accurate</h1>{caveat}
<p>Q = S + R + V per member (SCIENCE.md §7: S = min(1, t_stab,NPT/τ); R and V count only for members stable for
τ = {tau:g} ps); mean ± standard error over committee members, and Q's 95 % interval (members' R, V intervals
summed, S exact; the committee's the hull of Student's t over members and their mean interval: docs/science.md).
"Q vs 1": the paper reads Q &lt; 1 as no stable liquid dynamics: <i>stable</i> when the interval lies above 1,
<i>unstable</i> below, else <i>undetermined</i>. Reference committee: {html.escape(reference)}.
D enters Q from the block estimator (composition-weighted); KL rule {html.escape(json.dumps(settings.kl_rule))}.
Flags (counted over members; docs/science.md): <i>density transient</i> — the NPT density after the equilibration cut
still drifts (MSER-5 truncation beyond 10 τ_int, or first vs second half p &lt; 0.001), so its P(ρ) mixes the
transient in; <i>R uninformative</i> — the reference's own KL baseline hides density errors below
{_resolution(scores)}, or a reference member has fewer than 10 effective samples: R = 1 then says nothing;
<i>D not diffusive</i> — the 95 % interval (bootstrap over molecules) of the MSD's local exponent over the fit
window lies below 0.9, so D (and V) come from a sub-diffusive fit; <i>D diffusion undetermined</i> — the interval
straddles 0.9: the run is too short to show a diffusive regime.</p>
{table.to_html(index=False, escape=True)}
<h2>The paper's findings, measured here</h2><p>Each claim of Niblett et al. beside this sweep's numbers
(analysis/findings.py prints the same; committees absent from the sweep leave a claim undetermined).</p>
{findings_html}
<h2>Figures</h2>{figs}
{state_html}
{diag_html}
{why_html}
{ft_html}
{al_html}
<h2>Members</h2>{members.round(4).to_html(index=False)}
<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre></body></html>"""
    files["report.html"] = outdir / "report.html"
    files["report.html"].write_text(page)
    return files


def _al_only_report(workspace: Path, outdir: Path, sweep: str | None) -> dict[str, Path]:
    """report.html of an AL campaign without per-generation validation (no Q): its AL tables."""
    from harness import __version__
    from harness.provenance import versions

    files: dict[str, Path] = {}
    body = _al_section(workspace, sweep, None, None, outdir, files)
    prov = {"harness": __version__, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "workspace": str(workspace.resolve()),
            "packages": versions()}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>harness AL report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}pre{{background:#f6f6f6;padding:8px;font-size:12px}}</style></head><body>
<h1>Active-learning campaign</h1><p>No committee of this workspace has been scored (the campaign has no
validation section), so there is no Q table.</p>{body}
<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre></body></html>"""
    files["report.html"] = outdir / "report.html"
    files["report.html"].write_text(page)
    return files


def _al_section(workspace: Path, sweep: str | None, members: pd.DataFrame | None, tau: float | None, outdir: Path,
                files: dict[str, Path]) -> str:
    """Active learning: Fig. 2 analogue (when scored), per-generation table, selected frames, hit fractions."""
    from harness.al.run import al_tables

    if members is not None:
        ref = members[members.committee.str.startswith("ref:")]
        files["fig2"] = figures.fig_al_generations(members, ref, tau, outdir / "fig2_al_generations.png")
    tables = al_tables(workspace, sweep)
    for name, df in tables.items():
        files[f"al_{name}.csv"] = outdir / f"al_{name}.csv"
        df.to_csv(files[f"al_{name}.csv"], index=False)
    gen, sel, hits = tables["generations"], tables["selected"], tables["hits"]
    parts = ["<h2>Active learning</h2>",
             "<p>Per generation: committee trained on the initial subset plus every frame labelled before it; "
             "exploration runs of the primary member stop at the first committee check with sigma2_F above the "
             "threshold (a <i>hit</i>), a stretched bond or a density outside the window; one frame per run is "
             "relabelled (first above the threshold, else the largest sigma2_F).</p>"]
    if "fig2" in files:
        parts.append(f"<figure><img src='{_img(files['fig2'])}' alt='fig2'><figcaption>fig2: Q, t_stab, density and "
                     "D against the generation</figcaption></figure>")
    parts += ["<h3>Generations</h3>", gen.round(4).to_html(index=False)]
    if len(hits):
        pivot = hits.pivot_table(index=["campaign", "chain", "generation"], columns="composition",
                                 values="hit_fraction").round(2)
        parts += ["<h3>Fraction of exploration runs that crossed the threshold</h3>", pivot.to_html()]
    if len(sel):
        parts += ["<h3>Selected frames</h3>", sel.round(4).to_html(index=False)]
    return "\n".join(parts)
