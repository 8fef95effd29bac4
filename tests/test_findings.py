"""The paper's findings as statistics on member tables (harness.report.findings; analysis/findings.py).

Every verdict of every table is asserted: a paper-true table, censored, tied and null tables, single members,
effects of the wrong size, and the paper's own property claims (MACE D ~1.5x the reference is a reproduction,
not a failure)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.findings import findings

H = 5.0  # horizon, ps
REF = "ref:gap/Full"
CLAIMS = ["more stable", "few steps", "no gain", "two orders", "density", "MACE D", "DeePMD D"]


def _table(t_npt: dict[str, list[float]], *, t_nvt: dict[str, list[float]] | None = None,
           density: dict[str, float] | None = None, D: dict[str, float] | None = None,
           ids: dict[str, str] | None = None, spread: float = 0.002) -> pd.DataFrame:
    """Members with the given NPT t_stab (NVT: the same unless given; a run below H has failed); densities
    around 1.00 g/cm³ and D_EC/D_EMC around 40/50 × 10⁻⁶ cm²/s unless given (per committee)."""
    rows = []
    for committee, ts in t_npt.items():
        arch, subset = committee.split(":")[-1].split("/")
        nvt = (t_nvt or {}).get(committee, ts)
        for k, t in enumerate(ts):
            off = k - (len(ts) - 1) / 2
            d = (D or {}).get(committee, 1.0)
            rows.append({"committee": (ids or {}).get(committee, committee), "arch": arch, "subset": subset,
                         "member": f"member-{k}", "campaign": None, "finetune": None,
                         "t_stab_npt_ps": t, "t_stab_nvt_ps": nvt[k], "npt_failed": t < H, "nvt_failed": nvt[k] < H,
                         "density_g_cm3": (density or {}).get(committee, 1.00) + spread * off,
                         "density_run_se_g_cm3": 0.001,
                         "D_EC": d * (40.0 + 0.5 * off), "D_EMC": d * (50.0 + 0.5 * off),
                         "D_EC_run_se": 0.5, "D_EMC_run_se": 0.5})
    return pd.DataFrame(rows)


FAIL_OPLS = [0.008, 0.009, 0.010, 0.011, 0.012]
PAPER = {"mace/OPLS": [H] * 5, "mace/OPLS+SM": [H] * 5, "mace/OPLS+VS": [H] * 5, "mace/Full": [H] * 5,
         "deepmd/OPLS": FAIL_OPLS, "deepmd/OPLS+SM": [0.0085, 0.0095, 0.0105, 0.0115, 0.0125],
         "deepmd/OPLS+VS": [H] * 5, "deepmd/Full": [H] * 5, REF: [H] * 5}
PAPER_D = {f"mace/{s}": 1.5 for s in ("OPLS", "OPLS+SM", "OPLS+VS", "Full")} | {"deepmd/Full": 0.8}


def _run(table, **kw):
    kw = {"horizon_ps": H, "reference": REF, "check_interval_steps": 10, **kw}
    return findings(table, **kw)


def _verdicts(table, **kw):
    return [f.verdict for f in _run(table, **kw)]


def test_a_paper_true_table_reproduces_every_finding_with_its_test():
    fs = _run(_table(PAPER, D=PAPER_D))
    assert [f.verdict for f in fs] == ["reproduced"] * 7, [(f.claim, f.measured) for f in fs]
    assert "Gehan" in fs[0].test and "α = 0.05" in fs[0].test and "exact permutation p = 1.57e-05" in fs[0].measured
    assert "equivalence" in fs[2].test and "within [1/2, 2]" in fs[2].test
    assert "10^1.5" in fs[3].test and "Hodges–Lehmann" in fs[3].measured
    assert "ratio 1.50" in fs[5].measured and "Welch" in fs[5].test
    assert not any(f.caveats for f in fs)  # a GAP reference outside the MACE/DeePMD grid


def test_all_runs_censored_decide_nothing_about_differences():
    table = _table({k: [H] * 5 for k in PAPER}, D=PAPER_D)
    v = _verdicts(table)
    assert v[0] == "undetermined"  # every run reaches the horizon: no difference can show
    assert v[1] == "not reproduced"  # DeePMD/OPLS survived the horizon: it did not fail within a few steps
    assert v[2] == "undetermined" and v[3] == "undetermined"
    assert "every run reaches the horizon" in _run(table)[0].measured
    assert "OPLS runs reach the horizon" in _run(table)[3].measured


def test_a_null_table_is_undetermined_not_a_failure():
    """MACE and DeePMD drawn from one distribution: no significant difference is 'undetermined', never
    'not reproduced' (absence of a difference is not evidence of none)."""
    rng = np.random.default_rng(7)
    same = {f"{a}/{s}": list(rng.exponential(1.0, 3)) for a in ("mace", "deepmd") for s in ("OPLS", "OPLS+SM")}
    v = _verdicts(_table({**same, REF: [H] * 3}))
    assert v[0] == "undetermined"


def test_ties_score_zero():
    """Identical failure times in both arms: every pair tied, p = 1 both ways, undetermined."""
    v = _verdicts(_table({"mace/OPLS": [0.5] * 3, "deepmd/OPLS": [0.5] * 3, REF: [H] * 3}))
    assert v[0] == "undetermined"


def test_single_members_are_undetermined_everywhere():
    one = {k: v[:1] for k, v in PAPER.items()}
    fs = _run(_table(one, D=PAPER_D))
    assert [f.verdict for f in fs] == ["undetermined"] * 7, [(f.claim, f.measured) for f in fs]
    assert "at least 3 needed" in fs[1].measured


def test_the_wrong_direction_does_not_reproduce():
    table = _table({**PAPER, "mace/OPLS": [0.002] * 3, "deepmd/OPLS": [H] * 3, "mace/OPLS+SM": [0.002] * 3,
                    "deepmd/OPLS+SM": [H] * 3})
    assert _verdicts(table)[0] == "not reproduced"


def test_stability_is_npt_only():
    """MACE fails early in NVT only: Fig. 1a's NPT comparison is unchanged (NVT enters V only)."""
    table = _table(PAPER, t_nvt={k: [0.01] * 5 for k in PAPER if k.startswith("mace")}, D=PAPER_D)
    v = _verdicts(table)
    assert v[0] == "reproduced" and v[5] == "undetermined"  # MACE D: no member stable in NVT


def test_a_ten_fold_gain_is_not_two_orders():
    table = _table({**PAPER, "deepmd/OPLS": [0.30, 0.35, 0.40, 0.45, 0.50],
                    "deepmd/OPLS+VS": [3.0, 3.5, 4.0, 4.5, 4.9]})
    f = _run(table)[3]
    assert f.verdict == "not reproduced", f.measured


def test_a_horizon_too_short_to_show_two_orders_is_undetermined():
    table = _table({**PAPER, "deepmd/OPLS": [0.3, 0.35, 0.4, 0.45, 0.5]})  # VS censored at 5 ps: ratio >= 10 only
    f = _run(table)[3]
    assert f.verdict == "undetermined" and "horizon is too short" in f.measured


def test_a_significant_gain_from_sm_does_not_reproduce():
    v = _verdicts(_table({**PAPER, "deepmd/OPLS+SM": [0.1, 0.11, 0.12, 0.13, 0.14]}))
    assert v[2] == "not reproduced"


def test_few_steps_counts_from_the_failure_step_and_the_check_interval():
    table = _table(PAPER)
    assert _verdicts(table, check_interval_steps=10)[1] == "reproduced"  # steps 16..24, all <= 50
    late = _table({**PAPER, "deepmd/OPLS": [0.05, 0.06, 0.07]})  # steps 100..140: certainly after 50
    assert _verdicts(late, check_interval_steps=10)[1] == "not reproduced"
    # checked every 100 steps: a failure seen at step 100 happened somewhere in 1..100
    coarse = _table({**PAPER, "deepmd/OPLS": [0.05, 0.05, 0.05]})
    assert _verdicts(coarse, check_interval_steps=100)[1] == "undetermined"
    # the protocol's own timestep: the same times at 1 fs are half the steps
    assert _verdicts(late, timestep_fs=2.0, check_interval_steps=10)[1] == "reproduced"


def test_density_out_of_margin_and_the_run_uncertainty_floor():
    v = _verdicts(_table(PAPER, density={"mace/OPLS": 1.10}, D=PAPER_D))
    assert v[4] == "not reproduced"
    # members agree among themselves to 1e-4 but each run's own SEM is 0.05: equivalence cannot be shown
    t = _table(PAPER, D=PAPER_D, spread=1e-4)
    t["density_run_se_g_cm3"] = 0.05
    assert _verdicts(t)[4] == "undetermined"


def test_diffusivity_claims_as_the_paper_makes_them():
    # MACE D equal to the reference within noise: not 'above' -> undetermined; clearly below -> not reproduced
    assert _verdicts(_table(PAPER, D={**PAPER_D, **{f"mace/{s}": 1.0 for s in ("OPLS", "OPLS+SM", "OPLS+VS",
                                                                                "Full")}}))[5] == "undetermined"
    assert _verdicts(_table(PAPER, D={**PAPER_D, "mace/OPLS": 0.6}))[5] == "not reproduced"
    assert _verdicts(_table(PAPER, D={**PAPER_D, "deepmd/Full": 1.3}))[6] == "not reproduced"
    # an MSD that is not yet diffusive leaves D undetermined
    t = _table(PAPER, D=PAPER_D)
    t["D_EC_beta"] = 0.7
    assert _verdicts(t)[5] == "undetermined"
    # a point β above 0.9 whose 95 % interval reaches below it: not shown diffusive -> undetermined
    t["D_EC_beta"], t["D_EC_beta_low"], t["D_EC_beta_high"] = 0.95, 0.85, 1.05
    assert _verdicts(t)[5] == "undetermined"
    assert "diffusive regime undetermined" in _run(t)[5].measured
    # the whole interval at or above 0.9: the comparison is made
    t["D_EC_beta_low"] = 0.91
    assert _verdicts(t)[5] == "reproduced"


def test_shipped_committees_are_recognised_by_arch_and_subset():
    ids = {k: f"model:demo-{k.replace('/', '-')}" for k in PAPER if not k.startswith("ref")}
    v = _verdicts(_table(PAPER, D=PAPER_D, ids=ids))
    assert v == ["reproduced"] * 7


def test_a_reference_of_a_grid_architecture_is_flagged():
    table = _table({**{k: v for k, v in PAPER.items() if k != REF}, "mace/Full": [H] * 5}, D=PAPER_D)
    fs = _run(table, reference="mace/Full")
    assert all("tilted towards mace" in f.caveats[0] for f in fs[4:])


def test_the_script_reads_a_results_folder(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    _table(PAPER, D=PAPER_D).to_csv(tmp_path / "members.csv", index=False)
    (tmp_path / "summary.json").write_text(json.dumps({"reference_committee": REF, "reference_arch": "gap",
                                                       "horizon_ps": H, "timestep_fs": 0.5,
                                                       "check_interval_steps": 10}))
    spec = importlib.util.spec_from_file_location("findings_script", Path(__file__).parents[1] / "analysis" / "findings.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("[REPRODUCED]") == 7 and "test: Gehan's censored rank test" in out
    assert script.main([str(tmp_path / "nowhere")]) == 2


def test_member_table_flags_each_diffusive_verdict_with_its_interval():
    """The report's flags: β's interval wholly below 0.9 → not diffusive; straddling → undetermined; wholly above
    → no flag; the interval's ends become columns beside β (and are not taken for a species)."""
    from harness.report.data import member_table, species_of
    from tests.helpers import score_result

    def member(name, lo, beta, hi, verdict):
        return {"name": name, "t_stab_npt_ps": 10.0, "t_stab_nvt_ps": 10.0, "S": 1, "R": 1, "V": 1, "Q": 1,
                "diffusion": {"D_weighted_block_A2_ps": 0.3, "diffusive": verdict, "beta_threshold": 0.9,
                              "cell_length_A": 12.0, "species": {"EC": {
                                  "n_molecules": 8, "D_block_A2_ps": 0.3, "sem_block_A2_ps": 0.01, "n_blocks": 4,
                                  "beta": beta, "beta_low": lo, "beta_high": hi, "diffusive": verdict}}}}

    score = score_result("c", "mace", [member("a", 0.5, 0.6, 0.7, False), member("b", 0.85, 0.95, 1.05, None),
                                       member("c", 0.93, 1.0, 1.07, True)], subset="Full")
    t = member_table([score])
    assert t["flags"].tolist() == ["D_EC not diffusive (β 0.60, 95 % 0.50–0.70)",
                                   "D_EC diffusion undetermined (β 0.95, 95 % 0.85–1.05)", ""]
    assert t["D_EC_beta_low"].tolist() == [0.5, 0.85, 0.93] and species_of(t) == ["EC"]
