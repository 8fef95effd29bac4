"""The paper's findings checked on member tables (harness.report.findings; analysis/findings.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.findings import findings

H = 10.0  # horizon, ps


def _table(t_stab: dict[str, list[float]], density: dict[str, float] | None = None) -> pd.DataFrame:
    """Members with the given t_stab (both ensembles), density 1.20 (± 0.005 over members) unless given."""
    rows = []
    for committee, ts in t_stab.items():
        arch, subset = committee.split("/")
        for k, t in enumerate(ts):
            rows.append({"committee": committee, "arch": arch, "subset": subset, "member": f"member-{k}",
                         "t_stab_npt_ps": t, "t_stab_nvt_ps": t,
                         "density_g_cm3": (density or {}).get(committee, 1.20) + 0.005 * (k - 2),
                         "D_EC": 40.0 + k, "D_EMC": 50.0 + k})
    return pd.DataFrame(rows)


PAPER = {"mace/OPLS": [H] * 5, "mace/OPLS+SM": [H] * 5, "mace/OPLS+VS": [H] * 5, "mace/Full": [H] * 5,
         "deepmd/OPLS": [0.002, 0.003, 0.002, 0.004, 0.003], "deepmd/OPLS+SM": [0.003, 0.002, 0.004, 0.003, 0.002],
         "deepmd/OPLS+VS": [H, H, H, 4.0, H], "deepmd/Full": [H] * 5}


def _verdicts(table, **kw):
    return [f.verdict for f in findings(table, horizon_ps=H, reference="mace/Full", **kw)]


def test_a_paper_like_table_reproduces_every_finding():
    fs = findings(_table(PAPER), horizon_ps=H, reference="mace/Full")
    assert [f.verdict for f in fs] == ["reproduced"] * 5, [(f.claim, f.measured) for f in fs]
    assert "8/10 OPLS+VS runs reach the 10 ps horizon" in fs[3].measured  # NPT and NVT pooled
    assert "mace/Full" not in fs[4].measured.split(":")[0]  # the reference is not compared with itself


@pytest.mark.parametrize("change, index", [
    ({"deepmd/OPLS+VS": [H] * 5, "mace/OPLS+VS": [0.5] * 5}, 0),        # DeePMD beats MACE on one subset
    ({"deepmd/OPLS": [0.2, 0.3, 0.25, 0.2, 0.3]}, 1),                   # DeePMD/OPLS survives 400+ steps
    ({"deepmd/OPLS+SM": [0.03, 0.031, 0.029, 0.03, 0.032]}, 2),          # SM gives a significant 10x gain
    ({"deepmd/OPLS+VS": [0.01, 0.008, 0.012, 0.009, 0.011]}, 3),         # VS gives only ~3x
])
def test_each_finding_fails_when_the_numbers_say_otherwise(change, index):
    verdicts = _verdicts(_table({**PAPER, **change}))
    assert verdicts[index] == "not reproduced", verdicts
    assert verdicts.count("not reproduced") == 1


def test_a_stable_model_with_another_density_does_not_reproduce_the_reference():
    verdicts = _verdicts(_table(PAPER, density={"deepmd/Full": 1.30}))
    assert verdicts[4] == "not reproduced" and verdicts[:4] == ["reproduced"] * 4


def test_missing_committees_are_undetermined_and_the_script_reads_a_results_folder(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    only = _table({k: v for k, v in PAPER.items() if k in ("mace/OPLS", "deepmd/OPLS", "mace/Full")})
    verdicts = _verdicts(only)
    assert verdicts[2] == verdicts[3] == "undetermined"
    only.to_csv(tmp_path / "members.csv", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"reference_committee": "mace/Full", "horizon_ps": H}))
    spec = importlib.util.spec_from_file_location("findings_script", Path(__file__).parents[1] / "analysis" / "findings.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[REPRODUCED] DeePMD on OPLS fails within a few steps" in out and "[UNDETERMINED]" in out
    assert script.main([str(tmp_path / "nowhere")]) == 2
