"""SLURM set-up through dask-jobqueue: the cluster object and its job script (there is no SLURM here)."""

from __future__ import annotations

import pytest

from harness.config import load_yaml
from harness.errors import ConfigError
from harness.sweep.cluster import SlurmSpec, slurm_cluster


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


def test_slurm_spec_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "slurm.yaml"
    bad.write_text("jobs: 2\ngpus: 1\n")
    with pytest.raises(ConfigError, match="gpus"):
        load_yaml(bad, SlurmSpec)


def test_a_gpu_node_cluster_routes_cuda_tasks_to_gpu_workers(tmp_path):
    """One CPU worker and two GPU workers (resources are labels: this runs on any machine): tasks on device cuda
    run only on GPU workers, the others (a cpu task; a cuda task placed on the CPU, as GAP's are) only on the
    CPU worker, which sees no GPU."""
    from harness.sweep.cluster import make_client
    from harness.sweep.execute import Task, execute
    from harness.sweep.store import Store

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
