"""MD protocols (``protocols/*.yaml``): the validation runs of SCIENCE.md §5 as data.

Every field carries its unit in its name; unknown keys, missing keys and non-positive values are
rejected with the file, line and key.

:class:`RunSpec` is what any harness MD run is configured by (temperature, pressure, timestep, NPT
coupling, outputs, detectors); :class:`MDProtocol` (validation: NPT then NVT, scored) and the AL
exploration (:class:`harness.al.spec.ExplorationSpec`: NPT from several starts) both extend it, and
both build their starting boxes with :func:`harness.md.start.equilibrated_frames` from a
:class:`StartSpec`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from harness.config import HarnessModel, load_yaml
from harness.md.detectors import DetectorSpec
from harness.md.runner import CHECKPOINT_INTERVAL, FRAME_INTERVAL, THERMO_INTERVAL, RunSettings
from harness.observables.analysis import AnalysisSpec

__all__ = ["MDProtocol", "RunSpec", "StartSpec", "SystemSpec", "NPTSpec", "OutputSpec", "DetectorSpec",
           "load_protocol", "protocol_hash"]


class StartSpec(HarnessModel):
    """How a starting liquid is made: packed with packmol, relaxed and equilibrated with OPLS-AA (OpenMM)."""

    density_g_cm3: float = Field(gt=0, description="packing density of the NPT start")
    classical_equilibration_ps: float = Field(10.0, ge=0, description="OPLS-AA NVT at the run temperature")
    classical_cutoff_nm: float = Field(0.55, gt=0)
    seed: int = Field(0, ge=0)


class SystemSpec(StartSpec):
    """The starting liquid of a validation protocol: one composition."""

    composition: str = Field(description="e.g. EC=16,EMC=32")
    starts: Literal["shared", "per_member"] = Field(
        "shared", description="shared: every model's run of a replica starts from the same liquid (the comparison "
        "is between models); per_member: each member's runs start from a liquid of their own (independent starts: "
        "the spread between members then includes the start)")

    def hash_dump(self) -> dict:
        """The dump that hashes runs and starts: ``starts`` left out at its default (``shared``), so protocols
        hash as they did before per-member starts existed and finished runs stay valid."""
        data = self.model_dump(mode="json")
        if data.get("starts") == "shared":
            del data["starts"]
        return data


class NPTSpec(HarnessModel):
    length_ps: float = Field(gt=0)
    tdamp_fs: float = Field(50.0, gt=0)
    pdamp_fs: float = Field(500.0, gt=0)


class NVTSpec(HarnessModel):
    length_ps: float = Field(gt=0)
    thermostat: Literal["langevin", "bussi"] = Field(
        "bussi", description="bussi (global stochastic velocity rescaling; leaves the dynamics, hence diffusion, "
        "intact) or langevin (friction on every atom slows molecular diffusion: an option only)")
    friction_per_ps: float = Field(1.0, gt=0, description="Langevin friction")
    tdamp_fs: float = Field(100.0, gt=0, description="Bussi coupling time")
    density_g_cm3: float | Literal["reference"] = Field(
        "reference", description="fixed density, or 'reference': the reference committee's mean NPT density")


class OutputSpec(HarnessModel):
    frame_interval: int = Field(FRAME_INTERVAL, gt=0, description="steps between trajectory frames")
    thermo_interval: int = Field(THERMO_INTERVAL, gt=0, description="steps between thermo rows")
    checkpoint_interval: int = Field(CHECKPOINT_INTERVAL, gt=0, description="steps between checkpoints")


class RunSpec(HarnessModel):
    """The MD configuration every harness run shares: thermodynamic state, integrator, NPT coupling,
    outputs and failure detectors (thresholds: :data:`harness.md.detectors.RULES` unless overridden)."""

    temperature_K: float = Field(gt=0)
    pressure_atm: float = Field(gt=0)
    timestep_fs: float = Field(gt=0, le=5)
    npt: NPTSpec
    output: OutputSpec = OutputSpec()
    detectors: DetectorSpec = DetectorSpec()

    def _common(self) -> dict:
        o = self.output
        return dict(temperature_K=self.temperature_K, timestep_fs=self.timestep_fs, frame_interval=o.frame_interval,
                    thermo_interval=o.thermo_interval, checkpoint_interval=o.checkpoint_interval)

    def settings(self, ensemble: Literal["npt", "nvt"] = "npt") -> RunSettings:
        if ensemble != "npt":
            raise ValueError(f"{type(self).__name__} runs NPT only, not {ensemble}")
        return RunSettings("npt", length_ps=self.npt.length_ps, pressure_atm=self.pressure_atm,
                           tdamp_fs=self.npt.tdamp_fs, pdamp_fs=self.npt.pdamp_fs, **self._common())


class MDProtocol(RunSpec):
    name: str
    description: str = ""
    horizon_ps: float = Field(gt=0, description="tau of the Q score")
    equilibration_ps: float = Field(ge=0, description="discarded before observables")
    system: SystemSpec
    nvt: NVTSpec
    analysis: AnalysisSpec = Field(AnalysisSpec(), description="observables and Q settings (not part of the hash)")

    @model_validator(mode="after")
    def _within_runs(self):
        shortest = min(self.npt.length_ps, self.nvt.length_ps)
        if self.horizon_ps > shortest * (1 + 1e-9):
            raise ValueError(f"horizon_ps {self.horizon_ps:g} is longer than the shortest run ({shortest:g} ps): no "
                             "model could reach it (S = min(1, t_stab/horizon))")
        if self.equilibration_ps >= shortest:
            raise ValueError(f"equilibration_ps {self.equilibration_ps:g} leaves nothing of the shortest run "
                             f"({shortest:g} ps) for the observables")
        return self

    def settings(self, ensemble: Literal["npt", "nvt"]) -> RunSettings:
        if ensemble == "npt":
            return super().settings("npt")
        return RunSettings("nvt", length_ps=self.nvt.length_ps, thermostat=self.nvt.thermostat,
                           friction_per_ps=self.nvt.friction_per_ps, tdamp_fs=self.nvt.tdamp_fs, **self._common())


def load_protocol(path: str | Path) -> MDProtocol:
    return load_yaml(path, MDProtocol)


def protocol_hash(protocol: MDProtocol) -> str:
    """Hash of what determines the trajectories; the analysis section is left out (re-analysing never
    reruns MD)."""
    # thresholds left to their rule set are not written out: a protocol hashes as it did before they
    # became configurable, so finished runs stay valid
    data = protocol.model_dump(mode="json", exclude={"analysis"})
    data["detectors"] = {k: v for k, v in data["detectors"].items() if v is not None}
    # likewise the shared start, the default before per-member starts existed
    data["system"] = protocol.system.hash_dump()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
