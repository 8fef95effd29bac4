"""``harness md``: one validation trajectory of a model, committee or any ASE calculator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors
from harness.cli.observe import MEMBERS_PRESENT_HELP


def _calculator(model: Optional[Path], calculator: Optional[str], options: Optional[str], device: str,
                arch: Optional[str] = None, members_present: bool = False):
    """(calculator, name, species or None, provenance stamp) from a model/committee directory, a model file or
    an ASE import path."""
    from harness.errors import InputError
    from harness.models.load import model_calculator

    if (model is None) == (calculator is None):
        raise InputError("give exactly one of --model (a trained member or committee directory) or --calculator")
    if calculator is not None:
        from harness.reference import make_oracle

        if not calculator.startswith("ase:"):
            raise InputError(f"--calculator must look like ase:package.module.Class, got {calculator!r}")
        oracle = make_oracle(calculator, options, role="--calculator")
        return oracle.make_calculator(), calculator[4:].rsplit(".", 1)[-1], None, {"kind": "ase", **oracle.provenance()}
    return model_calculator(model, device=device, arch=arch, members_present=members_present)


@handle_errors
def md(
    protocol: Path = typer.Option(..., "--protocol", "-p", help="MD protocol (YAML), e.g. protocols/mini.yaml."),
    ensemble: str = typer.Option(..., "--ensemble", "-e", help="npt or nvt."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained member or committee directory, or a "
                                         "model file (MACE .model, DeePMD .pth/.pb, GAP .xml)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of a model file whose suffix does not tell."),
    calculator: Optional[str] = typer.Option(None, "--calculator", help="Any ASE calculator: ase:package.module.Class."),
    calculator_options: Optional[str] = typer.Option(None, "--calculator-options", help="JSON keyword arguments."),
    replica: int = typer.Option(0, "--replica", "-r", min=0, help="Replica index (seeds the start and velocities)."),
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    start: Optional[Path] = typer.Option(None, "--start", help="Start frame (extxyz with mol_id); default: the protocol's system."),
    nvt_density: Optional[float] = typer.Option(None, "--nvt-density", help="NVT density in g/cm³ when the protocol says 'reference'."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (MLIP models)."),
    members_present: bool = typer.Option(False, "--members-present", help=MEMBERS_PRESENT_HELP),
) -> None:
    """Run one NPT or NVT trajectory with failure detectors; resumable; prints t_stab and where outputs are.

    Outputs in WORKSPACE/md/<model>/<protocol>/<ensemble>-r<replica>/: trajectory.h5md (unwrapped positions,
    per-frame cell, mol_id), thermo.parquet, result.json. A killed run resumes from its last checkpoint; a
    finished run is not rerun.
    """
    from harness.cli.options import check_device
    from harness.errors import InputError
    from harness.md.launch import run_dir, run_protocol
    from harness.md.protocol import load_protocol

    if ensemble not in ("npt", "nvt"):
        raise InputError(f"--ensemble must be npt or nvt, got {ensemble!r}")
    check_device(device)
    proto = load_protocol(protocol)
    calc, name, species, stamp = _calculator(model, calculator, calculator_options, device, arch, members_present)
    if ensemble == "nvt" and nvt_density is None and proto.nvt.density_g_cm3 == "reference":
        raise InputError(f"{protocol}: nvt.density_g_cm3 is 'reference'; give --nvt-density (the reference "
                         "committee's mean NPT density; sweeps resolve it automatically)")
    if not (run_dir(workspace, name, proto.name, ensemble, replica) / "start.extxyz").exists() and start is None:
        err(f"md: preparing the start ({proto.system.composition}, OPLS-AA equilibration)")
    result, outdir = run_protocol(proto, ensemble, calc, name, workspace=workspace, replica=replica, species=species,
                                  start=start, nvt_density=nvt_density,
                                  label=str(model) if model else calculator, model_stamp=stamp)
    status = "stable" if result.failure is None else f"failed: {result.failure['detector']} ({result.failure['message']})"
    typer.echo(f"{ensemble} r{replica}: t_stab {result.t_stab_ps:.3f} ps of {result.length_ps:g} ps, {status}; "
               f"{result.ns_per_day:.2f} ns/day; outputs in {outdir}")
