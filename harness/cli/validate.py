"""``harness validate``: the validation MD of any model and its Q against a reference, in one command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors
from harness.cli.observe import ARCH_HELP, MEMBERS_PRESENT_HELP, MODEL_HELP, print_score


@handle_errors
def validate(
    model: list[str] = typer.Option(..., "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    calculator_options: Optional[str] = typer.Option(None, "--calculator-options",
                                                     help="JSON keyword arguments of an ase: calculator."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Reference committee directory (e.g. GAP on Full)."),
    protocol: Path = typer.Option(..., "--protocol", "-p", help="MD protocol (YAML), e.g. protocols/mini.yaml."),
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace folder (md/, store)."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Runs per member and ensemble (Q uses replica 0)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Threads per MD run."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Run MD in parallel on this many local "
                                          "Dask workers (default: one after the other, in this process)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the score as JSON."),
    members_present: bool = typer.Option(False, "--members-present", help=MEMBERS_PRESENT_HELP),
) -> None:
    """Run the NPT and NVT validation MD of a model (and of the reference members that lack it) under a protocol, then print t_stab, observables and Q = S + R + V against the reference committee.

    Everything is recorded in WORKSPACE/harness.sqlite like a sweep and resumes like one: rerunning reuses finished trajectories. NVT runs at the reference's mean NPT density when the protocol says 'reference'.
    """
    from harness.cli.options import check_device
    from harness.errors import InputError
    from harness.md.protocol import load_protocol, protocol_hash
    from harness.models.load import committee_info, committee_sources, sources_from_cli
    from harness.validation.committee import Committee
    from harness.validation.context import PlanContext, PlanInputs
    from harness.validation.plan import model_tasks, plan_validation
    from harness.workflow.run import execute_plan
    from harness.workflow.store import Store

    options = None
    if calculator_options:
        try:
            options = json.loads(calculator_options)
        except json.JSONDecodeError as exc:
            raise InputError(f"--calculator-options: not JSON ({exc})") from None
    check_device(device)
    sources = sources_from_cli(model, arch=arch, options=options, members=False, members_present=members_present)
    refs = committee_sources(reference, members_present=members_present)
    proto = load_protocol(protocol)
    label = Path(model[0]).stem if not model[0].startswith("ase:") else model[0].rsplit(".", 1)[-1]
    ref_info = committee_info(reference)
    mid, rid = f"model:{label}", f"ref:{ref_info['arch']}/{ref_info['subset']}"
    committees = {mid: Committee(id=mid, arch=sources[0].arch or "ase", subset=label, role="external"),
                  rid: Committee(id=rid, arch=ref_info["arch"], subset=ref_info["subset"], role="reference")}
    members = {mid: model_tasks(committees[mid], sources), rid: model_tasks(committees[rid], refs)}
    ctx = PlanContext(workspace=str(workspace.resolve()), threads=threads, device=device,
                      inputs=PlanInputs(protocol=protocol), protocol=proto)
    tasks = [*members[mid], *members[rid],
             *plan_validation(members, committees, rid, ctx, replicas=replicas, score_reference=False).tasks]
    from harness.datasets.spec import params_hash

    name = "validate-" + params_hash({"models": [s.model_dump(mode="json") for s in sources],
                                      "reference": str(reference.resolve()), "protocol": protocol_hash(proto)})[:10]
    err(f"validate: {len(sources)} model(s) against {len(refs)} reference member(s), protocol {proto.name}; "
        f"{len(tasks)} tasks (store {workspace / 'harness.sqlite'}, run {name})")
    counts = execute_plan(tasks, name, workspace, threads_per_task=threads, workers=workers, sync=workers is None,
                          say=err)
    store = Store(workspace / "harness.sqlite")
    try:
        failed = store.tasks(sweep=name, status="failed")
        for row in failed:
            err(f"failed: {row['label']}: {row['error']}")
        score = store.get(next(t.key for t in tasks if t.kind == "score"))
    finally:
        store.close()
    if not score or score["status"] != "done":
        raise InputError(f"validate: no score ({counts['failed']} task(s) failed, {counts['skipped']} skipped; "
                         "see the lines above)")
    res = score["result"]
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    print_score(res, " ".join(model), str(reference), proto.name)
