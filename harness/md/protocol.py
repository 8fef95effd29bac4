"""MD protocols (``protocols/*.yaml``): the validation runs of SCIENCE.md §5 as data.

Every field carries its unit in its name; unknown keys, missing keys and non-positive values are
rejected with the file, line and key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness.config import HarnessModel, load_yaml
from harness.md.runner import RunSettings
from harness.observables.analysis import AnalysisSpec

__all__ = ["MDProtocol", "load_protocol", "protocol_hash"]


class SystemSpec(HarnessModel):
    """The starting liquid: packed with packmol, relaxed and equilibrated with OPLS-AA (OpenMM)."""

    composition: str = Field(description="e.g. EC=16,EMC=32")
    density_g_cm3: float = Field(gt=0, description="packing density of the NPT start")
    classical_equilibration_ps: float = Field(10.0, ge=0, description="OPLS-AA NVT at the run temperature")
    classical_cutoff_nm: float = Field(0.55, gt=0)
    seed: int = Field(0, ge=0)


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
    frame_interval: int = Field(100, gt=0, description="steps between trajectory frames")
    thermo_interval: int = Field(10, gt=0, description="steps between thermo rows")
    checkpoint_interval: int = Field(2000, gt=0, description="steps between checkpoints")


class DetectorSpec(HarnessModel):
    rules: Literal["validation", "active_learning"] = "validation"
    interval: int = Field(10, gt=0, description="steps between checks")
    patience: int = Field(1, gt=0, description="consecutive failing checks before a detector fires")
    bond_length_method: Literal["gfn2", "mmff"] = "gfn2"


class MDProtocol(HarnessModel):
    name: str
    description: str = ""
    temperature_K: float = Field(gt=0)
    pressure_atm: float = Field(gt=0)
    timestep_fs: float = Field(gt=0, le=5)
    horizon_ps: float = Field(gt=0, description="tau of the Q score")
    equilibration_ps: float = Field(ge=0, description="discarded before observables")
    system: SystemSpec
    npt: NPTSpec
    nvt: NVTSpec
    output: OutputSpec = OutputSpec()
    detectors: DetectorSpec = DetectorSpec()
    analysis: AnalysisSpec = Field(AnalysisSpec(), description="observables and Q settings (not part of the hash)")

    def settings(self, ensemble: Literal["npt", "nvt"]) -> RunSettings:
        o = self.output
        common = dict(temperature_K=self.temperature_K, timestep_fs=self.timestep_fs, frame_interval=o.frame_interval,
                      thermo_interval=o.thermo_interval, checkpoint_interval=o.checkpoint_interval)
        if ensemble == "npt":
            return RunSettings("npt", length_ps=self.npt.length_ps, pressure_atm=self.pressure_atm,
                               tdamp_fs=self.npt.tdamp_fs, pdamp_fs=self.npt.pdamp_fs, **common)
        return RunSettings("nvt", length_ps=self.nvt.length_ps, thermostat=self.nvt.thermostat,
                           friction_per_ps=self.nvt.friction_per_ps, tdamp_fs=self.nvt.tdamp_fs, **common)


def load_protocol(path: str | Path) -> MDProtocol:
    return load_yaml(path, MDProtocol)


def protocol_hash(protocol: MDProtocol) -> str:
    """Hash of what determines the trajectories; the analysis section is left out (re-analysing never
    reruns MD)."""
    data = protocol.model_dump(mode="json", exclude={"analysis"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
