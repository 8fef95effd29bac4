"""``harness demo``: the main job on the embedded default.

Until the ablation sweep lands (issue #7), the demo runs the largest real piece that exists: it
packs the paper's training-cell composition (3:7 EC:EMC by weight, 160 atoms = 4 EC + 8 EMC) at
three densities, adds the isolated molecules, labels everything with GFN2-xTB and prints a table.
Rerunning reuses finished labels.
"""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import command_line, err, handle_errors

HELP = (
    "Run the main job on the embedded default and print where the results are. For now (before the "
    "ablation sweep exists) this packs 3:7 EC:EMC by weight into 160-atom cells at three densities, "
    "adds isolated EC and EMC, and labels all of them with GFN2-xTB (about a minute on 2 cores). "
    "A second run reuses the labels."
)


@handle_errors
def demo(
    ctx: typer.Context,
    workspace: Path = typer.Option(Path("runs/demo"), "--workspace", "-w", help="Output folder."),
    seed: int = typer.Option(0, "--seed", help="Packing seed."),
) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from harness.io import read_frames
    from harness.reference import make_oracle
    from harness.reference.batch import label_to_file
    from harness.systems.box import build_box
    from harness.systems.composition import resolve_ratio
    from harness.systems.molecules import get_molecule
    from harness.systems.topology import tag_molecules
    from harness.units import EV_PER_A3_TO_GPA, density_g_cm3

    workspace.mkdir(parents=True, exist_ok=True)
    out = workspace / "labelled.extxyz"
    if out.exists():
        frames = read_frames(out)
        err(f"demo: reusing {len(frames)} labelled frames in {out}")
    else:
        comp = resolve_ratio({"EC": 3, "EMC": 7}, basis="weight", n_atoms=160)
        inputs = [build_box(comp, rho, seed=seed + k) for k, rho in enumerate((0.6, 0.9, 1.2))]
        for name in ("EC", "EMC"):
            mol = get_molecule(name)
            inputs.append(tag_molecules(mol.atoms(), [mol]))
        report = label_to_file(inputs, out, make_oracle("xtb"), progress=True, source="harness demo",
                               command=command_line(ctx))
        frames = report.frames
        if report.failed:
            err(f"warning: {len(report.failed)} demo frames failed to label (see {out}.manifest.json)")
    table = Table(title="GFN2-xTB labels of the demo frames")
    for col in ("frame", "composition", "atoms", "density g/cm³", "E/atom eV", "max |F| eV/Å", "P GPa"):
        table.add_column(col, justify="right")
    for k, a in enumerate(frames):
        fmax = float(np.linalg.norm(a.arrays["REF_forces"], axis=1).max())
        rho = f"{density_g_cm3(a):.3f}" if a.pbc.all() else "isolated"
        stress = a.info.get("REF_stress")
        pressure = f"{-np.mean(np.asarray(stress)[:3]) * EV_PER_A3_TO_GPA:.3f}" if stress is not None else "-"
        table.add_row(str(k), str(a.info.get("composition", "")), str(len(a)), rho,
                      f"{a.info['REF_energy'] / len(a):.4f}", f"{fmax:.3f}", pressure)
    Console(stderr=False).print(table)
    typer.echo(f"demo: labelled frames in {out} (manifest {out}.manifest.json)")


demo.__doc__ = HELP
