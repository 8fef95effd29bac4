"""State-point axes, maps and Arrhenius tables (issue #33 items 1, 2, 4)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.errors import ConfigError
from harness.observables.arrhenius import K_B_EV_K
from harness.sweep.plan import plan_sweep
from harness.sweep.spec import load_sweep
from harness.validation.statepoints import StatePoint, ideal_density, state_protocol
from tests.helpers import score_result

ROOT = Path(__file__).resolve().parents[1]
CI_STATE = ROOT / "protocols" / "sweeps" / "ci-state.yaml"


def _spec(tmp_path, **change) -> Path:
    data = yaml.safe_load(CI_STATE.read_text())
    data.update(dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"), protocol=str(ROOT / "protocols" / "ci-short.yaml"))
    for k, v in change.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_axes_plan_every_committee_at_every_point_and_keep_the_protocols_own_runs(tmp_path):
    """3 temperatures × 2 compositions: 6 validation graphs (4 members × 2 ensembles each), 12 scores each carrying its
    state point, one ramp per member; the protocol's own point's MD keys are those of the same spec without axes
    (its finished runs are reused), while its scores (now carrying the point) are new tasks."""
    ws = tmp_path / "ws"
    spec, inputs = load_sweep(_spec(tmp_path))
    tasks = plan_sweep(spec, inputs, ws)
    kinds = collections.Counter(t.kind for t in tasks)
    assert kinds == {"train": 4, "md": 48, "observe": 48, "score": 12, "ramp": 4}
    points = {(t.params.state_point.temperature_K, t.params.state_point.composition) for t in tasks
              if t.kind == "score"}
    assert points == {(t, c) for t in (450.0, 500.0, 550.0) for c in ("EC=4,EMC=8", "EC=8,EMC=4")}
    plain, inputs2 = load_sweep(_spec(tmp_path, temperatures_K=None, compositions=None, heating_ramp=None))
    base = plan_sweep(plain, inputs2, ws)
    md_keys = {t.key for t in tasks if t.kind == "md"}
    assert {t.key for t in base if t.kind == "md"} <= md_keys
    assert not {t.key for t in base if t.kind == "score"} & {t.key for t in tasks if t.kind == "score"}
    primary = [t for t in tasks if t.kind == "score" and t.params.state_point.primary]
    assert len(primary) == 2 and all("@" not in t.label for t in primary)
    protos = {t.params.protocol.name: t.params.protocol for t in tasks if t.kind == "md"}
    hot = protos["ci-short-550K-EC8-EMC4"]
    assert hot.temperature_K == 550 and hot.system.composition == "EC=8,EMC=4"
    assert hot.system.density_g_cm3 == pytest.approx(1.0 * ideal_density("EC=8,EMC=4") / ideal_density("EC=4,EMC=8"),
                                                     abs=1e-4)
    assert ideal_density("EC=8,EMC=4") > ideal_density("EC=4,EMC=8")  # EC (1.32 g/cm³) is denser than EMC
    ramp = [t for t in tasks if t.kind == "ramp"][0].params
    assert ramp.protocol.temperature_K == 400 and ramp.protocol.npt.length_ps == pytest.approx(0.02)


def test_state_protocol_at_the_protocols_own_point_is_the_protocol():
    from harness.md.protocol import load_protocol

    proto = load_protocol(ROOT / "protocols" / "ci-short.yaml")
    assert state_protocol(proto, StatePoint(temperature_K=500, composition="EMC=8,EC=4")) is proto


@pytest.mark.parametrize("change, message", [
    ({"temperatures_K": [450, 450]}, "temperatures_K must not repeat"),
    ({"temperatures_K": [-3, 450]}, "temperatures_K must be positive"),
    ({"compositions": ["EC=4,XYZ=8"]}, "XYZ"),
    ({"heating_ramp": {"start_K": 900, "end_K": 400, "rate_K_per_ps": 10}}, "end_K"),
    # 9 molecules at 1.09 g/cm³: a 1.086-nm cell, under twice the 0.55-nm cut-off (the start would fail in its task)
    ({"compositions": ["EC=6,EMC=3"]}, r"1\.086 nm, less than twice the OPLS-AA cut-off"),
])
def test_bad_axes_are_clear_errors(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_spec(tmp_path, **change))


def _scores(ea=0.15, d0=1.0e-3, ref_ea=0.2, temps=(450.0, 500.0, 550.0), seed=0, rel=0.03):
    """Synthetic scores of a model committee (3 members) and the reference at three temperatures: each member's D_EC
    and D_EMC follow D0 exp(−Ea/kT) with 3 % scatter; kinisi-style own errors of 3 %."""
    rng = np.random.default_rng(seed)
    out = []
    for cid, e in (("deepmd/X", ea), ("ref:gap/X", ref_ea)):
        for t in temps:
            members = []
            for k in range(3):
                species = {}
                for sp in ("EC", "EMC"):
                    d = d0 * np.exp(-e / (K_B_EV_K * t)) * 1e4 * (1 + rel * rng.standard_normal())  # Å²/ps
                    species[sp] = {"n_molecules": 4, "D_block_A2_ps": d, "sem_block_A2_ps": 0.01 * d, "n_blocks": 4,
                                   "beta": 1.0, "beta_low": 0.95, "beta_high": 1.05, "diffusive": True,
                                   "D_kinisi_A2_ps": d, "kinisi_low_A2_ps": d * (1 - 0.0588),
                                   "kinisi_high_A2_ps": d * (1 + 0.0588)}
                diff = {"species": species, "D_weighted_block_A2_ps": np.mean([s["D_block_A2_ps"] for s in species.values()]),
                        "diffusive": True, "beta_threshold": 0.9, "cell_length_A": 13.0}
                members.append({"name": f"member-{k}", "diffusion": diff, "Q": 2.5, "Q_low": 2.3, "Q_high": 2.7})
            sc = score_result(cid, cid.split("/")[0].replace("ref:", ""), members, subset="X", tau_ps=10.0)
            out.append(sc.model_copy(update={
                "state_point": StatePoint(temperature_K=t, composition="EC=4,EMC=8", primary=t == 500.0),
                "reference_committee": "ref:gap/X"}))
    return out


def test_arrhenius_table_recovers_a_known_activation_and_tells_it_from_the_reference():
    """Model Ea 0.15 eV, reference 0.20 eV: each fit's 95 % interval holds its own Ea, and the difference's interval
    excludes 0 (verdict "differs"); the same Ea on both sides is "undetermined" (not "equal")."""
    from harness.report.statemaps import arrhenius_table, state_table

    arr = arrhenius_table(_scores())
    assert set(arr.verdict) == {"fitted"} and len(arr) == 4
    for _, r in arr.iterrows():
        truth = 0.15 if r.committee == "deepmd/X" else 0.20
        assert r.Ea_low_eV < truth < r.Ea_high_eV, r
    model = arr[arr.committee == "deepmd/X"]
    assert set(model.Ea_vs_reference) == {"differs"} and (model.dEa_high_eV < 0).all()
    same = arrhenius_table(_scores(ref_ea=0.15, seed=1))
    assert set(same[same.committee == "deepmd/X"].Ea_vs_reference) == {"undetermined"}
    four = arrhenius_table(_scores(temps=(400.0, 450.0, 500.0, 550.0)))
    assert {"T0_K", "T0_low_K", "non_arrhenius"} <= set(four.columns) and four.T0_low_K.notna().all()
    assert "T0_K" not in arr.columns  # three temperatures: no VFT
    two = arrhenius_table(_scores(temps=(450.0, 500.0)))
    assert set(two.verdict) == {"undetermined"} and "needs 3" in two.why.iloc[0]
    st = state_table(_scores())
    assert len(st) == 6 and st.primary.sum() == 2
    assert set(st.columns) >= {"Q", "Q_ci_low", "Q_ci_high", "S", "S_se", "ref_density_g_cm3", "ref_D_w",
                               "n_reached_npt"}
    assert (st.Q_ci_low <= st.Q).all() and (st.Q <= st.Q_ci_high).all()


def test_the_same_runs_scored_by_two_sweeps_are_one_row_the_one_with_its_state_point():
    """A reference scored by a sweep without axes and by one with them (same runs): one score is kept, the one that
    carries its state point (the state table needs it); other committees and other runs are kept."""
    from harness.report.data import unique_scores

    plain = score_result("ref:gap/X", "gap", [{"name": "member-0"}])
    pointed = plain.model_copy(update={"state_point": StatePoint(temperature_K=500, composition="EC=4,EMC=8",
                                                                 primary=True)})
    other = score_result("deepmd/X", "deepmd", [{"name": "member-0", "npt_run": "md/x/npt-r0"}])
    kept = unique_scores([plain, other, pointed])
    assert len(kept) == 2 and kept[0].state_point is not None and kept[1].committee_id == "deepmd/X"


@pytest.mark.slow
def test_ci_state_run():
    """After `make ci-state`: the ci workspace's report holds the map of 2 committees × 6 state points with Q's
    interval, the Arrhenius fits at 3 temperatures, the reference's maps and a ramp row per member."""
    import os

    import pandas as pd

    ws = Path(os.environ.get("HARNESS_CI_WORKSPACE", ROOT / "runs" / "ci")).resolve()
    report = ws / "report"
    if not (report / "state_points.csv").exists():
        pytest.fail(f"{report}: no state_points.csv (run `make ci-state` first, or set HARNESS_CI_WORKSPACE)")
    st = pd.read_csv(report / "state_points.csv")
    assert len(st) == 12 and set(st.committee) == {"deepmd/OPLS+VS", "ref:gap/OPLS+VS"}
    assert sorted(set(st.temperature_K)) == [450, 500, 550] and set(st.composition) == {"EC=4,EMC=8", "EC=8,EMC=4"}
    assert (st.Q_ci_low <= st.Q + 1e-9).all() and (st.Q <= st.Q_ci_high + 1e-9).all() and st.primary.sum() == 2
    arr = pd.read_csv(report / "arrhenius.csv")
    assert set(arr.species) == {"EC", "EMC"} and {"fitted", "undetermined"} >= set(arr.verdict)
    ramp = pd.read_csv(report / "ramp.csv")
    assert len(ramp) == 4 and ((ramp.T_fail_K > 400) & (ramp.T_fail_K <= 1000)).all()
    for f in ("fig10_state_maps.png", "fig11_reference_state.png", "fig12_arrhenius.png", "fig13_ramp.png"):
        assert (report / f).stat().st_size > 10_000, f
    assert "State points" in (report / "report.html").read_text()
