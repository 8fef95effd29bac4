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
