"""The Q score (SCIENCE.md §7; the paper's eq. 1 with its two typos corrected). Pure functions.

Per committee member m with horizon tau:

- stability  S = min(1, t_stab,NPT / tau)
- density    R = H(t_stab,NPT - tau) * (1 - tanh(max(0, D_KL(P_m || P_ref) - D_KL baseline)))
- diffusion  V = H(t_stab,NVT - tau) * (1 - tanh(|D_m - D_ref| / D_ref))

with H(x) = 1 for x >= 0 (a run that reached the horizon counts) and 0 otherwise. A run reaches the
horizon only if it has no failure and t_stab >= tau: a failure at the last check (t_stab equal to the run
length) is a failure, so a member carries whether each run failed. Q_m = S + R + V in
[0, 3]; a committee's Q is the mean over its members, reported with the spread and the three terms.
A member stable for the horizon must come with its KL (NPT) or D (NVT): missing inputs raise, they are
never a silent zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["MemberInputs", "MemberScore", "CommitteeScore", "member_score", "committee_score", "CommitteeInterval",
           "committee_interval"]

_EPS = 1e-9  # relative tolerance on "reached the horizon" (float times from step counts)


@dataclass(frozen=True)
class MemberInputs:
    name: str
    t_stab_npt_ps: float
    t_stab_nvt_ps: float
    kl: float | None = None  # D_KL(P_m || P_ref,av), needed when the NPT run reached tau
    D: float | None = None  # composition-weighted D (any unit shared with D_ref), needed when NVT reached tau
    npt_failed: bool = False  # a detector ended the NPT run (at t_stab): it did not reach tau
    nvt_failed: bool = False  # a detector ended the NVT run (at t_stab): it did not reach tau


@dataclass(frozen=True)
class MemberScore:
    name: str
    S: float
    R: float
    V: float
    Q: float
    reached_npt: bool
    reached_nvt: bool


def _reached(t: float, tau: float, failed: bool = False) -> bool:
    """A run reaches the horizon only if it has no failure and lasted tau (SCIENCE.md §5)."""
    return not failed and t >= tau * (1 - _EPS)


def member_score(m: MemberInputs, *, tau_ps: float, kl_baseline: float, D_ref: float) -> MemberScore:
    """S, R, V and Q of one member (see the module docstring)."""
    if not tau_ps > 0:
        raise ValueError(f"horizon tau must be positive, got {tau_ps}")
    for label, t in (("NPT", m.t_stab_npt_ps), ("NVT", m.t_stab_nvt_ps)):
        if not (t >= 0 and math.isfinite(t)):
            raise ValueError(f"{m.name}: t_stab {label} must be a finite non-negative time, got {t}")
    if not (kl_baseline >= 0 and math.isfinite(kl_baseline)):
        raise ValueError(f"KL baseline must be finite and non-negative, got {kl_baseline}")
    if not (D_ref > 0 and math.isfinite(D_ref)):
        raise ValueError(f"reference diffusivity must be positive, got {D_ref}")
    S = min(1.0, m.t_stab_npt_ps / tau_ps)
    npt, nvt = _reached(m.t_stab_npt_ps, tau_ps, m.npt_failed), _reached(m.t_stab_nvt_ps, tau_ps, m.nvt_failed)
    R = V = 0.0
    if npt:
        if m.kl is None or math.isnan(m.kl) or m.kl < 0:
            raise ValueError(f"{m.name}: the NPT run reached the horizon but its KL divergence is {m.kl}")
        R = 1.0 - math.tanh(max(0.0, m.kl - kl_baseline))
    if nvt:
        if m.D is None or not math.isfinite(m.D):
            raise ValueError(f"{m.name}: the NVT run reached the horizon but its diffusivity is {m.D}")
        V = 1.0 - math.tanh(abs(m.D - D_ref) / D_ref)
    return MemberScore(m.name, S, R, V, S + R + V, npt, nvt)


@dataclass(frozen=True)
class CommitteeScore:
    members: tuple[MemberScore, ...]
    tau_ps: float
    kl_baseline: float
    D_ref: float

    def stat(self, term: str) -> tuple[float, float, float]:
        """(mean, std, standard error) over members of S, R, V or Q."""
        x = np.array([getattr(m, term) for m in self.members], dtype=float)
        std = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
        return float(np.mean(x)), std, std / math.sqrt(len(x))

    @property
    def Q(self) -> float:
        return self.stat("Q")[0]

    def as_dict(self) -> dict:
        return {"tau_ps": self.tau_ps, "kl_baseline": self.kl_baseline, "D_ref": self.D_ref,
                "members": [asdict(m) for m in self.members],
                "committee": {t: dict(zip(("mean", "std", "sem"), self.stat(t))) for t in "SRVQ"}}


def committee_score(members: list[MemberInputs], *, tau_ps: float, kl_baseline: float,
                    D_ref: float) -> CommitteeScore:
    """Score every member; Q of the committee is the mean over members (``CommitteeScore.stat``)."""
    if not members:
        raise ValueError("no committee members to score")
    scores = tuple(member_score(m, tau_ps=tau_ps, kl_baseline=kl_baseline, D_ref=D_ref) for m in members)
    return CommitteeScore(scores, tau_ps, kl_baseline, D_ref)


@dataclass(frozen=True)
class CommitteeInterval:
    low: float
    high: float
    basis: str


def committee_interval(q: list[float], lows: list[float], highs: list[float], *,
                       level: float = 0.95) -> CommitteeInterval:
    """An interval for a committee's Q (the mean over members): the hull of (a) Student's t interval of the
    members' Q (n - 1 degrees of freedom: the spread between members, seeds of training and MD, which already holds
    each member's measurement noise) and (b) the mean of the members' own intervals (their measurement error
    alone: all that a committee of one has). Clipped to Q's range [0, 3]."""
    from scipy.stats import t as student_t

    x = np.asarray(q, dtype=float)
    if x.size == 0 or len(lows) != x.size or len(highs) != x.size:
        raise ValueError("committee_interval: one Q, low and high per member")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(lows)) and np.all(np.isfinite(highs))):
        return CommitteeInterval(0.0, 3.0, "a member's Q or interval is unknown: Q's whole range")
    lo, hi = float(np.mean(lows)), float(np.mean(highs))
    basis = f"members' {100 * level:.0f} % intervals averaged"
    if x.size > 1:
        half = float(student_t.ppf(0.5 + level / 2, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))
        lo, hi = min(lo, float(x.mean()) - half), max(hi, float(x.mean()) + half)
        basis = f"t interval over {x.size} members ∪ " + basis
    return CommitteeInterval(max(0.0, lo), min(3.0, hi), basis)
