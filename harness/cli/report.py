"""``harness report``: Q tables, figures and an HTML page from a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors


@handle_errors
def report(
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace with harness.sqlite."),
    output: Path = typer.Option(Path("report"), "--output", "-o", help="Output folder."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Only this sweep (by name)."),
) -> None:
    """Write the Q comparison table (table.md/.csv/.tex: subset × architecture, mean ± SE over members, the
    three terms, t_stab, density, diffusivities), members.csv, Fig. 1 analogues (fig1a stability, fig1b
    density distributions vs the reference, fig1c/d diffusivities vs the reference) and report.html (all of
    it, self-contained, with provenance). With active-learning scores: fig2 (Q, t_stab, density, D vs
    generation) and al_generations/al_selected/al_hits.csv; a campaign without validation gets its AL
    tables alone."""
    from harness.io import check_output
    from harness.report.build import build_report

    check_output(output, folder=True)  # before the store is read and figures drawn
    files = build_report(workspace, output, sweep=sweep)
    if "table.md" in files:  # an AL campaign without validation has no Q table
        typer.echo(files["table.md"].read_text())
    typer.echo(f"report: {files['report.html']} (+ {len(files) - 1} files in {output})")
