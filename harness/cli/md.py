"""``harness md``: one validation trajectory of a model, committee or any ASE calculator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors


def _calculator(model: Optional[Path], calculator: Optional[str], options: Optional[str], device: str):
    """(calculator, name, species or None) from a model/committee directory or an ASE import path."""
    from harness.errors import InputError

    if (model is None) == (calculator is None):
        raise InputError("give exactly one of --model (a trained member or committee directory) or --calculator")
    if calculator is not None:
        from harness.reference import make_oracle

        if not calculator.startswith("ase:"):
            raise InputError(f"--calculator must look like ase:package.module.Class, got {calculator!r}")
        oracle = make_oracle(calculator, options)
        return oracle.make_calculator(), calculator[4:].rsplit(".", 1)[-1], None
    from harness.models.base import ModelArtifact, get_trainer
    from harness.models.train import load_committee, model_run_name

    if (model / "artifact.json").exists():
        art = ModelArtifact.load(model)
        if art.status != "ok":
            raise InputError(f"{model}: this member failed to train ({(art.error or '').splitlines()[0]})")
        art.verify()
        return get_trainer(art.arch).calculator(art, device=device), model_run_name(model), tuple(art.species) or None
    if (model / "committee.json").exists():
        calc = load_committee(model, device=device)
        species = set()
        for p in sorted(model.glob("*/artifact.json")):
            species.update(ModelArtifact.load(p.parent).species)
        return calc, model_run_name(model), tuple(sorted(species)) or None
    raise InputError(f"{model}: neither a trained member (artifact.json) nor a committee (committee.json)")


@handle_errors
def md(
    protocol: Path = typer.Option(..., "--protocol", "-p", help="MD protocol (YAML), e.g. protocols/mini.yaml."),
    ensemble: str = typer.Option(..., "--ensemble", "-e", help="npt or nvt."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained member or committee directory."),
    calculator: Optional[str] = typer.Option(None, "--calculator", help="Any ASE calculator: ase:package.module.Class."),
    calculator_options: Optional[str] = typer.Option(None, "--calculator-options", help="JSON keyword arguments."),
    replica: int = typer.Option(0, "--replica", "-r", min=0, help="Replica index (seeds the start and velocities)."),
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    start: Optional[Path] = typer.Option(None, "--start", help="Start frame (extxyz with mol_id); default: the protocol's system."),
    nvt_density: Optional[float] = typer.Option(None, "--nvt-density", help="NVT density in g/cm³ when the protocol says 'reference'."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (MLIP models)."),
) -> None:
    """Run one NPT or NVT trajectory with failure detectors; resumable; prints t_stab and where outputs are.

    Outputs in WORKSPACE/md/<model>/<protocol>/<ensemble>-r<replica>/: trajectory.h5md (unwrapped positions,
    per-frame cell, mol_id), thermo.parquet, result.json. A killed run resumes from its last checkpoint; a
    finished run is not rerun.
    """
    from harness.errors import InputError
    from harness.io import read_frames
    from harness.md.detectors import active_learning_detectors, validation_detectors
    from harness.md.protocol import load_protocol, protocol_hash
    from harness.md.runner import run_md
    from harness.md.start import check_start, prepare_start

    if ensemble not in ("npt", "nvt"):
        raise InputError(f"--ensemble must be npt or nvt, got {ensemble!r}")
    proto = load_protocol(protocol)
    calc, name, species = _calculator(model, calculator, calculator_options, device)
    rho = None
    if ensemble == "nvt":
        rho = nvt_density if nvt_density is not None else proto.nvt.density_g_cm3
        if rho == "reference":
            raise InputError(f"{protocol}: nvt.density_g_cm3 is 'reference'; give --nvt-density (the reference "
                             "committee's mean NPT density; sweeps resolve it automatically)")
        if rho <= 0:
            raise InputError(f"--nvt-density must be positive, got {rho}")
    outdir = workspace / "md" / name / proto.name / f"{ensemble}-r{replica}"
    cached_start = outdir / "start.extxyz"
    if cached_start.exists():  # a resumed or finished run keeps its exact start
        atoms = read_frames(cached_start)[0]
    elif start is not None:
        frames = read_frames(start)
        atoms = frames[-1]
        if rho is not None:
            from harness.datasets.volume_scan import volume_scan

            check_start(atoms, where=str(start), species=species)
            atoms = volume_scan(atoms, [rho])[0]
    else:
        err(f"md: preparing the start ({proto.system.composition}, OPLS-AA equilibration)")
        atoms = prepare_start(proto, density_g_cm3=rho, replica=replica)
    check_start(atoms, where=str(start) if start else "protocol start", species=species)
    if not cached_start.exists():
        from harness.io import write_frames

        write_frames(cached_start, [atoms])
    rules = validation_detectors if proto.detectors.rules == "validation" else active_learning_detectors
    dets = rules(ensemble == "npt", interval=proto.detectors.interval,
                 bond_length_method=proto.detectors.bond_length_method)
    for d in dets:
        d.patience = proto.detectors.patience
    meta = {"model": str(model) if model else calculator, "protocol": proto.name,
            "protocol_hash": protocol_hash(proto),
            "protocol_spec": proto.model_dump(mode="json"), "replica": replica, "nvt_density_g_cm3": rho}
    result = run_md(atoms, calc, proto.settings(ensemble), outdir=outdir, seed=1000 * proto.system.seed + replica,
                    detectors=dets, meta=meta)
    status = "stable" if result.failure is None else f"failed: {result.failure['detector']} ({result.failure['message']})"
    typer.echo(f"{ensemble} r{replica}: t_stab {result.t_stab_ps:.3f} ps of {result.length_ps:g} ps, {status}; "
               f"{result.ns_per_day:.2f} ns/day; outputs in {outdir}")
