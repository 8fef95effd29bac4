"""Diagnostics tasks of a sweep (its ``diagnostics:`` section), planned beside its validation runs.

* ``vscan`` per committee and volume-scan validation set (depends on the committee's members);
* ``relabel`` → ``traj_errors`` per member on its replica-0 run of the chosen ensemble;
* per out-of-distribution liquid: an NPT ``md`` run of every member under the sweep's protocol with the
  system swapped for that liquid (OPLS-AA-equilibrated start, the protocol's temperature and pressure), and
  with ``liquid_errors_every_ps`` its ``relabel`` → ``traj_errors``; a ``liquid`` task per committee and liquid
  gathers them.
"""

from __future__ import annotations

import re
from dataclasses import replace

from harness.diagnostics.contract import (CalibrationParams, LiquidParams, RelabelParams, TrajErrorsParams,
                                          VScanParams)
from harness.diagnostics.spec import DiagnosticsSpec, LiquidSpec
from harness.diagnostics import tasks as _workers  # noqa: F401  (registers the workers of these kinds)
from harness.errors import InputError
from harness.md.protocol import MDProtocol
from harness.validation.committee import Committee
from harness.validation.context import PlanContext
from harness.validation.plan import ValidationGraph
from harness.workflow.task import Task

__all__ = ["plan_diagnostics", "liquid_protocol", "liquid_slug"]


def liquid_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name)


def liquid_protocol(protocol: MDProtocol, name: str, liquid: LiquidSpec) -> MDProtocol:
    """The protocol with its system replaced by the liquid (named ``<protocol>-<liquid>``)."""
    data = protocol.model_dump(mode="json")
    data["name"] = f"{protocol.name}-{liquid_slug(name)}"
    data["description"] = f"{protocol.name} in {name}: {liquid.description}".strip().rstrip(":")
    data["system"] = {**data["system"], "composition": liquid.counts(), "density_g_cm3": liquid.start_density()}
    return MDProtocol.model_validate(data)


def plan_diagnostics(diag: DiagnosticsSpec, validation: ValidationGraph, members: dict[str, list[Task]],
                     committees: dict[str, Committee], ctx: PlanContext, *, md_batch: int = 1) -> list[Task]:
    """The diagnostics tasks; ``validation`` is the sweep's validation graph (its MD runs are relabelled; the
    liquids run under the plan's protocol); ``md_batch`` batches the liquids' runs as the sweep batches its own."""
    from harness.diagnostics.tasks import validation_frames
    from harness.datasets.spec import dataset_oracle
    from harness.md.protocol import protocol_hash
    from harness.validation.contract import MDParams
    from harness.validation.plan import batch_tasks, placed  # GAP on CPU workers; the reference method always is (see errors)

    chosen = list(members) if diag.committees is None else diag.committees
    unknown = [c for c in chosen if c not in members]
    if unknown:
        raise InputError(f"diagnostics.committees: unknown committee(s) {', '.join(unknown)}; the sweep has "
                         f"{', '.join(members)}")
    protocol, dataset, common = ctx.md_protocol(), ctx.dataset, ctx.worker
    out: list[Task] = []
    for name in diag.volume_scans:
        _, h = validation_frames(dataset, name)
        for cid in chosen:
            c = committees[cid]
            p = VScanParams(**common, dataset=str(dataset), validation_set=name, frames_hash=h, committee=cid,
                            arch=c.arch, subset=c.subset, dilute_g_cm3=diag.dilute_g_cm3,
                            tolerance_meV_atom=diag.baseline_tolerance_meV_atom)
            out.append(placed(p.task({"members": members[cid]}, f"volume scans {name} {cid}"), c.arch))
    oracle = dataset_oracle(dataset, ctx.threads) if (diag.trajectory_errors or diag.liquid_errors_every_ps) else {}

    labels: dict[str, list[Task]] = {}

    def errors(run: Task, member: Task, cid: str, every: float, max_frames: int, composition: str,
               liquid: str | None) -> Task:
        lab = RelabelParams(**common, oracle=oracle, every_ps=every, max_frames=max_frames, composition=composition,
                            liquid=liquid).task({"run": [run]}, run.label.replace("md ", "relabel ", 1))
        err = TrajErrorsParams(**common, liquid=liquid).task({"labels": [lab], "member": [member]},
                                                             run.label.replace("md ", "errors ", 1))
        err = placed(err, committees[cid].arch)
        lab = replace(lab, resources="cpu")
        out.extend([lab, err])
        labels.setdefault(cid, []).append(lab)
        return err

    te = diag.trajectory_errors
    if te is not None:
        for cid in chosen:
            for k, m in enumerate(members[cid]):
                run = validation.runs.get((cid, k, te.ensemble, 0))
                if run is not None:
                    errors(run, m, cid, te.every_ps, te.max_frames, protocol.system.composition, None)
            # the committee's uncertainty against its error on the same frames (a committee of two or more)
            if len(members[cid]) > 1 and labels.get(cid):
                c = committees[cid]
                cal = CalibrationParams(**common, committee=cid, arch=c.arch, subset=c.subset)
                out.append(placed(cal.task({"labels": labels[cid], "members": members[cid]}, f"calibration {cid}"),
                                  c.arch))
    for lname, liquid in diag.liquids.items():
        proto = liquid_protocol(protocol, lname, liquid)
        phash = protocol_hash(proto)
        made, batch = batch_tasks({cid: members[cid] for cid in chosen}, committees, ctx, protocol=proto,
                                  protocol_hash=phash, ensemble="npt", replicas=1, md_batch=md_batch, label=f" {lname}")
        out.extend(made)
        for cid in chosen:
            c = committees[cid]
            runs, errs = [], []
            for k, m in enumerate(members[cid]):
                b = batch.get((cid, k, 0))
                run = placed(MDParams(**common, protocol=proto, protocol_hash=phash, ensemble="npt", replica=0)
                              .task({"member": [m], "batch": [b] if b else []}, f"md npt {lname} {cid} member {k} r0"),
                              c.arch)
                out.append(run)
                runs.append(run)
                if diag.liquid_errors_every_ps:
                    errs.append(errors(run, m, cid, diag.liquid_errors_every_ps, diag.liquid_errors_max_frames,
                                       proto.system.composition, lname))
            summary = LiquidParams(liquid=lname, composition=proto.system.composition, committee=cid, arch=c.arch,
                                   subset=c.subset, horizon_ps=protocol.horizon_ps)
            out.append(summary.task({"runs": runs, "errors": errs}, f"liquid {lname} {cid}"))
    return out
