"""``harness train`` and ``harness models list``: committees of MLIPs on dataset subsets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors, is_file
from harness.config import MAX_COMMITTEE

models_app = typer.Typer(help="Inspect trained models.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})


def _table(artifacts, title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("arch", "subset", "preset", "member", "seed", "status", "train s", "valid E meV/atom",
                "valid F meV/Å", "E0", "path"):
        table.add_column(col)
    for a in artifacts:
        m = a.metrics
        table.add_row(a.arch, str(a.dataset.get("subset", "?")), a.preset, Path(a.workdir).name, str(a.seed),
                      a.status if a.status == "ok" else f"[red]{a.status}[/red]", f"{a.train_seconds:.0f}",
                      f"{m['valid_energy_rmse_meV_atom']:.2f}" if "valid_energy_rmse_meV_atom" in m else "-",
                      f"{m['valid_forces_rmse_meV_A']:.1f}" if "valid_forces_rmse_meV_A" in m else "-",
                      a.e0.get("method", "-"), str(Path(a.workdir).parent))
    return table


@handle_errors
def train(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Dataset definition (YAML)."),
    subset: str = typer.Option(..., "--subset", "-s", help="Training subset name (e.g. OPLS+VS)."),
    arch: str = typer.Option(..., "--arch", "-a", help="gap, deepmd or mace."),
    preset: str = typer.Option("mini", "--preset", help=(
        "Hyperparameter preset: mini (CPU, not converged), study (one GPU node; GAP: 16 cores), "
        "cpu (half an hour of one CPU core) or paper.")),
    committee: int = typer.Option(5, "--committee", "-n", min=1, max=MAX_COMMITTEE, help="Committee size."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated member seeds (default 0..n-1)."),
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    options: Optional[str] = typer.Option(None, "--options", help="Backend hyperparameter overrides: JSON object or a YAML file."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 or float64 (default: the preset's)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per training process (default: every core this process may use)."),
    max_train_frames: Optional[int] = typer.Option(None, "--max-train-frames", min=1, help="Use an evenly spaced sample of at most N training frames."),
) -> None:
    """Train a committee (members differ only in their seed) and print members with validation errors.

    Finished members are reused on rerun; a member whose backend crashes is marked failed (the log tail is
    printed) and the others are kept. Exit status 1 if any member failed.
    """
    import json

    from rich.console import Console

    from harness.cli.options import MAX_SEED, check_device, check_range
    from harness.config import read_yaml
    from harness.errors import InputError
    from harness.models.train import train_committee

    check_device(device)
    if dtype not in (None, "float32", "float64"):
        raise InputError(f"--dtype must be float32 or float64, got {dtype!r}")
    overrides = {}
    if options:
        if not options.lstrip().startswith("{") and is_file(options):
            overrides = read_yaml(options) or {}
        else:
            try:
                overrides = json.loads(options)
            except json.JSONDecodeError as exc:
                raise InputError(f"--options: neither a file nor valid JSON ({exc.msg})") from None
        if not isinstance(overrides, dict):
            raise InputError("--options must be a mapping of backend hyperparameters")
    seed_list = None
    if seeds:
        try:
            seed_list = [int(x) for x in seeds.split(",")]
        except ValueError:
            raise InputError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
        for x in seed_list:
            check_range("--seeds", x, 0, MAX_SEED, why="the training codes' 32-bit seeds")
        if len(set(seed_list)) != len(seed_list):
            raise InputError(f"--seeds repeats a seed ({seeds}): members differ only in their seed")

    def report(k, art):
        msg = f"member {k} (seed {art.seed}): {art.status}"
        if art.status == "ok" and "valid_forces_rmse_meV_A" in art.metrics:
            msg += f", valid F RMSE {art.metrics['valid_forces_rmse_meV_A']:.1f} meV/Å"
        err(msg)

    cdir, arts = train_committee(dataset, subset, arch, preset=preset, n=committee, seeds=seed_list,
                                 workspace=workspace, overrides=overrides, device=device, dtype=dtype,
                                 threads=threads, max_train_frames=max_train_frames, on_member=report)
    Console(width=None if Console().is_terminal else 200).print(_table(arts, f"{arch} committee on {subset}"))
    typer.echo(f"committee: {cdir}")
    failed = [a for a in arts if a.status != "ok"]
    for a in failed:
        err(f"member {Path(a.workdir).name} failed: {a.error}")
    if failed:
        raise typer.Exit(1)


@models_app.command("list")
@handle_errors
def list_(
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    curves: bool = typer.Option(False, "--curves", help="Also each member's learning curve: its last points."),
    points: int = typer.Option(5, "--points", min=1, help="With --curves: how many points per member."),
    curves_png: Optional[Path] = typer.Option(None, "--curves-png", help="Write the learning curves of every "
                                              "member as a figure (PNG) to this path."),
) -> None:
    """Every trained member in a workspace with its status and validation errors.

    --curves adds each member's validation learning curve (force and energy RMSE against training wall time
    and epoch or step; the last row is the harness's evaluation of the kept model) and the model file kept.
    """
    from rich.console import Console

    from harness.errors import InputError
    from harness.models.train import list_models

    if not workspace.is_dir():
        raise InputError(f"{workspace}: no such workspace")
    arts = list_models(workspace)
    if not arts:
        err(f"no models in {workspace}")
        return
    console = Console(width=None if Console().is_terminal else 200)
    console.print(_table(arts, f"models in {workspace}"))
    if curves:
        from rich.table import Table

        from harness.models.curves import curve_table

        for a in arts:
            kept = a.kept_model.get("file", a.files.get("model", "-"))
            table = Table(title=f"{a.arch} {a.dataset.get('subset', '?')} {Path(a.workdir).name} ({kept})",
                          title_justify="left")
            for col in ("at", "wall s", "valid E meV/atom", "valid F meV/Å"):
                table.add_column(col)
            for row in curve_table(a.curve, last=points):
                table.add_row(*row)
            if not a.curve:
                table.add_row("no curve recorded", "-", "-", "-")
            console.print(table)
    if curves_png is not None:
        from harness.report.data import learning_curves
        from harness.report.figures import fig_learning_curves

        df = learning_curves(workspace)
        if not len(df):
            err("no member in this workspace recorded a learning curve")
            raise typer.Exit(1)
        curves_png.parent.mkdir(parents=True, exist_ok=True)
        typer.echo(f"learning curves: {fig_learning_curves(df, curves_png)}")
