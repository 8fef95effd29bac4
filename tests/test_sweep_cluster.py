"""Dask clusters: the SLURM cluster object and its job script (the real SLURM is tests/test_slurm.py), the GPU
node's routing, workers that die with their driver, the per-task lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_yaml
from harness.errors import ConfigError
from harness.workflow.cluster import SlurmSpec, slurm_cluster


def test_slurm_job_script_from_the_example_spec():
    spec = load_yaml("protocols/clusters/slurm-example.yaml", SlurmSpec)
    cluster = slurm_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p compute" in script
    assert "#SBATCH -t 08:00:00" in script
    assert "#SBATCH --exclusive" in script
    assert "source $HOME/harness/.venv/bin/activate" in script
    assert "--nworkers 16" in script and "--nthreads 1" in script
    # the workers start quiet (QUIET_DASK as Dask's environment variables), before the user's prologue
    exports = [line for line in script.splitlines() if line.startswith("export DASK_")]
    assert len(exports) == 4 and script.index(exports[-1]) < script.index("source $HOME/harness")


def test_the_quiet_exports_are_the_quiet_settings():
    """What a SLURM worker reads from the job script's exports is QUIET_DASK (a fresh process: Dask reads its
    environment at import)."""
    import json
    import os
    import subprocess
    import sys

    from harness.workflow.cluster import QUIET_DASK, quiet_exports

    env = dict(line.removeprefix("export ").split("=", 1) for line in quiet_exports())
    code = ("import json, dask, distributed; from harness.workflow.cluster import QUIET_DASK; "
            "print(json.dumps({k: dask.config.get(k) for k in QUIET_DASK}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True,
                         text=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == QUIET_DASK


def test_slurm_spec_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "slurm.yaml"
    bad.write_text("jobs: 2\ngpus: 1\n")
    with pytest.raises(ConfigError, match="gpus"):
        load_yaml(bad, SlurmSpec)


def test_a_gpu_node_cluster_routes_cuda_tasks_to_gpu_workers(tmp_path):
    """One CPU worker and two GPU workers (resources are labels: this runs on any machine): tasks on device cuda
    run only on GPU workers, the others (a cpu task; a cuda task placed on the CPU, as GAP's are) only on the
    CPU worker, which sees no GPU."""
    from harness.workflow.cluster import make_client
    from harness.workflow.execute import Task, execute
    from harness.workflow.store import Store

    fn = "tests.sweep_helpers:where"
    gpu = [Task("where", fn, {"device": "cuda", "i": i}) for i in range(4)]
    cpu = [Task("where", fn, {"device": "cpu", "i": 10 + i}) for i in range(2)]
    gap = [Task("where", fn, {"device": "cuda", "i": 20}, resources="cpu")]
    assert all(t.needs_gpu for t in gpu) and not any(t.needs_gpu for t in cpu + gap)
    store = Store(tmp_path / "harness.sqlite")
    client = make_client(workers=1, gpu_workers=2)
    try:
        assert execute(gpu + cpu + gap, store, client=client)["done"] == 7
    finally:
        client.close()
    ran = {t.params["i"]: store.get(t.key)["result"] for t in gpu + cpu + gap}
    assert {ran[t.params["i"]]["worker"] for t in gpu} == {"gpu-0", "gpu-1"}  # both share the work
    assert {ran[t.params["i"]]["worker"] for t in cpu + gap} == {"cpu-0"}
    assert all(ran[t.params["i"]]["cuda_visible"] == "" for t in cpu + gap)


def test_slurm_gpu_partition_workers_offer_the_gpu_resource():
    spec = load_yaml("protocols/clusters/slurm-gpu-example.yaml", SlurmSpec)
    cluster = slurm_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:1" in script and "--resources=GPU=1" in script and "#SBATCH -p gpu" in script
    assert "--nworkers 4" in script


_DRIVER = """
import os, sys, time
from harness.workflow.cluster import make_client
client = make_client(workers=1, gpu_workers=int(sys.argv[1]))
pids = client.run(os.getpid)
print(" ".join(str(p) for p in pids.values()), flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\\nState:\\tZ" in fh.read()  # a zombie nobody reaps is dead too
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("gpu_workers", [0, 1])
def test_workers_of_an_embedded_cluster_die_with_a_killed_driver(tmp_path, gpu_workers):
    """SIGKILL to the driver alone (not its process group): its worker processes end too, so a rerun never
    races an orphan that is still training or writing a trajectory (issue #18 item 2)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(gpu_workers)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in driver.stdout.readline().split()]
        assert len(workers) == 1 + gpu_workers and driver.pid not in workers
        assert not any(_gone(p) for p in workers)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 20
        while time.time() < deadline and not all(_gone(p) for p in workers):
            time.sleep(0.2)
        assert all(_gone(p) for p in workers), f"orphaned workers {workers} outlived the killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()


def test_a_second_execution_of_a_task_waits_for_the_first(tmp_path):
    """The per-task lock: while another execution holds a task's lock (an orphan of a killed run), run_task
    waits; it runs once the lock is released."""
    import fcntl
    import threading
    import time

    from harness.workflow.execute import run_task

    lock = tmp_path / "locks" / "md-x.lock"
    lock.parent.mkdir()
    holder = open(lock, "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file description: this process's run_task must wait
    out: dict = {}
    params = {"dir": str(tmp_path), "name": "x", "value": 3}
    t = threading.Thread(target=lambda: out.update(r=run_task("tests.sweep_helpers:compute", params, {}, None,
                                                              str(lock))))
    t.start()
    time.sleep(1.0)
    assert t.is_alive() and not (tmp_path / "x.json").exists(), "ran while another execution held the lock"
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    t.join(30)
    assert not t.is_alive() and out["r"][0] == {"value": 3}


_TOOL_PARENT = """
import sys
from pathlib import Path
from harness.models.base import run_tool
run_tool(["sleep", "300"], cwd=Path(sys.argv[1]), log=Path(sys.argv[1]) / "tool.log")
"""


def test_a_training_tool_dies_with_the_worker_that_started_it(tmp_path):
    """gap_fit, dp and mace_run_train run as child processes of a worker (run_tool): a worker killed with SIGKILL
    takes its tool with it, so the rerun's training is not raced by the old one in the same folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    parent = subprocess.Popen([sys.executable, "-c", _TOOL_PARENT, str(tmp_path)])
    try:
        deadline, tool = time.time() + 30, None
        while time.time() < deadline and tool is None:
            kids = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
            pids = [int(p) for p in kids.read_text().split()] if kids.exists() else []
            tool = next((p for p in pids if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep")), None)
            time.sleep(0.1)
        assert tool is not None, "the tool did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and not _gone(tool):
            time.sleep(0.1)
        assert _gone(tool), "the tool outlived the killed worker"
    finally:
        if parent.poll() is None:
            parent.kill()


_QUIET = """
import json, sys
import dask
from harness.workflow.cluster import QUIET_DASK, make_client
from harness.workflow.run import close_client
client = make_client(workers=1, gpu_workers=int(sys.argv[1]), quiet=sys.argv[2] == "1")
seen = client.run(lambda: {k: dask.config.get(k) for k in QUIET_DASK})
close_client(client)
print(json.dumps({"workers": list(seen.values()), "driver": {k: dask.config.get(k) for k in QUIET_DASK},
                  "timeout": dask.config.get("distributed.deploy.lost-worker-timeout")}))
"""


@pytest.mark.parametrize("gpu_workers", [0, 1])
def test_an_embedded_clusters_workers_run_without_dasks_monitoring(gpu_workers):
    """QUIET_DASK (no statistical profiler, slower monitors: ~9x less CPU for an idle 2-worker cluster,
    benchmarks/dask_overhead.py) reaches every worker of an embedded cluster (local and GPU-node), quiet=False
    leaves Dask's defaults, and the driver's own configuration is as before either way (in a fresh process,
    where `distributed` is first imported by make_client: a config.set around that import would drop the
    section it adds)."""
    import json
    import subprocess
    import sys

    from harness.workflow.cluster import QUIET_DASK

    for quiet in (True, False):
        out = subprocess.run([sys.executable, "-c", _QUIET, str(gpu_workers), "1" if quiet else "0"], check=True,
                             capture_output=True, text=True, timeout=120)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert len(got["workers"]) == 1 + gpu_workers
        defaults = got["driver"]
        assert defaults["distributed.worker.profile.enabled"] is True and got["timeout"]
        for seen in got["workers"]:
            assert seen == (QUIET_DASK if quiet else defaults)
