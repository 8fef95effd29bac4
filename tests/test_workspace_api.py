"""`harness.Workspace`: a workspace's typed results as tables, its trajectories as ASE frames or an MDAnalysis
Universe, its findings (issue #31 item 7)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import InputError


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A store holding what a small sweep stores: MD runs, their observables and two scores (stand-in runs of a
    reference and a model committee, two members each), written through the workers themselves."""
    from harness.models.train import model_run_name
    from harness.validation.contract import MDParams, ObserveParams, RunResult, ScoreParams
    from harness.validation.tasks import observe, score
    from harness.workflow.store import Store
    from tests.observables_helpers import fake_committee, fake_runs, quick_protocol

    proto = quick_protocol()
    ws = tmp_path_factory.mktemp("ws")
    store = Store(ws / "harness.sqlite")
    obs_params = ObserveParams(analysis=proto.analysis, equilibration_ps=proto.equilibration_ps, tau_ps=proto.horizon_ps)
    observed = []

    def record(kind, key, label, result):
        store.register(key, kind, label, {}, [], "toy")
        store.mark_done(key, {"schema": result_schema[kind], **result.model_dump(mode="json")}, {}, 1.0)

    result_schema = {"md": MDParams.schema_id(), "observe": ObserveParams.schema_id(), "score": ScoreParams.schema_id()}
    for cid, cdir, shift, t_npt in (("gap/Full", fake_committee(ws, "gap", "Full", 2), 0.0, 1.0),
                                    ("mace/OPLS", fake_committee(ws, "mace", "OPLS", 2), 0.03, 0.4)):
        for k, m in enumerate(sorted(cdir.glob("member-*"))):
            fake_runs(ws, m, proto, t_npt=t_npt if k else 1.0, t_nvt=1.0, rho_mean=0.9 + shift, D=0.3, seed=k + 10 * (shift > 0))
            base = ws / "md" / model_run_name(m) / proto.name
            for ens in ("npt", "nvt"):
                run = RunResult(committee=cid, arch=cid.split("/")[0], subset=cid.split("/")[1], member=k, seed=k,
                                run_dir=str(base / f"{ens}-r0"), ensemble=ens, t_stab_ps=t_npt if (k and ens == "npt") else 1.0)
                record("md", f"md-{cid}-{k}-{ens}", f"md {ens} {cid} member {k}", run)
                o = observe(obs_params, {"run": [run]})
                record("observe", f"observe-{cid}-{k}-{ens}", f"observe {ens} {cid} member {k}", o)
                observed.append(o)
    for cid in ("gap/Full", "mace/OPLS"):
        s = score(ScoreParams(analysis=proto.analysis, equilibration_ps=proto.equilibration_ps, tau_ps=proto.horizon_ps,
                              committee=cid, arch=cid.split("/")[0], subset=cid.split("/")[1], reference="gap/Full",
                              reference_is_self=cid == "gap/Full"), {"observed": observed})
        record("score", f"score-{cid}", f"score {cid}", s)
    store.register("score-old", "score", "score old", {}, [], "toy")
    store.mark_done("score-old", {"schema": "score/1", "members": []}, {}, 1.0)  # an older harness's: left out
    store.close()
    return ws


def test_tables_of_a_workspace(workspace):
    import harness

    ws = harness.Workspace(workspace)
    assert {type(s).__name__ for s in ws.results("score")} == {"ScoreResult"} and len(ws.results("score")) == 2
    members = ws.members()
    assert sorted(members.committee.unique()) == ["gap/Full", "mace/OPLS"] and len(members) == 4
    q = ws.q_table()
    assert list(q.committee) == ["gap/Full", "mace/OPLS"] and "Q" in q.columns
    mace = members[members.committee == "mace/OPLS"].sort_values("member")
    assert list(mace.t_stab_npt_ps) == [1.0, 0.4]  # the member that failed in NPT keeps its time
    runs = ws.runs()
    assert len(runs) == 8 and set(runs.ensemble) == {"npt", "nvt"}
    assert ws.tasks(kind="score").status.tolist() == ["done"] * 3
    assert [f.verdict for f in ws.findings()]  # every finding has a verdict (undetermined with 2 members)


def test_trajectories_as_ase_frames_and_an_mdanalysis_universe(workspace):
    import harness

    ws = harness.Workspace(workspace)
    run = ws.runs().query("ensemble == 'nvt'").run_dir.iloc[0]
    frames = ws.trajectory(run)
    u = ws.trajectory(run, as_="mdanalysis")
    assert len(frames) == u.trajectory.n_frames > 10
    assert u.atoms.n_atoms == len(frames[0]) and u.residues.n_residues == int(frames[0].arrays["mol_id"].max()) + 1
    u.trajectory[5]
    np.testing.assert_allclose(u.atoms.positions, frames[5].positions, atol=1e-4)
    np.testing.assert_allclose(u.dimensions[:3], frames[5].cell.lengths(), rtol=1e-6)
    assert frames[5].info["time_ps"] > frames[4].info["time_ps"]
    with pytest.raises(InputError, match="choose 'ase' or 'mdanalysis'"):
        ws.trajectory(run, as_="xyz")


def test_not_a_workspace_and_unknown_kind_are_clear_errors(tmp_path, workspace):
    import harness

    with pytest.raises(InputError, match="not a harness workspace"):
        harness.Workspace(tmp_path)
    with pytest.raises(InputError, match="unknown task kind 'nope'"):
        harness.Workspace(workspace).results("nope")
