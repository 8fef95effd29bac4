"""Validated configuration models and YAML loading with file:line error messages.

Every configuration object in the harness is a frozen pydantic model that rejects unknown keys
(:class:`HarnessModel`). :func:`load_yaml` reads a YAML file into such a model; when the file does
not validate it raises one :class:`~harness.errors.ConfigError` whose message names the file, the
line, the key path and what was expected, e.g.::

    protocols/mini.yaml:7: md.timestep_fs: Input should be greater than 0 (got -0.5)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import ConfigError

__all__ = ["HarnessModel", "load_yaml", "validate", "format_validation_error", "yaml_lines"]

M = TypeVar("M", bound=BaseModel)


class HarnessModel(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_index(value_node, path + (key,), out)
            # the value's own line is less useful than the key's: keep the key's
            out[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), out)
    return out


def _loc_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """Line of the deepest existing prefix of ``loc`` (a missing key points at its parent)."""
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def format_validation_error(
    err: ValidationError, *, source: str, lines: dict[tuple, int] | None = None, prefix: str = ""
) -> str:
    """Render a pydantic error as ``source[:line]: key.path: message (got value)`` lines."""
    rendered = []
    for e in err.errors(include_url=False):
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        key = ".".join(str(x) for x in loc) or "(top level)"
        if prefix:
            key = f"{prefix}.{key}" if loc else prefix
        line = _loc_line(loc, lines) if lines is not None else None
        where = f"{source}:{line}" if line is not None else source
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key missing"
        got = ""
        if e["type"] not in ("missing", "extra_forbidden") and "input" in e:
            text = repr(e["input"])
            got = f" (got {text if len(text) <= 60 else text[:57] + '...'})"
        rendered.append(f"{where}: {key}: {msg}{got}")
    return "\n".join(rendered)


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Load and validate a YAML file into ``model``.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, or does not validate; the message names the
        file, line and key path.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file; expected a YAML config") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    dup = _duplicate_key(node)
    if dup is not None:
        key, line, first = dup
        raise ConfigError(f"{path}:{line}: duplicate key {key!r} (first at line {first}); YAML would keep only "
                          "the last value")
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of keys at the top level, got {type(data).__name__}")
    lines = _line_index(node) if node is not None else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(path), lines=lines)) from None


def _duplicate_key(node) -> tuple[str, int, int] | None:
    """The first key written twice in one mapping of a composed YAML document: (key, line, first line).
    Keys brought in by a merge (``<<: *anchor``) may be overridden; only keys written out count."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                if k.value in seen:
                    return k.value, k.start_mark.line + 1, seen[k.value]
                seen[k.value] = k.start_mark.line + 1
            found = _duplicate_key(v)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            found = _duplicate_key(v)
            if found:
                return found
    return None


def check_subsets(path: str | Path, dataset: str | Path, named: dict[tuple, list[str]]) -> None:
    """Refuse a spec naming subsets its dataset lacks. ``named``: key path in the spec (e.g. ``("subsets",)``) ->
    the subset names written there; the error names the spec file, line and key."""
    from harness.datasets.spec import load_dataset_spec

    ds = load_dataset_spec(dataset)
    known = {**ds.subsets, **ds.validation}
    for key, names in named.items():
        bad = [n for n in names if n not in known]
        if bad:
            line = line_of(yaml_lines(path), *key)
            raise ConfigError(f"{path}{f':{line}' if line else ''}: {'.'.join(map(str, key))}: unknown subset(s) "
                              f"{', '.join(map(repr, bad))} of {Path(dataset).name}; subsets: {', '.join(ds.subsets)}")


def yaml_lines(path: str | Path) -> dict[tuple, int]:
    """Key path -> 1-based line number for a YAML file (for checks done after validation)."""
    node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    return _line_index(node) if node is not None else {}


def line_of(lines: dict[tuple, int], *path) -> int | None:
    """Line of the deepest existing prefix of ``path``."""
    return _loc_line(tuple(path), lines)


def validate(model: type[M], data: Any, *, source: str) -> M:
    """Validate ``data`` (a dict or a JSON string) into ``model``; errors name ``source``."""
    if isinstance(data, str):
        try:
            data = json.loads(data) if data.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object of options, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source)) from None
