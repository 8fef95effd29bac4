"""`harness observe` and `harness score` on stand-in trajectories with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli.main import app
from tests.observables_helpers import brownian_molecules, fake_committee, fake_runs, quick_protocol, write_h5md

runner = CliRunner()


@pytest.fixture()
def brownian_h5md(tmp_path):
    pos, numbers, mol_id = brownian_molecules(60, 600, 0.1, {0: 0.3, 1: 0.1}, 25.0, seed=0, n_species=2, lattice=True)
    return write_h5md(tmp_path / "bm.h5md", pos, numbers, mol_id, np.tile(np.eye(3) * 25.0, (600, 1, 1)), 0.1)


def test_observe_prints_both_estimators(brownian_h5md):
    r = runner.invoke(app, ["observe", str(brownian_h5md), "--equilibration-ps", "5", "--block-ps", "20",
                            "--block-stride-ps", "2", "--skip-ps", "2"])
    assert r.exit_code == 0, r.output
    assert "block D ± SE" in r.output and "kinisi D [95 %]" in r.output and "weighted" in r.output
    assert "density: " in r.output and "fixed cell" in r.output and "COM RDF first peak" in r.output
    r = runner.invoke(app, ["observe", str(brownian_h5md), "--block-ps", "20", "--block-stride-ps", "2",
                            "--skip-ps", "2", "--json"])
    out = json.loads(r.output)
    sp = out["diffusion"]["species"]
    assert sp["CO2"]["D_block_A2_ps"] == pytest.approx(0.3, rel=0.15)
    assert sp["CHO2"]["D_block_A2_ps"] == pytest.approx(0.1, rel=0.15)
    assert sp["CO2"]["kinisi_low_A2_ps"] < sp["CO2"]["D_kinisi_A2_ps"] < sp["CO2"]["kinisi_high_A2_ps"]
    w = out["diffusion"]["D_weighted_block_A2_ps"]
    assert w == pytest.approx((sp["CO2"]["D_block_A2_ps"] + sp["CHO2"]["D_block_A2_ps"]) / 2)


def test_observe_errors_are_one_line(tmp_path, brownian_h5md):
    r = runner.invoke(app, ["observe", str(tmp_path / "nope.h5md")])
    assert r.exit_code == 2 and "no such trajectory" in r.output
    r = runner.invoke(app, ["observe", str(brownian_h5md), "--block-ps", "1", "--skip-ps", "2"])
    assert r.exit_code == 2 and "skip_ps (2.0) must be shorter than block_ps (1.0)" in r.output
    r = runner.invoke(app, ["observe", str(brownian_h5md)])  # default 100 ps blocks > 60 ps of data
    assert r.exit_code == 2 and "fewer than one MSD block of 100 ps" in r.output
    assert "Traceback" not in r.output


@pytest.fixture()
def scored_workspace(tmp_path):
    proto = quick_protocol()
    ws = tmp_path / "ws"
    ref = fake_committee(ws, "gap", "Full", 3)
    model = fake_committee(ws, "mace", "OPLS", 3)
    for k, m in enumerate(sorted(ref.glob("member-*"))):
        fake_runs(ws, m, proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.92, D=0.3, seed=10 + k)
    specs = [(1.0, 1.0, 0.93, 0.3), (1.0, 0.4, 1.05, 0.3), (0.25, 1.0, 0.9, 0.6)]
    for k, (m, (tn, tv, rho, D)) in enumerate(zip(sorted(model.glob("member-*")), specs)):
        fake_runs(ws, m, proto, t_npt=tn, t_nvt=tv, rho_mean=rho, D=D, seed=20 + k)
    return ws, model, ref


def test_score_table_and_json(scored_workspace):
    ws, model, ref = scored_workspace
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref)])
    assert r.exit_code == 0, r.output
    for word in ("t_NPT ps", "D(CO2)", "D(CHO2)", "D(w)", "KL", "committee mean ± SE", "NPT failed at 0.25 ps"):
        assert word in r.output, r.output
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref), "--json"])
    res = json.loads(r.output)
    m0, m1, m2 = res["members"]
    assert m0["S"] == 1.0 and m0["R"] > 0.5 and m0["V"] > 0.5  # close to the reference
    assert m1["R"] < m0["R"] and m1["V"] == 0.0  # density off by 0.13 g/cm³; NVT unstable
    assert m2["S"] == pytest.approx(0.25) and m2["R"] == 0.0 and m2["V"] == pytest.approx(
        1 - np.tanh(abs(m2["diffusion"]["D_weighted_block_A2_ps"] - res["reference"]["D_ref_A2_ps"])
                    / res["reference"]["D_ref_A2_ps"]))
    assert res["committee"]["Q"]["mean"] == pytest.approx(np.mean([m["Q"] for m in res["members"]]))
    assert res["settings"]["kl_rule"] == {"method": "kde", "bandwidth_g_cm3": 0.01, "floor": 1e-12}
    assert res["reference"]["kl_pairs"] == 6 and res["reference"]["density_g_cm3"] == pytest.approx(0.92, abs=0.02)
    assert res["protocol"] == "mini"


def test_score_needs_a_stable_reference_and_all_runs(scored_workspace):
    ws, model, ref = scored_workspace
    res = next((ws / "md").glob("mace-*member-0-seed0/mini/npt-r0")) / "result.json"
    data = json.loads(res.read_text())
    res.write_text(json.dumps({**data, "t_stab_ps": 0.5}))  # now only member 1 reached the horizon
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(ref), "--reference", str(model)])
    assert r.exit_code == 2 and "1 of 3 members reached the horizon (1 ps) in NPT" in r.output
    run = next((ws / "md").glob("mace-*member-1-seed1/mini/nvt-r0"))
    (run / "result.json").unlink()
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref)])
    assert r.exit_code == 2 and "nvt-r0: no result.json (the run has not finished" in r.output
    import shutil

    shutil.rmtree(run)
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref)])
    assert r.exit_code == 2 and "model member member-1-seed1: no NVT run" in r.output
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model / "member-0-seed0"), "--reference", str(ref)])
    assert r.exit_code == 2 and "not a committee directory" in r.output


def test_score_a_failure_at_the_horizon_is_not_reached(scored_workspace):
    """SCIENCE.md §5: member 0 reached tau in both runs; a failure recorded at its last check (t_stab still
    equals tau) makes R = V = 0 while S stays 1."""
    ws, model, ref = scored_workspace
    for ens in ("npt", "nvt"):
        res = next((ws / "md").glob(f"mace-*member-0-seed0/mini/{ens}-r0")) / "result.json"
        data = json.loads(res.read_text())
        failure = {"detector": "bond_stretch", "time_ps": data["t_stab_ps"], "step": 100, "value": 2.0,
                   "threshold": 0.5, "message": "bond 0-1 is 2.0 Å"}
        res.write_text(json.dumps({**data, "failure": failure}))
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref), "--json"])
    assert r.exit_code == 0, r.output
    m0 = json.loads(r.output)["members"][0]
    assert m0["t_stab_npt_ps"] == 1.0 and m0["t_stab_nvt_ps"] == 1.0
    assert (m0["S"], m0["R"], m0["V"]) == (1.0, 0.0, 0.0) and m0["kl"] is None


@pytest.mark.parametrize("bad", ["zero", "nan", "kl"])
def test_score_with_an_unusable_reference_diffusivity_is_a_one_line_error(tmp_path, bad):
    """A reference committee whose molecules do not move (D_ref = 0) or whose D is NaN: V = 1 -
    tanh(|D - D_ref| / D_ref) is undefined, which is the user's input, not a bug: `error: ...`, exit 2.
    Likewise an infinite KL baseline (strict rule, reference members' densities 0.3 g/cm³ apart)."""
    proto = quick_protocol()
    if bad == "kl":
        from harness.observables.density import KLRule

        proto = proto.model_copy(update={"analysis": proto.analysis.model_copy(update={"kl": KLRule(method="strict")})})
    ws = tmp_path / "ws"
    ref = fake_committee(ws, "gap", "Full", 2)
    model = fake_committee(ws, "mace", "OPLS", 1)
    for k, m in enumerate(sorted(ref.glob("member-*"))):
        fake_runs(ws, m, proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.8 + 0.3 * k if bad == "kl" else 0.92,
                  D=0.0 if bad == "zero" else 0.3, seed=k)
    fake_runs(ws, next(model.glob("member-*")), proto, t_npt=1.0, t_nvt=1.0, rho_mean=0.92, D=0.3, seed=9)
    if bad == "nan":  # observables cached with a NaN diffusivity (e.g. from another estimator or a broken file)
        from harness.observables.analysis import observe_run

        for run in (ws / "md").glob("gap-*/mini/nvt-r0"):
            obs = observe_run(run, proto.analysis, equilibration_ps=proto.equilibration_ps, tau_ps=proto.horizon_ps)
            obs["diffusion"]["D_weighted_block_A2_ps"] = float("nan")
            next(run.glob("observables-*.json")).write_text(json.dumps(obs))
    r = runner.invoke(app, ["score", "-w", str(ws), "--model", str(model), "--reference", str(ref)])
    assert r.exit_code == 2, r.output
    what = "the KL baseline between its members is inf" if bad == "kl" else "the diffusivity D_ref"
    assert f"error: reference committee: {what}" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
