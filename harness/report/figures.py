"""Paper-style figures (Niblett et al. Fig. 1) from the member table: one function per figure.

1a stability: t_stab (NPT) per subset and architecture, mean ± SE over members, the horizon marked;
1b density distributions of each committee (members pooled) against the reference;
1c/1d COM diffusivity of each species per subset and architecture against the reference band;
2 (active learning, Niblett et al. Fig. 2): Q, t_stab per member, density and D against the generation;
3 learning curves: validation force and energy RMSE of every member against its training wall time;
failure: one failed run's histories up to its failure (``harness explain``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["fig_stability", "fig_density", "fig_diffusivity", "fig_al_generations", "fig_learning_curves",
           "fig_failure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Lay out, write (130 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _grouped(ax, table: pd.DataFrame, col: str, *, subsets, archs) -> None:
    width = 0.8 / max(len(archs), 1)
    x = np.arange(len(subsets))
    for i, a in enumerate(archs):
        vals, errs = [], []
        for s in subsets:
            r = table[(table.arch == a) & (table.subset == s)]
            vals.append(r[col].iloc[0] if len(r) else np.nan)
            errs.append(r[f"{col}_se"].iloc[0] if len(r) and f"{col}_se" in r else np.nan)
        ax.bar(x + (i - (len(archs) - 1) / 2) * width, vals, width, yerr=np.nan_to_num(errs), capsize=3, label=a)
    ax.set_xticks(x, subsets, rotation=20)
    ax.legend(title="architecture", fontsize=8)


def fig_stability(members: pd.DataFrame, tau_ps: float, path: Path, *, subsets, archs) -> Path:
    """t_stab NPT of every member (filled: failed there; open triangle: reached the horizon, censored) and the
    committee's mean (bar), per subset and architecture, on a log axis: the paper's contrasts are orders of
    magnitude (a DeePMD/OPLS member failing in femtoseconds beside MACE reaching the horizon)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    m = members[~members.committee.str.startswith(("ref:", "ft:"))]
    t = m.t_stab_npt_ps.to_numpy(float)
    positive = t[np.isfinite(t) & (t > 0)]
    floor = max(min(positive.min() if len(positive) else tau_ps, tau_ps) / 3, 1e-4)
    x = np.arange(len(subsets))
    archs = [a for a in archs if (m.arch == a).any()]
    width = 0.8 / max(len(archs), 1)
    for i, a in enumerate(archs):
        xs = x + (i - (len(archs) - 1) / 2) * width
        color = f"C{i}"
        for xi, s in zip(xs, subsets):
            r = m[(m.arch == a) & (m.subset == s)]
            if not len(r):
                continue
            ts = np.maximum(r.t_stab_npt_ps.to_numpy(float), floor)
            ax.bar(xi, np.exp(np.mean(np.log(ts))), width * 0.9, color=color, alpha=0.35, bottom=0)
            failed = r.npt_failed.to_numpy(bool)
            jitter = np.linspace(-0.25, 0.25, len(r)) * width
            ax.scatter((xi + jitter)[failed], ts[failed], color=color, marker="o", s=18, zorder=3)
            ax.scatter((xi + jitter)[~failed], ts[~failed], facecolors="none", edgecolors=color, marker="^", s=26,
                       zorder=3)
        ax.bar(np.nan, np.nan, color=color, alpha=0.35, label=a)
    ax.axhline(tau_ps, color="k", ls="--", lw=1, label=f"horizon {tau_ps:g} ps")
    ax.scatter([], [], color="grey", marker="o", s=18, label="member failed")
    ax.scatter([], [], facecolors="none", edgecolors="grey", marker="^", s=26, label="member reached (censored)")
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, tau_ps * 2)
    ax.set_xticks(x, subsets, rotation=20)
    ax.legend(fontsize=7)
    ax.set_ylabel("t_stab NPT (ps); bar: geometric mean of members")
    ax.set_title("(a) stability at the protocol temperature")
    return _save(plt, fig, path)


def fig_density(samples: dict[str, dict[str, np.ndarray]], reference: str, grid, path: Path) -> Path:
    """Histograms (members pooled) of every committee's NPT density against the reference."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    edges = grid.edges
    for cid, members in sorted(samples.items(), key=lambda kv: kv[0] != reference):
        x = np.concatenate(list(members.values()))
        p, _ = np.histogram(x, bins=edges, density=True)
        style = {"color": "k", "lw": 2.2} if cid == reference else {"lw": 1.2}
        ax.step(0.5 * (edges[1:] + edges[:-1]), p, where="mid", label=cid + (" (reference)" if cid == reference else ""),
                **style)
    if samples:
        allx = np.concatenate([np.concatenate(list(m.values())) for m in samples.values()])
        pad = 0.05
        ax.set_xlim(max(edges[0], allx.min() - pad), min(edges[-1], allx.max() + pad))
        ax.legend(fontsize=7)
    else:  # no member reached the horizon in NPT (or no observe result is stored)
        ax.text(0.5, 0.5, "no NPT density samples: no member reached the horizon", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("density (g/cm³)")
    ax.set_ylabel("P(ρ)")
    ax.set_title("(b) NPT density distributions (members that reached the horizon)")
    return _save(plt, fig, path)


def fig_diffusivity(table: pd.DataFrame, species: str, reference: str, path: Path, *, subsets, archs,
                    panel: str) -> Path:
    plt = _plt()
    col = f"D_{species}"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if col in table:
        _grouped(ax, table[~table.committee.str.startswith(("ref:", "ft:"))], col, subsets=subsets, archs=archs)
        ref = table[table.committee == reference]
        if len(ref) and np.isfinite(ref[col].iloc[0]):
            m, e = ref[col].iloc[0], np.nan_to_num(ref[f"{col}_se"].iloc[0])
            ax.axhspan(m - e, m + e, color="k", alpha=0.15)
            ax.axhline(m, color="k", lw=1.5, label=f"reference {reference}")
            ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no {species} diffusivity (no member stable in NVT for the horizon)", ha="center",
                transform=ax.transAxes)
    ax.set_ylabel(f"D({species}) (1e-6 cm²/s)")
    ax.set_title(f"({panel}) {species} centre-of-mass self-diffusivity")
    return _save(plt, fig, path)


def fig_al_generations(members: pd.DataFrame, reference: pd.DataFrame, tau_ps: float, path: Path) -> Path:
    """Fig. 2 analogue: Q, t_stab (NPT) per member, mean density ± SE and mean weighted D ± SE against the AL
    generation, one line per campaign/chain (initial subset); the reference committee's values as bands."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    al = members[members.generation.notna()].copy()
    al["line"] = al.campaign.astype(str) + ": " + al.chain.astype(str)
    panels = [("Q", "(a) Q (mean ± SE)"), ("t_stab_npt_ps", "(b) t_stab NPT per member (ps)"),
              ("density_g_cm3", "(c) density (g/cm³, mean ± SE)"), ("D_w", "(d) D weighted (1e-6 cm²/s, mean ± SE)")]
    for (col, title), ax in zip(panels, axes.ravel()):
        for i, (line, df) in enumerate(al.groupby("line", sort=True)):
            g = df.groupby("generation")[col]
            m, se = g.mean(), g.sem(ddof=1)
            off = 0.06 * (i - 0.5)
            if col == "t_stab_npt_ps":
                ax.scatter(df.generation + off, df[col], s=14, alpha=0.7)
                ax.plot(m.index + off, m.values, marker="o", label=line)
            else:
                ax.errorbar(m.index + off, m.values, yerr=np.nan_to_num(se.values), marker="o", capsize=3, label=line)
        if col in ("density_g_cm3", "D_w") and not np.isfinite(al[col].to_numpy(dtype=float)).any():
            ax.text(0.5, 0.5, "no member stable for the horizon", transform=ax.transAxes, ha="center", color="0.3")
        if col == "t_stab_npt_ps":
            ax.axhline(tau_ps, color="k", ls="--", lw=1, label=f"horizon {tau_ps:g} ps")
        elif len(reference) and col in reference and np.isfinite(reference[col]).any():
            v = reference[col].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            lo, hi = v.mean() - v.std(), v.mean() + v.std()
            ax.axhspan(lo, hi, color="0.85", label="reference (mean ± std)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=7)
    for ax in axes.ravel():
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(plt, fig, path)


def fig_learning_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Validation force RMSE (meV/Å) and energy RMSE (meV/atom) against training wall time, one line per
    member coloured by committee (:func:`harness.report.data.learning_curves`); the harness's evaluation
    of each kept model is a black-edged marker (GAP, fitted in closed form, has only that point)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (committee, df) in enumerate(curves.groupby("committee", sort=True)):
        c = colours[i % len(colours)]
        for col, ax in zip(("valid_forces_rmse_meV_A", "valid_energy_rmse_meV_atom"), axes):
            for k, (_, m) in enumerate(df.groupby("member", sort=True)):
                tool = m[m.source != "harness"].dropna(subset=["wall_s", col])
                kept = m[m.source == "harness"].dropna(subset=["wall_s", col])
                label = committee if k == 0 else None
                if len(tool):
                    ax.plot(tool.wall_s, tool[col], color=c, lw=1, alpha=0.8, label=label)
                    label = None
                if len(kept):
                    ax.scatter(kept.wall_s, kept[col], color=c, edgecolor="k", s=30, zorder=3, label=label)
    for ax, title in zip(axes, ("(a) validation force RMSE (meV/Å)", "(b) validation energy RMSE (meV/atom)")):
        ax.set_xlabel("training wall time (s)")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, path)


def fig_parity(frames, preds, path: Path) -> Path:
    """Model vs reference: (a) energy per atom relative to each frame set's mean (eV/atom), (b) force
    components (eV/Å), coloured by config_type (:mod:`harness.models.evaluate`)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    types = sorted({str(a.info.get("config_type", "Default")) for a in frames})
    e_ref = np.array([a.info["REF_energy"] / len(a) for a in frames])
    e_mod = np.array([p.energy / len(a) for a, p in zip(frames, preds)])
    shift = e_ref.mean()
    for t in types:
        idx = [k for k, a in enumerate(frames) if str(a.info.get("config_type", "Default")) == t]
        axes[0].scatter(e_ref[idx] - shift, e_mod[idx] - shift, s=8, label=t)
        f_ref = np.concatenate([frames[k].arrays["REF_forces"].ravel() for k in idx])
        f_mod = np.concatenate([preds[k].forces.ravel() for k in idx])
        axes[1].scatter(f_ref, f_mod, s=2, alpha=0.5, label=t)
    for ax, title in zip(axes, (f"(a) energy per atom - {shift:.3f} eV (eV/atom)", "(b) force components (eV/Å)")):
        lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("reference")
        ax.set_ylabel("model")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, path)


def fig_calibration(sigma: np.ndarray, error: np.ndarray, path: Path) -> Path:
    """A committee's predicted per-atom force uncertainty against the actual error of its mean (eV/Å), with
    the mean error in bins of predicted uncertainty (a calibrated committee lies near the diagonal)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(sigma, error, s=3, alpha=0.4)
    if len(sigma) > 10:
        edges = np.quantile(sigma, np.linspace(0, 1, 11))
        mids, means = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (sigma >= lo) & (sigma <= hi)
            if m.any():
                mids.append(sigma[m].mean())
                means.append(error[m].mean())
        ax.plot(mids, means, "o-", color="C3", label="mean error per decile of σ")
        ax.legend(fontsize=8)
    hi = max(float(np.max(sigma, initial=0)), float(np.max(error, initial=0))) or 1.0
    ax.plot([0, hi], [0, hi], "k--", lw=0.8)
    ax.set_xlabel("predicted σ_F per atom (eV/Å)")
    ax.set_ylabel("|F_model - F_ref| per atom (eV/Å)")
    return _save(plt, fig, path)


def fig_failure(record, path: Path, *, floor: dict[str, float] | None = None, floor_label: str = "training") -> Path:
    """A run's :class:`~harness.diagnostics.forensics.FailureRecord` against time: the closest intermolecular
    contact of each element pair (with the training set's floor per pair, dashed, when given), the largest bond
    stretch and, where the run recorded it, the committee's σ²F; the failure time marked in every panel."""
    plt = _plt()
    h = pd.DataFrame(record.history).astype(float)
    pairs = [c for c in h.columns if "-" in c and c[0].isupper()]
    extra = [c for c in ("max_bond_stretch_A", "sigma2_F", "sigma2_F_committee") if c in h.columns and h[c].notna().any()]
    fig, axes = plt.subplots(1 + len(extra), 1, figsize=(6.5, 2.6 * (1 + len(extra))), sharex=True, squeeze=False)
    axes = axes[:, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, p in enumerate(pairs):
        x = h[["time_ps", p]].dropna()
        c = colors[k % len(colors)]
        axes[0].plot(x.time_ps, x[p], ".-", ms=3, lw=1, color=c, label=p)
        if floor and p in floor:
            axes[0].axhline(floor[p], color=c, ls="--", lw=0.8)
    axes[0].set_ylabel("closest intermolecular\ncontact (Å)")
    axes[0].legend(fontsize=7, ncol=min(len(pairs), 6) or 1, loc="best",
                   title=f"dashed: closest in {floor_label}" if floor else None, title_fontsize=7)
    labels = {"max_bond_stretch_A": "largest bond\nstretch (Å)", "sigma2_F": "committee σ²F (eV²/Å²)",
              "sigma2_F_committee": "committee σ²F\n(evaluated, eV²/Å²)"}
    for ax, c in zip(axes[1:], extra):
        x = h[["time_ps", c]].dropna()
        ax.plot(x.time_ps, x[c], ".-" if c == "sigma2_F_committee" else "-", ms=3, lw=1, color="k")
        ax.set_ylabel(labels[c])
        if c.startswith("sigma2_F"):
            ax.set_yscale("log")
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")  # the AL threshold
    f = record.failure
    for ax in axes:
        if f is not None:
            ax.axvline(f.time_ps, color="r", lw=1, ls=":")
    axes[-1].set_xlabel("time (ps)")
    title = (f"{Path(record.run).parent.name}/{Path(record.run).name}: "
             + (f"{f.detector} at {f.time_ps:.3f} ps" if f is not None else f"stable for {record.t_stab_ps:g} ps"))
    axes[0].set_title(title, fontsize=9)
    return _save(plt, fig, path)
