"""Environment coverage (issue #32 item 3): SOAP distances to the training set, the PCovC map and the failure
prediction test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.diagnostics.coverage import (MIN_EVENTS, coverage_distance, coverage_map, environments,
                                          failure_prediction, frame_coverage, own_spread)
from harness.errors import InputError

TYPES = (1, 6, 8)


def _rattled(atoms, seed, sigma=0.02):
    a = atoms.copy()
    a.positions += np.random.default_rng(seed).normal(scale=sigma, size=a.positions.shape)
    return a


def test_a_training_frame_is_covered_and_a_stretched_bond_is_not(small_box):
    """Training: four thermally rattled copies of a liquid frame. A frame of the training set has coverage
    distance 0 in every environment; a fifth rattled copy lies at about the training set's own spread; the same
    frame with one C-H bond stretched to 1.7 Å has its worst environment (the H or its carbon) several times
    farther than the rattled copy's worst."""
    from harness.systems.topology import Topology

    train_frames = [_rattled(small_box, s) for s in range(4)]
    train = environments(train_frames, TYPES, max_per_species=None)
    spread = own_spread(train)
    assert all(0 < v < 1 for v in spread.values())
    same = environments(train_frames[2:3], TYPES, max_per_species=None)
    assert np.allclose(coverage_distance(same, train, spread), 0.0, atol=1e-5)  # |a-b| from 2 - 2a·b: rounding

    topo = Topology.from_atoms(small_box)
    symbols = small_box.get_chemical_symbols()
    i, j = next((i, j) for i, j in topo.bonds if {symbols[i], symbols[j]} == {"C", "H"})
    h, c = (i, j) if symbols[i] == "H" else (j, i)
    new = _rattled(small_box, 99)
    broken = new.copy()
    u = broken.positions[h] - broken.positions[c]
    broken.positions[h] = broken.positions[c] + 1.7 * u / np.linalg.norm(u)
    q = environments([new, broken], TYPES, max_per_species=None)
    d = coverage_distance(q, train, spread)
    worst = frame_coverage(q, d, 2)
    assert 0.3 < worst[0] < 5 and worst[1] > 3 * worst[0]
    k = np.argmax(np.where(q.frame == 1, d, -np.inf))
    assert q.atom[k] in (h, c)


def test_subsampling_bounds_the_environments_and_foreign_elements_are_refused(small_box):
    env = environments([small_box], TYPES, max_per_species=10)
    assert all((env.numbers == z).sum() == 10 for z in TYPES) and env.features.shape[1] > 100
    assert np.allclose(np.linalg.norm(env.features, axis=1), 1.0)
    with pytest.raises(InputError, match=r"element\(s\) \[8\] outside"):
        environments([small_box], (1, 6))


def test_the_map_separates_a_liquid_from_isolated_molecules(small_box):
    from harness.systems.molecules import MoleculeRegistry

    mols = [MoleculeRegistry()[n].atoms() for n in ("EC", "EMC")]
    for m in mols:
        m.center(vacuum=6.0)
    sets = {"liquid": environments([small_box], TYPES), "molecules": environments(mols, TYPES)}
    m = coverage_map(sets, max_per_set=200)
    assert set(m.element) == set(TYPES) and set(m.set) == {"liquid", "molecules"}
    for z, df in m.groupby("element"):
        a, b = df[df.set == "liquid"][["pc1", "pc2"]], df[df.set == "molecules"][["pc1", "pc2"]]
        gap = np.linalg.norm(a.mean() - b.mean())
        assert gap > 0 and np.isfinite(gap)


def _frames(n_runs, rise, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        fails = r % 2 == 0
        t_fail = 1.0 if fails else np.nan
        for t in np.arange(0.0, 1.0001, 0.05):
            near = fails and t_fail - t <= 0.2
            rows.append({"run": f"r{r}", "arch": "deepmd", "time_ps": t, "t_fail_ps": t_fail,
                         "score": rng.normal() + (rise if near else 0.0)})
    return pd.DataFrame(rows)


def test_failure_prediction_finds_a_rising_score_and_does_not_claim_the_absence():
    got = failure_prediction(_frames(6, rise=4.0), "score", 0.2).iloc[0]
    assert got.verdict == "predicts" and got.auc > 0.95 and got.auc_low > 0.5 and got.n_positive == 3 * 5
    noise = failure_prediction(_frames(6, rise=0.0, seed=1), "score", 0.2).iloc[0]
    assert noise.verdict == "undetermined" and noise.auc_low < 0.5 < noise.auc_high and "includes 0.5" in noise.why
    few = failure_prediction(_frames(1, rise=4.0), "score", 0.2).iloc[0]
    assert few.verdict == "undetermined" and np.isnan(few.auc) and f">= {MIN_EVENTS} frames" in few.why


def test_failure_prediction_does_not_count_correlated_frames_as_evidence():
    """Four runs whose score is a per-run constant (plus tiny noise): the last 0.2 ps of two failing runs (levels 1.0
    and 0.3) against two stable runs (0.0 and 0.5). Over frames the AUC is 0.75 and a frame-level Mann-Whitney test
    calls it certain (p < 1e-6: 42 against 202 frames), yet it is four runs and the 0.3 run sits below the 0.5 one:
    the bootstrap over runs keeps the interval across 0.5."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    rows = []
    for r, (fails, level) in enumerate([(True, 1.0), (True, 0.3), (False, 0.0), (False, 0.5)]):
        times = np.arange(0.8, 1.0001, 0.01) if fails else np.arange(0.0, 1.0001, 0.01)
        for t in times:
            rows.append({"run": f"r{r}", "arch": "x", "time_ps": t, "t_fail_ps": 1.0 if fails else np.nan,
                         "score": level + 1e-6 * rng.normal()})
    df = pd.DataFrame(rows)
    pos = df.t_fail_ps.notna()
    assert mannwhitneyu(df.score[pos], df.score[~pos], alternative="greater").pvalue < 1e-6
    got = failure_prediction(df, "score", 0.2).iloc[0]
    assert got.auc == pytest.approx(0.75, abs=0.01)
    assert got.verdict == "undetermined" and got.auc_low < 0.5
