"""The documentation (issue #31 item 6-7): the site builds with warnings as errors, its home page is the README,
and the example notebook runs against a ci sweep's workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def home_page() -> str:
    """docs/index.md as `make docs` writes it: the README with its links made relative to docs/."""
    readme = (ROOT / "README.md").read_text()
    return ("<!-- generated from README.md by `make docs` (tests/test_docs.py checks it is current) -->\n"
            + readme.replace("](docs/", "](").replace("[docs/", "["))


def test_the_site_home_page_is_the_readme():
    assert (ROOT / "docs" / "index.md").read_text() == home_page(), "docs/index.md is stale: run `make docs`"


def test_the_readme_is_a_landing_page():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="mkdocs not installed")
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    r = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    api = tmp_path / "site" / "api" / "index.html"
    assert api.exists() and (tmp_path / "site" / "index.html").exists()
    # the docstrings' Sphinx roles render as code (docs/_ext/sphinx_roles.py), not as literal ":func:`...`"
    page = api.read_text()
    assert ":func:" not in page and ":class:" not in page and ":mod:" not in page
    assert "<code>PlanContext</code>" in page or "<code>harness.validation.context.PlanContext</code>" in page


def test_sphinx_roles_become_inline_code():
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from sphinx_roles import plain
    finally:
        sys.path.pop(0)
    assert plain(":func:`harness.tools.malloc_env`") == "`harness.tools.malloc_env`"
    assert plain(":class:`~harness.validation.context.PlanContext` and :py:meth:`~a.B.c`") == "`PlanContext` and `c`"
    assert plain(":mod:`the engine <harness.workflow>`") == "`the engine`"
    assert plain("``literal`` and :data:`MALLOC`") == "`literal` and `MALLOC`"
    assert plain("no roles: x < y") == "no roles: x < y"


@pytest.mark.slow
def test_the_example_notebook_runs_on_the_ci_workspace():
    """After `make ci-sweep`: docs/workspace.ipynb executes top to bottom (nbclient) on its workspace."""
    import nbformat
    from nbclient import NotebookClient

    ws = Path(os.environ.get("HARNESS_CI_WORKSPACE", ROOT / "runs" / "ci")).resolve()
    if not (ws / "harness.sqlite").exists():
        pytest.fail(f"{ws}: no ci sweep workspace (run `make ci-sweep` first, or set HARNESS_CI_WORKSPACE)")
    nb = nbformat.read(ROOT / "docs" / "workspace.ipynb", as_version=4)
    os.environ["HARNESS_WORKSPACE"] = str(ws)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "docs")}}).execute()
    finally:
        os.environ.pop("HARNESS_WORKSPACE", None)
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "frames" in out and "molecules" in out and "[" in out
