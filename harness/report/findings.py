"""The paper's findings on training-data ablations, checked against a sweep's measured numbers.

Each :class:`Finding` states one claim of Niblett et al. (Fig. 1 and §4.1), the numbers measured for it
(committee means with standard errors over members) and a verdict: ``reproduced``, ``not reproduced`` or
``undetermined`` (a committee missing, or both sides at the horizon where the claim is about a difference).
Stability compares t_stab per member, NPT and NVT pooled (the paper's Fig. 1a bars); "a few steps" is at
most ``few_steps`` MD steps; "about two orders of magnitude" is a ratio of at least 30 or a committee that
reaches the horizon from one that did not; "no significant gain" is a Welch t-test on log t_stab with
p > 0.05 or a ratio below 2.

Pure functions of a member table (:func:`harness.report.data.member_table`, or a shipped ``members.csv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Finding", "findings", "t_stab_samples"]


@dataclass
class Finding:
    claim: str
    measured: str
    verdict: str  # reproduced | not reproduced | undetermined


def t_stab_samples(members: pd.DataFrame, arch: str, subset: str) -> np.ndarray:
    """t_stab (ps) of every member's NPT and NVT run of the grid committee ``arch/subset`` (empty if it is not
    in the table; AL generations and other committees trained on the subset are not it)."""
    rows = members[members["committee"] == f"{arch}/{subset}"]
    return np.concatenate([rows["t_stab_npt_ps"].to_numpy(float), rows["t_stab_nvt_ps"].to_numpy(float)]) \
        if len(rows) else np.array([])


def _fmt(x: np.ndarray) -> str:
    if not len(x):
        return "n/a"
    se = np.std(x, ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("nan")
    return f"{np.mean(x):.4g} ± {se:.2g} ps (n={len(x)})"


def _log_welch_p(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    la, lb = np.log(np.maximum(a, 1e-12)), np.log(np.maximum(b, 1e-12))
    if len(la) < 2 or len(lb) < 2 or (np.ptp(la) == 0 and np.ptp(lb) == 0):
        return 0.0 if np.mean(la) != np.mean(lb) else 1.0
    return float(stats.ttest_ind(la, lb, equal_var=False).pvalue)


def findings(members: pd.DataFrame, *, horizon_ps: float, reference: str, timestep_fs: float = 0.5,
             few_steps: int = 50) -> list[Finding]:
    """The findings, in the paper's order, for the committees present in ``members``."""
    subsets = [s for s in ("OPLS", "OPLS+SM", "OPLS+VS", "Full") if s in set(members["subset"])]
    at_horizon = 0.999 * horizon_ps
    out: list[Finding] = []

    # 1. MACE more stable than DeePMD on every subset
    parts, verdicts = [], []
    for s in subsets:
        m, d = t_stab_samples(members, "mace", s), t_stab_samples(members, "deepmd", s)
        if not len(m) or not len(d):
            continue
        parts.append(f"{s}: MACE {_fmt(m)} vs DeePMD {_fmt(d)}")
        if np.all(m >= at_horizon) and np.all(d >= at_horizon):
            verdicts.append("undetermined")
        else:
            verdicts.append("reproduced" if np.mean(m) > np.mean(d) else "not reproduced")
    out.append(Finding("MACE is more stable than DeePMD on every training subset",
                       "; ".join(parts) or "no subset with both architectures", _all(verdicts)))

    # 2. DeePMD trained on OPLS alone fails within a few steps
    d = t_stab_samples(members, "deepmd", "OPLS")
    limit_ps = few_steps * timestep_fs / 1000
    if len(d):
        steps = np.mean(d) * 1000 / timestep_fs
        out.append(Finding(f"DeePMD on OPLS fails within a few steps (≤ {few_steps} steps, {limit_ps:g} ps)",
                           f"DeePMD/OPLS {_fmt(d)} = {steps:.0f} steps on average, longest "
                           f"{np.max(d) * 1000 / timestep_fs:.0f}", "reproduced" if np.max(d) <= limit_ps
                           else "not reproduced"))
    else:
        out.append(Finding("DeePMD on OPLS fails within a few steps", "no DeePMD/OPLS committee", "undetermined"))

    # 3. adding isolated molecules (SM) gives DeePMD no significant gain
    a, b = t_stab_samples(members, "deepmd", "OPLS"), t_stab_samples(members, "deepmd", "OPLS+SM")
    if len(a) and len(b):
        ratio, p = np.mean(b) / max(np.mean(a), 1e-12), _log_welch_p(b, a)
        gain = ratio >= 2 and p <= 0.05 and np.mean(b) > np.mean(a)
        out.append(Finding("Adding SM gives DeePMD no significant gain in stability",
                           f"OPLS {_fmt(a)}, OPLS+SM {_fmt(b)}: ratio {ratio:.3g}, Welch p (log t_stab) {p:.2g}",
                           "not reproduced" if gain else "reproduced"))
    else:
        out.append(Finding("Adding SM gives DeePMD no significant gain", "committee missing", "undetermined"))

    # 4. adding volume scans (VS) raises DeePMD's t_stab by about two orders of magnitude
    c = t_stab_samples(members, "deepmd", "OPLS+VS")
    if len(a) and len(c):
        ratio = np.mean(c) / max(np.mean(a), 1e-12)
        reached = np.mean(c >= at_horizon) >= 0.5 and np.mean(a >= at_horizon) < 0.5
        verdict = "reproduced" if ratio >= 30 or reached else "not reproduced"
        out.append(Finding("Adding VS raises DeePMD's t_stab by about two orders of magnitude (or to the horizon)",
                           f"OPLS {_fmt(a)}, OPLS+VS {_fmt(c)}: ratio {ratio:.3g}"
                           + (f"; {int(np.sum(c >= at_horizon))}/{len(c)} OPLS+VS runs reach the {horizon_ps:g} ps "
                              "horizon" if len(c) else ""), verdict))
    else:
        out.append(Finding("Adding VS raises DeePMD's t_stab by about two orders of magnitude",
                           "committee missing", "undetermined"))

    # 5. stable models: density and diffusivity against the reference
    out.append(_properties(members, horizon_ps, reference))
    return out


def _properties(members: pd.DataFrame, horizon_ps: float, reference: str) -> Finding:
    """Density and D of members stable to the horizon in both ensembles, committee by committee, beside the
    reference committee's (the paper: stable models agree with the reference within their spread). The
    reference's own row is the reference committee (``mace/Full`` when it is also a grid committee)."""
    stable = members[(members["t_stab_npt_ps"] >= 0.999 * horizon_ps) & (members["t_stab_nvt_ps"] >= 0.999 * horizon_ps)]
    d_cols = [c for c in members.columns if c.startswith("D_") and c != "D_w"]
    ref_rows = stable[stable["committee"] == reference]
    lines, verdicts = [], []

    def stat(rows: pd.DataFrame, col: str) -> tuple[float, float]:
        x = rows[col].dropna().to_numpy(float)
        if not len(x):
            return float("nan"), float("nan")
        return float(np.mean(x)), float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")

    ref_stats = {c: stat(ref_rows, c) for c in ["density_g_cm3", *d_cols]}
    for committee, rows in stable.groupby("committee", sort=False):
        if committee == reference:
            continue
        bits = []
        for col in ["density_g_cm3", *d_cols]:
            (m, se), (rm, rse) = stat(rows, col), ref_stats[col]
            if math.isnan(m):
                continue
            unit = "g/cm³" if col == "density_g_cm3" else "1e-6 cm²/s"
            bits.append(f"{col} {m:.4g} ± {se:.2g} (ref {rm:.4g} ± {rse:.2g}) {unit}")
            if not math.isnan(rm):
                tol = 3 * math.hypot(se if not math.isnan(se) else 0.0, rse if not math.isnan(rse) else 0.0)
                verdicts.append("reproduced" if abs(m - rm) <= max(tol, 1e-12) else "not reproduced")
        lines.append(f"{committee} ({len(rows)} stable): " + ", ".join(bits))
    if ref_rows.empty:
        return Finding("Stable models reproduce the reference density and diffusivity within their spread",
                       f"no member of the reference committee {reference} stable to the horizon", "undetermined")
    return Finding("Stable models reproduce the reference density and diffusivity within their spread (3 SE)",
                   "; ".join(lines) or "no model member stable to the horizon in both ensembles", _all(verdicts))


def _all(verdicts: list[str]) -> str:
    if not verdicts or all(v == "undetermined" for v in verdicts):
        return "undetermined"
    return "reproduced" if all(v in ("reproduced", "undetermined") for v in verdicts) else "not reproduced"
