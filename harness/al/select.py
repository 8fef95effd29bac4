"""The active-learning selection rule (SCIENCE.md §8), a pure function over a sigma2_F series.

From each exploration trajectory take the first frame whose committee force variance sigma2_F exceeds
the threshold (0.5 eV²/Å² in the paper); if none does, the frame with the largest sigma2_F. Non-finite
values (a frame the committee could not evaluate) are ignored, never selected. The frame at which another
stop rule ended the trajectory (density outside the window, a broken bond) is not a candidate either: it
is the configuration that rule rejected, not one the committee is uncertain about. When the variance rule
itself stopped the run, its stopping frame is the first above the threshold and is the one taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Selection", "select_frame"]


@dataclass(frozen=True)
class Selection:
    index: int
    sigma2_F: float
    reason: str  # "threshold" (first above) or "max" (fallback)


def select_frame(sigma2_F, threshold: float | None = None, *, stop_index: int | None = None) -> Selection:
    """Index of the frame to relabel from one trajectory's sigma2_F series (eV²/Å²).

    Parameters
    ----------
    sigma2_F
        Committee force variance of the candidate frames, in time order.
    threshold
        The variance rule's threshold (eV²/Å²); default: the active-learning rule set's
        (:data:`harness.md.detectors.RULES`).
    stop_index
        Index of the frame at which a stop rule *other than* the variance rule ended the trajectory
        (density window, bond stretch): excluded from the candidates. None when the run ended at its
        length or was stopped by the variance rule.
    """
    if threshold is None:
        from harness.md.detectors import RULES

        threshold = RULES["active_learning"]["max_sigma2_F_eV2_A2"]
    s = np.asarray(sigma2_F, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"sigma2_F must be a 1-d series, got shape {s.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    finite = np.isfinite(s)
    if stop_index is not None:
        if not -s.size <= stop_index < s.size:
            raise ValueError(f"stop_index {stop_index} is outside the series of {s.size} frames")
        finite[stop_index] = False
    if not finite.any():
        excluded = " (the stopping frame excluded)" if stop_index is not None else ""
        raise ValueError(f"no finite sigma2_F among {s.size} frames{excluded}: nothing to select")
    above = np.flatnonzero(finite & (s > threshold))
    if above.size:
        k = int(above[0])
        return Selection(k, float(s[k]), "threshold")
    k = int(np.flatnonzero(finite)[np.argmax(s[finite])])
    return Selection(k, float(s[k]), "max")
