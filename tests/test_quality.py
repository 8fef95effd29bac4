"""The Q score (SCIENCE.md §7): the paper's worked example, the corrected typos, bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.quality import MemberInputs, committee_score, member_score

TAU = 1000.0


def test_paper_worked_example_V():
    """D_m = 39, D_ref = 48 (1e-6 cm²/s) -> V = 1 - tanh(9/48) = 0.815."""
    s = member_score(MemberInputs("m", TAU, TAU, kl=0.0, D=39.0), tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    assert s.V == pytest.approx(0.815, abs=0.001)
    assert s.S == 1.0 and s.R == 1.0 and s.Q == pytest.approx(2.815, abs=0.001)


def test_S_caps_at_one_and_is_min_not_max():
    long = member_score(MemberInputs("m", 3 * TAU, TAU, kl=0.1, D=48.0), tau_ps=TAU, kl_baseline=0.1, D_ref=48.0)
    short = member_score(MemberInputs("m", 0.25 * TAU, 0.0), tau_ps=TAU, kl_baseline=0.1, D_ref=48.0)
    assert long.S == 1.0
    assert short.S == pytest.approx(0.25)


def test_unstable_member_gets_R_and_V_zero_even_without_observables():
    s = member_score(MemberInputs("m", 0.6 * TAU, 0.9 * TAU), tau_ps=TAU, kl_baseline=0.05, D_ref=48.0)
    assert (s.R, s.V) == (0.0, 0.0) and s.Q == pytest.approx(0.6)
    assert not s.reached_npt and not s.reached_nvt
    # stable NPT but unstable NVT: R counts, V does not (H(t - tau), not the paper's printed H(tau - t))
    s = member_score(MemberInputs("m", TAU, 0.5 * TAU, kl=0.05), tau_ps=TAU, kl_baseline=0.05, D_ref=48.0)
    assert s.R == 1.0 and s.V == 0.0


def test_kl_at_or_below_the_reference_baseline_gives_full_R():
    s = member_score(MemberInputs("m", TAU, TAU, kl=0.02, D=48.0), tau_ps=TAU, kl_baseline=0.05, D_ref=48.0)
    assert s.R == 1.0
    s = member_score(MemberInputs("m", TAU, TAU, kl=1.05, D=48.0), tau_ps=TAU, kl_baseline=0.05, D_ref=48.0)
    assert s.R == pytest.approx(1 - math.tanh(1.0))
    s = member_score(MemberInputs("m", TAU, TAU, kl=math.inf, D=48.0), tau_ps=TAU, kl_baseline=0.05, D_ref=48.0)
    assert s.R == 0.0


def test_missing_inputs_are_errors_not_zeros():
    with pytest.raises(ValueError, match="reached the horizon but its KL divergence is None"):
        member_score(MemberInputs("m", TAU, TAU, kl=None, D=40.0), tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    with pytest.raises(ValueError, match="reached the horizon but its diffusivity is None"):
        member_score(MemberInputs("m", TAU, TAU, kl=0.1, D=None), tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    with pytest.raises(ValueError, match="reference diffusivity must be positive"):
        member_score(MemberInputs("m", TAU, TAU, kl=0.1, D=40.0), tau_ps=TAU, kl_baseline=0.0, D_ref=0.0)
    with pytest.raises(ValueError, match="t_stab NPT"):
        member_score(MemberInputs("m", -1.0, TAU), tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    with pytest.raises(ValueError, match="no committee members"):
        committee_score([], tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)


def test_committee_mean_spread_and_terms():
    members = [MemberInputs("a", TAU, TAU, kl=0.0, D=48.0), MemberInputs("b", 0.5 * TAU, 0.2 * TAU)]
    cs = committee_score(members, tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    assert cs.Q == pytest.approx((3.0 + 0.5) / 2)
    mean, std, sem = cs.stat("Q")
    assert std == pytest.approx(math.sqrt(((3 - 1.75) ** 2 + (0.5 - 1.75) ** 2) / 1))
    assert sem == pytest.approx(std / math.sqrt(2))
    d = cs.as_dict()
    assert d["committee"]["S"]["mean"] == pytest.approx(0.75) and len(d["members"]) == 2


times = st.floats(min_value=0.0, max_value=5 * TAU, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(t_npt=times, t_nvt=times, kl=st.floats(0.0, 1e6) | st.just(math.inf), base=st.floats(0.0, 10.0),
       D=st.floats(-1e3, 1e3), D_ref=st.floats(1e-6, 1e3), tau=st.floats(1e-3, 1e4))
def test_Q_is_bounded(t_npt, t_nvt, kl, base, D, D_ref, tau):
    s = member_score(MemberInputs("m", t_npt, t_nvt, kl=kl, D=D), tau_ps=tau, kl_baseline=base, D_ref=D_ref)
    for term in (s.S, s.R, s.V):
        assert 0.0 <= term <= 1.0
    assert 0.0 <= s.Q <= 3.0
    assert s.Q == pytest.approx(s.S + s.R + s.V)


def test_a_failure_at_or_after_the_horizon_does_not_reach_it():
    """SCIENCE.md §5: a run reaches the horizon only if it has no failure and t >= tau; a failure at the
    last check (t_stab = run length = tau) is a failure. S stays min(1, t_stab/tau)."""
    ok = member_score(MemberInputs("m", TAU, TAU, kl=0.0, D=48.0), tau_ps=TAU, kl_baseline=0.0, D_ref=48.0)
    assert (ok.R, ok.V) == (1.0, 1.0) and ok.reached_npt and ok.reached_nvt
    s = member_score(MemberInputs("m", TAU, TAU, kl=0.0, D=48.0, npt_failed=True, nvt_failed=True), tau_ps=TAU,
                     kl_baseline=0.0, D_ref=48.0)
    assert (s.S, s.R, s.V, s.Q) == (1.0, 0.0, 0.0, 1.0) and not s.reached_npt and not s.reached_nvt
    # a failed run needs no observables; the other ensemble is judged on its own
    s = member_score(MemberInputs("m", 1.5 * TAU, TAU, D=39.0, npt_failed=True), tau_ps=TAU, kl_baseline=0.0,
                     D_ref=48.0)
    assert s.S == 1.0 and s.R == 0.0 and s.V == pytest.approx(0.815, abs=0.001)
