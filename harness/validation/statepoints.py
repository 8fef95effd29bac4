"""State points (issue #33): the temperature and composition a validation runs at, as one typed value.

A sweep with ``temperatures_K`` and/or ``compositions`` validates every committee at each point of their grid
(:meth:`harness.sweep.spec.SweepSpec.state_points`); the protocol's own point is always one of them (the
diagnostics and the report's main Q table stay there). :func:`state_protocol` turns the protocol into the
protocol of a state point: the protocol itself at its own point (so its runs keep their keys), else a copy named
``<protocol>-<T>K-<composition>`` with the temperature and the system's composition replaced and the packing
density scaled by the ideal-mixing densities of the two compositions (the protocol's choice of packing, carried
over). Every run, observable and score of a state point is keyed by that protocol; a score also carries its
:class:`StatePoint`.
"""

from __future__ import annotations

import re

from pydantic import Field

from harness.md.protocol import MDProtocol
from harness.workflow.contract import Record

__all__ = ["StatePoint", "state_protocol", "counts", "ideal_density", "base_point"]


class StatePoint(Record):
    """Temperature and composition (molecule counts, ``EC=4,EMC=8``) of a validation; ``primary``: the protocol's
    own point (where the diagnostics and the main Q table are)."""

    temperature_K: float = Field(gt=0)
    composition: str
    primary: bool = False

    @property
    def label(self) -> str:
        return f"{self.temperature_K:g} K, {self.composition}"

    @property
    def slug(self) -> str:
        return f"{self.temperature_K:g}K-" + re.sub(r"[^A-Za-z0-9.-]", "", self.composition.replace("=", "")
                                                    .replace(",", "-"))

    def same(self, other: "StatePoint") -> bool:
        from harness.systems.composition import Composition

        return abs(self.temperature_K - other.temperature_K) < 1e-9 and Composition.parse(
            self.composition).as_dict() == Composition.parse(other.composition).as_dict()

    def mole_fractions(self) -> dict[str, float]:
        from harness.systems.composition import Composition

        c = Composition.parse(self.composition).as_dict()
        n = sum(c.values())
        return {k: v / n for k, v in c.items()}


def counts(text: str) -> str:
    """A composition as canonical molecule counts; an unknown molecule is an :class:`~harness.errors.InputError`."""
    from harness.systems.composition import Composition
    from harness.systems.molecules import MoleculeRegistry

    comp = Composition.parse(text)
    reg = MoleculeRegistry()
    for name in comp.as_dict():
        reg[name]  # noqa: B018 - raises naming the unknown molecule
    return str(comp)


def ideal_density(composition: str) -> float:
    """Ideal mixing of the pure liquids' densities (g/cm³): mass over the sum of the pure volumes."""
    from harness.systems.composition import Composition
    from harness.systems.molecules import MoleculeRegistry

    reg = MoleculeRegistry()
    c = Composition.parse(composition).as_dict()
    mass = sum(n * reg[m].mass_amu for m, n in c.items())
    return mass / sum(n * reg[m].mass_amu / reg[m].density_g_cm3 for m, n in c.items())


def base_point(protocol: MDProtocol) -> StatePoint:
    return StatePoint(temperature_K=protocol.temperature_K, composition=counts(protocol.system.composition),
                      primary=True)


def state_protocol(protocol: MDProtocol, point: StatePoint) -> MDProtocol:
    """The protocol of ``point`` (see the module docstring)."""
    base = base_point(protocol)
    if point.same(base):
        return protocol
    data = protocol.model_dump(mode="json")
    data["name"] = f"{protocol.name}-{point.slug}"
    data["description"] = f"{protocol.name} at {point.label}"
    data["temperature_K"] = point.temperature_K
    scale = ideal_density(point.composition) / ideal_density(base.composition)
    rho = round(protocol.system.density_g_cm3 * scale, 4)
    edge_nm = cell_edge_nm(point.composition, rho)
    if edge_nm < 2 * protocol.system.classical_cutoff_nm:
        raise ValueError(f"{point.composition} packed at {rho:g} g/cm³ makes a cell of {edge_nm:.3f} nm, less than twice "
                         f"the OPLS-AA cut-off ({protocol.system.classical_cutoff_nm:g} nm) its start is equilibrated "
                         "with: give more molecules")
    data["system"] = {**data["system"], "composition": counts(point.composition), "density_g_cm3": rho}
    return MDProtocol.model_validate(data)


def cell_edge_nm(composition: str, density_g_cm3: float) -> float:
    """The edge of the cubic cell that holds ``composition`` at ``density_g_cm3``."""
    from harness.systems.composition import Composition

    grams = Composition.parse(composition).mass_amu() * 1.66053906660e-24
    return (grams / density_g_cm3) ** (1 / 3) * 1e7
