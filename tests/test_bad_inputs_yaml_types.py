"""Bad input, round three (issue #30 items 4 and 5): YAML that would hang or blow up the reader (alias "bombs",
self-referencing aliases) and values of the wrong kind (booleans as numbers, ``.inf``/``.nan``, counts that
would make planning explode) get a one-line error naming the file, line and key, exit status 2, and nothing
left behind. One row per case; plus the reader's own tests and a check that every shipped YAML still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import Field

from harness.cli.main import app
from harness.config import (MAX_COMMITTEE, MAX_GENERATIONS, MAX_REPLICAS, YAML_MAX_ALIASES, YAML_MAX_DEPTH,
                            YAML_MAX_NODES, HarnessModel, YAMLLimitError, load_yaml, parse_yaml, read_yaml, validate,
                            yaml_lines, yaml_node_count)
from harness.errors import ConfigError
from tests.test_bad_inputs import _text

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"


def _bomb(levels: int = 9, width: int = 9, *, key: str = "") -> str:
    """Billion laughs: ``levels`` lists of ``width`` aliases of the list before (width**levels leaves), a few
    hundred bytes. ``key``: nest the lists under this top-level key (indented) instead of at the top."""
    names = "abcdefghijklmnopqrstuvwxyz"
    ind = "  " if key else ""
    lines = [f"{key}:"] if key else []
    lines.append(f"{ind}{names[0]}: &{names[0]} [" + ", ".join(["lol"] * width) + "]")
    for i in range(1, levels):
        lines.append(f"{ind}{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _edit(base: Path, name: str, old: str, new: str, *, paths: bool = False):
    """A copy of ``base`` with ``old`` replaced by ``new`` (``old`` must be there), written as ``name``."""
    def make(d: Path) -> Path:
        text = base.read_text()
        if paths:  # the sweep and AL specs name their dataset and protocol relative to their folder
            text = text.replace("../../datasets/", str(ROOT / "datasets") + "/").replace(
                "../ci.yaml", str(ROOT / "protocols" / "ci.yaml"))
            text = text.split("diagnostics:")[0]
        assert old in text, f"{old!r} not in {base.name}"
        p = d / name
        p.write_text(text.replace(old, new, 1))
        return p
    return make


def _protocol(old: str, new: str):
    return _edit(ROOT / "protocols" / "ci.yaml", "protocol.yaml", old, new)


def _sweep(old: str, new: str):
    return _edit(ROOT / "protocols" / "sweeps" / "ci.yaml", "sweep.yaml", old, new, paths=True)


def _al(old: str, new: str):
    return _edit(ROOT / "protocols" / "al" / "ci.yaml", "al.yaml", old, new, paths=True)


def _dataset(source: str, *, more: str = ""):
    return _text("ds.yaml", "name: d\ndata_dir: data\nseed: 0\nreference: {name: xtb}\nsources:\n" + source
                 + "subsets:\n  All: [s]\n" + more)


def _md(f: Path) -> list[str]:
    return ["md", "--model", str(FOUNDATION), "--protocol", str(f), "-e", "npt", "-w", str(f.parent / "ws")]


def _run(f: Path) -> list[str]:
    return ["sweep", "run", str(f), "-w", str(f.parent / "ws")]


def _al_run(f: Path) -> list[str]:
    return ["al", "run", str(f), "-w", str(f.parent / "ws")]


def _build(f: Path) -> list[str]:
    return ["dataset", "build", str(f)]


def _train_options(f: Path) -> list[str]:
    return ["train", "-d", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "-s", "OPLS", "-a", "mace", "-n", "1",
            "-w", str(f.parent / "ws"), "--options", str(f)]


_EXPANDS = f"YAML alias expansion exceeds {YAML_MAX_NODES} nodes"
_SELF = "refers to a node that contains it"
_BOOL = "not a boolean"
_FINITE = "Input should be a finite number"

CASES = [
    # files maker, argv built from the made file, what the one-line error must contain
    pytest.param(_protocol("description: smoke-test protocol\n", "description: smoke-test protocol\n" + _bomb()),
                 _md, ["protocol.yaml:", _EXPANDS], id="alias bomb (protocol)"),
    pytest.param(_sweep("description:", _bomb() + "description:"), _run, ["sweep.yaml:", _EXPANDS],
                 id="alias bomb (sweep spec)"),
    pytest.param(_sweep("overrides:\n", _bomb(key="bomb") + "overrides:\n"), _run, ["sweep.yaml:", _EXPANDS],
                 id="alias bomb nested under a key (sweep spec)"),
    pytest.param(_dataset("  s: {kind: isolated_atoms, config_type: SM, elements: [H]}\n", more=_bomb(key="bomb")),
                 _build, ["ds.yaml:", _EXPANDS], id="alias bomb (dataset)"),
    pytest.param(_text("opts.yaml", _bomb()), _train_options, ["opts.yaml:", _EXPANDS],
                 id="alias bomb (train --options YAML)"),
    pytest.param(_text("opts.yaml", "max_num_epochs: 2\nhidden: &h [*h]\n"), _train_options,
                 ["opts.yaml:2", "*h " + _SELF], id="self-referencing alias (train --options YAML)"),
    pytest.param(_protocol("description: smoke-test protocol", "description: &x [*x]"), _md,
                 ["protocol.yaml:3", "alias *x " + _SELF], id="self-referencing list (protocol)"),
    pytest.param(_sweep("overrides:\n", "loop: &o {again: *o}\noverrides:\n"), _run, ["sweep.yaml:", "*o " + _SELF],
                 id="self-referencing mapping (sweep spec)"),
    pytest.param(_protocol("npt: {length_ps: 0.05,", "npt: &n {<<: *n, length_ps: 0.05,"), _md,
                 ["protocol.yaml:15", "*n " + _SELF], id="self-referencing merge key (protocol)"),
    pytest.param(_protocol("temperature_K: 500", "temperature_K: true"), _md,
                 ["protocol.yaml:4: temperature_K:", _BOOL], id="temperature_K: true (protocol)"),
    pytest.param(_sweep("committee: 2", "committee: true"), _run, ["sweep.yaml:", "committee:", _BOOL],
                 id="committee: true (sweep spec)"),
    pytest.param(_al("generations: 2", "generations: yes"), _al_run, ["al.yaml:15: generations:", _BOOL],
                 id="generations: yes (AL spec)"),
    pytest.param(_protocol("npt: {length_ps: 0.05, tdamp_fs: 50,", "npt: {length_ps: 0.05, tdamp_fs: true,"), _md,
                 ["protocol.yaml:15: npt.tdamp_fs:", _BOOL], id="bool in a float of a nested model (protocol npt)"),
    pytest.param(_dataset("  s: {kind: isolated_md, config_type: SM, molecules: {EC: 1}, temperatures_K: [300, true]}\n"),
                 _build, ["ds.yaml:", "temperatures_K", _BOOL],
                 id="bool in a list of floats of a nested model (dataset source)"),
    pytest.param(_protocol("temperature_K: 500", "temperature_K: .inf"), _md,
                 ["protocol.yaml:4: temperature_K:", _FINITE], id="temperature_K: .inf (protocol)"),
    pytest.param(_protocol("detectors: {rules: validation,", "detectors: {density_window_g_cm3: [0.2, .inf], "
                           "rules: validation,"), _md, ["protocol.yaml:", "detectors.density_window_g_cm3", _FINITE],
                 id=".inf in a detector window (protocol)"),
    pytest.param(_dataset("  s: {kind: isolated_md, config_type: SM, molecules: {EC: 1}, temperatures_K: [300, .nan]}\n"),
                 _build, ["ds.yaml:", "temperatures_K", _FINITE], id=".nan in a list of temperatures (dataset)"),
    pytest.param(_sweep("replicas: 1", "replicas: 1000000"), _run,
                 ["sweep.yaml:", "replicas:", f"less than or equal to {MAX_REPLICAS}"], id="replicas: 1000000 (sweep)"),
    pytest.param(_sweep("committee: 2", "committee: 100000"), _run,
                 ["sweep.yaml:", "committee:", f"less than or equal to {MAX_COMMITTEE}"], id="huge committee (sweep)"),
    pytest.param(_sweep("reference: {arch: gap,", "reference: {committee: 5000, arch: gap,"), _run,
                 ["sweep.yaml:", "reference.committee:", f"less than or equal to {MAX_COMMITTEE}"],
                 id="huge reference committee (sweep)"),
    pytest.param(_al("generations: 2", "generations: 1000000"), _al_run,
                 ["al.yaml:", "generations:", f"less than or equal to {MAX_GENERATIONS}"], id="huge generations (AL)"),
]


@pytest.mark.parametrize("make, argv, needles", CASES)
def test_bad_yaml_clear_error(make, argv, needles, runner, tmp_path):
    made = make(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(app, argv(made))
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, f"exit {result.exit_code}\n{text}"
    assert "Traceback" not in text, text
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]  # stdout and stderr
    assert len(lines) == 1, text
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert set(tmp_path.rglob("*")) == before, "left files behind"


# -- the reader ------------------------------------------------------------------------------------------------


def _composed(text: str) -> yaml.Node:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _count(data) -> int:
    """Nodes of constructed data as YAML sees them (a mapping: itself, each key, each value)."""
    if isinstance(data, dict):
        return 1 + sum(1 + _count(v) for v in data.values())
    if isinstance(data, list):
        return 1 + sum(_count(v) for v in data)
    return 1


@pytest.mark.parametrize("text", [
    pytest.param("a: &a [1, 2]\nb: [*a, *a]\n", id="shared list"),
    pytest.param(_bomb(4, 3), id="small bomb"),
    pytest.param("base: &b {x: 1, y: {z: [1, 2]}}\nc: {<<: *b, w: 2}\n", id="merge key"),
    pytest.param("a: 1\n", id="no alias"),
])
def test_node_count_is_the_expanded_size(text):
    """Counted on the node graph without expanding it; equal to the constructed document's size (a merge counts
    its ``<<`` key and the merged mapping: never fewer nodes than the result)."""
    n = yaml_node_count(_composed(text))
    assert n >= _count(yaml.safe_load(text))
    if "<<" not in text:
        assert n == _count(yaml.safe_load(text))


def test_node_count_limit_is_inclusive():
    text = _bomb(3, 3)  # a: 4, b: 13, c: 40 nodes; mapping 1 + 3 keys
    total = 1 + 3 + 4 + 13 + 40
    assert yaml_node_count(_composed(text), max_nodes=total) == total
    with pytest.raises(YAMLLimitError) as exc:
        yaml_node_count(_composed(text), max_nodes=total - 1)
    assert f"exceeds {total - 1} nodes" in exc.value.message and exc.value.line == 1
    with pytest.raises(YAMLLimitError) as exc:
        yaml_node_count(_composed(text), max_nodes=20)
    assert exc.value.line == 3, "the innermost value over the limit is named"


def test_node_count_is_linear_for_a_bomb():
    """Twenty levels of ten aliases (1e20 leaves) are counted, not expanded."""
    with pytest.raises(YAMLLimitError, match="alias expansion exceeds"):
        yaml_node_count(_composed(_bomb(20, 10)))
    assert yaml_node_count(_composed(_bomb(20, 10)), max_nodes=10**30) > 10**20


def test_bomb_refused_with_file_and_line(tmp_path, monkeypatch):
    p = tmp_path / "spec.yaml"
    p.write_text("name: x\n" + _bomb())
    with pytest.raises(ConfigError) as exc:
        read_yaml(p)
    assert str(exc.value).startswith(f"{p}:7: {_EXPANDS} (this value alone expands to ")
    assert "\n" not in str(exc.value)
    monkeypatch.setattr("harness.config.YAML_MAX_NODES", 100)
    with pytest.raises(ConfigError) as exc:
        read_yaml(p)
    assert str(exc.value).startswith(f"{p}:4: YAML alias expansion exceeds 100 nodes (this value alone expands to 820)")


@pytest.mark.parametrize("text, line, anchor", [
    pytest.param("a: &x [*x]\n", 1, "x", id="list"),
    pytest.param("a: &x\n  b: 1\n  c: *x\n", 3, "x", id="mapping"),
    pytest.param("a: &x\n  <<: *x\n  b: 1\n", 2, "x", id="merge"),
    pytest.param("a: &outer\n  - &inner [1, 2]\n  - [*inner, *outer]\n", 3, "outer", id="through an inner anchor"),
    pytest.param("&top\na: [*top]\n", 2, "top", id="the document itself"),
])
def test_self_reference_refused(text, line, anchor):
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, source="s.yaml")
    assert str(exc.value) == (f"s.yaml:{line}: YAML alias *{anchor} refers to a node that contains it "
                              "(a self-referencing structure); write the values out")


def test_alias_count_limit():
    ok = "a: &a 1\nb: [" + ", ".join(["*a"] * YAML_MAX_ALIASES) + "]\n"
    assert len(parse_yaml(ok, source="s.yaml")["b"]) == YAML_MAX_ALIASES
    with pytest.raises(ConfigError, match=rf"s.yaml:2: more than {YAML_MAX_ALIASES} YAML alias references"):
        parse_yaml(ok.replace("[*a", "[*a, *a"), source="s.yaml")


def test_depth_limit():
    def deep(levels):  # the top-level mapping is one level
        return "a: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n"

    assert parse_yaml(deep(YAML_MAX_DEPTH), source="s.yaml")["a"] is not None
    with pytest.raises(ConfigError, match=rf"s.yaml:1: YAML nesting deeper than {YAML_MAX_DEPTH} levels$"):
        parse_yaml(deep(YAML_MAX_DEPTH + 1), source="s.yaml")
    # far deeper than Python's recursion limit: an error line, no RecursionError
    with pytest.raises(ConfigError, match="nesting deeper"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000, source="s.yaml")
    # depth reached through aliases
    via = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    with pytest.raises(ConfigError, match=f"s.yaml:2: YAML nesting deeper than {YAML_MAX_DEPTH} levels with its "
                       "aliases expanded"):
        parse_yaml(via, source="s.yaml")


def test_merge_keys_and_plain_aliases_still_work(tmp_path):
    text = ("base: &b {x: 1, y: 2}\n"
            "c:\n  <<: *b\n  y: 3\n"
            "d: {<<: [*b, {z: 4}], x: 0}\n"
            "e: *b\n")
    assert parse_yaml(text, source="s.yaml") == {"base": {"x": 1, "y": 2}, "c": {"x": 1, "y": 3},
                                                 "d": {"x": 0, "y": 2, "z": 4}, "e": {"x": 1, "y": 2}}
    p = tmp_path / "s.yaml"
    p.write_text(text)
    assert yaml_lines(p)[("c", "y")] == 4


def test_duplicate_key_still_refused_and_merge_override_allowed():
    with pytest.raises(ConfigError, match=r"s.yaml:4: duplicate key 'y' \(first at line 3\)"):
        parse_yaml("base: &b {x: 1}\nc:\n  y: 1\n  y: 2\n", source="s.yaml")
    assert parse_yaml("base: &b {x: 1}\nc: {<<: *b, x: 2}\n", source="s.yaml")["c"] == {"x": 2}


class _Inner(HarnessModel):
    temperature_K: float = Field(gt=0)


class _Outer(HarnessModel):
    name: str
    md: _Inner


def test_validation_errors_keep_their_line_with_merge_keys(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("defaults: &d {temperature_K: 300}\nname: a\nmd:\n  <<: *d\n  temperature_K: -1\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p, _Outer)
    assert f"{p}:1: defaults: unknown key" in str(exc.value).splitlines()
    assert f"{p}:5: md.temperature_K: Input should be greater than 0 (got -1)" in str(exc.value).splitlines()


def test_yaml_lines_refuses_a_bomb(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(_bomb())
    with pytest.raises(ConfigError, match=_EXPANDS):
        yaml_lines(p)


def test_no_other_yaml_reader_in_the_package():
    """Every YAML the harness reads goes through harness.config's reader."""
    offenders = []
    for f in (ROOT / "harness").rglob("*.py"):
        if f.name == "config.py" and f.parent.name == "harness":
            continue
        text = f.read_text()
        for call in ("yaml.safe_load(", "yaml.load(", "yaml.compose(", "yaml.full_load(", "yaml.unsafe_load("):
            if call in text:
                offenders.append(f"{f.relative_to(ROOT)}: {call}")
    assert not offenders, offenders


# -- strict numbers ------------------------------------------------------------------------------------------------


class _Typed(HarnessModel):
    x_A: float = 1.0
    n: int = 1
    flag: bool = False
    either: float | str = "auto"
    maybe_n: int | None = None
    xs: list[float] = []
    pair: tuple[float, float] | None = None
    counts: dict[str, int] = {}
    options: dict = {}
    unbounded_K: float = Field(1.0, allow_inf_nan=True)


@pytest.mark.parametrize("data, needle", [
    pytest.param({"x_A": True}, "x_A: expected a number, not a boolean (true/false) (got True)", id="float"),
    pytest.param({"n": False}, "n: expected a number, not a boolean", id="int"),
    pytest.param({"either": True}, "either: expected a number, not a boolean", id="float or str"),
    pytest.param({"maybe_n": True}, "maybe_n: expected a number, not a boolean", id="optional int"),
    pytest.param({"xs": [1.0, True]}, "xs.1: expected a number, not a boolean (true/false) (got True)", id="list item"),
    pytest.param({"pair": [0.2, True]}, "pair.1: expected a number, not a boolean", id="tuple item"),
    pytest.param({"counts": {"EC": True}}, "counts.EC: expected a number, not a boolean", id="mapping value"),
    pytest.param({"x_A": float("inf")}, "x_A: Input should be a finite number", id="inf"),
    pytest.param({"x_A": float("-inf")}, "x_A: Input should be a finite number", id="-inf"),
    pytest.param({"x_A": float("nan")}, "x_A: Input should be a finite number", id="nan"),
    pytest.param({"xs": [float("nan")]}, "xs.0: Input should be a finite number", id="nan in a list"),
    pytest.param({"pair": [0.2, float("inf")]}, "pair.1: Input should be a finite number", id="inf in a tuple"),
])
def test_numbers_are_strict(data, needle):
    with pytest.raises(ConfigError) as exc:
        validate(_Typed, data, source="s")
    assert needle in str(exc.value)


def test_what_stays_allowed():
    t = validate(_Typed, {"flag": True, "options": {"d3": True, "x": float("inf")}, "unbounded_K": float("inf"),
                          "either": "true", "x_A": 2, "n": 3, "xs": [1, 2.5], "counts": {"EC": 2}}, source="s")
    assert t.flag is True and t.options == {"d3": True, "x": float("inf")} and t.unbounded_K == float("inf")
    assert t.x_A == 2.0 and t.n == 3 and t.xs == [1.0, 2.5]


def test_nested_models_check_their_own_fields():
    with pytest.raises(ConfigError, match=r"s: md.temperature_K: expected a number, not a boolean"):
        validate(_Outer, {"name": "a", "md": {"temperature_K": True}}, source="s")


# -- every shipped YAML still loads ---------------------------------------------------------------------------------


def _shipped() -> list[Path]:
    files = sorted([*(ROOT / "protocols").rglob("*.yaml"), *(ROOT / "datasets").glob("*.yaml"),
                    *(ROOT / "harness").rglob("*.yaml")])
    assert len(files) > 20
    return files


def _model_of(path: Path):
    from harness.al.spec import ALSpec
    from harness.md.protocol import MDProtocol
    from harness.workflow.cluster import SlurmSpec
    from harness.sweep.spec import SweepSpec
    from harness.transfer import TransferSpec

    rel = path.relative_to(ROOT)
    return {("protocols",): MDProtocol, ("protocols", "sweeps"): SweepSpec, ("protocols", "al"): ALSpec,
            ("protocols", "clusters"): SlurmSpec, ("protocols", "transfer"): TransferSpec}.get(rel.parts[:-1])


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_loads(path):
    """Through the one reader, well inside its limits, and into its model."""
    from harness.datasets.spec import load_dataset_spec

    text = path.read_text()
    assert yaml_node_count(_composed(text)) < YAML_MAX_NODES // 10
    data = read_yaml(path)
    assert isinstance(data, dict) and data
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "datasets":
        load_dataset_spec(path)
    elif rel.parts[0] == "protocols":
        model = _model_of(path)
        assert model is not None, f"{rel}: which model reads it? add its folder to _model_of"
        load_yaml(path, model)
    else:
        assert rel.parts[:2] == ("harness", "forcefields"), f"{rel}: which code reads it?"
        from harness.forcefields.opls import OPLSParameters

        assert OPLSParameters.default().types
