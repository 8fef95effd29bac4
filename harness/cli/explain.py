"""``harness explain RUN``: why a trajectory failed (issue #32)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


@handle_errors
def explain(
    run: Path = typer.Argument(..., help="A finished run's folder (result.json, trajectory.h5md; e.g. "
                               "WORKSPACE/md/<member>/<protocol>/npt-r0)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Dataset spec YAML whose training subset the "
                                           "contacts are compared with (with --subset)."),
    subset: Optional[str] = typer.Option(None, "--subset", help="The training subset (e.g. OPLS): the closest "
                                         "contact per element pair in its training frames."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the histories as a figure (PNG)."),
    cutoff_A: float = typer.Option(4.0, "--cutoff-A", min=1.0, max=10.0,
                                   help="Intermolecular contacts searched within this distance (Å)."),
    window_ps: float = typer.Option(0.5, "--window-ps", min=0.0, help="Frames this close to the end are the "
                                    "'before failure' stretch compared with the training floor."),
    committee: Optional[list[str]] = typer.Option(None, "--committee", "-m", help="A committee (its directory, or "
                                                  "two or more model files / ase:... calculators): its σ²_F on the same "
                                                  "frames joins the histories."),
    device: str = typer.Option("cpu", "--device", help="Device for the committee's models."),
    as_json: bool = typer.Option(False, "--json", help="Print the record (and the comparison) as JSON."),
) -> None:
    """The failure record of one trajectory: the detector and the bond or molecules it names, the closest
    intermolecular contact of every element pair at the failure, and the histories up to it (closest contact per
    pair from the trajectory's frames and the finer frames kept before the failure, the largest bond stretch,
    σ²F where the run recorded it). With --dataset and --subset: the closest each pair comes in that subset's
    training frames, and the fraction of the last --window-ps of the run whose closest contact lies below it
    (the close-approach hypothesis: contacts no training frame showed the model).
    """
    from harness.diagnostics.forensics import closer_than_floor, contact_floor, contact_minima, explain_run
    from harness.errors import InputError

    if (dataset is None) != (subset is None):
        raise InputError("--dataset and --subset go together")
    calcs = None
    if committee:
        from harness.cli.options import check_device
        from harness.models.load import load_model, sources_from_cli

        check_device(device)
        calcs = [load_model(src, device=device).calculator for src in sources_from_cli(committee)]
        if len(calcs) < 2:
            raise InputError("--committee: a committee of at least two models is needed for σ²_F")
    rec = explain_run(run, cutoff_A=cutoff_A, committee=calcs)
    floor, below = None, None
    if dataset is not None:
        from harness.datasets.spec import load_dataset_spec
        from harness.datasets.subsets import assemble

        spec = load_dataset_spec(dataset)
        frames = [a for a in assemble(spec, subset).train if a.pbc.all()]  # isolated molecules have no contacts
        if not frames:
            raise InputError(f"{dataset}: subset {subset!r} has no periodic training frames to compare with")
        floor = contact_floor(contact_minima(frames, cutoff_A=cutoff_A, where=f"{dataset}:{subset}"))
        import pandas as pd

        hist = pd.DataFrame(rec.history).astype(float)
        late = hist[hist.time_ps >= rec.t_stab_ps - window_ps - 1e-9]
        below = closer_than_floor(late, floor)
    if plot is not None:
        from harness.report.figures import fig_failure

        plot.parent.mkdir(parents=True, exist_ok=True)
        fig_failure(rec, plot, floor=floor, floor_label=f"{subset} training frames" if subset else "training")
    if as_json:
        out = rec.model_dump(mode="json")
        if floor is not None:
            out["training"] = {"dataset": str(dataset), "subset": subset, "floor_A": floor, "window_ps": window_ps,
                               "below_floor": below}
        typer.echo(json.dumps(out, indent=1))
        return
    f = rec.failure
    if f is None:
        typer.echo(f"{run}: {rec.ensemble}, stable for {rec.t_stab_ps:g} ps (no failure to explain)")
    else:
        typer.echo(f"{run}: {rec.ensemble}, failed at {f.time_ps:.4g} ps (step {f.step}): {f.detector} — {f.message}")
    if rec.bond_atoms is not None:
        typer.echo(f"  the bond: atoms {rec.bond_atoms[0]}-{rec.bond_atoms[1]} of molecule {rec.bond_molecule} "
                   f"({rec.bond_species})")
    fine = (f", {rec.n_failure_frames} kept before the failure ({rec.failure_frames_interval_ps * 1000:.3g} fs apart)"
            if rec.n_failure_frames > 1 else "")
    typer.echo(f"  frames: {rec.n_trajectory_frames} in the trajectory{fine}")
    typer.echo("  closest intermolecular contacts in the last frame:")
    for c in rec.contacts_at_failure:
        sp = f" ({c.species[0]} #{c.molecules[0]} · {c.species[1]} #{c.molecules[1]})" if c.species else ""
        floor_txt = f"; closest in {subset}: {floor[c.pair]:.2f} Å" if floor and c.pair in floor else ""
        typer.echo(f"    {c.pair:<5} {c.distance_A:.2f} Å  atoms {c.atoms[0]}-{c.atoms[1]}{sp}{floor_txt}")
    if below:
        typer.echo(f"  the last {window_ps:g} ps against the closest contacts of {subset}'s training frames:")
        for p, b in below.items():
            typer.echo(f"    {p:<5} {b['n_below']}/{b['n']} frames closer than {b['floor_A']:.2f} Å "
                       f"(closest {b['closest_A']:.2f} Å)")
    stretch = [v for v in rec.history.get("max_bond_stretch_A", []) if v is not None]
    if stretch:
        typer.echo(f"  largest bond stretch: {stretch[-1]:.3f} Å at the end (max {max(stretch):.3f} Å)")
    for key, what in (("sigma2_F", "recorded by the run"), ("sigma2_F_committee", "of --committee on its frames")):
        sig = [v for v in rec.history.get(key, []) if v is not None]
        if sig:
            typer.echo(f"  committee σ²F ({what}): {sig[0]:.3g} eV²/Å² at the start, {sig[-1]:.3g} at the end "
                       f"(max {max(sig):.3g}; the AL threshold is 0.5)")
    if plot is not None:
        typer.echo(f"  figure: {plot}")
