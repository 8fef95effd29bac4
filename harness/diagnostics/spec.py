"""The ``diagnostics:`` section of a sweep spec (SCIENCE.md §9): which analyses run beside Q.

.. code-block:: yaml

    diagnostics:
      volume_scans: [VS-1:2, VS-2:1]       # validation sets of the dataset (rigid-molecule scans)
      trajectory_errors: {ensemble: nvt, every_ps: 20}
      liquids:                              # chemical generalisation: NPT of every member at the protocol's T, P
        EC:DEC: {ratio: "EC:DEC=1:1", basis: volume, n_molecules: 14}
        PC: {composition: PC=12}
      liquid_errors_every_ps: 20
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.config import HarnessModel

__all__ = ["DiagnosticsSpec", "TrajectoryErrorsSpec", "LiquidSpec"]


class TrajectoryErrorsSpec(HarnessModel):
    """Errors along a model's own trajectory (paper §4.4): frames every ``every_ps`` relabelled with the
    dataset's reference method."""

    ensemble: Literal["npt", "nvt"] = "nvt"
    every_ps: float = Field(gt=0, description="time between relabelled frames (paper: 20 ps of a 1 ns run)")
    max_frames: int = Field(50, ge=1, description="at most this many frames per run (the first ones)")


class LiquidSpec(HarnessModel):
    """An out-of-distribution liquid: molecule counts, or a ratio resolved to whole molecules."""

    composition: str | None = Field(None, description="molecule counts, e.g. PC=12")
    ratio: str | None = Field(None, description="e.g. EC:DEC=1:1 (with basis and n_molecules)")
    basis: Literal["mole", "weight", "volume"] = "volume"
    n_molecules: int | None = Field(None, ge=1)
    density_g_cm3: float | None = Field(None, gt=0, description="packing density of the start (default: ideal "
                                        "mixing of the pure liquids' densities)")
    description: str = ""

    @model_validator(mode="after")
    def _one(self):
        if (self.composition is None) == (self.ratio is None):
            raise ValueError("give exactly one of composition or ratio")
        if self.ratio is not None and self.n_molecules is None:
            raise ValueError("a ratio needs n_molecules")
        return self

    def counts(self) -> str:
        """The composition as molecule counts (``EC=9,DEC=5``); an unknown molecule or a ratio no whole
        numbers of molecules reach is an :class:`~harness.errors.InputError`."""
        from harness.systems.composition import Composition, parse_ratio, resolve_ratio
        from harness.systems.molecules import MoleculeRegistry

        registry = MoleculeRegistry()
        if self.composition is not None:
            comp = Composition.parse(self.composition)
            for name in comp.as_dict():
                registry[name]  # noqa: B018 - raises naming the unknown molecule
            return str(comp)
        return str(resolve_ratio(parse_ratio(self.ratio), basis=self.basis, n_molecules=self.n_molecules,
                                 tolerance=0.05, registry=registry))

    def start_density(self) -> float:
        """Packing density: as given, else ideal mixing of the pure liquids (mass / sum of pure volumes)."""
        from harness.systems.composition import Composition
        from harness.systems.molecules import MoleculeRegistry

        if self.density_g_cm3 is not None:
            return self.density_g_cm3
        reg = MoleculeRegistry()
        counts = Composition.parse(self.counts()).as_dict()
        mass = sum(n * reg[m].mass_amu for m, n in counts.items())
        volume = sum(n * reg[m].mass_amu / reg[m].density_g_cm3 for m, n in counts.items())
        return mass / volume


class DiagnosticsSpec(HarnessModel):
    volume_scans: list[str] = Field(default_factory=list, description="validation sets of the dataset holding "
                                    "rigid-molecule volume scans")
    dilute_g_cm3: float = Field(0.3, gt=0, description="scan frames at or below this density are the zero-"
                                "density limit of the baseline shift")
    baseline_tolerance_meV_atom: float = Field(10.0, gt=0, description="a committee whose mean zero-density "
                                               "error exceeds this is reported as shifted")
    trajectory_errors: TrajectoryErrorsSpec | None = None
    liquids: dict[str, LiquidSpec] = Field(default_factory=dict, description="out-of-distribution liquids")
    liquid_errors_every_ps: float | None = Field(None, gt=0, description="relabel frames of each liquid's NPT "
                                                 "run every this many ps (none: t_stab only)")
    liquid_errors_max_frames: int = Field(50, ge=1)
    committees: list[str] | None = Field(None, description="committee ids to diagnose (default: all)")

    @model_validator(mode="after")
    def _check(self):
        for name in self.liquids:
            if not name or any(c in name for c in "/ \\"):
                raise ValueError(f"liquid name {name!r}: no spaces or slashes")
        if len(set(self.volume_scans)) != len(self.volume_scans):
            raise ValueError("volume_scans must not repeat")
        return self

    @property
    def empty(self) -> bool:
        return not (self.volume_scans or self.trajectory_errors or self.liquids)
