"""The AL selection rule on synthetic sigma2_F series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.al.select import select_frame


def test_first_frame_above_threshold_is_taken():
    s = select_frame([0.1, 0.2, 0.7, 0.3, 0.9], threshold=0.5)
    assert (s.index, s.sigma2_F, s.reason) == (2, 0.7, "threshold")


def test_equal_to_threshold_does_not_cross():
    assert select_frame([0.5, 0.4], threshold=0.5).reason == "max"


def test_fallback_is_the_maximum():
    s = select_frame([0.1, 0.35, 0.2, 0.35], threshold=0.5)
    assert (s.index, s.reason) == (1, "max")  # the first of equal maxima


def test_nan_and_inf_are_ignored():
    s = select_frame([math.nan, 0.2, math.inf, 0.1], threshold=0.5)
    assert (s.index, s.reason) == (1, "max")
    s = select_frame([math.nan, 0.6], threshold=0.5)
    assert (s.index, s.reason) == (1, "threshold")


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="no finite sigma2_F among 2 frames"):
        select_frame([math.nan, math.nan])
    with pytest.raises(ValueError, match="1-d series"):
        select_frame(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="threshold must be positive"):
        select_frame([0.1], threshold=0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 5, allow_nan=False) | st.just(math.nan), min_size=1, max_size=50).filter(
    lambda xs: any(not math.isnan(x) for x in xs)), st.floats(0.01, 4))
def test_rule_properties(xs, threshold):
    s = select_frame(xs, threshold)
    finite = [x for x in xs if not math.isnan(x)]
    if any(x > threshold for x in finite):
        assert s.reason == "threshold" and xs[s.index] > threshold
        assert all(not (x > threshold) for x in xs[:s.index] if not math.isnan(x))
    else:
        assert s.reason == "max" and xs[s.index] == max(finite)


def test_the_frame_another_rule_stopped_at_is_never_selected():
    """The run left the density window at its last frame, which also has the largest sigma2_F (below the
    threshold): the fallback takes the largest of the others. Without the stop it would take the last."""
    series = [0.1, 0.3, 0.2, 0.45]
    assert select_frame(series, 0.5).index == 3
    s = select_frame(series, 0.5, stop_index=3)
    assert (s.index, s.sigma2_F, s.reason) == (1, 0.3, "max")
    s = select_frame([0.1, 0.2, 0.9], 0.5, stop_index=-1)  # above the threshold, but the density rule stopped it
    assert (s.index, s.reason) == (1, "max")
    with pytest.raises(ValueError, match="stopping frame excluded"):
        select_frame([0.4], 0.5, stop_index=0)
    with pytest.raises(ValueError, match="outside the series"):
        select_frame([0.4], 0.5, stop_index=1)


def _stopped_run(tmp_path, sigma2, failure):
    """A run directory as the AL exploration writes it: frames and committee checks every 5 steps, and
    ``result.json`` with the failure that stopped it."""
    import json

    import pandas as pd
    from ase import Atoms

    from harness.h5md import H5MDWriter

    atoms = Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], cell=[8.0] * 3, pbc=True)
    atoms.arrays["mol_id"] = np.zeros(3, dtype=int)
    h5 = H5MDWriter(tmp_path / "trajectory.h5md", atoms, observables=("sigma2_F",))
    rows = []
    for k, s in enumerate(sigma2):
        step = 5 * (k + 1)
        a = atoms.copy()
        a.positions += 0.01 * k
        h5.write(a, step, step * 0.0005, {"sigma2_F": s})
        rows.append({"step": step, "time_ps": step * 0.0005, "sigma2_F": s})
    h5.close()
    pd.DataFrame(rows).to_parquet(tmp_path / "thermo.parquet")
    (tmp_path / "result.json").write_text(json.dumps({"ensemble": "npt", "failure": failure}))
    return tmp_path


@pytest.mark.parametrize("detector, step", [("density", 20), ("bond_stretch", 20), ("committee_variance", 20),
                                            (None, None)])
def test_selection_from_a_run_excludes_the_stopping_frame_unless_the_variance_rule_stopped_it(tmp_path, detector,
                                                                                               step):
    from harness.al.tasks import selected_frame

    failure = None if detector is None else {"detector": detector, "step": step, "time_ps": step * 0.0005,
                                             "value": 0.1, "threshold": 0.5, "message": ""}
    run = _stopped_run(tmp_path, [0.1, 0.3, 0.2, 0.45], failure)
    atoms, info = selected_frame(run, 0.5)
    excluded = detector in ("density", "bond_stretch")
    # else the variance rule (or nothing) stopped it: the last frame is a candidate like any other
    assert (info["step"], info["reason"]) == ((10, "max") if excluded else (20, "max"))
    assert np.allclose(atoms.positions[0], 0.01 * (1 if excluded else 3))
    assert info["stop_frame_excluded"] is excluded and info["stopped_by"] == detector
