"""``harness md`` and protocols: outputs, resume, and bad input refused before any step."""

import json

import numpy as np
import pytest

from harness.cli.main import app
from harness.errors import ConfigError
from harness.md.protocol import load_protocol

EMT = ["--calculator", "ase:ase.calculators.emt.EMT"]


def test_shipped_protocols_load():
    for name, atoms in (("paper-500K", "EC=16,EMC=32"), ("mini", "EC=4,EMC=8"), ("ci", "EC=4,EMC=8")):
        p = load_protocol(f"protocols/{name}.yaml")
        assert p.system.composition == atoms and p.temperature_K == 500 and p.timestep_fs == 0.5
    paper = load_protocol("protocols/paper-500K.yaml")
    assert paper.npt.length_ps == paper.nvt.length_ps == paper.horizon_ps == 1000 and paper.equilibration_ps == 100


def test_md_cli_npt_and_nvt_with_an_ase_calculator(runner, tmp_path):
    for ens in ("npt", "nvt"):
        result = runner.invoke(app, ["md", *EMT, "--protocol", "protocols/ci.yaml", "--ensemble", ens,
                                     "--workspace", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert f"{ens} r0: t_stab" in result.stdout
        out = tmp_path / "md" / "EMT" / "ci" / f"{ens}-r0"
        res = json.loads((out / "result.json").read_text())
        assert res["meta"]["protocol"] == "ci" and res["meta"]["protocol_hash"]
        stamp = res["meta"]["model_stamp"]  # the model's provenance travels with the run
        assert stamp["kind"] == "ase" and stamp["method"] == "ase.calculators.emt.EMT" and stamp["version"]
        assert (out / "trajectory.h5md").exists() and (out / "thermo.parquet").exists()
    again = runner.invoke(app, ["md", *EMT, "--protocol", "protocols/ci.yaml", "--ensemble", "npt",
                                "--workspace", str(tmp_path)])
    assert again.exit_code == 0 and "npt r0: t_stab" in again.stdout


@pytest.mark.parametrize("old, new, match", [
    ("timestep_fs: 0.5", "timestep: 0.5", r"ci.yaml:\d+: timestep: unknown key"),
    ("timestep_fs: 0.5", "timestep_fs: -0.5", r"timestep_fs: Input should be greater than 0"),
    ("temperature_K: 500\n", "", r"temperature_K: required key missing"),
    ("npt: {length_ps: 0.05, ", "npt: {length_ps: -1, ", r"npt.length_ps: Input should be greater than 0"),
])
def test_bad_protocols(tmp_path, old, new, match):
    text = open("protocols/ci.yaml").read()
    assert old in text
    p = tmp_path / "ci.yaml"
    p.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=match):
        load_protocol(p)


def test_md_bad_input_before_any_step(runner, tmp_path, small_box):
    from harness.io import write_frames

    no_mol = small_box.copy()
    del no_mol.arrays["mol_id"]
    write_frames(tmp_path / "nomol.extxyz", [no_mol])
    cases = [
        (["--start", str(tmp_path / "nomol.extxyz"), *EMT, "--ensemble", "npt"], "start frame has no per-atom mol_id"),
        ([*EMT, "--ensemble", "nvt", "--protocol", "protocols/mini.yaml"], "nvt.density_g_cm3 is 'reference'"),
        ([*EMT, "--ensemble", "nve"], "--ensemble must be npt or nvt"),
        (["--ensemble", "npt"], "give exactly one of --model"),
        (["--model", str(tmp_path), "--ensemble", "npt"], "neither a trained member"),
    ]
    for args, message in cases:
        if "--protocol" not in args:
            args = [*args, "--protocol", "protocols/ci.yaml"]
        result = runner.invoke(app, ["md", *args, "--workspace", str(tmp_path / "ws")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and result.stderr.startswith("error: ")
    assert not (tmp_path / "ws").exists()


def test_sigkill_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Kill `harness md` with SIGKILL after its first checkpoints, rerun: same frames, times and
    positions as an uninterrupted run (bitwise: the RNG state is saved, and ASE's LJ gives forces that
    do not depend on neighbour-list history; EMT's differ at 1e-14 after a restart, which chaos grows)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from harness.h5md import read_h5md

    text = open("protocols/ci.yaml").read()
    text = text.replace("nvt: {length_ps: 0.05,", "nvt: {length_ps: 0.3,")
    text = text.replace("output: {frame_interval: 10, thermo_interval: 5, checkpoint_interval: 50}",
                        "output: {frame_interval: 25, thermo_interval: 5, checkpoint_interval: 100}")
    text = text.replace("detectors: {rules: validation, interval: 5,", "detectors: {rules: validation, interval: 100000,")
    proto = tmp_path / "kill.yaml"
    proto.write_text(text)
    exe = [sys.executable, "-m", "harness.cli.main", "md", "--calculator", "ase:ase.calculators.lj.LennardJones",
           "--calculator-options", '{"sigma": 0.6, "epsilon": 0.01, "rc": 3.0, "smooth": true}',
           "--protocol", str(proto), "--ensemble", "nvt"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = subprocess.run([*exe, "--workspace", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed" / "md" / "LennardJones" / "ci" / "nvt-r0"
    proc = subprocess.Popen([*exe, "--workspace", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = out / "checkpoint.pkl"
        if ck.exists() and (out / "thermo.parts").is_dir():
            import pickle

            try:
                if pickle.loads(ck.read_bytes())["step"] >= 200:
                    break
            except Exception:  # caught mid-rename
                pass
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "result.json").exists()
    resumed = subprocess.run([*exe, "--workspace", str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = read_h5md(tmp_path / "whole" / "md" / "LennardJones" / "ci" / "nvt-r0" / "trajectory.h5md")
    b = read_h5md(out / "trajectory.h5md")
    assert len(a["time_ps"]) == len(b["time_ps"]) == 1 + 600 // 25
    assert np.array_equal(a["time_ps"], b["time_ps"]) and np.array_equal(a["positions"], b["positions"])


def test_another_nvt_density_or_protocol_supersedes_the_old_run(runner, tmp_path):
    """The run directory is named by protocol name, not by its content or the NVT density a sweep takes from
    its reference: a run asked for at another density (or under an edited protocol) must not return the old
    trajectory. It runs anew at the new density; the old run is kept aside."""
    def nvt(rho, protocol="protocols/ci.yaml"):
        r = runner.invoke(app, ["md", *EMT, "--protocol", protocol, "--ensemble", "nvt", "--nvt-density", str(rho),
                                "--workspace", str(tmp_path)])
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / "md" / "EMT" / "ci" / "nvt-r0" / "result.json").read_text())

    assert nvt(1.0)["meta"]["nvt_density_g_cm3"] == 1.0
    again = nvt(1.0)  # same settings: the finished run is returned, nothing is moved
    assert not list((tmp_path / "md" / "EMT" / "ci").glob("nvt-r0.superseded-*"))
    res = nvt(1.1)
    assert res["meta"]["nvt_density_g_cm3"] == 1.1 and res["meta"]["protocol_hash"] == again["meta"]["protocol_hash"]
    from ase.io import read
    from harness.units import density_g_cm3
    start = read(tmp_path / "md" / "EMT" / "ci" / "nvt-r0" / "start.extxyz")
    assert density_g_cm3(start) == pytest.approx(1.1, rel=1e-6)
    assert len(list((tmp_path / "md" / "EMT" / "ci").glob("nvt-r0.superseded-*"))) == 1
    edited = tmp_path / "ci.yaml"  # same name, another timestep: another protocol hash
    edited.write_text(open("protocols/ci.yaml").read().replace("timestep_fs: 0.5", "timestep_fs: 0.25"))
    assert nvt(1.1, str(edited))["meta"]["protocol_hash"] != res["meta"]["protocol_hash"]


def test_a_retrained_model_of_the_same_name_supersedes_its_old_runs(tmp_path):
    """Run directories of a sweep's member are named by the member's folder: a member retrained there (another
    model file) must not get the old model's trajectory back. Runs recorded without a model hash (older
    harnesses, ASE calculators) are kept."""
    from ase.calculators.emt import EMT as EMTCalc

    from harness.md.launch import run_protocol

    proto = load_protocol("protocols/ci-short.yaml")
    base = tmp_path / "md" / "member" / "ci-short"

    def run(sha):
        stamp = {"kind": "member", "sha256": sha} if sha else None
        res, _ = run_protocol(proto, "nvt", EMTCalc(), "member", workspace=tmp_path, model_stamp=stamp)
        return res

    first = run("a" * 64)
    assert run("a" * 64).meta == first.meta and not list(base.glob("nvt-r0.superseded-*"))  # returned as is
    assert run("b" * 64).meta["model_stamp"]["sha256"] == "b" * 64
    assert len(list(base.glob("nvt-r0.superseded-*"))) == 1
    run(None)  # nothing to compare: the finished run is returned
    assert len(list(base.glob("nvt-r0.superseded-*"))) == 1
