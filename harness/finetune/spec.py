"""The ``finetune:`` section of a sweep spec (issue #17): a foundation model, zero-shot and fine-tuned, beside the
committees trained from scratch.

.. code-block:: yaml

    finetune:
      foundation: ../../models/foundation/carbonates-mace.model   # a MACE .model file
      name: carbonates                  # zero-shot committee model:carbonates; fine-tuned ft:<strategy>/<subset>
      subsets: [OPLS+VS]                # default: the sweep's subsets
      overrides: {max_num_epochs: 10}   # the preset's training schedule for fine-tuning (architecture: the foundation's)
      strategies:
        - {strategy: naive, lr: 1.0e-3}
        - {strategy: frozen, freeze: 4, lr: 1.0e-3}
        - {strategy: replay, lr: 1.0e-3, weight_pt_head: 1.0}
      replay: {dataset: ../../datasets/carbonates-xtb.yaml, subset: Foundation, max_frames: 40}
      forgetting: {dataset: ../../datasets/carbonates-xtb.yaml, sets: [liquids-held-out, molecules]}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.config import MAX_COMMITTEE, HarnessModel

__all__ = ["FinetuneSpec", "StrategySpec", "ReplaySpec", "HeldOutSpec"]


class StrategySpec(HarnessModel):
    """One fine-tuning recipe (:mod:`harness.models.finetune`)."""

    strategy: Literal["naive", "frozen", "replay"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.+-]+$", description="default: <strategy>-lr<lr>")
    lr: float = Field(1e-4, gt=0, description="learning rate (the steels study: <= 1e-4 limits forgetting)")
    freeze: int | None = Field(None, ge=1, description="frozen: the first N blocks keep the foundation's values "
                               "(embedding, then each layer's interaction, product, readout; default 4: the "
                               "companion's first four layers)")
    weight_pt_head: float = Field(1.0, gt=0, description="replay: loss weight of the replay head")

    @model_validator(mode="after")
    def _check(self):
        if self.freeze is not None and self.strategy != "frozen":
            raise ValueError(f"freeze is for strategy frozen, not {self.strategy}")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.strategy}-lr{self.lr:g}"

    @property
    def freeze_layers(self) -> int | None:
        return (4 if self.freeze is None else self.freeze) if self.strategy == "frozen" else None


class ReplaySpec(HarnessModel):
    """Frames of the foundation's own training data replayed while fine-tuning (strategy replay)."""

    dataset: str = Field(description="dataset YAML")
    subset: str = Field(description="subset or validation set of that dataset")
    max_frames: int | None = Field(40, ge=1, description="evenly thinned to at most this many")


class HeldOutSpec(HarnessModel):
    """Structures outside the fine-tuning data on which forgetting is measured (fine-tuned vs original model)."""

    dataset: str = Field(description="dataset YAML")
    sets: list[str] = Field(min_length=1, description="subsets or validation sets of that dataset")
    max_frames: int | None = Field(None, ge=1, description="per set, evenly thinned")


class FinetuneSpec(HarnessModel):
    foundation: str = Field(description="the foundation: a MACE .model file")
    name: str = Field("foundation", pattern=r"^[A-Za-z0-9_.+-]+$", description="its committee: model:<name>")
    sha256: str | None = Field(None, description="the foundation file's SHA-256, checked when given")
    zero_shot: bool = Field(True, description="score the foundation itself (a committee of one)")
    subsets: list[str] | None = Field(None, description="fine-tuning subsets (default: the sweep's)")
    preset: str | None = Field(None, description="training schedule preset (default: the sweep's)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="MACE hyperparameters of the fine-tuning "
                                      "runs (epochs, batch size, loss weights; the architecture is the foundation's)")
    max_train_frames: int | None = Field(None, ge=1, description="default: the sweep's")
    committee: int | None = Field(None, ge=1, le=MAX_COMMITTEE, description="members per fine-tuned committee: the "
                                  "first of the sweep's seeds (default: the sweep's committee)")
    strategies: list[StrategySpec] = Field(min_length=1)
    replay: ReplaySpec | None = None
    forgetting: HeldOutSpec | None = None

    @model_validator(mode="after")
    def _check(self):
        labels = [s.label for s in self.strategies]
        if len(set(labels)) != len(labels):
            raise ValueError(f"strategy names must not repeat (got {', '.join(labels)}; give each a name)")
        if any(s.strategy == "replay" for s in self.strategies) and self.replay is None:
            raise ValueError("strategy replay needs a replay section (dataset, subset)")
        return self
