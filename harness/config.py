"""Validated configuration models and YAML loading with file:line error messages.

Every configuration object in the harness is a frozen pydantic model that rejects unknown keys
(:class:`HarnessModel`); its numbers are numbers (a YAML ``true`` is no temperature) and finite
(``.inf`` and ``.nan`` are refused unless a field says ``allow_inf_nan=True``). :func:`load_yaml`
reads a YAML file into such a model; when the file does not validate it raises one
:class:`~harness.errors.ConfigError` whose message names the file, the line, the key path and what
was expected, e.g.::

    protocols/mini.yaml:7: md.timestep_fs: Input should be greater than 0 (got -0.5)

Every YAML file the harness reads (specs, protocols, ``--options`` files, its own parameter tables)
goes through one reader, :func:`parse_yaml`: PyYAML's safe loader with limits checked on the
composed node graph *before* anything is constructed (aliases expanded: at most
:data:`YAML_MAX_NODES` nodes and :data:`YAML_MAX_DEPTH` levels; at most :data:`YAML_MAX_ALIASES`
alias references; no alias inside the node it names), so an alias "bomb" or a self-referencing
alias is one error line instead of a hang or a ``RecursionError``.
"""

from __future__ import annotations

import copy
import functools
import json
import types
import typing
from collections import abc
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from harness.errors import ConfigError

__all__ = ["HarnessModel", "resolve_path", "load_yaml", "read_yaml", "parse_yaml", "validate", "format_validation_error",
           "yaml_lines", "yaml_node_count", "YAMLLimitError", "YAML_MAX_NODES", "YAML_MAX_DEPTH", "YAML_MAX_ALIASES",
           "MAX_COMMITTEE", "MAX_REPLICAS", "MAX_GENERATIONS", "MAX_STARTS", "MAX_PARALLEL"]

M = TypeVar("M", bound=BaseModel)

#: Most nodes a YAML document may hold with its aliases expanded (the shipped specs: under 1000)
YAML_MAX_NODES = 100_000
#: Deepest nesting of a YAML document, aliases expanded (the shipped specs: 7 levels)
YAML_MAX_DEPTH = 64
#: Most alias references (``*name``) in one YAML document
YAML_MAX_ALIASES = 1_000

# Upper bounds of the counts that multiply planned work: a typo such as ``replicas: 1000000`` would otherwise
# plan millions of tasks (and hang while doing so). The pydantic message names the bound.
#: members of one committee (sweep, reference, fine-tuning, active learning)
MAX_COMMITTEE = 64
#: independent replicas of each MD run
MAX_REPLICAS = 100
#: active-learning generations per chain
MAX_GENERATIONS = 100
#: exploration starts per composition (active learning)
MAX_STARTS = 100
#: trajectories advanced together in one batched MD task; threads of one task; SLURM jobs, cores, processes
MAX_PARALLEL = 1024


class HarnessModel(BaseModel):
    """Base of every config model: immutable, unknown keys rejected, numbers strict.

    Numbers are finite (``allow_inf_nan=False``; a field may say ``Field(allow_inf_nan=True)``) and never
    booleans: YAML's ``true`` would otherwise pass as 1 (``temperature_K: true`` ran at 1 K), also inside
    lists, tuples and mapping values (``temperatures_K: [300, true]``). Fields whose type admits ``bool``
    (or ``Any``) keep it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        # a model validator, not a field validator on "*": that would also wrap the discriminator fields
        # (``kind: Literal[...]``) of tagged unions, which pydantic refuses
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is None or not isinstance(value, (bool, list, tuple, dict)):
                    continue
                where = _bool_as_number(field.annotation, value)
                if where is not None:
                    path = (name, *where)
                    raise PydanticCustomError(
                        "bool_as_number", "{key}: expected a number, not a boolean (true/false)",
                        {"key": ".".join(map(str, path)), "path": path, "value": _at(value, where)})
        return data


_UNIONS = (typing.Union, types.UnionType)


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _admits_bool(tp: Any) -> bool:
    tp = _unwrap(tp)
    if tp is bool or tp is Any or tp is object or isinstance(tp, TypeVar):
        return True
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        return any(_admits_bool(m) for m in typing.get_args(tp))
    if origin is typing.Literal:
        return any(isinstance(v, bool) for v in typing.get_args(tp))
    return False


def _is_number(tp: Any) -> bool:
    tp = _unwrap(tp)
    return isinstance(tp, type) and issubclass(tp, (int, float)) and not issubclass(tp, bool)


def _container_fits(tp: Any, value: Any) -> bool:
    """Whether ``tp`` is a mapping type (``value`` a dict) or a sequence type (``value`` a list or tuple)."""
    origin = typing.get_origin(_unwrap(tp))
    if not isinstance(origin, type):
        return False
    if isinstance(value, dict):
        return issubclass(origin, abc.Mapping)
    return issubclass(origin, abc.Sequence) and not issubclass(origin, (str, bytes))


def _at(value: Any, where: tuple) -> Any:
    for k in where:
        value = value[k]
    return value


def _bool_as_number(tp: Any, value: Any, where: tuple = ()) -> tuple | None:
    """Where in ``value`` a boolean stands for a number of type ``tp`` (a key path: ``()`` for ``value`` itself,
    ``(1,)`` for its second item), or None. Nested models check their own fields; anything else is left to
    pydantic."""
    tp = _unwrap(tp)
    if tp is Any or tp is object or isinstance(tp, TypeVar):
        return None
    origin = typing.get_origin(tp)
    if isinstance(value, bool):
        if _admits_bool(tp):
            return None
        members = typing.get_args(tp) if origin in _UNIONS else (tp,)
        return where if any(_is_number(m) for m in members) else None
    if origin in _UNIONS:
        found = [_bool_as_number(m, value, where) for m in typing.get_args(tp) if _container_fits(m, value)]
        return found[0] if found and all(f is not None for f in found) else None
    if not _container_fits(tp, value):
        return None
    args = typing.get_args(tp)
    if isinstance(value, dict):
        item = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            found = _bool_as_number(item, v, (*where, k))
            if found is not None:
                return found
        return None
    if origin is tuple and args and args[-1] is not Ellipsis:
        items = list(args)
    else:
        items = [args[0] if args else Any] * len(value)
    for i, (item, v) in enumerate(zip(items, value)):
        found = _bool_as_number(item, v, (*where, i))
        if found is not None:
            return found
    return None


class YAMLLimitError(Exception):
    """A YAML document beyond a limit of the reader (:func:`parse_yaml` turns it into a ConfigError naming the
    file); ``line``: the 1-based line of the node or alias at fault, ``message``: what was exceeded."""

    def __init__(self, mark, message: str):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None
        self.message = message


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts, while composing, alias references and nesting depth, and refuses an
    alias inside the node it names (a recursive structure)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._open: set[str] = set()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if event.anchor in self._open:
                raise YAMLLimitError(event.start_mark, f"YAML alias *{event.anchor} refers to a node that contains it "
                                     "(a self-referencing structure); write the values out")
            if self._aliases > YAML_MAX_ALIASES:
                raise YAMLLimitError(event.start_mark, f"more than {YAML_MAX_ALIASES} YAML alias references")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise YAMLLimitError(event.start_mark, f"YAML nesting deeper than {YAML_MAX_DEPTH} levels")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def yaml_node_count(root: yaml.Node, *, max_nodes: int | None = None, max_depth: int | None = None) -> int:
    """Count the nodes of a composed YAML document with its aliases expanded, without expanding them.

    ``max_nodes`` and ``max_depth`` default to :data:`YAML_MAX_NODES` and :data:`YAML_MAX_DEPTH`. Each distinct
    node is visited once (an alias is the node it names: its expanded size is memoised), so
    the check is linear in the text however the aliases multiply.

    Returns
    -------
    int
        The number of nodes the constructed document holds, aliases expanded.

    Raises
    ------
    YAMLLimitError
        At the first (innermost) node whose expansion exceeds ``max_nodes`` nodes or ``max_depth`` levels,
        or at a node reachable from itself (a cycle).
    """
    max_nodes = YAML_MAX_NODES if max_nodes is None else max_nodes
    max_depth = YAML_MAX_DEPTH if max_depth is None else max_depth
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if not done:
            if key in size:
                continue
            if key in open_:
                raise YAMLLimitError(node.start_mark, "YAML alias refers to a node that contains it "
                                     "(a self-referencing structure); write the values out")
            open_.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in size)
            continue
        open_.discard(key)
        size[key] = n = 1 + sum(size[id(k)] for k in kids)
        depth[key] = d = 1 + max((depth[id(k)] for k in kids), default=0)
        if n > max_nodes:
            raise YAMLLimitError(node.start_mark, f"YAML alias expansion exceeds {max_nodes} nodes (this value alone "
                                 f"expands to {n}); write the values out or use fewer aliases")
        if d > max_depth:
            raise YAMLLimitError(node.start_mark, f"YAML nesting deeper than {max_depth} levels with its aliases "
                                 "expanded")
    return size[id(root)]


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file; expected a YAML config") from None


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(f"{where}: invalid YAML: {problem}")


def _parse(text: str, source: str, *, construct: bool = True) -> tuple[Any, dict[tuple, int]]:
    """The constructed document (None when ``construct`` is false or the document is empty) and the line of
    every key path; limits and duplicate keys are checked on the composed node graph before anything is
    constructed. A text parsed before in this process is not parsed again (the line-tracking reader costs ~0.3 s
    for the dataset definition, which one plan reads ~10 times): the caller gets its own copy."""
    data, lines = _parse_cached(text, source, construct)
    return copy.deepcopy(data), dict(lines)


@functools.lru_cache(maxsize=64)
def _parse_cached(text: str, source: str, construct: bool) -> tuple[Any, dict[tuple, int]]:
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        yaml_node_count(node)
        dup = _duplicate_key(node)
        if dup is not None:
            key, line, first = dup
            raise ConfigError(f"{source}:{line}: duplicate key {key!r} (first at line {first}); YAML would keep "
                              "only the last value")
        lines = _line_index(node)  # before construction, which rewrites merge keys (<<) in place
        return (loader.construct_document(node) if construct else None), lines
    except YAMLLimitError as exc:
        raise ConfigError(f"{source}{f':{exc.line}' if exc.line else ''}: {exc.message}") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def parse_yaml(text: str, *, source: str) -> Any:
    """The data of one YAML document (None when empty), read the one way the harness reads YAML.

    Parameters
    ----------
    text
        The document.
    source
        Its name in error messages (a path).

    Raises
    ------
    ConfigError
        ``source:line: ...`` for invalid YAML, a duplicate key, or a document beyond the reader's limits
        (:data:`YAML_MAX_NODES` nodes or :data:`YAML_MAX_DEPTH` levels with aliases expanded,
        :data:`YAML_MAX_ALIASES` aliases, an alias inside the node it names).
    """
    return _parse(text, source)[0]


def read_yaml(path: str | Path) -> Any:
    """The data of a YAML file (None when empty), through :func:`parse_yaml`; errors name the file and line."""
    path = Path(path)
    return parse_yaml(_read_text(path), source=str(path))


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # a complex key (? [a, b]): the constructor refuses it
                continue
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
        if e["type"] == "bool_as_number":  # raised by the model: name the key that holds the boolean
            loc += tuple(e["ctx"]["path"])
            e = {**e, "msg": "expected a number, not a boolean (true/false)", "input": e["ctx"]["value"]}
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
    """Load and validate a YAML file into ``model`` (read by :func:`parse_yaml`).

    Raises
    ------
    ConfigError
        If the file is missing, is not valid YAML, exceeds the reader's limits, or does not validate;
        the message names the file, line and key path.
    """
    path = Path(path)
    data, lines = _parse(_read_text(path), str(path))
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of keys at the top level, got {type(data).__name__}")
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


def yaml_lines(path: str | Path) -> dict[tuple, int]:
    """Key path -> 1-based line number for a YAML file (for checks done after validation)."""
    return _parse(_read_text(Path(path)), str(path), construct=False)[1]


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


def resolve_path(value: str, spec_path: Path, key: str) -> Path:
    """A path a spec names under ``key``: absolute, else relative to the spec's folder, else to the working
    directory; a ConfigError naming the spec, the key and where it looked when none exists."""
    p = Path(value)
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [spec_path.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise ConfigError(f"{spec_path}: {key}: {value} not found (looked in {', '.join(str(c.parent) for c in candidates)})")
