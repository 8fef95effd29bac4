"""``harness evaluate``: energy, force and stress errors of a model or committee on labelled frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors
from harness.cli.observe import ARCH_HELP, MEMBERS_PRESENT_HELP


@handle_errors
def evaluate(
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled frames (extxyz, .gz allowed)."),
    model: list[str] = typer.Option(..., "--model", "-m", metavar="MODEL", help=(
        "A trained member or committee directory, a model file, foundation:NAME[+d3] or ase:package.module.Class; "
        "several --model "
        "are evaluated as one committee (mean prediction, spread as uncertainty).")),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    energy_key: str = typer.Option("REF_energy", "--energy-key", help="Info key of the reference energy."),
    forces_key: str = typer.Option("REF_forces", "--forces-key", help="Array key of the reference forces."),
    stress_key: str = typer.Option("REF_stress", "--stress-key", help="Info key of the reference stress (optional)."),
    energy_unit: str = typer.Option("eV", "--energy-unit", help="Unit of the labels: eV, meV, Ha, kcal/mol, kJ/mol "
                                    "(forces and stress in that unit per Å, per Å³)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for errors.json, parity.png and, "
                                          "for a committee, calibration.png."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the errors as JSON."),
    members_present: bool = typer.Option(False, "--members-present", help=MEMBERS_PRESENT_HELP),
) -> None:
    """Energy (meV/atom), force-component (meV/Å) and stress (meV/Å³) RMSE and MAE of MODEL on DATA, over all
    frames, per config_type and per composition; a committee's predicted force uncertainty against its error."""
    from harness.cli.options import check_device
    from harness.errors import InputError
    from harness.io import atomic_path, check_output
    from harness.models.committee import CommitteeCalculator
    from harness.models.evaluate import calibration, error_table, predict, read_labelled
    from harness.models.load import load_model, sources_from_cli

    check_device(device)
    if output is not None:  # before the models are loaded and run
        check_output(output, folder=True)
    frames = read_labelled(data, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                           energy_unit=energy_unit)
    sources = sources_from_cli(model, arch=arch, members_present=members_present)
    loaded = [load_model(s, device=device) for s in sources]
    known = [m.species for m in loaded if m.species]
    species = sorted(set.intersection(*map(set, known))) if known else None
    calc = loaded[0].calculator if len(loaded) == 1 else CommitteeCalculator([m.calculator for m in loaded])
    preds = predict(calc, frames, species=species, where=str(data))
    table = error_table(frames, preds)
    result = {"data": str(data), "models": [s.model_dump(mode="json") for s in sources], "errors": table}
    cal = calibration(frames, preds)
    if cal is not None:
        sigma, err = cal
        from harness.diagnostics.calibration import calibration_curve, calibration_summary

        result["calibration"] = {**calibration_summary(sigma, err), "mean_error_eV_A": float(err.mean()),
                                 "curve": calibration_curve(sigma, err).to_dict("records")}
    if output is not None:
        from harness.report.figures import fig_calibration, fig_parity

        output.mkdir(parents=True, exist_ok=True)
        with atomic_path(output / "errors.json", inputs=[data]) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
        fig_parity(frames, preds, output / "parity.png")
        if cal is not None:
            fig_calibration(*cal, output / "calibration.png")
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    a = table["all"]
    typer.echo(f"{data}: {a['n_frames']} frames, {len(sources)} model(s)")
    for by in ("config_type", "composition"):
        typer.echo(f"  by {by}:")
        for name, m in table[by].items():
            stress = f", stress {m['stress_rmse_meV_A3']:.3g} meV/Å³" if "stress_rmse_meV_A3" in m else ""
            typer.echo(f"    {name:24s} n={m['n_frames']:4d}  E {m['energy_rmse_meV_atom']:8.2f} meV/atom  "
                       f"F {m['forces_rmse_meV_A']:8.1f} meV/Å{stress}")
    stress = f", stress {a['stress_rmse_meV_A3']:.3g} meV/Å³" if "stress_rmse_meV_A3" in a else ""
    typer.echo(f"  all: E RMSE {a['energy_rmse_meV_atom']:.2f} meV/atom (MAE {a['energy_mae_meV_atom']:.2f}), "
               f"F RMSE {a['forces_rmse_meV_A']:.1f} meV/Å (MAE {a['forces_mae_meV_A']:.1f}){stress}")
    if cal is not None:
        c = result["calibration"]
        typer.echo(f"  committee: mean predicted σ_F {c['mean_sigma_eV_A']:.3f} eV/Å vs mean |error| "
                   f"{c['mean_error_eV_A']:.3f} eV/Å; rank correlation {c['spearman']:.2f}")
        typer.echo(f"  calibration ({c['n_atoms']} atoms): recalibration factor s = {c['scale']:.2f} (σ "
                   f"{'under' if c['scale'] > 1 else 'over'}states the error), ENCE {c['ence']:.2f}; the AL threshold "
                   f"σ²_F = 0.5 eV²/Å² (σ_F 0.71 eV/Å) expects an error of {c['al_threshold_expected_error_eV_A']:.2f} "
                   "eV/Å on the worst atom")
