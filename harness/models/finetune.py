"""Fine-tuning a foundation MACE model (SCIENCE.md §9-§10, issue #17): what one fine-tuned member starts from and
how, as ``mace_run_train`` flags.

Strategies (the steels companion study's three):

- ``naive``: every weight trains from the foundation's values (``--foundation_model``, single head).
- ``frozen``: the first N blocks of the model in forward order (embedding, then each layer's interaction,
  product and readout) keep the foundation's values (:mod:`harness.models.mace_freeze`); the companion's "first
  four layers" is ``freeze: 4``, the embedding and the whole first message-passing layer. (mace-torch's own
  ``--freeze N`` freezes by module kind: N = 1 … 4 all freeze the embedding alone.)
- ``replay``: MACE multi-head fine-tuning: a second head (``pt_head``) keeps training on a replay sample of the
  foundation's own training data (``--pt_train_file``, weight ``weight_pt_head``) while the default head learns
  the target; MD and scoring use the default head.

The learning rate is always the one given (``--force_mh_ft_lr``: mace-torch would otherwise set 1e-4 for
multi-head runs); the steels study found lr ≤ 1e-4 limits forgetting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.config import HarnessModel
from harness.errors import InputError

__all__ = ["STRATEGIES", "Finetune", "command", "mace_args", "replay_frames"]

STRATEGIES = ("naive", "frozen", "replay")


class Finetune(HarnessModel):
    """One fine-tuning recipe, part of a committee's key (content hashes, not paths, identify the inputs)."""

    foundation: str = Field(description="the foundation MACE model file")
    foundation_sha256: str
    strategy: Literal["naive", "frozen", "replay"]
    lr: float = Field(gt=0)
    freeze: int | None = Field(None, ge=1, description="frozen: the first N blocks (embedding, then each layer's "
                               "interaction, product, readout) keep the foundation's values")
    weight_pt_head: float = Field(1.0, gt=0, description="replay: loss weight of the replay head")
    replay_dataset: str | None = Field(None, description="replay: dataset YAML of the replay frames")
    replay_subset: str | None = None
    replay_max_frames: int | None = Field(None, ge=1)
    replay_key: str | None = Field(None, description="replay: content key of the replay frames when planned")

    @model_validator(mode="after")
    def _check(self):
        if self.strategy == "frozen" and self.freeze is None:
            raise ValueError("strategy frozen needs freeze (the number of leading blocks kept, >= 1)")
        if self.strategy != "frozen" and self.freeze is not None:
            raise ValueError(f"freeze is for strategy frozen, not {self.strategy}")
        if (self.strategy == "replay") != (self.replay_subset is not None):
            raise ValueError("a replay set (replay_dataset, replay_subset) goes with strategy replay, and only with it")
        return self

    def key_fields(self) -> dict[str, Any]:
        """What identifies the recipe: the foundation's and replay set's content, not where they lie. A frozen
        recipe says how it counts (blocks in forward order; harnesses before it passed mace-torch's --freeze N)."""
        fields = self.model_dump(exclude={"foundation", "replay_dataset"})
        return {**fields, "freeze_counts": "blocks"} if self.strategy == "frozen" else fields


def replay_frames(ft: Finetune) -> list:
    """The replay sample: the replay subset's frames (training and validation splits), thinned evenly."""
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import subset_frames

    frames = subset_frames(load_dataset_spec(ft.replay_dataset), ft.replay_subset, ft.replay_max_frames)
    if not frames:
        raise InputError(f"{ft.replay_dataset}: replay subset {ft.replay_subset!r} has no frames")
    return frames


def check_foundation(ft: Finetune) -> None:
    """The foundation file exists, is the one planned, is a MACE model, and (frozen) has more blocks than the
    recipe freezes."""
    from harness.io import sha256_file

    path = Path(ft.foundation)
    if not path.is_file():
        raise InputError(f"foundation model {path}: no such file")
    if path.suffix != ".model":
        raise InputError(f"foundation model {path}: fine-tuning takes a MACE .model file")
    sha = sha256_file(path)
    if sha != ft.foundation_sha256:
        raise InputError(f"foundation model {path} hash {sha} differs from the {ft.foundation_sha256} planned: the file "
                         "changed since planning; plan again")
    if ft.freeze is not None:
        from harness.models.mace_freeze import frozen_blocks, load_model_file

        try:
            frozen_blocks(load_model_file(path), ft.freeze)
        except ValueError as err:
            raise InputError(f"foundation model {path}: {err}") from None


def mace_args(ft: Finetune, workdir: Path, frames_key) -> list[str]:
    """``mace_run_train`` flags of the recipe; a replay recipe writes its replay frames to ``pt_train.xyz`` in
    ``workdir`` (refused when they differ from the planned ones). The architecture is the foundation's
    (mace-torch takes it from the model), the training schedule the preset's. A frozen recipe's blocks are not a
    flag: :func:`command` runs mace-torch's training through :mod:`harness.models.mace_freeze`."""
    from harness.io import write_frames
    from harness.models.mace import _prepare

    check_foundation(ft)
    args = [f"--foundation_model={Path(ft.foundation).resolve()}", f"--lr={ft.lr}", "--force_mh_ft_lr=True"]
    if ft.strategy != "replay":
        return [*args, "--multiheads_finetuning=False"]
    frames = replay_frames(ft)
    key = frames_key(frames)
    if ft.replay_key is not None and key[:16] != ft.replay_key[:16]:
        raise InputError(f"replay set {ft.replay_subset} of {ft.replay_dataset} changed since planning "
                         f"(key {key[:10]}, planned {ft.replay_key[:10]}); plan again")
    write_frames(workdir / "pt_train.xyz", [_prepare(a) for a in frames])
    return [*args, "--multiheads_finetuning=True", "--pt_train_file=pt_train.xyz",
            f"--weight_pt_head={ft.weight_pt_head}", f"--num_samples_pt={len(frames)}", "--subselect_pt=random"]


def command(ft: Finetune | None, mace_run_train: str) -> list[str]:
    """The training command: ``mace_run_train``, or for a frozen recipe mace-torch's same training run by
    :mod:`harness.models.mace_freeze` in this Python (whose mace-torch it is)."""
    if ft is None or ft.strategy != "frozen":
        return [mace_run_train]
    import sys

    return [sys.executable, "-m", "harness.models.mace_freeze", f"--harness_freeze_blocks={ft.freeze}"]
