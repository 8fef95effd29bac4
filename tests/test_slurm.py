"""A real SLURM (issue #18 item 3): Debian's slurm-wlm configured as a one-node cluster on this machine
(`.ci/slurm-up.sh`, root), a real sweep submitted with `--slurm` through dask-jobqueue, one worker job cancelled
with `scancel` mid-sweep: the job is resubmitted and the sweep completes with every task done; the job script's
resources are the cluster spec's. Slow and root-only; `make ci-slurm` runs it in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _squeue() -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout.split("\n")
    return [tuple(line.split()) for line in out if line.strip()]


def _done_kinds(ws: Path) -> dict[str, int]:
    import sqlite3

    if not (ws / "harness.sqlite").exists():
        return {}
    con = sqlite3.connect(ws / "harness.sqlite", timeout=30)
    try:
        return dict(con.execute("select kind, count(*) from tasks where status='done' group by kind").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def test_sweep_through_slurm_survives_a_cancelled_job(tmp_path):
    if os.geteuid() != 0 or shutil.which("bash") is None:
        pytest.skip("needs root to run a SLURM cluster on this machine")
    up = subprocess.run(["bash", str(ROOT / ".ci" / "slurm-up.sh")], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stdout + up.stderr
    for job, _ in _squeue():  # nothing of an earlier run in the way
        subprocess.run(["scancel", job])
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(json.dumps({
        "jobs": 2, "cores": 1, "processes": 1, "memory": "3GB", "walltime": "00:30:00", "queue": "debug",
        "job_extra_directives": [f"--output={tmp_path}/slurm-%j.out"],
        "job_script_prologue": [f"source {Path(sys.executable).parent / 'activate'}", f"cd {ROOT}"]}))
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli.main", "sweep", "run",
                             str(ROOT / "protocols" / "sweeps" / "ci-slurm.yaml"), "--slurm", str(cluster),
                             "--workspace", str(ws)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        # the job script dask-jobqueue submitted asks for what the spec says
        deadline = time.time() + 300
        while time.time() < deadline and len([s for _, s in _squeue() if s == "RUNNING"]) < 2:
            time.sleep(2)
        jobs = _squeue()
        assert len(jobs) == 2, jobs
        info = subprocess.run(["scontrol", "show", "job", jobs[0][0]], capture_output=True, text=True).stdout
        assert "Partition=debug" in info and "NumCPUs=1" in info and "TimeLimit=00:30:00" in info, info
        assert "MinMemoryNode=3G" in info, info
        # cancel a worker job once the sweep is under way (training done, MD started)
        while time.time() < deadline + 600 and _done_kinds(ws).get("train", 0) < 2:
            time.sleep(2)
        cancelled = jobs[0][0]
        subprocess.run(["scancel", cancelled], check=True)
        out, _ = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
        for job, _ in _squeue():
            subprocess.run(["scancel", job])
    assert proc.returncode == 0, out[-3000:]
    assert "0 failed" in out, out[-3000:]
    kinds = _done_kinds(ws)
    assert kinds.get("score") == 1 and kinds.get("md") == 4 and kinds.get("train") == 2, kinds
    # a third worker job replaced the cancelled one (the controller's log: accounting is off on this cluster)
    log = Path("/var/log/slurm/slurmctld.log").read_text(errors="replace")
    started = {int(line.split("JobId=")[1].split()[0]) for line in log.splitlines() if "sched: Allocate JobId=" in line}
    assert any(j > int(cancelled) for j in started), (cancelled, sorted(started))
