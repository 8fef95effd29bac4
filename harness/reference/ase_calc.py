"""Any ASE calculator as the reference, by import path (``ase:module.Class``) plus keyword options."""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Mapping

from ase.calculators.calculator import Calculator

from harness.errors import InputError

__all__ = ["ASECalculatorOracle", "accepted_options"]

#: keyword arguments of ase.calculators.calculator.Calculator itself, which every subclass passes on
_BASE = {"restart", "ignore_bad_restart_file", "label", "atoms", "directory", "command", "profile"}


def accepted_options(cls: type) -> set[str]:
    """Keyword options a calculator class names: its ``__init__`` parameters (up its MRO) and its
    ``default_parameters`` (what ASE's ``Calculator.set`` accepts)."""
    import inspect

    names = set(_BASE)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            try:
                params = inspect.signature(init).parameters.values()
            except (TypeError, ValueError):
                continue
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    names |= set(getattr(cls, "default_parameters", None) or {})
    return names


def _takes_anything(cls: type) -> bool:
    """True when nothing tells which options the class accepts: a ``**kwargs`` ``__init__`` of its own (below
    ASE's ``Calculator``) and no ``default_parameters``."""
    import inspect

    if getattr(cls, "default_parameters", None):
        return False
    for klass in cls.__mro__:
        if klass is Calculator:
            return False
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return True
        return any(p.kind is p.VAR_KEYWORD for p in params)
    return False


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
        unknown = sorted(set(self.options) - accepted_options(cls))
        if unknown and not _takes_anything(cls):
            raise InputError(f"{role} 'ase:{import_path}': unknown option(s) {', '.join(unknown)}; {class_name} "
                             f"takes {', '.join(sorted(accepted_options(cls))) or 'none'}")

    def make_calculator(self, *, safer: bool = False) -> Calculator:
        """The calculator, built when first needed (naming one runs only its module's import)."""
        try:
            return self.cls(**self.options)
        except Exception as exc:
            raise InputError(f"ase:{self.import_path}: cannot construct with options {self.options} "
                             f"({type(exc).__name__}: {exc})") from None

    def provenance(self) -> dict[str, Any]:
        top = self.cls.__module__.split(".")[0]
        try:
            ver = version(top)
        except PackageNotFoundError:
            ver = getattr(importlib.import_module(top), "__version__", "unknown")
        return {"method": self.import_path, "code": top, "version": ver, "settings": self.options}
