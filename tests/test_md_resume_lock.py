"""One writer per run directory, and a resume identical to the uninterrupted run from any interrupt point
(issue #30 items 1-2). Argon in a box with ASE's Lennard-Jones, neighbour list rebuilt at each call (see
tests/test_md.py: forces then do not depend on the calculator's history, so runs compare bitwise)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from harness.h5md import read_h5md
from harness.md.lock import RunBusy, run_lock
from harness.md.runner import RunSettings, run_md

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = RunSettings("npt", 90.0, length_ps=0.6, timestep_fs=2.0, frame_interval=20, thermo_interval=10,
                       checkpoint_interval=50, pressure_atm=100.0)


class StatelessLJ(LennardJones):
    def __init__(self, delay_s: float = 0.0, **kw):
        super().__init__(sigma=3.4, epsilon=0.0104, rc=5.5, smooth=True, **kw)
        self.delay_s = delay_s

    def calculate(self, *args, **kwargs):
        self.nl = None
        if self.delay_s:
            time.sleep(self.delay_s)
        super().calculate(*args, **kwargs)


def argon() -> Atoms:
    return Atoms("Ar27", positions=np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T * 3.8,
                 cell=[11.4] * 3, pbc=True)


def assert_same_run(a: Path, b: Path) -> None:
    ta, tb = read_h5md(a / "trajectory.h5md"), read_h5md(b / "trajectory.h5md")
    assert np.array_equal(ta["time_ps"], tb["time_ps"]), (ta["time_ps"][:4], tb["time_ps"][:4])
    assert np.array_equal(ta["positions"], tb["positions"]) and np.array_equal(ta["cells"], tb["cells"])
    pa, pb = pd.read_parquet(a / "thermo.parquet"), pd.read_parquet(b / "thermo.parquet")
    assert list(pa["step"]) == list(pb["step"]) and np.array_equal(pa["kinetic_eV"], pb["kinetic_eV"])


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    run_md(argon(), StatelessLJ(), SETTINGS, outdir=out, seed=5)
    return out


@pytest.mark.parametrize("stop", [1, 7, 49, 50, 51, 137])
def test_resume_from_any_step_is_the_uninterrupted_run(whole, tmp_path, stop):
    """Stopped before its first periodic checkpoint (1, 7, 49: only the step-0 checkpoint exists), at it, just after
    it, and later: the rerun neither repeats frame 0 and its thermo row nor loses anything."""
    part = run_md(argon(), StatelessLJ(), SETTINGS, outdir=tmp_path, seed=5, stop_after_steps=stop)
    assert not part.completed
    resumed = run_md(argon(), StatelessLJ(), SETTINGS, outdir=tmp_path, seed=5)
    assert resumed.completed and resumed.n_frames == 1 + 300 // 20
    assert resumed.meta["resumed_at_steps"] == [50 * (stop // 50)]
    assert_same_run(whole, tmp_path)


SCRIPT = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a child of a background job starts with SIGINT ignored
    sys.path.insert(0, {root!r})
    from tests.test_md_resume_lock import SETTINGS, StatelessLJ, argon
    from harness.md.runner import run_md
    run_md(argon(), StatelessLJ(delay_s={delay}), SETTINGS, outdir={out!r}, seed=5)
""")


def _launch(out: Path, delay: float) -> subprocess.Popen:
    code = SCRIPT.format(root=str(ROOT), out=str(out), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _checkpoint_step(out: Path) -> int | None:
    try:
        return pickle.loads((out / "checkpoint.pkl").read_bytes())["step"]
    except Exception:  # absent, or caught mid-rename
        return None


def _wait_for(pred, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("sig, at_step", [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGINT, 100),
                                          (signal.SIGTERM, 200)])
def test_a_signal_at_several_points_then_resume_is_the_uninterrupted_run(whole, tmp_path, sig, at_step):
    """SIGINT (KeyboardInterrupt: Python unwinds) and SIGTERM (the process dies where it is) once the checkpoint of
    ``at_step`` is on disk (0: before the first periodic checkpoint), then the documented rerun."""
    proc = _launch(tmp_path, delay=0.002)
    _wait_for(lambda: (_checkpoint_step(tmp_path) or 0) >= at_step and (tmp_path / "checkpoint.pkl").exists())
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and not (tmp_path / "result.json").exists()
    resumed = run_md(argon(), StatelessLJ(), SETTINGS, outdir=tmp_path, seed=5)
    assert resumed.completed and resumed.n_frames == 1 + 300 // 20
    assert_same_run(whole, tmp_path)


def test_a_second_process_on_the_same_run_is_refused_and_the_first_ends_consistent(whole, tmp_path):
    proc = _launch(tmp_path, delay=0.002)
    _wait_for(lambda: (tmp_path / "checkpoint.pkl").exists())
    proc.send_signal(signal.SIGSTOP)  # held mid-run while this process tries the same run directory
    try:
        assert not (tmp_path / "result.json").exists(), "the first run finished before it could be held"
        with pytest.raises(RunBusy, match=rf"{tmp_path.name}: pid {proc.pid} on .* is running this trajectory"):
            run_md(argon(), StatelessLJ(), SETTINGS, outdir=tmp_path, seed=5)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    result = run_md(argon(), StatelessLJ(), SETTINGS, outdir=tmp_path, seed=5)  # finished: returned, not rerun
    assert result.n_frames == len(read_h5md(tmp_path / "trajectory.h5md")["time_ps"]) == 1 + 300 // 20
    assert "resumed_at_steps" not in result.meta
    assert_same_run(whole, tmp_path)


def test_two_threads_on_one_run_directory_are_kept_apart_and_the_lock_is_reentrant(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        with run_lock(out):  # the same thread again (run_protocol holds it around prepare_run and run_md)
            pass
        errors = []

        def other():
            try:
                with run_lock(out):
                    pass
            except RunBusy as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert errors and "another thread of this process" in errors[0]
    with run_lock(out):  # released: free again
        pass


def test_two_harness_md_processes_on_one_workspace(tmp_path, small_box):
    """The CLI: the second `harness md` on a workspace whose run is in flight exits 2 with one line naming the
    run directory; the first finishes with every frame it reports. (A given start frame: no OPLS-AA start to build.)"""
    import json

    from harness.io import write_frames

    start = tmp_path / "start.extxyz"
    write_frames(start, [small_box])
    text = (ROOT / "protocols" / "ci.yaml").read_text()
    text = text.replace("detectors: {rules: validation, interval: 5,", "detectors: {rules: validation, interval: 100000,")
    proto = tmp_path / "ci.yaml"
    proto.write_text(text)
    exe = [sys.executable, "-m", "harness.cli.main", "md", "--calculator", "ase:ase.calculators.lj.LennardJones",
           "--calculator-options", '{"sigma": 0.6, "epsilon": 0.01, "rc": 3.0, "smooth": true}',
           "--protocol", str(proto), "--ensemble", "npt", "--start", str(start), "--workspace", str(tmp_path / "ws")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "ws" / "md" / "LennardJones" / "ci" / "npt-r0"
    first = subprocess.Popen(exe, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "checkpoint.pkl").exists() or (out / "result.json").exists(), timeout=120)
    first.send_signal(signal.SIGSTOP)  # held mid-run (lock taken, step-0 checkpoint written) while the second tries
    try:
        assert not (out / "result.json").exists(), "the first run finished before it could be held"
        second = subprocess.run(exe, env=env, capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-2000:]
    assert second.stderr.startswith("error: ") and "is running this trajectory" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert first.wait(timeout=300) == 0, first.stderr[-2000:]
    res = json.loads((out / "result.json").read_text())
    assert res["n_frames"] == len(read_h5md(out / "trajectory.h5md")["time_ps"])
