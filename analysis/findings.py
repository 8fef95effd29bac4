"""Each finding of the paper beside the numbers a sweep measured (harness.report.findings).

    python analysis/findings.py runs/study            # a workspace (its store)
    python analysis/findings.py results/study-500K    # a shipped summary (members.csv + summary.json)

Prints one block per finding: the verdict (reproduced / not reproduced / undetermined) and the claim, the test
that decides it (its level and minimum data), the measured numbers and any caveat (e.g. a reference of a grid
architecture). The rules: docs/science.md. Exit status 0 whatever the verdicts; 2 on unreadable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    import pandas as pd

    from harness.report.findings import findings_of, run_summary

    argv = argv if argv is not None else sys.argv[1:]
    if len(argv) != 1:
        print(f"usage: python {Path(sys.argv[0]).name} WORKSPACE|RESULTS_DIR", file=sys.stderr)
        return 2
    where = Path(argv[0])
    if (where / "harness.sqlite").exists():
        from harness.errors import InputError
        from harness.report.data import load_scores, member_table

        try:
            scores = load_scores(where)
        except InputError as exc:
            print(exc, file=sys.stderr)
            return 2
        members = member_table(scores)
        summary = run_summary(scores, members)
    elif (where / "members.csv").exists() and (where / "summary.json").exists():
        members = pd.read_csv(where / "members.csv")
        summary = json.loads((where / "summary.json").read_text())
    else:
        print(f"{where}: neither a workspace (harness.sqlite) nor a results folder (members.csv + summary.json)",
              file=sys.stderr)
        return 2
    print(f"{where}: reference {summary['reference_committee']}, horizon {summary['horizon_ps']:g} ps\n")
    for f in findings_of(members, summary):
        print(f"[{f.verdict.upper()}] {f.claim}\n    test: {f.test}\n    measured: {f.measured}")
        for c in f.caveats:
            print(f"    caveat: {c}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
