"""``harness al run|status``: committee active learning as a resumable task graph, and where a campaign stands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors
from harness.cli.sweep import Execution, execution_options, exit_for, print_plan, run_and_summarise

app = typer.Typer(help="Committee active learning: train → explore → select → relabel, generation after generation.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


@app.command("run")
@execution_options
@handle_errors
def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="AL spec (YAML), e.g. protocols/al/deepmd-mini.yaml."),
    workspace: Path = typer.Option(Path("runs/al"), "--workspace", "-w", help="Workspace folder."),
    execution: Execution = Execution(),
) -> None:
    """Plan every generation of the campaign as one task graph and run what is not done yet.

    Per chain (initial subset) and generation: train the committee on the current set, explore with the
    primary member (the committee evaluated every check_interval steps; stop at the first sigma2_F above
    the threshold, a stretched bond or a density outside the window), select one frame per trajectory
    (first above the threshold, else the largest sigma2_F), relabel with the oracle, append with tags, and
    (with a validation section) score the committee's Q against the reference. Rerunning resumes: killed
    mid-generation, it continues where it stopped; nothing finished is trained, run or labelled twice.
    Exit status 1 if any task failed.
    """
    from harness.al.run import run_al

    if execution.plan_only:
        from harness.al.plan import plan_al
        from harness.al.spec import load_al

        print_plan(plan_al(*load_al(spec_path), workspace))
        return
    counts, name = run_and_summarise("AL campaign", spec_path, workspace, runner=run_al, **execution.run_kwargs())
    _print_generations(workspace, name)
    exit_for(counts)


def _print_generations(workspace: Path, campaign: str | None, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    import numpy as np

    from harness.al.run import al_tables
    from harness.report.build import interval_text

    console = console or Console(width=None if Console().is_terminal else 160)
    gen = al_tables(workspace, campaign)["generations"]
    if not len(gen):
        console.print("no AL generations in this workspace")
        return
    t = Table(title="AL generations")
    cols = ["campaign", "chain", "generation", "members", "n_train", "explored", "hits", "labelled", "oracle calls",
            "Q", "Q 95 %", "t_stab NPT (ps)"]
    for c in cols:
        t.add_column(c)

    def fmt(v, f="{}"):
        return "" if v is None or v != v else f.format(v)

    for r in gen.to_dict("records"):
        q = "" if r["Q"] is None or r["Q"] != r["Q"] else f"{r['Q']:.2f} ± {r['Q_se']:.2f}"
        t.add_row(r["campaign"], r["chain"], str(r["generation"]), f"{r['members_trained']}/{r['members']}",
                  fmt(r["n_train"], "{:.0f}"), f"{r['explore_done']}/{r['explore_planned']}" if r["explore_planned"] else "",
                  str(r["threshold_hits"]) if r["explore_planned"] else "",
                  fmt(r["labelled"], "{:.0f}") + (f" ({r['label_failed']:.0f} failed)" if r["label_failed"] == r["label_failed"]
                                        and r["label_failed"] else ""),
                  fmt(r["oracle_calls"], "{:.0f}"), q,
                  interval_text(*(np.nan if r.get(k) is None else r[k] for k in ("Q_low", "Q_high"))),
                  fmt(r["t_stab_npt_ps"], "{:.3g}"))
    console.print(t)


@app.command("status")
@handle_errors
def status(
    workspace: Path = typer.Option(Path("runs/al"), "--workspace", "-w", help="Workspace folder."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Only this campaign (by name)."),
) -> None:
    """Task counts and failures, then per generation: members trained, exploration runs, threshold hits,
    frames labelled, oracle calls, Q and t_stab; the AL frame files so far."""
    from harness.cli.sweep import print_task_counts
    from harness.errors import InputError
    from harness.workflow.store import Store

    if not (workspace / "harness.sqlite").exists():
        raise InputError(f"{workspace}: no harness.sqlite (run `harness al run SPEC --workspace {workspace}`)")
    console = print_task_counts(workspace, campaign)
    _print_generations(workspace, campaign, console)
    from harness.al.contract import ALSetParams
    from harness.workflow.contract import stored_results

    store = Store(workspace / "harness.sqlite")
    for r in stored_results(store.tasks(kind="al_set", status="done", sweep=campaign), ALSetParams):
        if r.al_frames:
            console.print(f"{r.campaign}/{r.chain} after generation {r.generation}: {r.n_total} AL frames "
                          f"in {r.al_frames}")
    store.close()


@app.command("export")
@handle_errors
def export(
    workspace: Path = typer.Option(Path("runs/al"), "--workspace", "-w", help="Workspace folder."),
    output: Path = typer.Option(..., "--output", "-o", help="extxyz file to write (.gz compresses)."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Campaign name (needed if several)."),
    chain: Optional[str] = typer.Option(None, "--chain", help="Initial subset of the chain (needed if several)."),
) -> None:
    """Write a chain's AL frames (every generation's labelled frames, with their tags) to OUTPUT, and
    OUTPUT.provenance.json beside it (campaign, generations, per-frame selection, oracle, store keys)."""
    import json

    from harness.errors import InputError
    from harness.io import atomic_path, check_output, read_frames, sha256_file, write_frames
    from harness.provenance import MLIP_GROUPS, run_context
    from harness.workflow.store import Store

    prov_path = Path(str(output) + ".provenance.json")
    check_output(output)
    check_output(prov_path)
    if not (workspace / "harness.sqlite").exists():
        raise InputError(f"{workspace}: no harness.sqlite (run `harness al run SPEC --workspace {workspace}`)")
    from harness.al.contract import ALSetParams, LabelParams
    from harness.workflow.contract import stored_params
    from harness.workflow.task import result_of

    store = Store(workspace / "harness.sqlite")
    rows = [(row["key"], res) for row in store.tasks(kind="al_set", status="done", sweep=campaign)
            if (res := result_of(ALSetParams, row["result"] or {})) is not None and (chain is None or res.chain == chain)]
    labels = [p for row in store.tasks(kind="label", status="done", sweep=campaign)
              if (p := stored_params(row, LabelParams)) is not None]
    store.close()
    chains = sorted({(r.campaign, r.chain) for _, r in rows})
    if not chains:
        raise InputError(f"{workspace}: no finished AL generation" + (f" in campaign {campaign}" if campaign else "")
                         + (f" for chain {chain}" if chain else ""))
    if len(chains) > 1:
        raise InputError(f"{workspace}: several chains ({', '.join('/'.join(c) for c in chains)}); "
                         "choose one with --campaign and --chain")
    res = max((r for _, r in rows), key=lambda r: r.generation)
    if not res.al_frames:
        raise InputError(f"{'/'.join(chains[0])}: no frame was labelled (see `harness al status -w {workspace}`)")
    frames = read_frames(res.al_frames)
    write_frames(output, frames, inputs=[res.al_frames])
    oracle = labels[0].oracle if labels else None
    per_generation = ("generation", "n_selected", "n_new", "oracle_calls", "failed", "skipped", "frames")
    prov = {"campaign": res.campaign, "chain": res.chain, "generations": sorted(r.generation for _, r in rows),
            "n_frames": len(frames), "output_sha256": sha256_file(output), "oracle": oracle,
            "store": str((workspace / "harness.sqlite").resolve()), "al_set_tasks": [k for k, _ in rows],
            "per_generation": [r.model_dump(mode="json", include=set(per_generation)) for _, r in rows],
            "context": run_context(("core", "reference", *MLIP_GROUPS))}
    with atomic_path(prov_path, inputs=[res.al_frames]) as tmp:
        tmp.write_text(json.dumps(prov, indent=1, default=str) + "\n")
    typer.echo(f"{len(frames)} AL frames of {res.campaign}/{res.chain} (generations "
               f"{', '.join(str(g) for g in prov['generations'])}) → {output}")
