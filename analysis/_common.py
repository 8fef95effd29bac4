"""Shared loading for the analysis scripts: workspace → member/committee tables."""

from __future__ import annotations

import sys
from pathlib import Path


def load(argv=None):
    from harness.report.data import committee_table, load_scores, member_table

    argv = argv if argv is not None else sys.argv[1:]
    if not argv:
        sys.exit(f"usage: python {Path(sys.argv[0]).name} WORKSPACE [OUTDIR]")
    ws = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else ws / "report"
    out.mkdir(parents=True, exist_ok=True)
    scores = load_scores(ws)
    members = member_table(scores)
    return scores, members, committee_table(members), out


def load_diagnostics(argv=None):
    """WORKSPACE [OUTDIR] → the diagnostics tables (harness.report.diagnostics) and the output folder."""
    from harness.report.diagnostics import diagnostics_tables

    argv = argv if argv is not None else sys.argv[1:]
    if not argv:
        sys.exit(f"usage: python {Path(sys.argv[0]).name} WORKSPACE [OUTDIR]")
    ws = Path(argv[0])
    if not (ws / "harness.sqlite").exists():
        print(f"{ws}: no harness.sqlite (not a workspace)", file=sys.stderr)
        sys.exit(2)
    out = Path(argv[1]) if len(argv) > 1 else ws / "report"
    out.mkdir(parents=True, exist_ok=True)
    return diagnostics_tables(ws), out


def need(tables, key: str, what: str):
    if key not in tables:
        print(f"no {what} in this workspace (add a diagnostics section to the sweep spec)", file=sys.stderr)
        sys.exit(2)
    return tables[key]
