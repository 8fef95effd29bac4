"""Q across state points (issue #33): maps over temperature × composition, Arrhenius diffusivity, heating ramps.

Pure tables from typed results, then figures and an HTML section:

- :func:`state_table`: per committee and state point, Q with its 95 % interval, S, R, V (mean ± SE over members),
  t_stab NPT (members that reached τ counted: a censored time is a lower bound), the reference's density and D.
- :func:`arrhenius_table`: per committee, composition and species with D at ≥ 3 temperatures, Ea and D0 with their
  95 % credible intervals (kinisi's Bayesian Arrhenius model; with ≥ 4, VFT's T0 too, kinisi's Vogel–Fulcher–Tammann
  model: "shown" when its interval stays clear of 0); each model's Ea against the reference's as the
  posterior difference's interval ("differs" when it excludes 0, else "undetermined": an interval that holds 0
  is not evidence of equality); the β flags of the member runs and the finite-size caveat beside it.
- :func:`ramp_table`: each member's temperature at failure on the heating ramp (censored at the ramp's end),
  beside its t_stab at the protocol's state point.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.units import A2_PER_PS_TO_1E6_CM2_PER_S

__all__ = ["state_table", "arrhenius_table", "ramp_table", "load_ramps", "state_section", "MIN_TEMPERATURES"]

#: fewest temperatures (each with a member stable in NVT) for an Arrhenius fit
MIN_TEMPERATURES = 3
_STATE = ("committee", "arch", "subset", "temperature_K", "composition")


def state_table(scores) -> pd.DataFrame:
    """One row per committee and state point (scores of a sweep with state-point axes; others are left out)."""
    from harness.report.data import committee_table, member_table, typed_scores

    scores = [sc for sc in typed_scores(scores) if sc.state_point is not None]
    if not scores:
        return pd.DataFrame()
    members = member_table(scores)
    from harness.stats import censored

    tau = {sc.committee_id: sc.settings.tau_ps for sc in scores}
    members["reached_npt"] = [bool(censored(np.array([t]), tau[c], np.array([f]))[0])
                              for c, t, f in zip(members.committee, members.t_stab_npt_ps, members.npt_failed)]
    ct = committee_table(members, by=_STATE)
    ref = {(sc.state_point.temperature_K, sc.state_point.composition):
           (sc.reference.density_g_cm3, sc.reference.D_ref_A2_ps * A2_PER_PS_TO_1E6_CM2_PER_S) for sc in scores}
    ct["ref_density_g_cm3"] = [ref[(t, c)][0] for t, c in zip(ct.temperature_K, ct.composition)]
    ct["ref_D_w"] = [ref[(t, c)][1] for t, c in zip(ct.temperature_K, ct.composition)]
    ct["n_reached_npt"] = members.groupby(list(_STATE), sort=False, dropna=False).reached_npt.sum().to_numpy()
    primary = {(sc.state_point.temperature_K, sc.state_point.composition) for sc in scores if sc.state_point.primary}
    ct["primary"] = [(t, c) in primary for t, c in zip(ct.temperature_K, ct.composition)]
    return ct.sort_values(["committee", "composition", "temperature_K"]).reset_index(drop=True)


def _stable_nvt(members: pd.DataFrame, tau: float) -> pd.DataFrame:
    return members[(~members.nvt_failed) & (members.t_stab_nvt_ps >= tau * (1 - 1e-9))]


def _D_at(rows: pd.DataFrame, col: str) -> tuple[float, float]:
    """A committee's D at one state point (1e-6 cm²/s): the mean over members stable in NVT, with the standard error
    of that mean from the spread between members and each run's own error (the run error alone for one member)."""
    d = rows[col].to_numpy(float)
    own = rows[f"{col}_run_se"].to_numpy(float) if f"{col}_run_se" in rows else np.full(len(d), np.nan)
    ok = np.isfinite(d)
    d, own = d[ok], own[ok]
    if not len(d):
        return np.nan, np.nan
    within = float(np.sqrt(np.nansum(own ** 2))) / len(d) if np.isfinite(own).any() else 0.0
    between = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    se = float(np.hypot(within, between))
    return float(d.mean()), se if se > 0 else np.nan


def arrhenius_table(scores, *, fit: Callable | None = None) -> pd.DataFrame:
    """Ea and D0 per committee, composition and species (see the module docstring); ``fit``: the Arrhenius fit
    (default :func:`harness.observables.arrhenius.arrhenius_fit`)."""
    from harness.observables.arrhenius import arrhenius_fit
    from harness.report.data import member_table, species_of, typed_scores

    fit = fit or arrhenius_fit
    scores = [sc for sc in typed_scores(scores) if sc.state_point is not None]
    if not scores:
        return pd.DataFrame()
    members = member_table(scores)
    tau = scores[0].settings.tau_ps
    stable = _stable_nvt(members, tau)
    ref_id = scores[0].reference_committee
    rows, samples, curves = [], {}, {}
    for (cid, comp), g in stable.groupby(["committee", "composition"], sort=False):
        for sp in species_of(members):
            pts = []
            for t, at in g.groupby("temperature_K"):
                d, se = _D_at(at, f"D_{sp}")
                if np.isfinite(d) and d > 0 and np.isfinite(se):
                    pts.append((t, d, se, at))
            row = {"committee": cid, "arch": g.arch.iloc[0], "subset": g.subset.iloc[0], "composition": comp,
                   "species": sp, "temperatures_K": " ".join(f"{t:g}" for t, *_ in pts)}
            flags = sorted({f"β < 0.9 at {t:g} K" for t, _, _, at in pts
                            if (at.get(f"D_{sp}_beta_high", pd.Series(dtype=float)) < 0.9).any()})
            if pts:
                cell = float(np.nanmean(np.concatenate([at.cell_length_A.to_numpy(float) for *_, at in pts])))
                flags.append(f"D not corrected for the finite cell (L ≈ {cell:.1f} Å; Yeh–Hummer ΔD ∝ 1/L)")
            row["flags"] = "; ".join(f for f in flags if f)
            if len(pts) < MIN_TEMPERATURES:
                row.update(verdict="undetermined", why=f"D at {len(pts)} temperature(s) with a member stable in NVT "
                           f"(the fit needs {MIN_TEMPERATURES})")
                rows.append(row)
                continue
            t, d, se = (np.array([p[i] for p in pts], float) for i in range(3))
            try:
                res = fit(t, d * 1e-6, se * 1e-6)
            except InputError as exc:
                row.update(verdict="undetermined", why=str(exc))
                rows.append(row)
                continue
            samples[(cid, comp, sp)] = getattr(res, "activation_energy_samples_eV", None)
            curves[(cid, comp, sp)] = res
            if len(pts) >= 4:  # the non-Arrhenius alternative: VFT's T0 (three parameters)
                from harness.observables.arrhenius import vft_fit

                try:
                    v = vft_fit(t, d * 1e-6, se * 1e-6)
                    row.update(T0_K=v.T0_K, T0_low_K=v.T0_low_K, T0_high_K=v.T0_high_K,
                               non_arrhenius="shown (T0 > 0)" if v.T0_low_K > 0.05 * t.min() else "undetermined")
                except InputError:
                    pass
            row.update(Ea_eV=res.activation_energy_eV, Ea_low_eV=res.activation_energy_low_eV,
                       Ea_high_eV=res.activation_energy_high_eV, D0_cm2_s=res.prefactor_cm2_s,
                       D0_low_cm2_s=res.prefactor_low_cm2_s, D0_high_cm2_s=res.prefactor_high_cm2_s,
                       verdict="fitted", why="")
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["fits"] = curves  # the fits themselves, for the figure's posterior curves
    if not len(out):
        return out
    # each model's Ea against the reference's at the same composition: the 95 % interval of the posterior difference
    for i, r in out.iterrows():
        mine, theirs = samples.get((r.committee, r.composition, r.species)), samples.get((ref_id, r.composition, r.species))
        if r.committee == ref_id or mine is None or theirs is None:
            continue
        n = min(len(mine), len(theirs))
        diff = np.asarray(mine[:n]) - np.asarray(theirs[:n])
        lo, hi = np.percentile(diff, [2.5, 97.5])
        out.loc[i, "dEa_vs_ref_eV"] = float(np.mean(diff))
        out.loc[i, "dEa_low_eV"], out.loc[i, "dEa_high_eV"] = float(lo), float(hi)
        out.loc[i, "Ea_vs_reference"] = "differs" if lo > 0 or hi < 0 else "undetermined"
    return out


def load_ramps(workspace: str | Path, sweep: str | None = None) -> list:
    """The finished heating ramps of a workspace (typed :class:`~harness.validation.ramp.RampResult`)."""
    from harness.validation.ramp import RampParams
    from harness.workflow.contract import stored_results
    from harness.workflow.store import Store

    store = Store(Path(workspace) / "harness.sqlite")
    try:
        return stored_results(store.tasks(kind="ramp", status="done", sweep=sweep), RampParams)
    finally:
        store.close()


def ramp_table(ramps, members: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per member ramped: T at failure (or ≥ end_K, censored), the detector, and the member's t_stab NPT at
    the protocol's state point (``members``: the report's member table) beside it."""
    rows = []
    for r in ramps:
        name = f"member-{r.member}" + (f"-seed{r.seed}" if r.seed is not None else "")
        row = {"committee": r.committee, "arch": r.arch, "subset": r.subset, "member": name,
               "ramp": f"{r.start_K:g} → {r.end_K:g} K at {r.rate_K_per_ps:g} K/ps",
               "T_fail_K": r.failure_temperature_K if r.failure_temperature_K is not None else r.end_K,
               "censored": r.failure_temperature_K is None,
               "detector": r.failure.detector if r.failure else None, "t_stab_ramp_ps": r.t_stab_ps}
        if members is not None and len(members):
            m = members[(members.committee == r.committee) & (members.member == name)]
            row["t_stab_npt_ps"] = float(m.t_stab_npt_ps.iloc[0]) if len(m) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _heat(ax, sub: pd.DataFrame, col: str, lo: str | None, hi: str | None, se: str | None, vmin, vmax):
    comps = list(dict.fromkeys(sub.composition))
    temps = sorted(set(sub.temperature_K))
    grid = np.full((len(temps), len(comps)), np.nan)
    for _, r in sub.iterrows():
        grid[temps.index(r.temperature_K), comps.index(r.composition)] = r[col]
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    for _, r in sub.iterrows():
        y, x = temps.index(r.temperature_K), comps.index(r.composition)
        text = f"{r[col]:.2f}"
        if lo and np.isfinite(r.get(lo, np.nan)):
            text += f"\n[{r[lo]:.2f}–{r[hi]:.2f}]"
        elif se and np.isfinite(r.get(se, np.nan)):
            text += f"\n±{r[se]:.2f}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7, color="w" if r[col] < (vmin + vmax) / 2 else "k")
    ax.set_xticks(range(len(comps)), comps, rotation=20, fontsize=7)
    ax.set_yticks(range(len(temps)), [f"{t:g}" for t in temps], fontsize=7)
    return im


def fig_state_maps(st: pd.DataFrame, path: Path) -> Path:
    """Q (95 % interval), S, R, V (± SE) and t_stab NPT per committee over temperature × composition."""
    from harness.report.figures import _plt, _save

    plt = _plt()
    cids = list(dict.fromkeys(st.committee))
    qs = [("Q", "Q_ci_low", "Q_ci_high", None, 0, 3), ("S", None, None, "S_se", 0, 1), ("R", None, None, "R_se", 0, 1),
          ("V", None, None, "V_se", 0, 1), ("t_stab_npt_ps", None, None, "t_stab_npt_ps_se", 0, None)]
    fig, axes = plt.subplots(len(qs), len(cids), figsize=(3.2 * len(cids) + 0.5, 2.3 * len(qs)), squeeze=False)
    for j, cid in enumerate(cids):
        sub = st[st.committee == cid]
        for i, (col, lo, hi, se, vmin, vmax) in enumerate(qs):
            ax = axes[i, j]
            top = vmax if vmax is not None else max(float(st[col].max()), 1e-9)
            _heat(ax, sub, col, lo, hi, se, vmin, top)
            if i == 0:
                ax.set_title(cid, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{col}\nT (K)", fontsize=8)
    fig.suptitle("Q and its terms across state points (Q: 95 % interval; S, R, V, t_stab: ± SE over members)",
                 fontsize=9)
    return _save(plt, fig, path)


def fig_reference_state(st: pd.DataFrame, path: Path) -> Path:
    from harness.report.figures import _plt, _save

    plt = _plt()
    ref = st.drop_duplicates(["temperature_K", "composition"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, col, title in ((axes[0], "ref_density_g_cm3", "reference density (g/cm³)"),
                           (axes[1], "ref_D_w", "reference D (w) (1e-6 cm²/s)")):
        _heat(ax, ref, col, None, None, None, float(ref[col].min()), float(ref[col].max()) + 1e-12)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("T (K)", fontsize=8)
    return _save(plt, fig, path)


def fig_arrhenius(scores, arr: pd.DataFrame, path: Path) -> Path:
    """ln D against 1000/T per species: each committee's points (mean ± SE over members stable in NVT) and its
    fitted line, one panel per species and composition."""
    from harness.report.data import member_table, species_of, typed_scores
    from harness.report.figures import _plt, _save

    plt = _plt()
    scores = [sc for sc in typed_scores(scores) if sc.state_point is not None]
    members = member_table(scores)
    stable = _stable_nvt(members, scores[0].settings.tau_ps)
    species, comps = species_of(members), list(dict.fromkeys(members.composition))
    fig, axes = plt.subplots(len(comps), max(len(species), 1), figsize=(4 * max(len(species), 1), 3.2 * len(comps)),
                             squeeze=False)
    for i, comp in enumerate(comps):
        for j, sp in enumerate(species):
            ax = axes[i, j]
            for cid, g in stable[stable.composition == comp].groupby("committee", sort=False):
                pts = [(t, *_D_at(at, f"D_{sp}")) for t, at in g.groupby("temperature_K")]
                pts = [(t, d, s) for t, d, s in pts if np.isfinite(d) and d > 0]
                if not pts:
                    continue
                t, d, s = (np.array(x, float) for x in zip(*pts))
                line = ax.errorbar(1000 / t, np.log(d * 1e-6), yerr=np.nan_to_num(s / d), fmt="o", ms=4, label=cid,
                                   capsize=2)
                res = arr.attrs.get("fits", {}).get((cid, comp, sp))
                if res is not None and hasattr(res, "ln_D"):
                    x = np.linspace(1000 / t.max(), 1000 / t.min(), 20)
                    ax.plot(x, res.ln_D(1000 / x), color=line[0].get_color(), lw=1)
            ax.set_xlabel("1000 / T (1/K)")
            ax.set_ylabel(f"ln D({sp}) (cm²/s)")
            ax.set_title(f"{sp} in {comp}", fontsize=9)
            ax.legend(fontsize=7)
    return _save(plt, fig, path)


def fig_ramp(rt: pd.DataFrame, path: Path) -> Path:
    from harness.report.figures import _plt, _save

    plt = _plt()
    cids = list(dict.fromkeys(rt.committee))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(cids) + 2), 3.5))
    for i, cid in enumerate(cids):
        g = rt[rt.committee == cid]
        x = i + np.linspace(-0.15, 0.15, len(g)) if len(g) > 1 else np.array([i])
        ax.scatter(x[~g.censored.to_numpy()], g.T_fail_K[~g.censored], marker="o", color="C3", label="failed" if i == 0 else None)
        ax.scatter(x[g.censored.to_numpy()], g.T_fail_K[g.censored], marker="^", color="C2",
                   label="reached the end (T_fail ≥)" if i == 0 else None)
    ax.set_xticks(range(len(cids)), cids, rotation=20, fontsize=8)
    ax.set_ylabel("temperature at failure (K)")
    ax.set_title(f"heating ramp: {rt.ramp.iloc[0]}", fontsize=9)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def state_section(workspace: Path, sweep: str | None, members: pd.DataFrame, outdir: Path, files: dict[str, Path],
                  img: Callable[[Path], str]) -> str:
    """The report's "State points" section (maps, Arrhenius, ramps): empty when the workspace has none."""
    from harness.report.build import interval_text
    from harness.report.data import load_scores

    parts = []
    try:
        scores = load_scores(workspace, sweep, all_states=True)
    except InputError:
        scores = []
    st = state_table(scores)
    if len(st):
        files["state_points.csv"] = outdir / "state_points.csv"
        st.to_csv(files["state_points.csv"], index=False)
        files["fig10"] = fig_state_maps(st, outdir / "fig10_state_maps.png")
        files["fig11"] = fig_reference_state(st, outdir / "fig11_reference_state.png")
        show = pd.DataFrame({"committee": st.committee, "T (K)": st.temperature_K, "composition": st.composition,
                             "Q": st.Q.round(3), "Q 95 % interval": [interval_text(a, b) for a, b in
                                                                      zip(st.Q_ci_low, st.Q_ci_high)],
                             "S": st.S.round(3), "R": st.R.round(3), "V": st.V.round(3),
                             "t_stab NPT (ps)": st.t_stab_npt_ps.round(3),
                             "reached τ (NPT)": [f"{int(n)}/{int(m)}" for n, m in zip(st.n_reached_npt, st.members)],
                             "ref density (g/cm³)": st.ref_density_g_cm3.round(4), "ref D(w) (1e-6 cm²/s)":
                             st.ref_D_w.round(2)})
        parts.append("<h2>State points</h2><p>Every committee validated at each temperature × composition of the "
                     "sweep's axes (the reference at each point too); Q with its 95 % interval "
                     "(harness.quality.committee_interval), the terms ± SE over members; a t_stab of a member that "
                     "reached τ is a lower bound.</p>" + show.to_html(index=False)
                     + "".join(f"<figure><img src='{img(files[k])}' alt='{k}'><figcaption>{k}</figcaption></figure>"
                               for k in ("fig10", "fig11")))
        arr = arrhenius_table(scores)
        if len(arr):
            files["arrhenius.csv"] = outdir / "arrhenius.csv"
            arr.to_csv(files["arrhenius.csv"], index=False)
            files["fig12"] = fig_arrhenius(scores, arr, outdir / "fig12_arrhenius.png")
            cols = [c for c in ("committee", "composition", "species", "temperatures_K", "Ea_eV", "Ea_low_eV",
                                "Ea_high_eV", "D0_cm2_s", "dEa_vs_ref_eV", "dEa_low_eV", "dEa_high_eV",
                                "Ea_vs_reference", "T0_K", "T0_low_K", "T0_high_K", "non_arrhenius", "verdict", "why",
                                "flags") if c in arr]
            parts.append("<h3>Arrhenius diffusivity</h3><p>ln D = ln D0 − Ea/k_BT through the committee's D (mean over "
                         "members stable in NVT, standard error from their spread and each run's own error) with "
                         "kinisi's Bayesian Arrhenius model (95 % credible intervals); against the reference: the 95 % "
                         "interval of the posterior difference of Ea (<i>differs</i> when it excludes 0, else "
                         "<i>undetermined</i>). At least three temperatures; with four or more, the Vogel–Fulcher–"
                         "Tammann alternative D0 exp(−Ea/k_B(T − T0)): <i>shown</i> when T0's interval stays clear "
                         "of 0.</p>"
                         + arr[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}")
                         + f"<figure><img src='{img(files['fig12'])}' alt='fig12'></figure>")
    ramps = load_ramps(workspace, sweep) if (workspace / "harness.sqlite").exists() else []
    if ramps:
        rt = ramp_table(ramps, members)
        files["ramp.csv"] = outdir / "ramp.csv"
        rt.to_csv(files["ramp.csv"], index=False)
        files["fig13"] = fig_ramp(rt, outdir / "fig13_ramp.png")
        parts.append("<h3>Heating ramp</h3><p>NPT heated at a constant rate under the validation detectors; the "
                     "temperature at failure (a member that reached the end: T_fail ≥ the end, censored), beside "
                     "the member's t_stab NPT at the protocol's state point. Above the liquid's boiling point at 1 atm "
                     "the density detector can fire on a physical expansion: compare with the reference's "
                     "ramp.</p>" + rt.round(3).to_html(index=False, escape=True)
                     + f"<figure><img src='{img(files['fig13'])}' alt='fig13'></figure>")
    return "".join(parts) if parts else ""
