"""Environment coverage (issue #32 item 3): how far a frame's atomic environments lie from the training set's.

The alkane extrapolation study (SCIENCE.md §10) shows transfer succeeding once the target's local environments are
covered by the training set. Here:

* :func:`environments` — SOAP power spectra (featomic; 4 Å, the GAP reference's cut-off, l_max 4, n_max 4,
  Gaussian width 0.3 Å), one unit vector per atomic environment, with its frame, atom and element; the neighbour
  types fixed by the caller so that two sets share one feature space; at most ``max_per_species`` environments of
  each element, drawn with a fixed seed (the cost bound).
* :func:`coverage_distance` — each environment's Euclidean distance to the nearest training environment of its
  element, divided by the training set's own nearest-neighbour spread (the median distance of a training
  environment to its nearest other one): 0 for an environment in the training set, ~1 for one as close as training
  environments are to each other, ≫ 1 for one unlike any.
* :func:`frame_coverage` — per frame the largest of its environments' distances (its worst-covered atom).
* :func:`coverage_map` — a two-component PCovC projection (skmatter; mixing 0.5 between PCA's variance and the
  classification of the sets) of each element's environments labelled by set.
* :func:`failure_prediction` — whether a per-frame score (coverage distance, σ²F) predicts a failure within the
  next Δt: ROC AUC with an interval from a bootstrap over runs, ``predicts`` when its lower end (1 %) lies above
  0.5, else ``undetermined``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from harness.errors import InputError

__all__ = ["SOAP", "MAX_PER_SPECIES", "Environments", "environments", "own_spread", "coverage_distance",
           "frame_coverage", "coverage_map", "failure_prediction", "MIN_EVENTS", "ALPHA"]

#: SOAP power spectrum settings (featomic's hyperparameters)
SOAP = {"cutoff": {"radius": 4.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        "density": {"type": "Gaussian", "width": 0.3},
        "basis": {"type": "TensorProduct", "max_angular": 4, "radial": {"type": "Gto", "max_radial": 4}}}
#: environments kept per element and set (subsampled with a fixed seed): the cost bound
MAX_PER_SPECIES = 2000
#: failure prediction: at least this many frames of each class, from at least two runs, else undetermined
MIN_EVENTS = 5
#: the one-sided level behind a "predicts" verdict (the bootstrap interval's lower quantile)
ALPHA = 0.01


@dataclass(frozen=True)
class Environments:
    """Unit SOAP vectors of atomic environments, with the element, frame and atom of each."""

    features: np.ndarray  # (n, n_features)
    numbers: np.ndarray  # (n,) atomic number of the centre
    frame: np.ndarray  # (n,) index into the frames given
    atom: np.ndarray  # (n,) atom index in its frame

    def of(self, z: int) -> "Environments":
        m = self.numbers == z
        return Environments(self.features[m], self.numbers[m], self.frame[m], self.atom[m])

    def __len__(self) -> int:
        return len(self.numbers)


def environments(frames: Sequence[Atoms], types: Sequence[int], *, max_per_species: int | None = MAX_PER_SPECIES,
                 seed: int = 0, where: str = "frames") -> Environments:
    """The SOAP environments of ``frames`` in the feature space of neighbour ``types`` (atomic numbers: every element
    of every set to be compared). An element of the frames outside ``types`` is refused."""
    from featomic import SoapPowerSpectrum
    from metatensor import Labels

    if not frames:
        raise InputError(f"{where}: no frames")
    types = sorted({int(z) for z in types})
    present = sorted({int(z) for a in frames for z in a.numbers})
    extra = sorted(set(present) - set(types))
    if extra:
        raise InputError(f"{where}: element(s) {extra} outside the compared types {types}")
    frames = [_isolated(a) if not a.pbc.any() and a.cell.any() else a for a in frames]
    desc = SoapPowerSpectrum(**SOAP).compute(frames)
    pairs = np.array([[a, b] for i, a in enumerate(types) for b in types[i:]], dtype=np.int32)
    desc = desc.keys_to_properties(Labels(["neighbor_1_type", "neighbor_2_type"], pairs))
    desc = desc.keys_to_samples("center_type")
    block = desc.block()
    x = np.asarray(block.values, dtype=float)
    s = np.asarray(block.samples.values)
    names = list(block.samples.names)
    frame, atom, z = s[:, names.index("system")], s[:, names.index("atom")], s[:, names.index("center_type")]
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norm > 0, norm, 1.0)
    keep = np.arange(len(z))
    if max_per_species is not None:
        rng = np.random.default_rng(seed)
        parts = []
        for el in np.unique(z):
            idx = np.flatnonzero(z == el)
            parts.append(np.sort(rng.choice(idx, max_per_species, replace=False)) if len(idx) > max_per_species
                         else idx)
        keep = np.sort(np.concatenate(parts))
    return Environments(x[keep], z[keep].astype(int), frame[keep].astype(int), atom[keep].astype(int))


def _isolated(atoms: Atoms) -> Atoms:
    """A non-periodic frame without its (unused) cell, as featomic wants it."""
    a = atoms.copy()
    a.set_cell(np.zeros((3, 3)))
    return a


def _nearest(q: np.ndarray, t: np.ndarray, *, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance of each row of ``q`` to its nearest row of ``t`` (unit vectors: |a-b|² = 2 - 2 a·b)."""
    out = np.empty(len(q))
    for k in range(0, len(q), chunk):
        dots = q[k:k + chunk] @ t.T
        if exclude_self:
            np.fill_diagonal(dots[:, k:k + chunk], -np.inf)
        out[k:k + chunk] = np.sqrt(np.clip(2.0 - 2.0 * dots.max(axis=1), 0.0, None))
    return out


def own_spread(train: Environments) -> dict[int, float]:
    """Per element, the median distance of a training environment to its nearest *other* training environment
    (NaN with fewer than two)."""
    out = {}
    for z in np.unique(train.numbers):
        t = train.of(int(z)).features
        out[int(z)] = float(np.median(_nearest(t, t, exclude_self=True))) if len(t) > 1 else np.nan
    return out


def coverage_distance(query: Environments, train: Environments, spread: dict[int, float] | None = None) -> np.ndarray:
    """Each query environment's distance to the nearest training environment of its element over the training
    set's own spread (:func:`own_spread`); inf for an element the training set lacks."""
    spread = own_spread(train) if spread is None else spread
    out = np.full(len(query), np.inf)
    for z in np.unique(query.numbers):
        m = query.numbers == z
        t = train.of(int(z)).features
        if len(t) == 0:
            continue
        s = spread.get(int(z), np.nan)
        d = _nearest(query.features[m], t)
        out[m] = d / s if np.isfinite(s) and s > 0 else d
    return out


def frame_coverage(query: Environments, distance: np.ndarray, n_frames: int) -> np.ndarray:
    """Per frame, the largest coverage distance of its environments (NaN for a frame none of which was kept)."""
    out = np.full(n_frames, np.nan)
    for f in np.unique(query.frame):
        out[f] = float(np.max(distance[query.frame == f]))
    return out


def coverage_map(sets: dict[str, Environments], *, max_per_set: int = 400, mixing: float = 0.5,
                 seed: int = 0) -> pd.DataFrame:
    """Per element, a two-component PCovC projection of the environments of every set (labelled by set; at most
    ``max_per_set`` of each, fixed seed): rows ``set``, ``element`` (atomic number), ``pc1``, ``pc2``."""
    from skmatter.decomposition import PCovC

    rng = np.random.default_rng(seed)
    rows = []
    elements = sorted({int(z) for e in sets.values() for z in np.unique(e.numbers)})
    for z in elements:
        xs, labels = [], []
        for k, (name, env) in enumerate(sets.items()):
            f = env.of(z).features
            if len(f) > max_per_set:
                f = f[np.sort(rng.choice(len(f), max_per_set, replace=False))]
            xs.append(f)
            labels += [k] * len(f)
        y = np.array(labels)
        if len(np.unique(y)) < 2 or len(y) < 4:
            continue
        x = np.vstack(xs)
        x = x - x.mean(axis=0)
        t = PCovC(mixing=mixing, n_components=2).fit(x, y).transform(x)
        names = list(sets)
        rows.append(pd.DataFrame({"set": [names[k] for k in y], "element": z, "pc1": t[:, 0], "pc2": t[:, 1]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["set", "element", "pc1", "pc2"])


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC: the probability that a positive scores above a negative (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def failure_prediction(frames: pd.DataFrame, score: str, dt_ps: float, *, group: str = "arch",
                       n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Does ``score`` (a column of ``frames``: one row per trajectory frame with ``run``, ``time_ps``,
    ``t_fail_ps`` — NaN for a run that did not fail — and ``group``) rise before failures? A frame is positive when
    its run fails within ``dt_ps`` after it. Per group: positives, negatives, runs, the ROC AUC over frames (0.5 is
    chance) and its interval from a bootstrap over *runs*, failed and stable runs resampled apart (frames of one run are not
    independent: resampling whole runs keeps their correlation; a frame-level test would overstate the evidence). Verdict ``predicts`` when
    the interval's lower end (the ALPHA quantile) lies above 0.5, else ``undetermined`` (never "does not predict":
    a small study cannot show the absence), also below MIN_EVENTS frames of either class or fewer than two runs
    with each."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, df in frames.dropna(subset=[score]).groupby(group, sort=True):
        pos = ((df.t_fail_ps - df.time_ps <= dt_ps) & df.t_fail_ps.notna()).to_numpy()
        x = df[score].to_numpy(float)
        runs = df.run.to_numpy()
        names = np.unique(runs)
        with_pos = len(np.unique(runs[pos]))
        with_neg = len(np.unique(runs[~pos]))
        row = {group: g, "score": score, "dt_ps": dt_ps, "n_positive": int(pos.sum()), "n_negative": int((~pos).sum()),
               "runs": len(names), "auc": np.nan, "auc_low": np.nan, "auc_high": np.nan, "verdict": "undetermined",
               "why": ""}
        if pos.sum() < MIN_EVENTS or (~pos).sum() < MIN_EVENTS or with_pos < 2 or with_neg < 2:
            row["why"] = (f"needs >= {MIN_EVENTS} frames of each class from >= 2 runs each (has {int(pos.sum())} before "
                          f"a failure from {with_pos} run(s), {int((~pos).sum())} not from {with_neg})")
            rows.append(row)
            continue
        row["auc"] = _auc(x[pos], x[~pos])
        index = {n: np.flatnonzero(runs == n) for n in names}
        failed = df.groupby("run").t_fail_ps.apply(lambda t: t.notna().any())
        strata = [np.array([n for n in names if failed[n]]), np.array([n for n in names if not failed[n]])]
        boot = []
        for _ in range(n_boot):  # failed and stable runs resampled apart: every resample holds both kinds of run
            pick = np.concatenate([rng.choice(st, len(st), replace=True) for st in strata if len(st)])
            take = np.concatenate([index[n] for n in pick])
            p = pos[take]
            if p.any() and (~p).any():
                boot.append(_auc(x[take][p], x[take][~p]))
        lo, hi = np.quantile(boot, [ALPHA, 1 - ALPHA])
        row.update(auc_low=float(lo), auc_high=float(hi))
        interval = f"AUC {row['auc']:.2f}, {100 * (1 - 2 * ALPHA):g} % interval {lo:.2f}–{hi:.2f} (bootstrap over runs)"
        if lo > 0.5:
            row.update(verdict="predicts", why=interval)
        else:
            row["why"] = interval + ": includes 0.5"
        rows.append(row)
    return pd.DataFrame(rows)
