"""Any ASE calculator as the reference, by import path (``ase:module.Class``) plus keyword options."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Mapping

from ase.calculators.calculator import Calculator

from harness.errors import InputError

__all__ = ["ASECalculatorOracle"]


class ASECalculatorOracle:
    """A reference oracle that builds ``module.Class(**options)`` for every frame.

    For codes with their own input files (CASTEP, ORCA, ...) pass their usual options; the
    harness does not translate them. The retry after a failure uses the same settings.
    """

    def __init__(self, import_path: str, options: Mapping[str, Any] | None = None, *, role: str = "reference"):
        module_name, _, class_name = import_path.rpartition(".")
        if not module_name or not class_name:
            raise InputError(f"{role} 'ase:{import_path}': expected ase:package.module.Class")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"{role} 'ase:{import_path}': cannot import module {module_name} ({exc})") from None
        cls = getattr(module, class_name, None)
        if cls is None or not isinstance(cls, type) or not issubclass(cls, Calculator):
            raise InputError(f"{role} 'ase:{import_path}': {class_name} is not an ASE Calculator class in {module_name}")
        self.cls = cls
        self.import_path = import_path
        self.options = dict(options or {})
        self.name = class_name
        try:
            self.make_calculator()
        except Exception as exc:
            raise InputError(f"{role} 'ase:{import_path}': cannot construct with options {self.options} ({exc})") from None

    def make_calculator(self, *, safer: bool = False) -> Calculator:
        return self.cls(**self.options)

    def provenance(self) -> dict[str, Any]:
        top = self.cls.__module__.split(".")[0]
        try:
            ver = version(top)
        except PackageNotFoundError:
            ver = getattr(importlib.import_module(top), "__version__", "unknown")
        return {"method": self.import_path, "code": top, "version": ver, "settings": self.options}
