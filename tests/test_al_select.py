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
