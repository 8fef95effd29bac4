"""A committee as every study kind plans it, and the one way to build a reference committee.

:class:`Committee` is frozen and validated: its id (``arch/subset`` in a grid, ``ref:arch/subset`` for a reference
trained apart, ``model:<name>`` for an external one, ``ft:<strategy>/<subset>`` for a fine-tuned one), its
architecture and subset, its role (``grid``: trained by the study; ``reference``: the committee Q is measured
against; ``external``: models not trained here), how its members are trained (preset, overrides, training budget,
member seeds, an extra training file, a fine-tuning recipe) and the tags copied into its results. The planners
(:mod:`harness.validation.plan`, sweeps, active learning, transfer runs, fine-tuning, ``harness validate``) take
these objects; none adds keys on the side.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field, model_validator

from harness.config import MAX_COMMITTEE, HarnessModel
from harness.models.finetune import Finetune

__all__ = ["Committee", "ReferenceSpec", "reference_committee"]


class Committee(HarnessModel):
    """One committee of a plan (see the module docstring)."""

    id: str
    arch: str
    subset: str | None = None
    role: Literal["grid", "reference", "external"] = "grid"
    preset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    max_train_frames: int | None = None
    seeds: tuple[int, ...] | None = Field(None, description="member seeds (None: the study's)")
    name: str | None = Field(None, description="committee directory label (default: the subset)")
    extra_frames: str | None = Field(None, description="a labelled file trained on besides the subset")
    finetune: Finetune | None = None
    tags: dict[str, Any] = Field(default_factory=dict)

    @property
    def reference(self) -> bool:
        return self.role == "reference"

    @property
    def external(self) -> bool:
        return self.role == "external"

    def trained_alike(self, other: "Committee") -> bool:
        """Same architecture, subset, preset, overrides, budget and seeds: one training serves both."""
        keys = ("arch", "subset", "preset", "overrides", "max_train_frames", "seeds", "name", "extra_frames",
                "finetune")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


class ReferenceSpec(HarnessModel):
    """The reference committee: its architecture and training subset (paper: GAP on Full), optionally with
    its own training budget (a reference deserves the best model one can afford)."""

    arch: str | None = Field(None, description="architecture of the committee trained as the reference")
    subset: str | None = Field(None, description="its training subset")
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9_.+-]+$", description="or: the name of an entry of the "
                              "sweep's `models:` (e.g. a shipped committee) that is the reference, trained elsewhere")
    preset: str | None = Field(None, description="default: the sweep's preset")
    max_train_frames: int | None = Field(None, ge=1, description="default: the sweep's")
    overrides: dict[str, Any] | None = Field(None, description="default: the sweep's overrides for this arch")
    committee: int | None = Field(None, ge=2, le=MAX_COMMITTEE, description="members (default: the sweep's "
                                  "committee); the density term of Q needs at least two reference members")

    @model_validator(mode="after")
    def _which(self):
        if self.model is not None:
            given = [k for k in ("arch", "subset", "preset", "max_train_frames", "overrides", "committee")
                     if getattr(self, k) is not None]
            if given:
                raise ValueError(f"reference: model {self.model!r} is trained elsewhere; {', '.join(given)} "
                                 f"{'describes' if len(given) == 1 else 'describe'} a reference trained here (drop "
                                 f"{'it' if len(given) == 1 else 'them'}, or drop model)")
        elif self.arch is None or self.subset is None:
            raise ValueError("reference: give arch and subset (a committee trained here) or model (an entry of "
                             "models:)")
        return self


def reference_committee(r: ReferenceSpec, *, preset: str, overrides: dict[str, Any] | None,
                        max_train_frames: int | None, seeds: Sequence[int]) -> Committee:
    """The reference committee of a study whose members train with ``preset``, ``overrides`` (the study's for
    the reference's architecture), ``max_train_frames`` and ``seeds``, unless the reference names its own.
    Its own member count takes the study's first seeds (or 0..n-1 when it has more members than the study);
    then its seeds are explicit and it is never merged with a grid twin. Id ``ref:<arch>/<subset>``."""
    if r.model is not None:
        raise ValueError(f"reference {r.model!r} is a model trained elsewhere, not a committee to train")
    own_seeds = None
    if r.committee is not None and r.committee != len(seeds):
        own_seeds = tuple(seeds[:r.committee]) if r.committee < len(seeds) else tuple(range(r.committee))
    return Committee(id=f"ref:{r.arch}/{r.subset}", arch=r.arch, subset=r.subset, role="reference",
                     preset=r.preset or preset, overrides=(overrides or {}) if r.overrides is None else r.overrides,
                     max_train_frames=max_train_frames if r.max_train_frames is None else r.max_train_frames,
                     seeds=own_seeds)
