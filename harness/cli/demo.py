"""``harness demo``: the main job on the embedded default — a mini ablation sweep with its report."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from harness.cli.common import err, handle_errors

HELP = (
    "Run the mini ablation sweep (protocols/sweeps/demo.yaml): the GAP/Full reference committee trained live on "
    "the shipped EC:EMC GFN2-xTB data, the eight other committees of the ablation (OPLS, OPLS+VS and Full x GAP, "
    "DeePMD and MACE, 2 members each) shipped in models/demo/ (retrain them with `make demo-models`) and the "
    "shipped carbonate foundation MACE zero-shot, all through the 0.1 ps demo MD protocol at 500 K; write the Q "
    "report and print where it is. About 10 minutes on 2 cores from a fresh clone (docs/measurements.md); a second run takes seconds."
)


@handle_errors
def demo(
    workspace: Path = typer.Option(Path("runs/demo"), "--workspace", "-w", help="Output folder."),
    spec: Path = typer.Option(Path("protocols/sweeps/demo.yaml"), "--spec", help="Sweep spec to run."),
    workers: int = typer.Option(None, "--workers", min=1, help="Local worker processes (default: CPU cores)."),
) -> None:
    from harness.cli.sweep import run_with_progress
    from harness.report.build import build_report
    from harness.workflow.run import time_shares

    t0 = time.perf_counter()
    counts, name = run_with_progress(spec, workspace, workers=workers)
    report_dir = workspace / "report"
    files = build_report(workspace, report_dir, sweep=name)
    wall = time.perf_counter() - t0
    typer.echo(files["table.md"].read_text())
    shares = time_shares(workspace, name)
    total = sum(shares.values()) or 1.0
    typer.echo(f"sweep {name}: {counts['done']} tasks run, {counts['cached']} cached, {counts['failed']} failed, "
               f"{counts['skipped']} skipped in {wall / 60:.1f} min wall; task time by stage: "
               + ", ".join(f"{k} {v / 60:.1f} min ({100 * v / total:.0f} %)" for k, v in sorted(shares.items())))
    if counts["failed"]:
        err(f"{counts['failed']} task(s) failed: `harness sweep status -w {workspace}` says why")
    typer.echo(f"report: {files['report.html'].resolve()}")


demo.__doc__ = HELP
