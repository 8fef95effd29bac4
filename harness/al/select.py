"""The active-learning selection rule (SCIENCE.md §8), a pure function over a sigma2_F series.

From each exploration trajectory take the first frame whose committee force variance sigma2_F exceeds
the threshold (0.5 eV²/Å² in the paper); if none does, the frame with the largest sigma2_F. Non-finite
values (a frame the committee could not evaluate) are ignored, never selected.
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


def select_frame(sigma2_F, threshold: float = 0.5) -> Selection:
    """Index of the frame to relabel from one trajectory's sigma2_F series (eV²/Å²)."""
    s = np.asarray(sigma2_F, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"sigma2_F must be a 1-d series, got shape {s.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    finite = np.isfinite(s)
    if not finite.any():
        raise ValueError(f"no finite sigma2_F among {s.size} frames: nothing to select")
    above = np.flatnonzero(finite & (s > threshold))
    if above.size:
        k = int(above[0])
        return Selection(k, float(s[k]), "threshold")
    k = int(np.flatnonzero(finite)[np.argmax(s[finite])])
    return Selection(k, float(s[k]), "max")
