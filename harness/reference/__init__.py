"""Reference oracles: GFN2-xTB via tblite (default) or any ASE calculator by import path."""

from __future__ import annotations

from typing import Any

from harness.config import validate
from harness.errors import InputError
from harness.reference.base import REF_KEYS, FrameRecord, LabelReport, Oracle, label_frames, oracle_key

__all__ = ["make_oracle", "Oracle", "label_frames", "LabelReport", "FrameRecord", "oracle_key", "REF_KEYS"]


def make_oracle(name: str = "xtb", options: dict[str, Any] | str | None = None, *, role: str = "reference") -> Oracle:
    """Build a reference oracle by name.

    Parameters
    ----------
    name
        ``xtb`` (GFN-xTB via tblite; options: :class:`~harness.reference.xtb.XTBSettings`) or
        ``ase:package.module.Class`` (options are the calculator's keyword arguments).
    options
        A dict or a JSON object string.
    role
        What the oracle is to the user, for messages: ``reference`` (``--reference-options``) or the option
        that named it (``--calculator``: errors then speak of ``--calculator-options``).
    """
    if name == "xtb":
        from harness.reference.xtb import XTBOracle, XTBSettings

        return XTBOracle(validate(XTBSettings, options or {}, source="reference options (xtb)"))
    if name.startswith("ase:"):
        import json

        from harness.reference.ase_calc import ASECalculatorOracle

        what = "reference options" if role == "reference" else f"{role}-options"

        if isinstance(options, str):
            try:
                options = json.loads(options) if options.strip() else {}
            except json.JSONDecodeError as exc:
                raise InputError(f"{what}: invalid JSON: {exc.msg} at character {exc.pos}") from None
        if options is not None and not isinstance(options, dict):
            raise InputError(f"{what}: expected a JSON object of keyword arguments")
        return ASECalculatorOracle(name[4:], options, role=role)
    raise InputError(f"unknown reference {name!r}; use 'xtb' or 'ase:package.module.Class'")
