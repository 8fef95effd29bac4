"""Failure forensics (issue #32 items 1-2): close contacts found and named, the frames kept before a failure, the
failure record and ``harness explain``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.calculators.calculator import Calculator

from harness.cli.main import app
from harness.diagnostics.forensics import closer_than_floor, contact_floor, contacts, explain_run, pair_name
from harness.md.detectors import BondStretch
from harness.md.prefailure import FILENAME, MAX_FRAMES
from harness.md.runner import RunSettings, run_md
from tests.test_report import scored_store  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]


def _brute_force_minima(atoms) -> dict[str, tuple[float, int, int]]:
    """Every intermolecular pair, minimum image by trying all 27 images (independent of ASE's neighbour list)."""
    pos, cell, mol = atoms.positions, np.array(atoms.cell[:]), atoms.arrays["mol_id"]
    symbols = atoms.get_chemical_symbols()
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ cell
    best: dict[str, tuple[float, int, int]] = {}
    for a in range(len(atoms)):
        others = np.flatnonzero(mol != mol[a])
        others = others[others > a]
        if not len(others):
            continue
        d = np.linalg.norm(pos[others][:, None, :] + shifts[None] - pos[a], axis=2).min(axis=1)
        for b, x in zip(others, d):
            p = pair_name(symbols[a], symbols[b])
            if x < 4.0 and (p not in best or x < best[p][0]):
                best[p] = (float(x), a, int(b))
    return best


def test_a_planted_close_contact_across_the_boundary_is_found_and_named():
    """Two EC molecules in a 14 Å cell, the second placed so that one of its O atoms sits 1.30 Å from an H of the
    first *through* the periodic boundary, closer than any other intermolecular pair. Found: that O-H pair, its
    atoms, molecules and species, and every other pair's minimum as brute force gives it; never a covalent bond
    (C-H at 1.09 Å would win if intramolecular pairs counted)."""
    from harness.systems.molecules import MoleculeRegistry
    from harness.systems.topology import tag_molecules

    ec = MoleculeRegistry()["EC"]
    a = ec.atoms()
    a.positions -= a.positions.mean(axis=0)
    b = a.copy()
    two = a + b
    tag_molecules(two, [ec, ec])
    two.set_cell([14.0, 14.0, 14.0])
    two.pbc = True
    symbols = two.get_chemical_symbols()
    n = len(a)
    h = next(i for i in range(n) if symbols[i] == "H" and two.positions[i, 0] == two.positions[:n, 0].min())
    o = next(i for i in range(n, 2 * n) if symbols[i] == "O" and two.positions[i, 0] == max(
        two.positions[k, 0] for k in range(n, 2 * n) if symbols[k] == "O"))
    # first molecule at the cell's low-x face, the second shifted so that its O is 1.30 Å from h along -x,
    # i.e. beyond the low face: wrapped to the high side
    two.positions[:n] += np.array([0.5, 7.0, 7.0]) - two.positions[h]
    target = two.positions[h] - np.array([1.30, 0.0, 0.0])
    two.positions[n:] += target - two.positions[o]
    two.wrap()
    assert two.positions[o, 0] > 10.0  # it really lies across the boundary
    got = contacts(two, species=["EC", "EC"])
    want = _brute_force_minima(two)
    assert set(got) == set(want)
    for p, (d, i, j) in want.items():
        assert got[p].distance_A == pytest.approx(d, abs=1e-9) and set(got[p].atoms) == {i, j}
    oh = got["H-O"]
    assert oh.distance_A == pytest.approx(1.30, abs=1e-9) and set(oh.atoms) == {h, o}
    assert set(oh.molecules) == {0, 1} and oh.species == ("EC", "EC")
    assert min(c.distance_A for c in got.values()) == pytest.approx(1.30, abs=1e-9)


def test_the_fraction_below_the_training_floor():
    train = pd.DataFrame({"time_ps": [np.nan] * 3, "H-O": [2.1, 1.9, 2.4], "C-C": [3.5, np.nan, 3.2]})
    floor = contact_floor(train)
    assert floor == {"H-O": 1.9, "C-C": 3.2}
    run = pd.DataFrame({"time_ps": [0.1, 0.2, 0.3, 0.4], "H-O": [2.0, 1.8, 1.7, np.nan], "C-C": [3.3, 3.4, 3.1, 3.0]})
    got = closer_than_floor(run, floor)
    assert got["H-O"] == {"floor_A": 1.9, "n": 3, "n_below": 2, "fraction": pytest.approx(2 / 3), "closest_A": 1.7}
    assert got["C-C"]["n_below"] == 2 and got["C-C"]["n"] == 4


class Pull(Calculator):
    """Stiff restraints (20 eV/Å²) to the start geometry, except one H whose anchor moves away from its bonded
    carbon at ``speed`` Å/ps: the C-H bond passes r_eq + 0.5 Å after ~0.5 Å / speed."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, ref, h, direction, speed_A_ps, dt_ps):
        super().__init__()
        self.ref, self.h, self.u, self.v, self.dt, self.calls = ref.copy(), h, direction, speed_A_ps, dt_ps, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        ref = self.ref.copy()
        ref[self.h] += self.u * self.v * self.dt * self.calls
        self.calls += 1
        d = self.atoms.positions - ref
        self.results = {"energy": float(10.0 * np.sum(d ** 2)), "forces": -20.0 * d, "stress": np.zeros(6)}


def _pulled_run(small_box, outdir, speed_A_ps=1.0, length_ps=1.0):
    from harness.systems.topology import Topology

    topo = Topology.from_atoms(small_box)
    symbols = small_box.get_chemical_symbols()
    i, j = next((i, j) for i, j in topo.bonds if {symbols[i], symbols[j]} == {"C", "H"})
    h, c = (i, j) if symbols[i] == "H" else (j, i)
    u = small_box.positions[h] - small_box.positions[c]
    u /= np.linalg.norm(u)
    s = RunSettings("nvt", 1.0, length_ps=length_ps, timestep_fs=0.5, frame_interval=100, thermo_interval=10,
                    checkpoint_interval=10 ** 9)
    det = BondStretch(interval=10, max_stretch_A=0.5, bond_length_method="mmff")
    r = run_md(small_box, Pull(small_box.positions, h, u, speed_A_ps, 0.0005), s, outdir=outdir, detectors=[det])
    return r, (min(h, c), max(h, c)), int(small_box.arrays["mol_id"][h])


def test_a_failed_run_keeps_its_last_frames_and_its_record_names_the_bond(small_box, tmp_path):
    """The pulled C-H bond fails after ~0.5 ps (1000 steps): the last 64 detector checks (10 steps apart) are kept,
    the last one the failing step; the record names the bond, its molecule and species, and the histories end at
    the failure with the stretch past 0.5 Å. A run that does not fail keeps no such file."""
    from ase.io import read

    r, bond, mol = _pulled_run(small_box, tmp_path / "failed")
    assert r.failure is not None and r.failure["detector"] == "bond_stretch"
    assert 0.45 <= r.t_stab_ps <= 0.7
    kept = read(tmp_path / "failed" / FILENAME, index=":")
    steps = [a.info["step"] for a in kept]
    assert len(kept) == MAX_FRAMES and steps[-1] == r.failure["step"]
    assert np.all(np.diff(steps) == 10) and "mol_id" in kept[0].arrays
    assert not list((tmp_path / "failed").glob("*.tmp")) and not list((tmp_path / "failed").glob(".*.tmp"))
    rec = explain_run(tmp_path / "failed")
    assert rec.failure.step == r.failure["step"] and rec.bond_atoms == bond and rec.bond_molecule == mol
    assert rec.bond_species in ("EC", "EMC") and rec.n_failure_frames == MAX_FRAMES
    assert rec.failure_frames_interval_ps == pytest.approx(0.005)
    t = [x for x in rec.history["time_ps"]]
    assert max(t) == pytest.approx(r.t_stab_ps) and t == sorted(t)
    stretch = [v for v in rec.history["max_bond_stretch_A"] if v is not None]
    assert stretch[-1] > 0.5 > stretch[0]
    assert rec.contacts_at_failure == sorted(rec.contacts_at_failure, key=lambda c: c.distance_A)
    # a stable run (the pull too slow to break the bond in 0.1 ps) writes no pre-failure frames
    r2, _, _ = _pulled_run(small_box, tmp_path / "stable", speed_A_ps=0.5, length_ps=0.1)
    assert r2.failure is None and not (tmp_path / "stable" / FILENAME).exists()
    assert explain_run(tmp_path / "stable").failure is None


def test_explain_cli_prints_plots_and_compares_with_a_training_subset(small_box, tmp_path, runner):
    _pulled_run(small_box, tmp_path / "run")
    png = tmp_path / "fig" / "failure.png"
    res = runner.invoke(app, ["explain", str(tmp_path / "run"), "--plot", str(png),
                              "--dataset", str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "--subset", "OPLS"])
    assert res.exit_code == 0, res.output
    assert "bond_stretch" in res.output and "the bond: atoms" in res.output and "frames closer than" in res.output
    assert png.stat().st_size > 10_000
    res = runner.invoke(app, ["explain", str(tmp_path / "run"), "--json"])
    rec = json.loads(res.output)
    assert rec["failure"]["detector"] == "bond_stretch" and len(rec["history"]["time_ps"]) > MAX_FRAMES


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.mkdir(), "no result.json"),
    (lambda p: (p.mkdir(), (p / "result.json").write_text("{not json")), "not a harness MD result"),
    (lambda p: (p.mkdir(), (p / "result.json").write_text(json.dumps(
        {"ensemble": "nvt", "t_stab_ps": 1.0, "length_ps": 1.0, "completed": True, "failure": None, "n_steps": 2,
         "n_frames": 1, "wall_s": 1.0, "ns_per_day": 1.0}))), "no readable harness trajectory"),
])
def test_explain_refuses_what_is_not_a_finished_run(tmp_path, runner, make, needle):
    run = tmp_path / "run"
    make(run)
    res = runner.invoke(app, ["explain", str(run)])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_explain_needs_dataset_and_subset_together(small_box, tmp_path, runner):
    res = runner.invoke(app, ["explain", str(tmp_path), "--subset", "OPLS"])
    assert res.exit_code == 2 and "--dataset and --subset go together" in res.output


def test_the_report_explains_each_failed_run_it_can_read(scored_store, small_box, tmp_path):
    """A scored workspace whose gap/OPLS members failed: one of their NPT run folders replaced by a real failed run
    (the pulled bond). The report's forensics section lists that run with its detector, bond species and figure,
    draws the close-contact figure, and skips the stand-in runs that have no trajectory."""
    import shutil

    from harness.report.build import build_report

    runs = sorted(scored_store.glob("md/*gap*OPLS*/*/npt-r0")) or sorted(
        p for p in scored_store.glob("md/*/*/npt-r0") if json.loads((p / "result.json").read_text())["failure"])
    target = runs[0]
    shutil.rmtree(target)
    _pulled_run(small_box, target)
    files = build_report(scored_store, tmp_path / "report")
    table = pd.read_csv(files["failures.csv"])
    assert len(table) == 1 and table.detector[0] == "bond_stretch" and table.bond_species[0] in ("EC", "EMC")
    assert table.failure_frames[0] == MAX_FRAMES and (tmp_path / "report" / table.figure[0]).stat().st_size > 10_000
    assert files["fig7"].stat().st_size > 10_000
    page = files["report.html"].read_text()
    anchor = table.figure[0][:-4]
    assert "Why runs failed" in page and f"href='#{anchor}'" in page and f"id='{anchor}'" in page


class _OffsetLJ(Calculator):
    """Stand-in member: zero energy, a constant force on every component (eV/Å)."""

    implemented_properties = ["energy", "forces"]
    offset = 0.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.full((len(self.atoms), 3), self.offset)}


class MemberA(_OffsetLJ):
    offset = 0.05


class MemberB(_OffsetLJ):
    offset = 0.15


def test_explain_evaluates_a_committees_sigma2_on_the_runs_frames(small_box, tmp_path, runner):
    """Two stand-in members whose forces differ by 0.1 eV/Å on every component: σ²_F = 3 × 0.05² = 0.0075 eV²/Å² on
    every frame, trajectory and pre-failure frames alike; the CLI prints it and one model is refused."""
    _pulled_run(small_box, tmp_path / "run")
    rec = explain_run(tmp_path / "run", committee=[MemberA(), MemberB()])
    sig = [v for v in rec.history["sigma2_F_committee"] if v is not None]
    assert len(sig) > MAX_FRAMES and np.allclose(sig, 0.0075)
    res = runner.invoke(app, ["explain", str(tmp_path / "run"), "-m", "ase:tests.test_forensics.MemberA", "-m",
                              "ase:tests.test_forensics.MemberB", "--plot", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert "of --committee on its frames): 0.0075 eV²/Å² at the start, 0.0075 at the end" in res.output
    res = runner.invoke(app, ["explain", str(tmp_path / "run"), "-m", "ase:tests.test_forensics.MemberA"])
    assert res.exit_code == 2 and "at least two models" in res.output
