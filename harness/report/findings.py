"""The paper's findings on training-data ablations, as statistics on a sweep's member table (SCIENCE.md §11).

Each :class:`Finding` states one claim of Niblett et al. (§4.1, Fig. 1) as the paper makes it, the test that
decides it with its level and minimum data, the numbers, and a verdict: ``reproduced``, ``not reproduced`` or
``undetermined`` when the data cannot decide (too few members, every run censored at the horizon, a bound the
horizon cannot reach). The rules, written out for a referee in docs/science.md:

- stability is the NPT t_stab (Fig. 1a), right-censored at the horizon τ; comparisons use Gehan's censored rank
  test with an exact permutation p-value (stratified by training subset where arms span subsets) and
  Hodges–Lehmann bounds on the ratio of stability times (:mod:`harness.stats`);
- "no significant gain" is an equivalence claim: the two one-sided bounds on the ratio within a stated factor;
- "two orders of magnitude" is a one-sided lower bound on the ratio of at least 10^1.5;
- densities and diffusivities compare committees of members stable to the horizon with Welch intervals whose
  variances are the larger of the between-member spread and the runs' own uncertainties;
- fewer than ``min_members`` (3) members with data on a side: undetermined;
- a reference of an architecture of the grid is flagged beside every comparison with it.

Pure functions of a member table (:func:`harness.report.data.member_table`, or a shipped ``members.csv``).
Committees are found by their ``arch`` and ``subset`` columns (shipped ``model:`` committees included);
AL generations and fine-tuned committees are not grid committees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.stats import censored, gehan_test, ratio_interval, welch_interval

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["Finding", "findings", "findings_of", "run_summary", "grid_rows", "architecture_of", "VERDICTS"]

VERDICTS = ("reproduced", "not reproduced", "undetermined")
SUBSETS = ("OPLS", "OPLS+SM", "OPLS+VS", "Full")
TWO_ORDERS = 10 ** 1.5  # "about two orders of magnitude": a lower bound within half an order of 100


@dataclass
class Finding:
    claim: str
    test: str
    measured: str
    verdict: str  # reproduced | not reproduced | undetermined
    caveats: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Arm:
    """The NPT stability times of one grid committee."""

    committee: str
    t: np.ndarray
    censored: np.ndarray
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.t)

    def describe(self, tau: float) -> str:
        if not self.n:
            return "no members"
        reached = int(self.censored.sum())
        failed = np.sort(self.t[~self.censored])
        times = ", ".join(f"{x:.3g}" for x in failed)
        return (f"{self.committee}: {self.n} members, {reached} reach τ = {tau:g} ps"
                + (f", failures at {times} ps" if len(failed) else "") + (f" ({self.note})" if self.note else ""))


def grid_rows(members: pd.DataFrame, arch: str, subset: str, reference: str) -> tuple[pd.DataFrame, str]:
    """The rows of the committee standing for ``arch`` trained on ``subset`` (not the reference, not an AL
    generation or a fine-tuned model); with several such committees, the largest, named in the note."""
    m = members[(members["arch"] == arch) & (members["subset"] == subset) & (members["committee"] != reference)]
    for col in ("campaign", "finetune"):
        if col in m.columns:
            m = m[m[col].isna() | (m[col] == "")]
    if m.empty:
        return m, ""
    sizes = m.groupby("committee", sort=False).size().sort_values(ascending=False, kind="stable")
    chosen = sizes.index[0]
    note = f"of {', '.join(sizes.index)}: the largest" if len(sizes) > 1 else ""
    return m[m["committee"] == chosen], note


def _arm(members: pd.DataFrame, arch: str, subset: str, reference: str, tau: float) -> Arm:
    rows, note = grid_rows(members, arch, subset, reference)
    if rows.empty:
        return Arm(f"{arch}/{subset}", np.array([]), np.array([], bool))
    t = rows["t_stab_npt_ps"].to_numpy(float)
    failed = rows["npt_failed"].to_numpy(bool) if "npt_failed" in rows.columns else None
    return Arm(str(rows["committee"].iloc[0]), t, censored(t, tau, failed), note)


def findings(members: pd.DataFrame, *, horizon_ps: float, reference: str, timestep_fs: float = 0.5,
             check_interval_steps: int | None = None, reference_arch: str | None = None, few_steps: int = 50,
             alpha: float = 0.05, stability_margin: float = 2.0, density_margin_g_cm3: float = 0.02,
             min_members: int = 3) -> list[Finding]:
    """The findings, in the paper's order, for the committees present in ``members``."""
    tau = horizon_ps
    ref_arch = reference_arch or architecture_of(members, reference)
    grid_archs = sorted(set(members.loc[members["committee"] != reference, "arch"]))
    caveat = []
    if ref_arch and ref_arch in grid_archs:
        caveat = [f"the reference ({reference}) is {ref_arch}, an architecture of the grid: comparisons are tilted "
                  f"towards {ref_arch} (the paper's reference is GAP, outside its grid)"]
    arm = lambda a, s: _arm(members, a, s, reference, tau)  # noqa: E731
    out = [
        _more_stable(arm, tau, alpha, min_members),
        _few_steps(arm("deepmd", "OPLS"), tau, timestep_fs, check_interval_steps, few_steps, min_members),
        _no_gain(arm("deepmd", "OPLS"), arm("deepmd", "OPLS+SM"), tau, alpha, stability_margin, min_members),
        _orders(arm("deepmd", "OPLS"), arm("deepmd", "OPLS+VS"), tau, alpha, min_members),
        *_properties(members, reference, tau, alpha, density_margin_g_cm3, min_members),
    ]
    for f in out[4:]:
        f.caveats = caveat + f.caveats
    return out


def architecture_of(members: pd.DataFrame, committee: str) -> str | None:
    """The architecture of ``committee``: from its rows, else from a reference id ``ref:<arch>/<subset>``."""
    rows = members[members["committee"] == committee]
    if len(rows):
        return str(rows["arch"].iloc[0])
    if ":" in committee and "/" in committee:  # ref:gap/Full
        return committee.split(":", 1)[1].split("/", 1)[0]
    return None


def _few(arm: Arm, k: int) -> str:
    return f"{arm.committee} has {arm.n} member(s) (at least {k} needed)"


# -- stability ---------------------------------------------------------------------------------------------------

def _more_stable(arm, tau: float, alpha: float, k: int) -> Finding:
    claim = "MACE models are more stable than DeePMD (NPT t_stab, subsets pooled)"
    test = (f"Gehan's censored rank test stratified by subset (runs reaching τ censored), exact permutation "
            f"p-value, one-sided, α = {alpha:g}; subsets with ≥ {k} members per architecture")
    strata, parts, skipped = [], [], []
    for s in SUBSETS:
        m, d = arm("mace", s), arm("deepmd", s)
        if not m.n and not d.n:
            continue
        if m.n < k or d.n < k:
            skipped.append(f"{s} ({m.n} MACE, {d.n} DeePMD members)")
            continue
        strata.append((m.t, m.censored, d.t, d.censored))
        parts.append(f"{s}: {m.describe(tau)} | {d.describe(tau)}")
    if not strata:
        return Finding(claim, test, f"too few members on every subset: {', '.join(skipped)}" if skipped
                       else "no subset with both architectures", "undetermined")
    g = gehan_test(strata)
    measured = "; ".join(parts) + f". {g.describe()}" + (f"; left out: {', '.join(skipped)}" if skipped else "")
    if g.informative_pairs == 0:
        return Finding(claim, test, measured + " — every run reaches the horizon: no difference can show",
                       "undetermined")
    if g.p_greater <= alpha:
        return Finding(claim, test, measured, "reproduced")
    if g.p_less <= alpha:
        return Finding(claim, test, measured + f"; DeePMD outlives MACE (p = {g.p_less:.3g})", "not reproduced")
    return Finding(claim, test, measured + " — not significant at this size", "undetermined")


def _few_steps(d: Arm, tau: float, dt_fs: float, interval: int | None, few: int, k: int) -> Finding:
    claim = f"DeePMD trained on OPLS alone fails within a few steps (≤ {few} MD steps of {dt_fs:g} fs)"
    res = f"the detectors check every {interval} steps" if interval else "the detectors' check interval is unknown"
    test = (f"every member's failure step (t_stab / timestep) against {few}; a failure detected at step s happened "
            f"in (s − check interval, s]; ≥ {k} members")
    if d.n < k:
        return Finding(claim, test, _few(d, k), "undetermined")
    steps = np.rint(d.t / (dt_fs / 1000.0)).astype(int)
    c = interval or 0
    measured = (f"{d.committee}: failure steps {', '.join(str(s) if not cz else f'≥ {s} (reached τ)' for s, cz in zip(steps, d.censored))}"
                f"; {res}")
    if d.censored.any() or np.any(steps - c >= few):
        return Finding(claim, test, measured, "not reproduced")
    if np.all(steps <= few):
        return Finding(claim, test, measured, "reproduced")
    return Finding(claim, test, measured + " — the check interval cannot resolve it", "undetermined")


def _no_gain(a: Arm, b: Arm, tau: float, alpha: float, margin: float, k: int) -> Finding:
    claim = "Adding isolated molecules (SM) gives DeePMD no significant gain in stability"
    test = (f"equivalence: both one-sided {100 * (1 - alpha):.0f} % bounds on the ratio t_stab(OPLS+SM)/t_stab(OPLS) "
            f"within [1/{margin:g}, {margin:g}] (Hodges–Lehmann, exact); a gain: Gehan one-sided p ≤ {alpha:g}; "
            f"≥ {k} members per arm")
    if a.n < k or b.n < k:
        return Finding(claim, test, "; ".join(_few(x, k) for x in (a, b) if x.n < k), "undetermined")
    g = gehan_test([(b.t, b.censored, a.t, a.censored)])
    r = ratio_interval(b.t, b.censored, a.t, a.censored, alpha=alpha, tau=tau)
    measured = f"{a.describe(tau)}; {b.describe(tau)}; {g.describe()}" + (f"; {r.describe()}" if r else "")
    if g.p_greater <= alpha:
        return Finding(claim, test, measured + " — a significant gain", "not reproduced")
    if r is not None and r.low >= 1 / margin and r.high <= margin:
        return Finding(claim, test, measured, "reproduced")
    why = ("runs censored at τ leave the ratio unbounded" if (a.censored.any() or b.censored.any())
           else "the bounds are wider than the margin")
    return Finding(claim, test, measured + f" — neither a gain nor equivalence shown ({why})", "undetermined")


def _orders(a: Arm, c: Arm, tau: float, alpha: float, k: int) -> Finding:
    claim = "Adding volume scans (VS) raises DeePMD's t_stab by about two orders of magnitude"
    test = (f"one-sided {100 * (1 - alpha):.0f} % bounds on the ratio t_stab(OPLS+VS)/t_stab(OPLS) (Hodges–Lehmann, "
            f"exact; censored times enter as τ, so the lower bound stays valid): lower bound ≥ 10^1.5 ≈ "
            f"{TWO_ORDERS:.0f} reproduces, upper bound < {TWO_ORDERS:.0f} does not; ≥ {k} members per arm")
    if a.n < k or c.n < k:
        return Finding(claim, test, "; ".join(_few(x, k) for x in (a, c) if x.n < k), "undetermined")
    r = ratio_interval(c.t, c.censored, a.t, a.censored, alpha=alpha, tau=tau)
    measured = f"{a.describe(tau)}; {c.describe(tau)}" + (f"; {r.describe()}" if r else "")
    if r is None:
        return Finding(claim, test, measured, "undetermined")
    if r.low >= TWO_ORDERS:
        return Finding(claim, test, measured, "reproduced")
    if r.high < TWO_ORDERS:
        return Finding(claim, test, measured, "not reproduced")
    why = "the bounds straddle it"
    if a.censored.any():
        why = "OPLS runs reach the horizon: the lower bound cannot be computed"
    elif c.censored.all() and tau / max(a.t.max(), 1e-12) < TWO_ORDERS:
        why = (f"the horizon is too short to show it: every OPLS+VS run reaches τ, and τ / longest OPLS run = "
               f"{tau / a.t.max():.3g}")
    return Finding(claim, test, measured + f" — {why}", "undetermined")


# -- properties --------------------------------------------------------------------------------------------------

def _stable(rows: pd.DataFrame, tau: float, col: str) -> pd.DataFrame:
    t = rows["t_stab_npt_ps" if col == "npt" else "t_stab_nvt_ps"].to_numpy(float)
    failed = rows[f"{col}_failed"].to_numpy(bool) if f"{col}_failed" in rows.columns else None
    return rows[censored(t, tau, failed)]


def _species(members: pd.DataFrame) -> list[str]:
    from harness.report.data import species_of

    return [f"D_{sp}" for sp in species_of(members)]


def _own(rows: pd.DataFrame, col: str) -> np.ndarray | None:
    if col in rows.columns:
        v = rows[col].to_numpy(float)
        return None if np.isnan(v).all() else np.nan_to_num(v)
    return None


def _properties(members: pd.DataFrame, reference: str, tau: float, alpha: float, margin: float,
                k: int) -> list[Finding]:
    ref = members[members["committee"] == reference]
    ref_npt, ref_nvt = _stable(ref, tau, "npt"), _stable(ref, tau, "nvt")
    out = []

    # MACE densities within error of the reference
    claim = "MACE densities are within error of the reference density (every subset)"
    test = (f"equivalence per MACE committee: the Welch {100 * (1 - 2 * alpha):.0f} % interval of the mean density "
            f"difference within ±{margin:g} g/cm³ (variance: the larger of the spread over members and their own "
            f"SEM from n_eff); members that reach τ in NPT, ≥ {k} per side")
    verdicts, parts = [], []
    for s in SUBSETS:
        rows, _ = grid_rows(members, "mace", s, reference)
        if rows.empty:
            continue
        st = _stable(rows, tau, "npt")
        if len(st) < k or len(ref_npt) < k:
            parts.append(f"{s}: {len(st)} MACE and {len(ref_npt)} reference members stable in NPT (≥ {k} needed)")
            verdicts.append("undetermined")
            continue
        w = welch_interval(st["density_g_cm3"], ref_npt["density_g_cm3"], x_se=_own(st, "density_run_se_g_cm3"),
                           y_se=_own(ref_npt, "density_run_se_g_cm3"), alpha=alpha)
        parts.append(f"{s}: {st['density_g_cm3'].mean():.4f} vs {ref_npt['density_g_cm3'].mean():.4f} g/cm³, "
                     f"{w.describe('g/cm³')}")
        verdicts.append("reproduced" if -margin <= w.low and w.high <= margin else
                        "not reproduced" if w.low > margin or w.high < -margin else "undetermined")
    out.append(Finding(claim, test, "; ".join(parts) or "no MACE committee", _combine(verdicts)))

    # MACE D above the reference, by about 1.5x; DeePMD-Full D somewhat below
    for arch, subsets, direction, claim in (
            ("mace", SUBSETS, +1, "MACE diffusivities are systematically above the reference (the paper: ~1.5×)"),
            ("deepmd", ("Full",), -1, "DeePMD trained on Full diffuses somewhat slower than the reference "
                                      "(the paper: 39 vs 48 × 10⁻⁶ cm²/s)")):
        side = "above" if direction > 0 else "below"
        test = (f"per committee and species: one-sided Welch test that D is {side} the reference, α = {alpha:g} "
                f"(variance: the larger of the spread over members and kinisi's posterior SE); the opposite "
                f"significant difference does not reproduce; members that reach τ in NVT, ≥ {k} per side; a member "
                "whose MSD is not shown diffusive (the 95 % molecule-bootstrap interval of β = d ln MSD / d ln t "
                "not wholly ≥ 0.9) leaves it undetermined")
        verdicts, parts = [], []
        for s in subsets:
            rows, _ = grid_rows(members, arch, s, reference)
            if rows.empty:
                continue
            st = _stable(rows, tau, "nvt")
            if len(st) < k or len(ref_nvt) < k:
                parts.append(f"{s}: {len(st)} {arch} and {len(ref_nvt)} reference members stable in NVT (≥ {k} "
                             "needed)")
                verdicts.append("undetermined")
                continue
            for sp in _species(members):
                x, y = st[sp].dropna(), ref_nvt[sp].dropna()
                if len(x) < k or len(y) < k:
                    continue
                why = _not_shown_diffusive(pd.concat([st, ref_nvt]), sp)
                if why:
                    parts.append(f"{s} {sp}: {why}")
                    verdicts.append("undetermined")
                    continue
                w = welch_interval(x, y, x_se=_own(st, f"{sp}_run_se"), y_se=_own(ref_nvt, f"{sp}_run_se"),
                                   alpha=alpha)
                ratio = x.mean() / y.mean() if y.mean() else math.nan
                p = w.p_greater if direction > 0 else w.p_less
                q = w.p_less if direction > 0 else w.p_greater
                parts.append(f"{s} {sp}: {x.mean():.3g} vs {y.mean():.3g} × 10⁻⁶ cm²/s (ratio {ratio:.2f}), "
                             f"{w.describe('× 10⁻⁶ cm²/s')}, one-sided p = {p:.3g}")
                verdicts.append("reproduced" if p <= alpha else "not reproduced" if q <= alpha else "undetermined")
        out.append(Finding(claim, test, "; ".join(parts) or f"no {arch} committee", _combine(verdicts)))
    return out


def _not_shown_diffusive(rows: pd.DataFrame, sp: str) -> str:
    """Why the members' D of species column ``sp`` cannot be compared, or '' when every member's MSD is shown
    diffusive: β's 95 % interval wholly ≥ 0.9 (results analysed before the interval existed: β ≥ 0.9)."""
    beta, low, high = (rows[c] if c in rows.columns else pd.Series(np.nan, index=rows.index)
                       for c in (f"{sp}_beta", f"{sp}_beta_low", f"{sp}_beta_high"))
    if beta.isna().all():
        return ""
    has_ci = low.notna() & high.notna()
    below = (has_ci & high.lt(0.9)) | (~has_ci & beta.lt(0.9))
    straddle = has_ci & low.lt(0.9) & ~below
    if below.any():
        return f"MSD not yet diffusive in {int(below.sum())} member(s) (β < 0.9)"
    if straddle.any():
        return (f"diffusive regime undetermined in {int(straddle.sum())} member(s) (β's 95 % interval reaches "
                "below 0.9)")
    return ""


def _combine(verdicts: list[str]) -> str:
    """All parts reproduced → reproduced; any not reproduced → not reproduced; otherwise undetermined."""
    if not verdicts:
        return "undetermined"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if all(v == "reproduced" for v in verdicts) else "undetermined"


def run_summary(scores: list["ScoreResult | dict"], members: pd.DataFrame) -> dict:
    """What the findings need besides the member table, from a workspace's scores: the reference committee and its
    architecture, the horizon, the timestep and the detector check interval (``summary.json`` of a report)."""
    from harness.report.data import protocol_facts, typed_scores

    scores = typed_scores(scores)
    reference = scores[0].reference_committee
    return {"reference_committee": reference, "reference_arch": architecture_of(members, reference),
            "horizon_ps": scores[0].settings.tau_ps, **protocol_facts(scores)}


def findings_of(members: pd.DataFrame, summary: dict, **kw) -> list[Finding]:
    """:func:`findings` of a member table and its :func:`run_summary` (from a workspace or a results folder)."""
    return findings(members, horizon_ps=summary["horizon_ps"], reference=summary["reference_committee"],
                    reference_arch=summary.get("reference_arch"), timestep_fs=summary.get("timestep_fs") or 0.5,
                    check_interval_steps=summary.get("check_interval_steps"), **kw)
