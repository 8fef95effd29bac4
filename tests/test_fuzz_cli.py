"""Property-based fuzzing of the CLI contract (issue #30 item 9): mutate the shipped protocol, sweep spec and
extxyz frames (a key dropped, a value replaced by a wrong type, a non-finite or huge number, an unknown key; a
frame's cell, positions, labels or atom count damaged) and assert what every input must get: exit 0 or 2 (1 only
where the command documents it: frames whose *calculation* failed), never a traceback, and nothing left behind
when it was refused.

Run by ``make ci-fuzz`` (CI). Derandomized (the same examples in every run, so CI is reproducible); ``HARNESS_FUZZ_EXAMPLES=500`` explores
more locally, with a fresh random seed when ``HARNESS_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.cli.main import app  # noqa: E402

pytestmark = pytest.mark.slow  # its own CI step (`make ci-fuzz`, ~1.5 min), outside `make test`

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "15"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("HARNESS_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], database=None)

#: values a careless or hostile file puts where a number, a name or a section belongs
WRONG = [True, False, None, 0, -1, -0.0, 1, 2**63, 10**12, 1e308, math.inf, -math.inf, math.nan, "", "x", "1e3",
         "0.5 fs", [], [1, 2], {}, {"a": 1}, "../../../../etc/passwd", "\x00", "é" * 300]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping/list (the root excluded)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw, doc: dict) -> dict:
    """``doc`` with one to three mutations."""
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        kind = draw(st.sampled_from(["replace", "replace", "delete", "unknown"]))
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["typo_key", "length", "temperature", "seed_"]))] = 1
        else:
            parent[path[-1]] = draw(st.sampled_from(WRONG))
    return doc


def _dump(doc: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def _contract(result, workspace: Path | None = None, allowed=(0, 2)) -> None:
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code in allowed, (result.exit_code, out[-3000:], result.exception)
    assert "Traceback" not in out, out[-3000:]
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), out[-3000:]
        if workspace is not None:
            assert not workspace.exists() or not any(workspace.iterdir()), sorted(workspace.rglob("*"))[:10]


PROTOCOL = yaml.safe_load((ROOT / "protocols" / "ci.yaml").read_text())
SWEEP = yaml.safe_load((ROOT / "protocols" / "sweeps" / "ci.yaml").read_text())


@FUZZ
@given(data=st.data())
def test_fuzzed_protocol_planned_by_a_sweep(runner, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("proto")
    proto = _dump(data.draw(mutated(PROTOCOL)), d / "protocol.yaml")
    spec = dict(SWEEP, protocol=str(proto), dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"))
    spec.pop("diagnostics")
    sweep = _dump(spec, d / "sweep.yaml")
    result = runner.invoke(app, ["sweep", "run", str(sweep), "--plan", "-w", str(d / "ws")])
    _contract(result, d / "ws")


@FUZZ
@given(data=st.data())
def test_fuzzed_sweep_spec_planned(runner, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("sweep")
    spec = dict(SWEEP, protocol=str(ROOT / "protocols" / "ci.yaml"), dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"))
    sweep = _dump(data.draw(mutated(spec)), d / "sweep.yaml")
    result = runner.invoke(app, ["sweep", "run", str(sweep), "--plan", "-w", str(d / "ws")])
    _contract(result, d / "ws")


def _frames():
    from ase.io import read

    return read(ROOT / "datasets" / "ec-emc-xtb" / "val_liquid.extxyz.gz", ":2")


FRAME_DAMAGE = ["zero_cell", "singular_cell", "nan_cell", "nan_position", "inf_force", "drop_forces", "drop_energy",
                "huge_energy", "string_energy", "no_atoms", "pbc_without_cell", "extra_atom_no_force", "bool_energy"]


def _damage(text: str, kind: str, rng: np.random.Generator) -> str:
    lines = text.splitlines()
    n = int(lines[0])
    head = lines[1]
    if kind == "zero_cell":
        head = _set(head, "Lattice", '"0 0 0 0 0 0 0 0 0"')
    elif kind == "singular_cell":
        head = _set(head, "Lattice", '"10 0 0 0 10 0 0 0 0"')
    elif kind == "nan_cell":
        head = _set(head, "Lattice", '"nan 0 0 0 10 0 0 0 10"')
    elif kind == "pbc_without_cell":
        import re

        head = re.sub(r'Lattice="[^"]*" ', "", head)
    elif kind in ("nan_position", "inf_force"):
        k = 2 + int(rng.integers(n))
        cols = lines[k].split()
        cols[1 if kind == "nan_position" else 4] = "nan" if kind == "nan_position" else "inf"
        lines[k] = " ".join(cols)
    elif kind == "drop_forces":
        head = head.replace(":REF_forces:R:3", "")
        lines = [lines[0], head, *[" ".join(x.split()[:4] + x.split()[7:]) for x in lines[2:2 + n]]]
        return "\n".join(lines) + "\n"
    elif kind == "drop_energy":
        import re

        head = re.sub(r"REF_energy=\S+ ", "", head)
    elif kind == "huge_energy":
        head = _set(head, "REF_energy", "1e300")
    elif kind == "string_energy":
        head = _set(head, "REF_energy", "abc")
    elif kind == "bool_energy":
        head = _set(head, "REF_energy", "T")
    elif kind == "no_atoms":
        return "0\n" + head + "\n"
    elif kind == "extra_atom_no_force":
        lines[0] = str(n + 1)
        lines.append("H 0.0 0.0 0.0")
    lines[1] = head
    return "\n".join(lines) + "\n"


def _set(head: str, key: str, value: str) -> str:
    import re

    return re.sub(rf'{key}=("[^"]*"|\S+)', f"{key}={value}", head, count=1)


@FUZZ
@given(kinds=st.lists(st.sampled_from(FRAME_DAMAGE), min_size=1, max_size=2, unique=True), seed=st.integers(0, 2**16))
def test_fuzzed_frames_labelled(runner, tmp_path_factory, kinds, seed):
    """Damaged frames given to `harness label` (a cheap ASE reference): refused with exit 2 naming the frame, or
    labelled (exit 0), or — only for frames whose calculation failed — exit 1 with the failure reported."""
    from ase.io import write

    d = tmp_path_factory.mktemp("frames")
    clean = d / "clean.extxyz"
    write(clean, _frames()[:1], format="extxyz")
    text = clean.read_text()
    rng = np.random.default_rng(seed)
    for kind in kinds:
        text = _damage(text, kind, rng)
    src = d / "in.extxyz"
    src.write_text(text)
    out = d / "out" / "labelled.extxyz"
    result = runner.invoke(app, ["label", str(src), "-o", str(out), "--reference", "ase:ase.calculators.emt.EMT"])
    _contract(result, allowed=(0, 1, 2))
    if result.exit_code == 1:
        assert "failed" in result.stderr
    if result.exit_code == 2:
        assert not out.exists() and not [p for p in d.rglob("*.tmp")]
