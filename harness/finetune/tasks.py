"""Worker of the ``forgetting`` task kind (:mod:`harness.finetune.contract`)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import InputError
from harness.finetune.contract import ForgettingParams, ForgettingResult
from harness.workflow.contract import Deps, check_hash, worker

__all__ = ["forgetting", "held_out_frames", "target_frames"]


def held_out_frames(dataset: str | Path, sets: list[str], max_frames: int | None = None):
    """name -> frames of each held-out set (a subset's training and validation frames, or a validation set;
    isolated atoms left out), and their content hash."""
    from harness.datasets.build import frames_hash
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import subset_frames

    spec = load_dataset_spec(dataset)
    out = {}
    for name in sets:
        if name not in spec.subsets and name not in spec.validation:
            raise InputError(f"{dataset}: no subset or validation set {name!r} (subsets: {', '.join(spec.subsets)}; "
                             f"validation sets: {', '.join(spec.validation) or 'none'})")
        frames = subset_frames(spec, name, max_frames)
        if not frames:
            raise InputError(f"{dataset}: held-out set {name!r} has no frames")
        out[name] = frames
    return out, frames_hash([a for fs in out.values() for a in fs])


def target_frames(dataset: str | Path, subset: str):
    """The target subset's validation frames (what the fine-tuned committee's validation RMSE is on), hashed."""
    from harness.datasets.build import frames_hash
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble

    frames = assemble(load_dataset_spec(dataset), subset).valid
    if not frames:
        raise InputError(f"{dataset}: subset {subset!r} has no validation frames to measure the target gain on")
    return frames, frames_hash(frames)


def _labelled(frames) -> bool:
    return all("REF_energy" in a.info and "REF_forces" in a.arrays for a in frames)


@worker(ForgettingParams)
def forgetting(p: ForgettingParams, deps: Deps) -> ForgettingResult:
    """The fine-tuned member and its foundation on the target's validation frames and on the held-out sets."""
    from harness.finetune.forgetting import error_increase, gain_and_forgetting, prediction_change
    from harness.io import sha256_file
    from harness.models.evaluate import error_table, predict
    from harness.models.load import ModelSource, load_model
    from harness.workflow.run import set_threads

    set_threads(p.threads)
    member = deps["member"][0]
    if not Path(p.foundation).is_file():
        raise InputError(f"foundation model {p.foundation}: no such file")
    check_hash(f"foundation model {p.foundation}", p.foundation_sha256, sha256_file(p.foundation))
    original = load_model(ModelSource(kind="file", path=p.foundation, arch="mace"), device=p.device)
    tuned = load_model(member.model, device=p.device)
    target, h = target_frames(p.target_dataset, p.target_subset)
    check_hash(f"target validation frames of {p.target_subset}", p.target_hash, h)
    where = f"{p.target_dataset}: {p.target_subset} validation frames"
    t_orig = error_table(target, predict(original.calculator, target, where=where, stress=False))["all"]
    t_tuned = error_table(target, predict(tuned.calculator, target, where=where, stress=False))["all"]
    held = {}
    if p.held_out_dataset:
        sets, h = held_out_frames(p.held_out_dataset, p.held_out_sets, p.held_out_max_frames)
        check_hash(f"held-out frames {', '.join(p.held_out_sets)}", p.held_out_hash, h)
        for name, frames in sets.items():
            w = f"{p.held_out_dataset}: {name}"
            po = predict(original.calculator, frames, where=w, stress=False)
            pt = predict(tuned.calculator, frames, where=w, stress=False)
            entry = prediction_change(frames, po, pt)
            if _labelled(frames):  # the reference's labels, where the set has them
                entry["original"] = error_table(frames, po)["all"]
                entry["tuned"] = error_table(frames, pt)["all"]
                entry.update(error_increase(frames, po, pt))
            held[name] = entry
    ft = (member.tags or {}).get("finetune") or {}
    return ForgettingResult(**member.identity(), strategy=str(ft.get("strategy", "?")), lr=float(ft.get("lr", 0.0)),
                            target={"original": t_orig, "tuned": t_tuned}, held_out=held,
                            summary=gain_and_forgetting(t_orig, t_tuned, held))
