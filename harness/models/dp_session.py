"""Several ``dp`` (DeePMD-kit) commands in one Python process.

Importing DeePMD-kit 3.2's PyTorch backend takes ~14 s of CPU (torch, its dynamo and inductor through the Triton
kernels, SciPy, SymPy; measured on this 2-core machine), and a member's training is ``dp --pt train``, ``freeze``
(then, the ``cpu`` preset, ``compress``). Each command is exactly what the ``dp`` console script would run
(``deepmd.main.main`` with the same arguments), one after another, stopping at the first that fails (its
traceback in the log, exit status 1). Measured (mini member, one thread): train + freeze in one process give the
byte-identical frozen model of two ``dp`` calls; train + freeze + compress took 23 s instead of 49-54 s. But a
``compress`` after a ``freeze`` in the same process writes another file than alone (TorchScript names the classes
it compiles a second time differently), so the harness runs it alone (:func:`harness.models.deepmd.compress_model`),
as a shipped member remakes it.

    python -m harness.models.dp_session '[["--pt", "train", "input.json"], ["--pt", "freeze", "-o", "model.pth"]]'
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    commands = json.loads(argv[0])
    from deepmd.main import main as dp

    for args in commands:
        print(f"$ dp {' '.join(args)}", flush=True)
        dp(list(args))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
