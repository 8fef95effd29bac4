"""``harness transfer run``: train architecture B on base + the AL frames of architecture A, report ΔQ."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import handle_errors
from harness.cli.sweep import Execution, execution_options, exit_for, print_plan, run_and_summarise

app = typer.Typer(help="Cross-architecture transfer of active-learned frames: the ΔQ matrix.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("run")
@execution_options
@handle_errors
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Transfer spec (YAML), e.g. protocols/transfer/ci.yaml."),
    workspace: Path = typer.Option(Path("runs/transfer"), "--workspace", "-w", help="Workspace folder."),
    execution: Execution = Execution(),
) -> None:
    """Train every target architecture on each base subset alone and with each AL frame file, validate all
    with the sweep machinery (resumable, like `harness sweep run`), and write the transfer matrix
    ΔQ = Q(B on base + AL of A) − Q(B on base) to WORKSPACE/transfer.{md,csv}. Exit 1 if a task failed."""
    from harness.report.build import to_markdown
    from harness.report.data import load_scores
    from harness.transfer import load_transfer, transfer_matrix

    if execution.plan_only:
        from harness.sweep.plan import plan_sweep

        print_plan(plan_sweep(*load_transfer(spec_path), workspace))
        return
    counts, name = run_and_summarise("transfer", spec_path, workspace, loader=load_transfer, **execution.run_kwargs())
    matrix = transfer_matrix(load_scores(workspace, name))
    if len(matrix):
        shown = matrix.copy()
        for c in ("Q_base", "Q_with_AL", "dQ", "dQ_se"):
            shown[c] = shown[c].map(lambda v: f"{v:.3f}")
        for c in ("Q_base", "Q_with_AL", "dQ"):  # 95 % intervals beside each
            lo, hi = shown.pop(f"{c}_low"), shown.pop(f"{c}_high")
            shown[f"{c} 95 %"] = [f"{a:.2f}–{b:.2f}" if a == a and b == b and a is not None else "–"
                                  for a, b in zip(matrix[f"{c}_low"], matrix[f"{c}_high"])]
        (workspace / "transfer.md").write_text(to_markdown(shown))
        matrix.to_csv(workspace / "transfer.csv", index=False)
        typer.echo(to_markdown(shown))
        typer.echo(f"written {workspace / 'transfer.md'} and {workspace / 'transfer.csv'}")
    exit_for(counts)
