"""Foundation models in a workspace (issue #17): zero-shot and fine-tuned committees beside the ones trained from
scratch, target gain and forgetting, as tables, a figure and a report section, from the store.

Tables: ``finetune_members`` (per fine-tuned member: target RMSE before/after, change of predictions on each
held-out set), ``finetune`` (per committee: strategy, lr, Q, t_stab, target errors, forgetting; the zero-shot
foundation and the from-scratch committees of the same architecture and subsets beside them). Figure:
``fig7_finetune`` (target force gain against forgetting, per strategy and learning rate).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.report.data import q_interval
from harness.report.figures import _plt, _save

__all__ = ["finetune_tables", "finetune_section", "fig_finetune"]



def finetune_tables(workspace: str | Path, members: pd.DataFrame, sweep: str | None = None) -> dict[str, pd.DataFrame]:
    """``members``: the Q member table (:func:`harness.report.data.member_table`, with the ``finetune`` column)."""
    from harness.finetune.contract import ForgettingParams
    from harness.validation.contract import TrainParams
    from harness.workflow.contract import stored_results
    from harness.workflow.store import Store

    path = Path(workspace) / "harness.sqlite"
    if not path.exists() or "finetune" not in members or members.finetune.isna().all():
        return {}
    store = Store(path)
    try:
        res = stored_results(store.tasks(kind="forgetting", status="done", sweep=sweep), ForgettingParams)
        trained = stored_results(store.tasks(kind="train", status="done", sweep=sweep), TrainParams)
    finally:
        store.close()
    rows = []
    for r in res:
        row = {"committee": r.committee, "subset": r.subset, "member": r.member, "strategy": r.strategy,
               "lr": r.lr, **r.summary.model_dump(exclude_none=True)}
        for name, h in r.held_out.items():
            row[f"{name}: ΔF (meV/Å)"] = h.forces_change_rms_meV_A
            row[f"{name}: ΔE (meV/atom)"] = h.energy_change_rms_meV_atom
            if h.tuned is not None:
                row[f"{name}: F RMSE before"] = h.original.forces_rmse_meV_A
                row[f"{name}: F RMSE after"] = h.tuned.forces_rmse_meV_A
            if h.forces_error_increase_meV_A is not None:
                row[f"{name}: F error increase"] = h.forces_error_increase_meV_A
                row[f"{name}: E error increase (offset removed)"] = h.energy_error_increase_meV_atom
        rows.append(row)
    per_member = pd.DataFrame(rows)
    ft = members[members.finetune.notna()]
    subsets = set(ft.subset[ft.committee.str.startswith("ft:")])
    scratch = members[~members.committee.str.contains(":") & (members.arch == "mace") & members.subset.isin(subsets)]
    both = pd.concat([scratch.assign(finetune="from scratch"), ft])
    # the target errors: a fine-tuned member's after its fine-tuning, the foundation's (zero-shot) before it, a
    # from-scratch member's validation errors (the same validation frames of the subset)
    valid = {}
    for t in trained:
        valid.setdefault(t.committee, []).append((t.metrics.valid_forces_rmse_meV_A, t.metrics.valid_energy_rmse_meV_atom))
    before = (per_member.groupby("subset")[["target_forces_rmse_before_meV_A", "target_energy_rmse_before_meV_atom"]]
              .first() if len(per_member) else pd.DataFrame())
    table = []
    for cid, g in both.groupby("committee", sort=False):
        t = g.t_stab_npt_ps.astype(float)
        n = len(g)
        row = {"committee": cid, "subset": g.subset.iloc[0], "strategy": g.finetune.iloc[0],
               "lr": g.finetune_lr.iloc[0] if "finetune_lr" in g else np.nan, "members": n,
               "Q": g.Q.mean(), "Q_se": g.Q.sem(ddof=1) if n > 1 else np.nan,
               **dict(zip(("Q_low", "Q_high"), q_interval(g))),
               "t_stab_npt_ps": t.mean(), "t_stab_npt_ps_se": t.sem(ddof=1) if n > 1 else np.nan,
               "target_forces_rmse_meV_A": np.nan, "target_energy_rmse_meV_atom": np.nan}
        pm = per_member[per_member.committee == cid] if len(per_member) else per_member
        if len(pm):
            row["target_forces_rmse_meV_A"] = pm.target_forces_rmse_after_meV_A.mean()
            row["target_energy_rmse_meV_atom"] = pm.target_energy_rmse_after_meV_atom.mean()
            for k in ("target_forces_gain_meV_A", "forgetting_forces_meV_A", "forgetting_energy_meV_atom"):
                if k in pm:
                    row[k] = pm[k].mean()
        elif cid.startswith("model:") and len(before):  # the zero-shot foundation on each fine-tuning target
            row["target_forces_rmse_meV_A"] = before.target_forces_rmse_before_meV_A.mean()
            row["target_energy_rmse_meV_atom"] = before.target_energy_rmse_before_meV_atom.mean()
        elif cid in valid:
            f = [x[0] for x in valid[cid] if x[0] is not None]
            e = [x[1] for x in valid[cid] if x[1] is not None]
            row["target_forces_rmse_meV_A"] = float(np.mean(f)) if f else np.nan
            row["target_energy_rmse_meV_atom"] = float(np.mean(e)) if e else np.nan
        table.append(row)
    out = {"finetune": pd.DataFrame(table)}
    if len(per_member):
        out["finetune_members"] = per_member
    return out


def fig_finetune(per_member: pd.DataFrame, path: Path) -> Path:
    """Target force-RMSE gain (before − after, meV/Å) against forgetting (the force-RMSE increase on the labelled
    held-out sets, meV/Å): one point per member, one marker per strategy and learning rate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (cid, strategy, lr), g in per_member.groupby(["committee", "strategy", "lr"], sort=False):
        if "forgetting_forces_meV_A" not in g:
            continue
        x, y = g.forgetting_forces_meV_A.astype(float), g.target_forces_gain_meV_A.astype(float)
        pts = ax.scatter(x, y, alpha=0.5, s=18)
        ax.errorbar(x.mean(), y.mean(), xerr=x.sem(ddof=1) if len(g) > 1 else None,
                    yerr=y.sem(ddof=1) if len(g) > 1 else None, fmt="o", ms=8, capsize=3,
                    color=pts.get_facecolor()[0][:3], label=f"{cid} ({strategy}, lr {lr:g})")
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("forgetting: force RMSE increase on held-out sets (meV/Å)")
    ax.set_ylabel("target gain: force RMSE before − after (meV/Å)")
    ax.set_title("fine-tuning: gain on the target vs what is forgotten")
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def finetune_section(tables: dict[str, pd.DataFrame], outdir: Path, files: dict[str, Path],
                     img: Callable[[Path], str]) -> str:
    """Write the CSVs and the figure into ``outdir`` (recorded in ``files``) and return the HTML section."""
    if not tables:
        return ""
    from harness.report.data import write_tables

    write_tables(tables, outdir, files)
    parts = ["<h2>Foundation model: zero-shot and fine-tuned</h2>",
             "<p>The foundation as a committee of one (zero-shot), each fine-tuning strategy (naive: all weights; "
             "frozen: the first N blocks kept at the foundation's values; replay: multi-head fine-tuning with a replay sample of the foundation's "
             "data) and the committee trained from scratch on the same frames. Target: force/energy RMSE on the "
             "subset's validation frames before (the foundation) and after; forgetting: the increase of the force RMSE "
             "and of the energy RMSE (each model's constant offset removed) on labelled held-out structures, fine-tuned "
             "minus foundation (negative: the held-out error fell); beside it the prediction change (RMS change of "
             "forces and energies from the foundation's, which needs no labels and also counts moves towards the "
             "labels); Q and t_stab as in the table above.</p>",
             tables["finetune"].round(3).to_html(index=False)]
    if "finetune_members" in tables and "forgetting_forces_meV_A" in tables["finetune_members"]:
        files["fig7"] = fig_finetune(tables["finetune_members"], outdir / "fig7_finetune.png")
        parts.append(f"<figure><img src='{img(files['fig7'])}' alt='fig7'><figcaption>"
                     f"{html.escape('fig7: target gain against forgetting, per member (mean ± SE large)')}"
                     "</figcaption></figure>")
    return "\n".join(parts)
