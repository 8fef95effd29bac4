"""GFN2-xTB via tblite (real), and the labelling logic (with EMT stand-ins)."""

import numpy as np
import pytest
from ase import Atoms

from harness.errors import ConfigError, InputError
from harness.io import frame_uid, read_frames
from harness.reference import label_frames, make_oracle, oracle_key
from harness.reference.batch import label_to_file, manifest_path_for, resume_path
from harness.systems.molecules import get_molecule
from tests.helpers import CountingOracle


@pytest.fixture(scope="module")
def ec():
    return get_molecule("EC").atoms()


@pytest.fixture(scope="module")
def tight():
    # accuracy 0.01: SCF converged tightly enough that finite differences are not noise-limited
    return make_oracle("xtb", {"accuracy": 0.01})


def _energy(atoms, oracle):
    a = atoms.copy()
    a.calc = oracle.make_calculator()
    return a.get_potential_energy()


def test_gfn2_isolated_ec_energy_is_finite_and_plausible(ec):
    report = label_frames([ec], make_oracle("xtb"))
    frame = report.frames[0]
    e = frame.info["REF_energy"]
    # GFN2-xTB total energy of EC is about -20.7 Eh = -563 eV; 10 atoms
    assert np.isfinite(e) and -600 < e < -530
    assert frame.arrays["REF_forces"].shape == (10, 3)
    assert "REF_stress" not in frame.info  # isolated molecule: no stress


def test_gfn2_forces_are_minus_energy_gradient(ec, tight):
    """Central differences, h = 2e-3 Å; agreement within 2e-3 eV/Å (measured ~1e-4)."""
    a = ec.copy()
    a.calc = tight.make_calculator()
    forces = a.get_forces()
    h = 2e-3
    for i, k in [(0, 0), (3, 1), (4, 2), (7, 0)]:
        plus, minus = ec.copy(), ec.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(_energy(plus, tight) - _energy(minus, tight)) / (2 * h)
        assert forces[i, k] == pytest.approx(fd, abs=2e-3)


def test_gfn2_stress_is_strain_derivative(ec, tight):
    """sigma_pq = (1/V) dE/d eps_pq for a periodic cell; within 1e-5 eV/Å³ (measured ~2e-7)."""
    cell = ec.copy()
    cell.set_cell([8.0, 8.0, 8.0])
    cell.center()
    cell.pbc = True
    report = label_frames([cell], tight)
    stress = report.frames[0].info["REF_stress"]
    assert stress.shape == (6,) and np.all(np.isfinite(stress))
    volume = cell.get_volume()
    h = 2e-3
    full = np.array([[stress[0], stress[5], stress[4]], [stress[5], stress[1], stress[3]],
                     [stress[4], stress[3], stress[2]]])
    for p, q in [(0, 0), (1, 2)]:
        energies = []
        for sign in (1, -1):
            eps = np.eye(3)
            if p == q:
                eps[p, q] += sign * h
            else:
                eps[p, q] = eps[q, p] = sign * h / 2
            strained = cell.copy()
            strained.set_cell(cell.cell[:] @ eps, scale_atoms=True)
            energies.append(_energy(strained, tight))
        assert full[p, q] == pytest.approx((energies[0] - energies[1]) / (2 * h) / volume, abs=1e-5)


def test_label_provenance_recorded(ec):
    oracle = make_oracle("xtb")
    frame = label_frames([ec], oracle).frames[0]
    assert frame.info["REF_method"] == "GFN2-xTB"
    assert frame.info["REF_code"].startswith("tblite 0.")
    assert frame.info["REF_oracle"] == oracle_key(oracle)
    assert frame.info["uid"] == frame_uid(ec)
    prov = oracle.provenance()
    assert prov["settings"]["electronic_temperature_K"] == 300.0 and prov["version"]
    # a different setting is a different oracle
    assert oracle_key(make_oracle("xtb", {"accuracy": 0.1})) != oracle_key(oracle)


def test_scf_failure_is_retried_with_safer_settings(ec):
    oracle = make_oracle("xtb", {"max_iterations": 2, "retry_max_iterations": 300})
    report = label_frames([ec], oracle)
    rec = report.records[0]
    assert rec.status == "labelled" and rec.attempts == 2 and "SCF not converged" in rec.error


def test_scf_failure_is_recorded_not_zeroed(ec):
    oracle = make_oracle("xtb", {"max_iterations": 2, "retry_max_iterations": 2})
    ok = ec.copy()
    ok.positions *= 1.0001
    report = label_frames([ec], oracle)
    assert report.frames == [] and report.records[0].status == "failed"
    assert "SCF not converged" in report.records[0].error


def test_one_failing_frame_does_not_stop_the_batch(ec):
    frames = [ec.copy() for _ in range(3)]
    for k, f in enumerate(frames):
        f.positions[0, 0] += 0.01 * k
    oracle = CountingOracle(fail_uids={frame_uid(frames[1])})
    report = label_frames(frames, oracle)
    assert [r.status for r in report.records] == ["labelled", "failed", "labelled"]
    assert report.records[1].attempts == 2
    assert [f.info["uid"] for f in report.frames] == [frame_uid(frames[0]), frame_uid(frames[2])]
    assert all(np.all(np.isfinite(f.arrays["REF_forces"])) for f in report.frames)


def test_interrupted_labelling_resumes_without_recomputing(tmp_path, ec):
    frames = []
    for k in range(5):
        f = ec.copy()
        f.positions[1, 2] += 0.02 * k
        frames.append(f)
    out = tmp_path / "out.extxyz"
    with pytest.raises(KeyboardInterrupt):
        label_to_file(frames, out, CountingOracle(kill_at=3))
    assert not out.exists() and resume_path(out).exists()
    again = CountingOracle()
    report = label_to_file(frames, out, again)
    assert again.calls == 2  # only the two unfinished frames
    assert [r.status for r in report.records] == ["cached"] * 3 + ["labelled"] * 2
    assert not resume_path(out).exists() and manifest_path_for(out).exists()
    fresh = label_frames(frames, CountingOracle())
    got = read_frames(out)
    assert len(got) == 5
    for a, b in zip(got, fresh.frames):
        assert a.info["REF_energy"] == pytest.approx(b.info["REF_energy"], abs=1e-8)
        assert np.allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], atol=1e-8)


def test_ase_oracle_by_import_path(ec):
    oracle = make_oracle("ase:ase.calculators.emt.EMT")
    frame = label_frames([ec], oracle).frames[0]
    assert frame.info["REF_method"] == "ase.calculators.emt.EMT" and frame.info["REF_code"].startswith("ase ")


@pytest.mark.parametrize("name, options, match", [
    ("dft", None, "unknown reference 'dft'"),
    ("ase:nomodule_xyz.Calc", None, "cannot import module nomodule_xyz"),
    ("ase:ase.calculators.emt.NotThere", None, "is not an ASE Calculator class"),
    ("ase:ase.calculators.lj.LennardJones", '{"sigma": ', "invalid JSON"),
    ("ase:ase.calculators.lj.LennardJones", "[1, 2]", "expected a JSON object"),
])
def test_bad_reference_names(name, options, match):
    with pytest.raises(InputError, match=match):
        make_oracle(name, options)


def test_bad_xtb_options():
    with pytest.raises(ConfigError, match=r"reference options \(xtb\): method: Input should be"):
        make_oracle("xtb", {"method": "GFN3"})
    with pytest.raises(ConfigError, match="unknown key"):
        make_oracle("xtb", '{"temperature": 300}')


def test_threads_option_limits_openmp(ec):
    oracle = make_oracle("xtb", {"threads": 1})
    frame = label_frames([ec], oracle).frames[0]
    ref = label_frames([ec], make_oracle("xtb")).frames[0]
    assert frame.info["REF_energy"] == pytest.approx(ref.info["REF_energy"], abs=1e-6)
    assert oracle_key(oracle) == oracle_key(make_oracle("xtb"))  # threads do not change labels


def test_non_finite_result_is_a_failure():
    class NaNOracle(CountingOracle):
        def make_calculator(self, *, safer=False):
            from ase.calculators.calculator import Calculator

            class NaNCalc(Calculator):
                implemented_properties = ["energy", "forces"]

                def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                    super().calculate(atoms, properties, system_changes)
                    self.results = {"energy": float("nan"), "forces": np.zeros((len(atoms), 3))}

            return NaNCalc()

    report = label_frames([Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])], NaNOracle())
    assert report.records[0].status == "failed" and "non-finite energy" in report.records[0].error
