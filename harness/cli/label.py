"""``harness label``: label frames with the reference method."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from harness.cli.common import command_line, err, handle_errors

HELP = """Label frames with reference energies, forces and stresses (REF_energy, REF_forces, REF_stress).

INPUT is an extxyz file or '-' for standard input, so `harness box ... | harness label - -o out.extxyz` works. The default reference is GFN2-xTB via tblite; --reference ase:package.module.Class uses any ASE calculator, with --reference-options as its keyword arguments (JSON). A frame whose calculation fails is retried once with safer settings, then recorded as failed in the manifest (OUTPUT.manifest.json) and left out of OUTPUT. An interrupted run resumes: rerun the same command.

Exit status: 0 all frames labelled; 1 some or all frames failed (see the manifest); 2 bad input.
"""


@handle_errors
def label(
    ctx: typer.Context,
    input: str = typer.Argument(..., help="Frames to label (extxyz), or '-' for standard input."),
    output: str = typer.Option(..., "--output", "-o", help="Labelled frames (extxyz); '-' for standard output."),
    reference: str = typer.Option("xtb", "--reference", "-r", help="'xtb' (tblite GFN-xTB) or 'ase:package.module.Class'."),
    reference_options: Optional[str] = typer.Option(None, "--reference-options",
                                                    help='JSON object, e.g. \'{"method": "GFN1-xTB", "threads": 2}\'.'),
    retries: int = typer.Option(1, "--retries", min=0, help="Safer-settings retries per failed frame."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Manifest path (default OUTPUT.manifest.json)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."),
) -> None:
    from harness.io import STDIO, check_output, read_frames
    from harness.reference import make_oracle
    from harness.reference.batch import label_to_file, manifest_path_for

    check_output(output, inputs=[input])  # before any frame is labelled
    if manifest is not None or output != STDIO:
        check_output(manifest if manifest is not None else manifest_path_for(output), inputs=[input])
    oracle = make_oracle(reference, reference_options)
    oracle.make_calculator()  # a calculator its options cannot build is a configuration error (exit 2), not N failed frames
    frames = read_frames(input)
    show = sys.stderr.isatty() if progress is None else progress
    report = label_to_file(frames, output, oracle, manifest=manifest, retries=retries, progress=show,
                           source=input, command=command_line(ctx))
    n_cached = sum(r.status == "cached" for r in report.records)
    failed = report.failed
    where = "" if output == "-" else f" -> {output}"
    err(f"label: {len(report.frames)}/{len(frames)} frames labelled with {oracle.name}"
        + (f" ({n_cached} reused from an interrupted run)" if n_cached else "")
        + f" in {report.seconds:.1f} s{where}")
    if failed:
        shown = ", ".join(f"{r.index} ({r.error})" for r in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        err(f"warning: {len(failed)} frame(s) failed and were left out: {shown}{more}")
        raise typer.Exit(1)


label.__doc__ = HELP
