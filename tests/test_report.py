"""`harness report` on a store of stand-in scored committees: tables, figures, HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli.main import app
from harness.models.train import model_run_name
from harness.observables.analysis import RunSet, observe_run, score
from harness.validation.contract import ObserveParams, ScoreParams
from harness.workflow.store import Store
from tests.observables_helpers import fake_committee, fake_runs, quick_protocol

runner = CliRunner()


@pytest.fixture()
def scored_store(tmp_path):
    proto = quick_protocol()
    ws = tmp_path / "ws"
    setups = {("gap", "Full"): (1.0, 1.0, 0.92, 0.3), ("mace", "OPLS"): (0.5, 1.0, 0.9, 0.4),
              ("mace", "Full"): (1.0, 1.0, 0.95, 0.25), ("gap", "OPLS"): (0.3, 0.2, 0.9, 0.3)}
    sets = {}
    for k, ((arch, subset), (tn, tv, rho, D)) in enumerate(setups.items()):
        c = fake_committee(ws, arch, subset, 2)
        runs = []
        for j, m in enumerate(sorted(c.glob("member-*"))):
            fake_runs(ws, m, proto, t_npt=tn, t_nvt=tv, rho_mean=rho, D=D, seed=10 * k + j)
            base = ws / "md" / model_run_name(m) / proto.name
            runs.append(RunSet(m.name, base / "npt-r0", base / "nvt-r0"))
        sets[(arch, subset)] = runs
    store = Store(ws / "harness.sqlite")
    for (arch, subset), runs in sets.items():  # the observe results a sweep stores (the density figure reads them)
        for r in runs:
            for run in (r.npt, r.nvt):
                obs = observe_run(run, proto.analysis, equilibration_ps=0.2, tau_ps=1.0)
                store.register(f"observe-{run}", "observe", f"observe {run}", {}, [], "test")
                store.mark_done(f"observe-{run}", {"schema": ObserveParams.schema_id(), **obs}, {}, 0.1)
    for (arch, subset), runs in sets.items():
        res = score(runs, sets[("gap", "Full")], proto.analysis, tau_ps=1.0, equilibration_ps=0.2)
        res.update(committee_id=f"{arch}/{subset}", arch=arch, subset=subset, reference_committee="gap/Full")
        key = f"score-{arch}-{subset}"
        store.register(key, "score", f"score {arch}/{subset}", {}, [], "test")
        store.mark_done(key, {"schema": ScoreParams.schema_id(), **res}, {}, 0.1)
    store.close()
    return ws


def test_report_writes_tables_figures_and_html(scored_store, tmp_path):
    out = tmp_path / "report"
    r = runner.invoke(app, ["report", "-w", str(scored_store), "-o", str(out)])
    assert r.exit_code == 0, r.output
    for f in ("table.md", "table.csv", "table.tex", "members.csv", "fig1a_stability.png", "fig1b_density.png",
              "fig1c_D_CHO2.png", "fig1d_D_CO2.png", "report.html"):
        assert (out / f).stat().st_size > 200, f
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 4 and set(table.architecture) == {"gap", "mace"}
    members = pd.read_csv(out / "members.csv")
    gap_opls = members[members.committee == "gap/OPLS"]
    assert list(gap_opls.Q) == pytest.approx([0.3, 0.3])  # unstable: S = 0.3, R = V = 0
    row = table[table.committee == "mace/OPLS"].iloc[0]
    assert row["t_stab NPT (ps)"].startswith("0.500")
    html = (out / "report.html").read_text()
    assert "demonstration of the machinery" in html and "data:image/png;base64," in html and "Provenance" in html
    assert r"\begin{tabular}" in (out / "table.tex").read_text()
    # Q's interval (#33 item 5): the committee's from its members' Q and intervals; a member that failed both runs
    # has Q = S exactly, and the committee interval of two identical members is that point
    assert list(gap_opls.Q_low) == pytest.approx([0.3, 0.3]) and list(gap_opls.Q_high) == pytest.approx([0.3, 0.3])
    assert table[table.committee == "gap/OPLS"].iloc[0]["Q 95 % interval"] == "0.30–0.30"
    assert table[table.committee == "gap/OPLS"].iloc[0]["Q vs 1"] == "unstable"
    from harness.report.build import stability_verdict

    assert [stability_verdict(*x) for x in ((1.2, 2.0), (0.5, 1.4), (0.2, 0.9), (np.nan, 1.0))] == \
        ["stable", "undetermined", "unstable", "–"]
    from harness.quality import committee_interval

    mace = members[members.committee == "mace/Full"]
    ci = committee_interval(list(mace.Q), list(mace.Q_low), list(mace.Q_high))
    assert ci.low < mace.Q.mean() < ci.high
    assert table[table.committee == "mace/Full"].iloc[0]["Q 95 % interval"] == f"{ci.low:.2f}–{ci.high:.2f}"


def test_report_without_scores_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["report", "-w", str(tmp_path), "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and "no harness.sqlite" in r.output
