"""The heating ramp (issue #33 item 3): one stability number per member that needs no horizon.

Every member runs NPT from an OPLS-AA liquid equilibrated at ``start_K`` while the thermostat's target rises
linearly to ``end_K`` at ``rate_K_per_ps`` (MLIP Arena's heating test is the anchor), under the protocol's
pressure, timestep, coupling and validation detectors (bond stretch, the density window, non-finite values). The
temperature at failure, T_fail = start_K + rate × t_stab, is the member's number; a member that reaches ``end_K``
has T_fail ≥ end_K (censored, as t_stab ≥ τ is). The report shows it beside t_stab at the protocol's temperature.

The ramp runs as its own protocol (``<protocol>-ramp-<start>-<end>K-<rate>Kps``: the start temperature, the length
and the end in its hash), so a finished ramp is reused and an edited one runs again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from pydantic import Field, model_validator

from harness.config import HarnessModel
from harness.deadline import Interrupted
from harness.md.detectors import Failure
from harness.md.protocol import MDProtocol
from harness.validation.committee import Committee
from harness.validation.context import PlanContext
from harness.validation.contract import MemberIdentity
from harness.workflow.contract import Deps, TaskResult, WorkerParams, worker
from harness.workflow.task import Task

__all__ = ["HeatingRamp", "RampParams", "RampResult", "ramp_protocol", "plan_ramps", "ramp"]


class HeatingRamp(HarnessModel):
    start_K: float = Field(300.0, gt=0, description="the liquid's temperature at the start (OPLS-AA equilibrated)")
    end_K: float = Field(1000.0, gt=0, description="the target at the end of the ramp")
    rate_K_per_ps: float = Field(gt=0, description="heating rate")
    committees: list[str] | None = Field(None, description="committee ids to ramp (default: all)")

    @model_validator(mode="after")
    def _order(self):
        if self.end_K <= self.start_K:
            raise ValueError(f"end_K ({self.end_K:g}) must exceed start_K ({self.start_K:g})")
        return self

    @property
    def length_ps(self) -> float:
        return (self.end_K - self.start_K) / self.rate_K_per_ps


def ramp_protocol(protocol: MDProtocol, ramp: HeatingRamp) -> MDProtocol:
    """The protocol of the ramp's NPT run: the protocol at ``start_K`` for the ramp's length."""
    data = protocol.model_dump(mode="json")
    length = ramp.length_ps
    data.update(name=f"{protocol.name}-ramp-{ramp.start_K:g}-{ramp.end_K:g}K-{ramp.rate_K_per_ps:g}Kps",
                description=f"{protocol.name}: NPT heated {ramp.start_K:g} → {ramp.end_K:g} K at "
                            f"{ramp.rate_K_per_ps:g} K/ps",
                temperature_K=ramp.start_K, horizon_ps=length, equilibration_ps=0.0)
    data["npt"] = {**data["npt"], "length_ps": length}
    data["nvt"] = {**data["nvt"], "length_ps": length}
    return MDProtocol.model_validate(data)


class RampResult(MemberIdentity):
    run_dir: str
    t_stab_ps: float
    failure: Failure | None = None
    start_K: float
    end_K: float
    rate_K_per_ps: float
    failure_temperature_K: float | None = Field(None, description="the target temperature at the failure; None: "
                                                "the member reached end_K (T_fail ≥ end_K, censored)")
    ns_per_day: float = 0.0


class RampParams(WorkerParams):
    KIND: ClassVar[str] = "ramp"
    KEY_NAME: ClassVar[str] = "harness.validation.ramp:ramp"
    RESULT: ClassVar[type[TaskResult]] = RampResult
    DEPS: ClassVar[dict[str, tuple[str, ...]]] = {"member": ("train", "model")}

    protocol: MDProtocol
    protocol_hash: str
    ramp: HeatingRamp


@worker(RampParams)
def ramp(p: RampParams, deps: Deps) -> RampResult:
    """One member's heating ramp (resumes from its checkpoint like every run)."""
    from harness.md.launch import launch, prepare_run
    from harness.md.protocol import protocol_hash
    from harness.models.load import load_model
    from harness.workflow.contract import check_hash
    from harness.workflow.run import set_threads

    check_hash(f"MD protocol {p.protocol.name}", p.protocol_hash, protocol_hash(p.protocol))
    set_threads(p.threads)
    (member,) = deps["member"]
    loaded = load_model(member.model, device=p.device)
    run = prepare_run(p.protocol, "npt", member.run_name, workspace=p.workspace, species=loaded.species,
                      label=member.workdir or member.run_name, model_stamp=member.stamp)
    run = replace(run, settings=replace(run.settings, final_temperature_K=p.ramp.end_K))
    result = launch(run, loaded.calculator)
    if not result.completed:
        raise Interrupted(f"{run.outdir}: walltime reached at step {result.n_steps}; the next run resumes it")
    t_fail = run.settings.target_K(result.failure["step"]) if result.failure else None
    files = [run.outdir / f for f in ("result.json", "thermo.parquet", "trajectory.h5md")]
    return RampResult(**member.identity(), run_dir=str(run.outdir), t_stab_ps=result.t_stab_ps,
                      failure=result.failure, start_K=p.ramp.start_K, end_K=p.ramp.end_K,
                      rate_K_per_ps=p.ramp.rate_K_per_ps, failure_temperature_K=t_fail,
                      ns_per_day=result.ns_per_day, outputs=[str(f) for f in files if f.exists()])


def plan_ramps(spec: HeatingRamp, members: dict[str, list[Task]], committees: dict[str, Committee],
               ctx: PlanContext) -> list[Task]:
    """One ``ramp`` task per member of the chosen committees (all by default)."""
    from harness.errors import InputError
    from harness.md.protocol import protocol_hash
    from harness.validation.plan import placed

    chosen = list(members) if spec.committees is None else spec.committees
    unknown = [c for c in chosen if c not in members]
    if unknown:
        raise InputError(f"heating_ramp.committees: unknown committee(s) {', '.join(unknown)}; the sweep has "
                         f"{', '.join(members)}")
    proto = ramp_protocol(ctx.md_protocol(), spec)
    phash = protocol_hash(proto)
    out = []
    for cid in chosen:
        for k, m in enumerate(members[cid]):
            params = RampParams(**ctx.worker, protocol=proto, protocol_hash=phash, ramp=spec)
            out.append(placed(params.task({"member": [m]}, f"ramp {spec.start_K:g}-{spec.end_K:g} K {cid} member {k}"),
                              committees[cid].arch))
    return out
