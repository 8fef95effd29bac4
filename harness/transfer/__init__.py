"""Cross-architecture transfer of active-learned frames (the paper's question, automated).

A transfer spec is a sweep spec (base subsets × target architectures, committee, protocol, reference)
plus ``al_frames``: named files of AL frames (e.g. ``gap:`` the frames a GAP campaign selected). The plan
trains every target on each base subset alone and on base + each AL file, validates all of them with
the sweep machinery, and the transfer matrix reports ΔQ = Q(B on base + AL of A) − Q(B on base).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr, field_validator

from harness.errors import InputError
from harness.config import resolve_path
from harness.sweep.spec import SweepSpec, load_sweep
from harness.validation.committee import Committee
from harness.validation.context import PlanInputs

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["TransferSpec", "load_transfer", "transfer_matrix"]


class TransferSpec(SweepSpec):
    al_frames: dict[str, str] = Field(min_length=1, description="source name (e.g. the architecture that "
                                      "generated them) → labelled extxyz file of AL frames")
    _files: dict[str, Path] = PrivateAttr(default_factory=dict)

    @field_validator("al_frames")
    @classmethod
    def _names(cls, v):
        bad = [k for k in v if not k.replace("-", "").replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"al_frames names must be alphanumeric (with - or _): {bad}")
        return v

    def committees(self) -> list[Committee]:
        base = super().committees()
        out = list(base)
        for c in base:
            if c.id.startswith("ref:") or c.subset not in self.subsets:
                continue
            for src, path in self._files.items():
                out.append(c.model_copy(update={"id": f"{c.id}+AL[{src}]", "role": "grid", "extra_frames": str(path),
                                                "name": f"{c.subset}+AL-{src}",
                                                "tags": {"transfer_source": src, "base": c.subset}}))
        return out


def load_transfer(path: str | Path) -> tuple[TransferSpec, PlanInputs]:
    spec, inputs = load_sweep(path, TransferSpec)
    assert isinstance(spec, TransferSpec)
    spec._files = {name: resolve_path(f, Path(path), f"al_frames.{name}") for name, f in spec.al_frames.items()}
    return spec, inputs


def _dq(w) -> dict[str, float]:
    return {"dQ_low": w.low if w else np.nan, "dQ_high": w.high if w else np.nan}


def transfer_matrix(scores: list["ScoreResult | dict"]) -> pd.DataFrame:
    """ΔQ (mean ± combined SE) of every target architecture × base subset × AL source, with each Q's 95 % interval
    (the score's) and ΔQ's 95 % Welch interval over the two committees' members, each member's own Q interval
    (/3.92) as its run uncertainty (NaN with fewer than two members on a side)."""
    from harness.stats import welch_interval

    from harness.validation.contract import ScoreResult

    scores = [s if isinstance(s, ScoreResult) else ScoreResult.model_validate(s) for s in scores]
    q = {s.committee_id: s.committee.Q for s in scores}
    members = {s.committee_id: s.members for s in scores}

    def own(ms) -> np.ndarray | None:
        se = [(m.Q_high - m.Q_low) / 3.92 for m in ms if m.Q_low is not None and m.Q_high is not None]
        return np.array(se) if len(se) == len(ms) else None

    rows = []
    for s in scores:
        if "transfer_source" not in s.tags:
            continue
        base_id = s.committee_id.rsplit("+AL[", 1)[0]
        if base_id not in q:
            raise InputError(f"transfer: no score for the base committee {base_id}")
        a, b = s.committee.Q, q[base_id]
        rows.append({"target": s.arch, "base": s.tags["base"], "source": s.tags["transfer_source"],
                     "Q_base": b.mean, "Q_with_AL": a.mean, "dQ": a.mean - b.mean,
                     "dQ_se": float(np.hypot(a.sem if np.isfinite(a.sem) else 0.0,
                                             b.sem if np.isfinite(b.sem) else 0.0)),
                     "Q_base_low": b.low, "Q_base_high": b.high, "Q_with_AL_low": a.low, "Q_with_AL_high": a.high,
                     **_dq(welch_interval([m.Q for m in s.members], [m.Q for m in members[base_id]],
                                          x_se=own(s.members), y_se=own(members[base_id]), alpha=0.025))})
    return pd.DataFrame(rows)
