"""The report's failure forensics (issue #32 items 1-2): every failed member run's record, and the close contacts
before the failures against the training subsets and a stable reference run.

Tables (CSV in the report folder): ``failures`` (one row per failed run: detector, bond and its species, the
closest contact at the failure, and per element pair the frames of its last ``WINDOW_PS`` closer than anything in
the member's training subset) and ``contacts`` (the closest intermolecular distance per element pair and frame, in
each group: a training subset's periodic frames, the failed runs' last ``WINDOW_PS`` per committee, a stable
reference run's frames). Figures: one ``failure_<run>.png`` per failed run (:func:`~harness.report.figures.fig_failure`)
and ``fig7_close_contacts.png``; environment coverage (item 3): ``coverage`` (per NPT frame of every scored member
with a known training set, its worst environment's SOAP coverage distance), ``failure_prediction`` (does it rise
before failures: ROC AUC per architecture) and ``fig8_coverage.png`` (the distances before failures, the PCovC map).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from harness.report.figures import _plt, _save, fig_failure

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["WINDOW_PS", "PREDICTION_DT_PS", "failure_records", "coverage_tables", "forensics_section",
           "fig_close_contacts", "fig_coverage"]

logger = logging.getLogger(__name__)

#: the stretch before a failure whose contacts are compared with the training set's (ps)
WINDOW_PS = 0.5
#: frames of the stable reference run used for its contact distribution (evenly spaced)
REFERENCE_FRAMES = 100


def _training_sets(workspace: Path, sweep: str | None) -> dict[str, tuple[str, str, int | None]]:
    """committee -> (dataset spec, subset, max_train_frames) of its members: those the workspace trained (their
    train parameters) and trained members brought in (a shipped committee: the dataset its artifacts record; a
    relative spec path is the repository's)."""
    from harness.models.base import ModelArtifact
    from harness.models.ship import ROOT
    from harness.validation.contract import ModelParams, TrainParams
    from harness.workflow.contract import stored_params
    from harness.workflow.store import Store

    store = Store(workspace / "harness.sqlite")
    try:
        trained = store.tasks(kind="train", status="done", sweep=sweep)
        brought = store.tasks(kind="model", status="done", sweep=sweep)
    finally:
        store.close()
    out = {}
    for r in trained:
        p = stored_params(r, TrainParams)
        if p is not None:
            out.setdefault(p.committee, (p.dataset, p.subset, p.max_train_frames))
    for r in brought:
        p = stored_params(r, ModelParams)
        if p is None or p.committee in out or p.source.kind != "member" or not p.source.path:
            continue
        try:
            ds = ModelArtifact.load(p.source.path).dataset or {}
        except Exception:  # noqa: BLE001 - a member folder gone or unreadable: its training set stays unknown
            continue
        if ds.get("spec") and ds.get("subset") and not ds.get("extra_frames"):
            spec = Path(ds["spec"]) if Path(ds["spec"]).is_absolute() else ROOT / ds["spec"]
            if spec.is_file():
                out[p.committee] = (str(spec), ds["subset"], ds.get("max_train_frames"))
    return out


def _training_frames(dataset: str, subset: str, max_train_frames: int | None, cache: dict) -> list:
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble

    key = ("frames", dataset, subset, max_train_frames)
    if key not in cache:
        cache[key] = assemble(load_dataset_spec(dataset), subset, max_train_frames=max_train_frames).train
    return cache[key]


def _floor_minima(dataset: str, subset: str, max_train_frames: int | None, cache: dict) -> pd.DataFrame:
    from harness.diagnostics.forensics import contact_minima

    key = ("minima", dataset, subset, max_train_frames)
    if key not in cache:
        frames = [a for a in _training_frames(dataset, subset, max_train_frames, cache) if a.pbc.all()]
        cache[key] = contact_minima(frames, where=f"{dataset}:{subset}") if frames else pd.DataFrame()
    return cache[key]


def failure_records(workspace: str | Path, scores: list["ScoreResult"]) -> list[tuple[str, str, str, object]]:
    """(committee, member, ensemble, FailureRecord) of every failed run of the scored members whose folder is
    still there."""
    from harness.diagnostics.forensics import explain_run
    from harness.errors import InputError

    out = []
    for sc in scores:
        for m in sc.members:
            for ens, failure, run in (("npt", m.npt_failure, m.npt_run), ("nvt", m.nvt_failure, m.nvt_run)):
                if failure is None or not run:
                    continue
                run_dir = Path(run) if Path(run).is_absolute() else Path(workspace) / run
                try:
                    out.append((sc.committee_id, m.name, ens, explain_run(run_dir)))
                except InputError as exc:
                    logger.warning("forensics: %s %s %s: %s", sc.committee_id, m.name, ens, exc)
    return out


def _late(record, window_ps: float) -> pd.DataFrame:
    h = pd.DataFrame(record.history).astype(float)
    pairs = [c for c in h.columns if "-" in c and c[0].isupper()]
    return h[h.time_ps >= record.t_stab_ps - window_ps - 1e-9][["time_ps", *pairs]].dropna(how="all", subset=pairs)


def fig_close_contacts(contacts: pd.DataFrame, path: Path) -> Path:
    """Per element pair, the distribution (empirical CDF) of the closest intermolecular distance per frame in each
    group (``group`` column: training subsets, failed runs' last stretch, the stable reference)."""
    plt = _plt()
    pairs = [c for c in contacts.columns if "-" in c and c[0].isupper()]
    n = len(pairs)
    cols = min(n, 3) or 1
    rows = int(np.ceil(n / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, p in zip(axes.ravel(), pairs):
        for g, df in contacts.groupby("group", sort=False):
            x = np.sort(df[p].dropna().to_numpy())
            if len(x):
                style = "--" if g.startswith("train") else ("-" if g.startswith("failed") else ":")
                ax.step(x, np.arange(1, len(x) + 1) / len(x), style, where="post", lw=1.2, label=f"{g} ({len(x)})")
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("closest contact per frame (Å)", fontsize=8)
        ax.set_ylabel("fraction of frames", fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if n:  # the legend beside the first row, outside the curves
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        axes[0, -1].legend(handles, labels, fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Closest intermolecular contacts: training frames (dashed), the last "
                 f"{WINDOW_PS:g} ps before failures (solid), a stable reference run (dotted)", fontsize=9)
    return _save(plt, fig, path)


#: failure prediction: a frame is "before a failure" when its run fails within this time after it (ps)
PREDICTION_DT_PS = 0.1
#: trajectory frames per run whose coverage is measured (evenly spaced up to its end or failure)
COVERAGE_FRAMES = 40


def coverage_tables(workspace: Path, scores: list["ScoreResult"], training: dict, cache: dict,
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per NPT frame of every scored member whose training set is known: its coverage distance against that
    training set (:func:`~harness.diagnostics.coverage.frame_coverage`; COVERAGE_FRAMES trajectory frames per run,
    plus the frames kept before a failure; a run with an element its training set lacks is left out, with a
    warning); the failure prediction test per
    architecture (:func:`~harness.diagnostics.coverage.failure_prediction`, Δt = PREDICTION_DT_PS); and the PCovC
    map of the training sets' environments beside those before failures and those of stable runs."""
    from harness.diagnostics.coverage import (coverage_distance, coverage_map, environments, failure_prediction,
                                              frame_coverage, own_spread)
    from harness.diagnostics.forensics import run_contact_frames
    from harness.errors import InputError

    rows, envs = [], {}
    for sc in scores:
        ds = training.get(sc.committee_id)
        if ds is None:
            continue
        train_frames = _training_frames(*ds, cache)
        types = sorted({int(z) for a in train_frames for z in a.numbers})
        tkey = ("env", *ds)
        if tkey not in cache:
            env = environments(train_frames, types, where=f"{ds[0]}:{ds[1]}")
            cache[tkey] = (env, own_spread(env))
            envs[f"train {ds[1]}"] = env
        train, spread = cache[tkey]
        for m in sc.members:
            run = Path(m.npt_run) if Path(m.npt_run).is_absolute() else workspace / m.npt_run
            try:
                frames, fine = run_contact_frames(run)
            except Exception as exc:  # noqa: BLE001 - a run folder gone: its member is left out
                logger.warning("coverage: %s: %s", run, exc)
                continue
            t_end = m.t_stab_npt_ps
            frames = [a for a in frames if a.info["time_ps"] <= t_end + 1e-9]
            pick = np.unique(np.linspace(0, len(frames) - 1, min(COVERAGE_FRAMES, len(frames))).astype(int))
            use = [frames[i] for i in pick] + list(fine)
            try:
                q = environments(use, types, max_per_species=None, where=str(run))
            except InputError as exc:  # an element the training set lacks: no coverage to measure against
                logger.warning("coverage: %s", exc)
                continue
            d = frame_coverage(q, coverage_distance(q, train, spread), len(use))
            failed = m.npt_failure is not None
            label = "before failure" if failed else "stable"
            late = np.array([a.info["time_ps"] >= t_end - WINDOW_PS - 1e-9 for a in use])
            keep = late if failed else np.ones(len(use), bool)
            if keep.any():
                sel = np.isin(q.frame, np.flatnonzero(keep))
                part = type(q)(q.features[sel], q.numbers[sel], q.frame[sel], q.atom[sel])
                envs[label] = part if label not in envs else type(q)(
                    *(np.concatenate([getattr(envs[label], f), getattr(part, f)])
                      for f in ("features", "numbers", "frame", "atom")))
            for a, cov in zip(use, d):
                rows.append({"committee": sc.committee_id, "arch": sc.arch, "member": m.name, "run": str(run),
                             "time_ps": float(a.info["time_ps"]), "t_fail_ps": t_end if failed else np.nan,
                             "coverage": cov})
    frames_df = pd.DataFrame(rows)
    if not len(frames_df):
        return frames_df, pd.DataFrame(), pd.DataFrame()
    frames_df = frames_df.drop_duplicates(["run", "time_ps"], keep="last").sort_values(["run", "time_ps"])
    pred = failure_prediction(frames_df, "coverage", PREDICTION_DT_PS)
    return frames_df, pred, coverage_map(envs)


def fig_coverage(frames: pd.DataFrame, cmap: pd.DataFrame, path: Path) -> Path:
    """Left: each run's coverage distance against time before its failure (or its end); right panels: the PCovC
    map of each element's environments by set."""
    from ase.data import chemical_symbols

    plt = _plt()
    elements = sorted(cmap.element.unique()) if len(cmap) else []
    fig, axes = plt.subplots(1, 1 + len(elements), figsize=(4.2 * (1 + len(elements)), 3.6), squeeze=False)
    ax = axes[0, 0]
    for run, df in frames.groupby("run", sort=False):
        failed = df.t_fail_ps.notna().any()
        x = (df.time_ps - df.t_fail_ps) if failed else (df.time_ps - df.time_ps.max())
        ax.plot(x, df.coverage, "-" if failed else ":", lw=1, color="C3" if failed else "C0", alpha=0.7)
    ax.set_xlabel("time before the failure (red) or the run's end (blue) (ps)")
    ax.set_ylabel("worst environment's coverage distance")
    ax.set_yscale("log")
    for a, z in zip(axes[0, 1:], elements):
        df = cmap[cmap.element == z]
        for k, (name, g) in enumerate(df.groupby("set", sort=False)):
            a.scatter(g.pc1, g.pc2, s=4, alpha=0.5, label=name, color=f"C{k}")
        a.set_title(f"{chemical_symbols[z]} environments (PCovC)", fontsize=9)
        a.set_xlabel("PCov 1")
        a.set_ylabel("PCov 2")
        a.legend(fontsize=6, markerscale=3)
    return _save(plt, fig, path)


def forensics_section(workspace: str | Path, scores: list["ScoreResult"], outdir: Path, files: dict[str, Path],
                      img: Callable[[Path], str], *, sweep: str | None = None) -> str:
    """The report's section (empty when no scored run failed)."""
    from harness.diagnostics.forensics import closer_than_floor, contact_floor, run_contact_frames

    workspace = Path(workspace)
    records = failure_records(workspace, scores)
    if not records:
        return ""
    training = _training_sets(workspace, sweep)
    cache: dict = {}
    rows, groups = [], []
    for cid, member, ens, rec in records:
        f = rec.failure
        late = _late(rec, WINDOW_PS)
        floor = None
        row = {"committee": cid, "member": member, "ensemble": ens, "t_stab_ps": rec.t_stab_ps,
               "detector": f.detector, "message": f.message, "bond_species": rec.bond_species,
               "closest_pair": rec.contacts_at_failure[0].pair if rec.contacts_at_failure else None,
               "closest_A": rec.contacts_at_failure[0].distance_A if rec.contacts_at_failure else np.nan,
               "failure_frames": rec.n_failure_frames}
        ds = training.get(cid)
        if ds is not None:
            minima = _floor_minima(*ds, cache)
            floor = contact_floor(minima) if len(minima) else {}
            below = closer_than_floor(late, floor)
            row["training_subset"] = ds[1]
            row["below_training_floor"] = "; ".join(f"{p} {b['n_below']}/{b['n']}" for p, b in below.items()
                                                    if b["n_below"]) or "none"
        name = f"failure_{cid}_{member}_{ens}".replace("/", "_").replace(":", "_").replace("+", "p")
        files[name] = fig_failure(rec, outdir / f"{name}.png", floor=floor,
                                  floor_label=f"{ds[1]} training frames" if ds is not None else "training")
        row["figure"] = f"{name}.png"
        rows.append(row)
        groups.append(late.assign(group=f"failed {cid}"))
    for key, minima in cache.items():
        if key[0] == "minima" and len(minima):
            groups.insert(0, minima.assign(group=f"train {key[2]}"))
    ref = next((sc for sc in scores if sc.committee_id == sc.reference_committee), None)
    if ref is not None and ref.members and ref.members[0].npt_failure is None:
        run = Path(ref.members[0].npt_run)
        run = run if run.is_absolute() else workspace / run
        try:
            from harness.diagnostics.forensics import contact_minima

            frames, _ = run_contact_frames(run)
            pick = np.unique(np.linspace(0, len(frames) - 1, min(REFERENCE_FRAMES, len(frames))).astype(int))
            groups.append(contact_minima([frames[i] for i in pick], where=str(run))
                          .assign(group=f"stable {ref.committee_id} {ref.members[0].name}"))
        except Exception as exc:  # noqa: BLE001 - the reference's run folder gone: the figure goes without it
            logger.warning("forensics: reference run %s: %s", run, exc)
    table = pd.DataFrame(rows)
    contacts = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame()
    cov_frames, pred, cmap = coverage_tables(workspace, scores, training, cache)
    cov_html = ""
    if len(cov_frames):
        files["coverage.csv"] = outdir / "coverage.csv"
        cov_frames.to_csv(files["coverage.csv"], index=False)
        files["failure_prediction.csv"] = outdir / "failure_prediction.csv"
        pred.to_csv(files["failure_prediction.csv"], index=False)
        files["fig8"] = fig_coverage(cov_frames, cmap, outdir / "fig8_coverage.png")
        cov_html = f"""<h3>Environment coverage</h3>
<p>Per NPT frame, the coverage distance of its worst-covered atomic environment: the SOAP distance (featomic; 4 Å,
l<sub>max</sub> 4, n<sub>max</sub> 4) to the nearest environment of the same element in the member's training
frames, over the training set's own nearest-neighbour spread (0: a training environment; ~1: as close as training
environments are to each other). Does it rise before failures? A frame counts as before a failure when its run
fails within {PREDICTION_DT_PS:g} ps after it (the failing frame itself included, so a bond already stretching
counts); ROC AUC per architecture with its interval from a bootstrap over runs (failed and stable runs resampled
apart: frames of one run are not independent), <i>predicts</i> when the interval's 1 % lower end lies above 0.5,
otherwise <i>undetermined</i>.</p>
{pred.round(4).to_html(index=False, escape=True)}
<figure><img src='{img(files["fig8"])}' alt='fig8'><figcaption>fig8: coverage before failures and the PCovC map
</figcaption></figure>"""
    files["failures.csv"] = outdir / "failures.csv"
    table.to_csv(files["failures.csv"], index=False)
    if len(contacts):
        files["contacts.csv"] = outdir / "contacts.csv"
        contacts.to_csv(files["contacts.csv"], index=False)
        files["fig7"] = fig_close_contacts(contacts, outdir / "fig7_close_contacts.png")
    # each row links to its run's record (the figure below, anchored by its file name)
    linked = table.drop(columns=["figure"]).round(3).astype(object)
    linked.insert(0, "record", [f"<a href='#{html.escape(r['figure'][:-4])}'>record</a>" for r in rows])
    for col in linked.columns[1:]:
        linked[col] = [html.escape(str(v)) for v in linked[col]]
    shown = linked.to_html(index=False, escape=False)
    figs = "".join(f"<figure id='{html.escape(r['figure'][:-4])}'><img src='{img(outdir / r['figure'])}' "
                   f"alt='{html.escape(r['figure'])}'><figcaption>{html.escape(r['committee'])} "
                   f"{html.escape(r['member'])} {r['ensemble']}</figcaption></figure>" for r in rows)
    fig7 = (f"<figure><img src='{img(files['fig7'])}' alt='fig7'><figcaption>fig7: closest contacts</figcaption>"
            "</figure>") if "fig7" in files else ""
    return f"""<h2>Why runs failed</h2>
<p>Each failed run's record (<code>harness explain RUN</code> prints it): the detector and the bond it names, the
closest intermolecular contact at the failure, and — where the member's training subset is known — per element pair
the frames of the last {WINDOW_PS:g} ps closer than any contact of that pair in the subset's periodic training
frames (the paper's close-approach explanation: contacts the model never saw). Frames: the trajectory's and, for
runs of this harness version, the last 64 at the detectors' interval.</p>
{shown}
{fig7}
{cov_html}
{figs}"""
