"""The import table of docs/architecture.md holds in the code (issue #31 item 4).

The table in the doc is the rule: for each package of ``harness`` (a sub-package, or a top-level module), the
packages it may import. This test parses it, reads every import of every module (module level and inside
functions, ``import harness.x`` and ``from harness.x import`` and ``from harness import x``), and fails on an
import the table does not allow, on a package of the code missing from the table (or a row for a package that
does not exist), and on a cycle among the table's own rows.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
#: the package's own ``__init__`` (imported for ``__version__``), named ``harness`` in the table
SELF = "harness"


def table() -> dict[str, set[str]]:
    """package -> the packages it may import, from the doc's table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \|[^|]*\| (.*) \|$", line)
        if m:
            allowed = m.group(2).strip()
            rows[m.group(1)] = set() if allowed in ("–", "-", "") else {a.strip() for a in allowed.split(",")}
    return rows


def unit_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "harness")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files of the package that import it."""
    out: dict[str, dict[str, set[str]]] = {}
    for f in sorted((ROOT / "harness").rglob("*.py")):
        unit = unit_of(f)
        if unit == "__init__":
            continue
        seen = out.setdefault(unit, {})
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "harness":
                    names = [a.name for a in node.names]
                elif node.module.startswith("harness."):
                    names = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("harness.")]
            for n in names:
                target = SELF if n.startswith("__") else n
                if target != unit:
                    seen.setdefault(target, set()).add(str(f.relative_to(ROOT)))
    return out


def test_the_table_names_every_package_once():
    rows = table()
    code = set(imports())
    assert len(rows) >= 20, "docs/architecture.md: the package table was not found"
    assert code - set(rows) == set(), f"packages missing from the table: {sorted(code - set(rows))}"
    assert set(rows) - code == set(), f"rows for packages that do not exist: {sorted(set(rows) - code)}"
    known = set(rows) | {SELF}
    for pkg, allowed in rows.items():
        assert allowed <= known, f"{pkg}: the table allows unknown packages {sorted(allowed - known)}"


def test_every_import_is_allowed_by_the_table():
    rows = table()
    bad = {f"{pkg} -> {dep}": sorted(files) for pkg, deps in imports().items() for dep, files in deps.items()
           if dep not in rows.get(pkg, set())}
    assert not bad, f"imports docs/architecture.md does not allow: {bad}"


def test_the_table_has_no_cycle():
    rows = table()
    state: dict[str, int] = {}

    def visit(pkg: str, path: list[str]) -> None:
        state[pkg] = 1
        for dep in rows.get(pkg, ()):
            if state.get(dep) == 1:
                raise AssertionError(f"a cycle in the import table: {' -> '.join(path + [pkg, dep])}")
            if dep in rows and state.get(dep) is None:
                visit(dep, path + [pkg])
        state[pkg] = 2

    for pkg in rows:
        if pkg not in state:
            visit(pkg, [])


def test_a_forbidden_import_is_caught(tmp_path, monkeypatch):
    """The reader sees an import inside a function: a module of ``md`` importing ``models`` is reported."""
    fake = tmp_path / "harness" / "md"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from harness.models.load import load_model\n    import harness.sweep.spec\n")
    import sys

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imports() == {"md": {"models": {"harness/md/x.py"}, "sweep": {"harness/md/x.py"}}}
