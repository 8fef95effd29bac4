"""Models the sweep did not train, end to end in the ci sweep's workspace (``make ci-models``, after
``make ci-sweep``): a MACE file exported from a trained member and a stand-in ASE calculator enter a sweep
and get their Q against the ci reference; ``harness validate`` on the MACE file prints t_stab and Q.

The ci sweep's workspace holds the GAP reference with its MD already run (same task keys), so only the
two external models are run here. Numbers mean nothing (a 2-epoch MACE, a Lennard-Jones liquid)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WS = Path(os.environ.get("HARNESS_CI_WORKSPACE", ROOT / "runs" / "ci"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_workspace():
    if not list(WS.glob("models/mace/OPLS/*/member-0-seed0/artifact.json")):
        pytest.fail(f"{WS}: no ci sweep workspace (run `make ci-sweep` first, or set HARNESS_CI_WORKSPACE)")
    return WS


def _exported_mace(ws: Path, tmp: Path) -> Path:
    from harness.models.base import ModelArtifact

    art = ModelArtifact.load(next(ws.glob("models/mace/OPLS/*/member-0-seed0")))
    out = tmp / "exported-mace.model"
    shutil.copy(art.path("model"), out)  # a MACE file as a user would bring it: outside any workspace
    return out


def _reference(ws: Path) -> Path:
    return next(p.parent for p in ws.glob("models/gap/OPLS+VS/*/committee.json"))


def test_external_models_in_a_sweep_and_validate(ci_workspace, tmp_path):
    from typer.testing import CliRunner

    from harness.cli.main import app
    from harness.io import sha256_file
    from harness.sweep.run import run_sweep
    from harness.workflow.store import Store

    mace_file = _exported_mace(ci_workspace, tmp_path)
    spec = yaml.safe_load((ROOT / "protocols" / "sweeps" / "ci.yaml").read_text())
    spec.update(name="ci-models", dataset=str(ROOT / "datasets" / "ec-emc-xtb.yaml"),
                protocol=str(ROOT / "protocols" / "ci.yaml"), subsets=[], architectures=[],
                models=[{"name": "mace-file", "files": [str(mace_file)]},
                        {"name": "lj", "calculator": "ase:ase.calculators.lj.LennardJones",
                         "options": {"sigma": 1.0, "epsilon": 0.005, "rc": 5.0}}])
    spec.pop("diagnostics", None)  # they name the grid's committees; this sweep has none
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(spec))
    counts, name = run_sweep(path, ci_workspace, sync=True)
    assert counts["failed"] == 0 and counts["skipped"] == 0, counts
    store = Store(ci_workspace / "harness.sqlite")
    scores = {r["result"]["committee_id"]: r["result"] for r in store.tasks(kind="score", sweep=name, status="done")}
    store.close()
    assert set(scores) == {"model:mace-file", "model:lj", "ref:gap/OPLS+VS"}
    for cid in ("model:mace-file", "model:lj"):
        s = scores[cid]
        assert len(s["members"]) == 1  # one file, one calculator: committees of one
        q = s["committee"]["Q"]["mean"]
        assert 0.0 <= q <= 3.0 and q == pytest.approx(sum(s["members"][0][t] for t in "SRV"))
    stamp = scores["model:mace-file"]["models"]["member-0"]
    assert stamp["arch"] == "mace" and stamp["sha256"] == sha256_file(mace_file)
    assert stamp["versions"]["mace-torch"] != "not installed"
    assert scores["model:lj"]["models"]["member-0"]["calculator"] == "ase:ase.calculators.lj.LennardJones"
    # a Lennard-Jones "liquid" holds no molecule together: a detector ends its NPT run early
    lj = scores["model:lj"]["members"][0]
    assert lj["npt_failure"] is not None and lj["S"] < 1

    r = CliRunner().invoke(app, ["validate", "--model", str(mace_file), "--reference", str(_reference(ci_workspace)),
                                 "--protocol", str(ROOT / "protocols" / "ci.yaml"), "-w", str(ci_workspace)])
    assert r.exit_code == 0, r.output
    assert "t_NPT ps" in r.stdout and "committee of one (no spread)" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("member-0"))
    mace = scores["model:mace-file"]["members"][0]
    assert f"{mace['t_stab_npt_ps']:.3g}" in row and f"{mace['Q']:.3f}" in row  # the same runs, the same Q
    assert f"sha256 {stamp['sha256'][:12]}" in r.stdout


def test_batched_md_with_trained_deepmd_and_mace_members(ci_workspace, small_box, tmp_path):
    """Batched MD with the ci sweep's trained members: two NVT replicas of one DeePMD member in one batch (two
    frames of one ``DeepPot.eval`` call) and a MACE member's batch of one each reproduce the unbatched
    trajectory with the member's own ASE calculator to 1e-8 Å over 40 steps."""
    import numpy as np

    from harness.h5md import read_h5md
    from harness.md.batched import BatchJob, run_batched
    from harness.md.runner import RunSettings, run_md
    from harness.models.base import ModelArtifact, get_trainer
    from harness.models.batch import DeePMDBatch, MACEBatch, batch_evaluator

    nvt = RunSettings("nvt", 500.0, length_ps=0.02, timestep_fs=0.5, frame_interval=10, thermo_interval=10)
    # NPT as well: the batched stress path (the virial of each structure of one call) drives the barostat
    npt = RunSettings("npt", 500.0, length_ps=0.02, timestep_fs=0.5, pressure_atm=1.0, tdamp_fs=50.0, pdamp_fs=500.0,
                      frame_interval=10, thermo_interval=10)
    for arch, kind, seeds, s in (("deepmd", DeePMDBatch, (1, 2), nvt), ("deepmd", DeePMDBatch, (1, 2), npt),
                                 ("mace", MACEBatch, (3,), nvt)):
        art = ModelArtifact.load(next(ci_workspace.glob(f"models/{arch}/OPLS/*/member-0-seed0")))
        calc = get_trainer(arch).calculator(art)
        ev = batch_evaluator(get_trainer(arch).calculator(art))
        assert isinstance(ev, kind)
        tag = f"{arch}-{s.ensemble}"
        jobs = [BatchJob(small_box, s, tmp_path / f"{tag}-b{seed}", seed=seed) for seed in seeds]
        batched = run_batched(jobs, [ev])
        for seed, res in zip(seeds, batched):
            alone = run_md(small_box, calc, s, outdir=tmp_path / f"{tag}-a{seed}", seed=seed)
            assert res.n_steps == alone.n_steps == 40, (tag, res, alone)
            a = read_h5md(tmp_path / f"{tag}-a{seed}" / "trajectory.h5md")
            b = read_h5md(tmp_path / f"{tag}-b{seed}" / "trajectory.h5md")
            assert np.allclose(a["positions"], b["positions"], rtol=0, atol=1e-8), (tag, float(np.abs(a["positions"] - b["positions"]).max()))
            assert np.allclose(a["cells"], b["cells"], rtol=0, atol=1e-8), tag
            if s.ensemble == "npt":
                assert np.ptp(np.linalg.det(b["cells"])) > 0, "the barostat moved the cell"
