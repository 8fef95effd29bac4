"""``harness transfer run``: train architecture B on base + the AL frames of architecture A, report ΔQ."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors
from harness.cli.sweep import GPU_WORKERS, SCHEDULER, SLURM, SYNC, WALLTIME, WORKERS, exit_for, run_and_summarise

app = typer.Typer(help="Cross-architecture transfer of active-learned frames: the ΔQ matrix.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.command("run")
@handle_errors
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Transfer spec (YAML), e.g. protocols/transfer/ci.yaml."),
    workspace: Path = typer.Option(Path("runs/transfer"), "--workspace", "-w", help="Workspace folder."),
    scheduler: Optional[str] = SCHEDULER,
    workers: Optional[int] = WORKERS,
    slurm: Optional[Path] = SLURM,
    gpu_workers: Optional[int] = GPU_WORKERS,
    walltime_min: Optional[float] = WALLTIME,
    sync: bool = SYNC,
) -> None:
    """Train every target architecture on each base subset alone and with each AL frame file, validate all
    with the sweep machinery (resumable, like `harness sweep run`), and write the transfer matrix
    ΔQ = Q(B on base + AL of A) − Q(B on base) to WORKSPACE/transfer.{md,csv}. Exit 1 if a task failed."""
    from harness.report.build import to_markdown
    from harness.report.data import load_scores
    from harness.transfer import load_transfer, transfer_matrix

    counts, name = run_and_summarise("transfer", spec_path, workspace, loader=load_transfer, scheduler=scheduler,
                                     workers=workers, sync=sync, slurm=slurm, gpu_workers=gpu_workers,
                                     walltime_min=walltime_min)
    matrix = transfer_matrix(load_scores(workspace, name))
    if len(matrix):
        shown = matrix.copy()
        for c in ("Q_base", "Q_with_AL", "dQ", "dQ_se"):
            shown[c] = shown[c].map(lambda v: f"{v:.3f}")
        (workspace / "transfer.md").write_text(to_markdown(shown))
        matrix.to_csv(workspace / "transfer.csv", index=False)
        typer.echo(to_markdown(shown))
        typer.echo(f"written {workspace / 'transfer.md'} and {workspace / 'transfer.csv'}")
    exit_for(counts)
