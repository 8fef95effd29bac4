"""GFN-xTB reference via tblite (periodic and isolated; energy, forces, stress)."""

from __future__ import annotations

from typing import Any, Literal

from ase.calculators.calculator import Calculator, all_changes
from pydantic import Field

from harness.config import HarnessModel

__all__ = ["XTBSettings", "XTBOracle", "tblite_version"]


def tblite_version() -> str:
    from importlib.metadata import version

    return version("tblite")


class XTBSettings(HarnessModel):
    """Settings of the tblite calculator (``--reference-options`` for ``--reference xtb``)."""

    method: Literal["GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"] = "GFN2-xTB"
    accuracy: float = Field(1.0, gt=0, description="tblite numerical accuracy (smaller is tighter)")
    electronic_temperature_K: float = Field(300.0, gt=0, description="Fermi smearing temperature")
    max_iterations: int = Field(250, gt=0, description="SCF iteration limit")
    mixer_damping: float = Field(0.4, gt=0, le=1, description="Broyden mixer damping")
    threads: int | None = Field(None, gt=0, description="OpenMP threads (default: leave as set)")
    retry_max_iterations: int = Field(1000, gt=0, description="SCF limit on the safer retry")
    retry_mixer_damping: float = Field(0.1, gt=0, le=1, description="damping on the safer retry")


class XTBOracle:
    """GFN-xTB via ``tblite.ase.TBLite``.

    The retry after a failed SCF keeps the Hamiltonian and electronic temperature (so labels stay
    comparable) and only makes convergence safer: stronger damping, more iterations.
    """

    def __init__(self, settings: XTBSettings | None = None):
        self.settings = settings or XTBSettings()
        self.name = self.settings.method

    def make_calculator(self, *, safer: bool = False) -> Calculator:
        from tblite.ase import TBLite

        s = self.settings
        calc = TBLite(
            method=s.method,
            accuracy=s.accuracy,
            electronic_temperature=s.electronic_temperature_K,
            max_iterations=s.retry_max_iterations if safer else s.max_iterations,
            mixer_damping=s.retry_mixer_damping if safer else s.mixer_damping,
            verbosity=0,
        )
        if s.threads is not None:
            return _Threaded(calc, s.threads)
        return calc

    def provenance(self) -> dict[str, Any]:
        settings = self.settings.model_dump(exclude={"threads"})
        return {"method": self.settings.method, "code": "tblite", "version": tblite_version(), "settings": settings}


class _Threaded(Calculator):
    """Run a calculator's ``calculate`` under an OpenMP thread limit."""

    def __init__(self, inner: Calculator, threads: int):
        super().__init__()
        self.inner = inner
        self.threads = threads
        self.implemented_properties = list(inner.implemented_properties)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from threadpoolctl import threadpool_limits

        super().calculate(atoms, properties, system_changes)
        with threadpool_limits(limits=self.threads, user_api="openmp"):
            self.inner.calculate(self.atoms, list(properties), all_changes)
        self.results = dict(self.inner.results)
