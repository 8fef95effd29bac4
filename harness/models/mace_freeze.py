"""``mace_run_train`` with the first N blocks of a MACE model frozen (fine-tuning strategy ``frozen``).

mace-torch's own ``--freeze N`` freezes by module kind, not by depth: N = 1 … 4 all freeze only the element
embedding, 5 adds every interaction, 6 every product, 7 every readout. The steels companion study's "first four
layers" is a depth: this module runs mace-torch's own training (``mace.cli.run_train.main``) with its optimizer's
parameter groups built as usual and then the parameters of the first N blocks, in forward order, taken out of them
and marked ``requires_grad=False``:

    node_embedding, interactions.0, products.0, readouts.0, interactions.1, products.1, readouts.1, …

(blocks without parameters skipped). ``freeze: 4`` on a two-layer MACE keeps the embedding and the whole first
message-passing layer (interaction, product, readout) at the foundation's values and trains the second layer.
Exponential moving averages and SWA averages of a constant parameter stay constant, so the written model carries
the foundation's values bit for bit (tested).

Usage (what :class:`harness.models.mace.MACETrainer` runs for a frozen recipe)::

    python -m harness.models.mace_freeze --harness_freeze_blocks=4 <mace_run_train flags>

It writes ``frozen_blocks.json`` (the blocks and their parameter counts) into the working directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["blocks", "frozen_blocks", "freeze_param_options", "load_model_file", "main"]

FLAG = "--harness_freeze_blocks="


def blocks(model) -> list[tuple[str, Any]]:
    """The model's parameter blocks in forward order: embedding, then each layer's interaction, product, readout."""
    out = [("node_embedding", model.node_embedding)]
    for i, (inter, prod) in enumerate(zip(model.interactions, model.products)):
        out += [(f"interactions.{i}", inter), (f"products.{i}", prod)]
        if i < len(model.readouts):
            out.append((f"readouts.{i}", model.readouts[i]))
    return [(name, m) for name, m in out if any(True for _ in m.parameters())]


def load_model_file(path):
    """A MACE ``.model`` file as its torch module, on the CPU."""
    from harness.models.compat import torch_weights_only_workaround

    torch_weights_only_workaround()
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=False)


def frozen_blocks(model, n: int) -> list[tuple[str, Any]]:
    """The first ``n`` blocks; a ValueError when ``n`` would leave nothing to train."""
    bl = blocks(model)
    if not 1 <= n < len(bl):
        raise ValueError(f"freeze {n}: this MACE has {len(bl)} blocks ({', '.join(b for b, _ in bl)}); freeze "
                         f"1 to {len(bl) - 1} of them")
    return bl[:n]


def freeze_param_options(options: dict[str, Any], model, n: int) -> list[dict[str, Any]]:
    """Take the first ``n`` blocks' parameters out of mace-torch's optimizer groups (groups kept, possibly empty,
    so a restarted run's optimizer state lines up) and stop their gradients. Returns what was frozen."""
    frozen = frozen_blocks(model, n)
    ids = set()
    for _, module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
            ids.add(id(p))
    for group in options["params"]:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    return [{"block": name, "parameters": int(sum(p.numel() for p in m.parameters()))} for name, m in frozen]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = [a for a in argv if a.startswith(FLAG)]
    if len(given) != 1:
        raise SystemExit(f"usage: python -m harness.models.mace_freeze {FLAG}N <mace_run_train flags>")
    n = int(given[0][len(FLAG):])
    rest = [a for a in argv if not a.startswith(FLAG)]

    import mace.cli.run_train as run_train

    original = getattr(run_train, "get_params_options", None)
    if original is None:
        raise SystemExit("harness.models.mace_freeze: this mace-torch has no mace.cli.run_train.get_params_options "
                         "(the hook frozen fine-tuning needs; mace-torch 0.3.16 has it)")

    def get_params_options(args, model):
        options = original(args, model)
        record = freeze_param_options(options, model, n)
        Path("frozen_blocks.json").write_text(json.dumps({"freeze": n, "blocks": record}, indent=1) + "\n")
        print(f"harness: froze the first {n} blocks: {', '.join(r['block'] for r in record)} "
              f"({sum(r['parameters'] for r in record)} parameters)", flush=True)
        return options

    run_train.get_params_options = get_params_options
    sys.argv = ["mace_run_train", *rest]
    run_train.main()


if __name__ == "__main__":
    main()
