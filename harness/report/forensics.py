"""The report's failure forensics (issue #32 items 1-2): every failed member run's record, and the close contacts
before the failures against the training subsets and a stable reference run.

Tables (CSV in the report folder): ``failures`` (one row per failed run: detector, bond and its species, the
closest contact at the failure, and per element pair the frames of its last ``WINDOW_PS`` closer than anything in
the member's training subset) and ``contacts`` (the closest intermolecular distance per element pair and frame, in
each group: a training subset's periodic frames, the failed runs' last ``WINDOW_PS`` per committee, a stable
reference run's frames). Figures: one ``failure_<run>.png`` per failed run (:func:`~harness.report.figures.fig_failure`)
and ``fig7_close_contacts.png``.
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

__all__ = ["WINDOW_PS", "failure_records", "forensics_section", "fig_close_contacts"]

logger = logging.getLogger(__name__)

#: the stretch before a failure whose contacts are compared with the training set's (ps)
WINDOW_PS = 0.5
#: frames of the stable reference run used for its contact distribution (evenly spaced)
REFERENCE_FRAMES = 100


def _training_sets(workspace: Path, sweep: str | None) -> dict[str, tuple[str, str]]:
    """committee -> (dataset spec, subset) of the members the workspace trained."""
    from harness.validation.contract import TrainParams
    from harness.workflow.store import Store

    store = Store(workspace / "harness.sqlite")
    try:
        rows = store.tasks(kind="train", status="done", sweep=sweep)
    finally:
        store.close()
    out = {}
    for r in rows:
        try:
            p = TrainParams.model_validate(r["params"])
        except Exception:  # noqa: BLE001 - a row of another schema: its committee has no training set here
            continue
        out.setdefault(p.committee, (p.dataset, p.subset))
    return out


def _floor_minima(dataset: str, subset: str, cache: dict) -> pd.DataFrame:
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble
    from harness.diagnostics.forensics import contact_minima

    key = (dataset, subset)
    if key not in cache:
        frames = [a for a in assemble(load_dataset_spec(dataset), subset).train if a.pbc.all()]
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
    if n:
        axes.ravel()[0].legend(fontsize=6)
    fig.suptitle("Closest intermolecular contacts: training frames (dashed), the last "
                 f"{WINDOW_PS:g} ps before failures (solid), a stable reference run (dotted)", fontsize=9)
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
    for (dataset, subset), minima in cache.items():
        if len(minima):
            groups.insert(0, minima.assign(group=f"train {subset}"))
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
    files["failures.csv"] = outdir / "failures.csv"
    table.to_csv(files["failures.csv"], index=False)
    if len(contacts):
        files["contacts.csv"] = outdir / "contacts.csv"
        contacts.to_csv(files["contacts.csv"], index=False)
        files["fig7"] = fig_close_contacts(contacts, outdir / "fig7_close_contacts.png")
    shown = table.drop(columns=["figure"]).round(3).to_html(index=False, escape=True)
    figs = "".join(f"<figure><img src='{img(outdir / r['figure'])}' alt='{html.escape(r['figure'])}'>"
                   f"<figcaption>{html.escape(r['committee'])} {html.escape(r['member'])} {r['ensemble']}"
                   "</figcaption></figure>" for r in rows)
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
{figs}"""
