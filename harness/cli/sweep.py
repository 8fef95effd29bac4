"""``harness sweep run|status``: ablation sweeps on Dask with resume, and what happened in a workspace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors

app = typer.Typer(help="Ablation sweeps: subsets × architectures → committees → MD → Q.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})


# options shared by every command that executes a task graph (sweep, al and transfer run): added to the command
# by @execution_options, which hands them to it as one Execution
SCHEDULER = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:port); "
                         "default: an embedded LocalCluster.")
WORKERS = typer.Option(None, "--workers", min=1, help="LocalCluster worker processes (default: CPU cores / "
                       "threads_per_task).")
SLURM = typer.Option(None, "--slurm", help="SLURM cluster spec (YAML; see protocols/clusters/slurm-example.yaml): "
                     "workers run in SLURM jobs.")
GPU_WORKERS = typer.Option(None, "--gpu-workers", min=0, help="GPU workers of the embedded cluster: tasks on "
                           "device cuda (MACE/DeePMD training and MD) run there, N > 1 lets N of them share the GPU; "
                           "the other tasks run on the CPU workers (default: 1 when the spec's device is cuda, else 0).")
WALLTIME = typer.Option(None, "--walltime-min", min=0.5, help="Stop after this many minutes (a piece of a long job "
                        "on a short or preemptible queue): MD checkpoints, MACE/DeePMD training is stopped, nothing "
                        "new starts; exit status 3. Run the same command again to continue where it stopped.")
SYNC = typer.Option(False, "--sync", help="Run every task in this process, one at a time (debugging).")
PLAN = typer.Option(False, "--plan", help="Print the task graph and exit.")


@dataclass(frozen=True)
class Execution:
    """How a command executes its task graph (the options of :func:`execution_options`)."""

    scheduler: Optional[str] = None
    workers: Optional[int] = None
    slurm: Optional[Path] = None
    gpu_workers: Optional[int] = None
    walltime_min: Optional[float] = None
    sync: bool = False
    plan_only: bool = False

    def run_kwargs(self) -> dict:
        """The keyword arguments of :func:`run_and_summarise` (all but ``plan_only``)."""
        return {f: getattr(self, f) for f in ("scheduler", "workers", "sync", "slurm", "gpu_workers", "walltime_min")}


_EXECUTION = (("scheduler", Optional[str], SCHEDULER), ("workers", Optional[int], WORKERS),
              ("slurm", Optional[Path], SLURM), ("gpu_workers", Optional[int], GPU_WORKERS),
              ("walltime_min", Optional[float], WALLTIME), ("sync", bool, SYNC), ("plan_only", bool, PLAN))


def execution_options(command):
    """Give a ``run`` command the execution options (after its own): it is called with them as one
    ``execution: Execution`` argument."""
    import functools
    import inspect
    import typing

    hints = typing.get_type_hints(command)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(command).parameters.values() if p.name != "execution"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, annotation, option in _EXECUTION]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        execution = Execution(**{name: kwargs.pop(name) for name, _, _ in _EXECUTION})
        return command(*args, execution=execution, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *added])
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
    del wrapper.__wrapped__  # typer must read the signature above, not the command's
    return wrapper


def print_plan(tasks) -> None:
    for t in tasks:
        typer.echo(f"{t.key}  {t.label}  <- {len(t.dep_keys)} deps")


def run_and_summarise(what: str, spec_path: Path, workspace: Path, **kwargs) -> tuple[dict[str, int], str]:
    """Run a task graph with the progress bar, print the counts and every failure with its reason."""
    from harness.workflow.store import Store

    counts, name = run_with_progress(spec_path, workspace, **kwargs)
    typer.echo(f"{what} {name}: {counts['done']} done, {counts['cached']} cached, {counts['failed']} failed, "
               f"{counts['skipped']} skipped; store {workspace / 'harness.sqlite'}")
    if counts.get("interrupted") or counts.get("waiting"):
        typer.echo(f"walltime reached: {counts.get('interrupted', 0)} task(s) checkpointed, {counts.get('waiting', 0)} "
                   "not started; run the same command again to continue")
    store = Store(workspace / "harness.sqlite")
    for row in store.tasks(sweep=name, status="failed"):
        err(f"failed: {row['label']}: {row['error']}")
    store.close()
    return counts, name


@app.command("run")
@execution_options
@handle_errors
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Sweep spec (YAML), e.g. protocols/sweeps/ci.yaml."),
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    only: Optional[str] = typer.Option(None, "--only", help="Run only the tasks of these kinds (comma-separated, "
                                       "e.g. train) and what they depend on; the rest of the sweep is left as it is."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda in place of the spec's `device` (the "
                                         "same spec on a GPU node; tasks on another device are other tasks)."),
    execution: Execution = Execution(),
) -> None:
    """Plan the sweep (content-hashed tasks), skip what is already done in WORKSPACE/harness.sqlite, run the rest.

    Rerunning the same spec is resume: finished tasks (with unchanged output files) are never recomputed;
    changing a parameter reruns only what depends on it. A failing task is recorded with its error and
    the sweep goes on; its dependents are skipped. Exit status 1 if any task failed.
    """
    if device is not None:
        from harness.cli.options import check_device

        check_device(device)
    if execution.plan_only:
        from harness.sweep.plan import plan_sweep
        from harness.sweep.spec import load_sweep

        spec, inputs = load_sweep(spec_path)
        if device is not None:
            spec = spec.model_copy(update={"device": device})
        print_plan(plan_sweep(spec, inputs, workspace))
        return
    counts, _ = run_and_summarise("sweep", spec_path, workspace, **execution.run_kwargs(),
                                  only={k.strip() for k in only.split(",") if k.strip()} if only else None,
                                  device=device)
    exit_for(counts)


def exit_for(counts: dict[str, int]) -> None:
    """Exit 1 if a task failed, else 3 if the walltime left work for the next run."""
    if counts["failed"]:
        raise typer.Exit(1)
    if counts.get("interrupted") or counts.get("waiting"):
        raise typer.Exit(3)


def run_with_progress(spec_path: Path, workspace: Path, runner=None, **kwargs) -> tuple[dict[str, int], str]:
    """``runner`` (default ``run_sweep``; also ``run_al``) with a live progress bar (tasks finished of total,
    last event)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.sweep.run import run_sweep

    run_sweep = runner or run_sweep

    # the bar appears with the first task event: a spec that fails validation or planning prints only its error
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[last]}"), transient=False)
    bar_id = None

    def progress(ev: dict) -> None:
        nonlocal bar_id
        if bar_id is None:
            bar.start()
            bar_id = bar.add_task(Path(spec_path).stem, total=None, last="")
        bar.update(bar_id, total=ev["total"], completed=ev["finished"], last=f"{ev['status']}: {ev['label']}")

    try:
        return run_sweep(spec_path, workspace, progress=progress, say=err, **kwargs)
    finally:
        if bar_id is not None:
            bar.stop()


@app.command("status")
@handle_errors
def status(
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Only this sweep (by name)."),
) -> None:
    """Task counts by kind and status, every failure with its reason, and the Q of scored committees."""
    from rich.table import Table

    from harness.errors import InputError
    from harness.workflow.store import Store

    path = workspace / "harness.sqlite"
    if not path.exists():
        raise InputError(f"{workspace}: no harness.sqlite (run `harness sweep run SPEC --workspace {workspace}`)")
    console = print_task_counts(workspace, sweep)
    import numpy as np

    from harness.report.build import interval_text
    from harness.validation.contract import ScoreParams
    from harness.workflow.contract import stored_results

    store = Store(path)
    scores = stored_results(store.tasks(kind="score", status="done", sweep=sweep), ScoreParams)
    store.close()
    if scores:
        t = Table(title="Q per committee (mean ± SE over members; Q's 95 % interval)")
        for col in ("committee", "S", "R", "V", "Q", "Q 95 %"):
            t.add_column(col)
        for r in scores:
            terms = [getattr(r.committee, x) for x in "SRVQ"]
            q = r.committee.Q
            sp = r.state_point
            t.add_row(r.committee_id + (f" @ {sp.label}" if sp is not None and not sp.primary else ""),
                      *(f"{x.mean:.3f} ± {x.sem:.3f}" for x in terms),
                      interval_text(*(np.nan if v is None else v for v in (q.low, q.high))))
        console.print(t)


def print_task_counts(workspace: Path, sweep: str | None):
    """Task counts by kind and status, failures with reasons, skipped/superseded/running notes; the console."""
    from rich.console import Console
    from rich.table import Table

    from harness.workflow.store import STATUSES, Store

    store = Store(workspace / "harness.sqlite")
    counts = store.counts(sweep)
    kinds = ["train", "md", "ref_density", "observe", "score"]
    kinds += sorted({k for k, _ in counts} - set(kinds))
    table = Table(title=f"tasks in {workspace}" + (f" (sweep {sweep})" if sweep else ""))
    table.add_column("kind")
    for s in STATUSES:
        table.add_column(s, justify="right")
    for k in kinds:
        if any((k, s) in counts for s in STATUSES):
            table.add_row(k, *(str(counts.get((k, s), "")) for s in STATUSES))
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table)
    for row in store.tasks(status="failed", sweep=sweep):
        console.print(f"[red]failed[/red] {row['label']}: {row['error']}")
    skipped = store.tasks(status="skipped", sweep=sweep)
    if skipped:
        console.print(f"{len(skipped)} skipped because a dependency failed")
    old = sum(n for (k, s), n in counts.items() if s == "superseded")
    if old:
        console.print(f"{old} earlier tasks superseded by changed parameters (kept for provenance)")
    running = store.tasks(status="running", sweep=sweep)
    if running:
        console.print(f"{len(running)} marked running (in progress, or interrupted: running the same spec again resumes them)")
    store.close()
    return console
