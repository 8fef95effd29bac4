"""One validation trajectory of a model under an MD protocol: the library behind ``harness md`` and sweeps.

Resolves the start (the protocol's OPLS-AA-equilibrated system, or a given frame, rescaled to the NVT
density), the detectors and the run directory ``<workspace>/md/<name>/<protocol>/<ensemble>-r<replica>``,
then calls :func:`harness.md.runner.run_md` (which resumes or returns a finished run).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from harness.errors import InputError

__all__ = ["model_calculator", "run_dir", "run_protocol"]

logger = logging.getLogger(__name__)


def model_calculator(model: str | Path, *, device: str = "cpu"):
    """(calculator, run name, species) of a trained member or a committee directory."""
    from harness.models.base import ModelArtifact, get_trainer
    from harness.models.train import load_committee, model_run_name

    model = Path(model)
    if (model / "artifact.json").exists():
        art = ModelArtifact.load(model)
        if art.status != "ok":
            raise InputError(f"{model}: this member failed to train ({(art.error or '').splitlines()[0]})")
        art.verify()
        return get_trainer(art.arch).calculator(art, device=device), model_run_name(model), tuple(art.species) or None
    if (model / "committee.json").exists():
        calc = load_committee(model, device=device)
        species = set()
        for p in sorted(model.glob("*/artifact.json")):
            species.update(ModelArtifact.load(p.parent).species)
        return calc, model_run_name(model), tuple(sorted(species)) or None
    raise InputError(f"{model}: neither a trained member (artifact.json) nor a committee (committee.json)")


def run_dir(workspace: str | Path, name: str, protocol_name: str, ensemble: str, replica: int) -> Path:
    return Path(workspace) / "md" / name / protocol_name / f"{ensemble}-r{replica}"


#: what a run directory was started with (``run.json``); a later call that asks for something else supersedes it
_RUN_KEYS = ("protocol_hash", "nvt_density_g_cm3")


def _recorded(outdir: Path) -> dict | None:
    """The settings a run directory was started with (``run.json``, else a finished run's meta)."""
    for f in ("run.json", "result.json"):
        if (outdir / f).exists():
            data = json.loads((outdir / f).read_text())
            return data.get("meta", data)
    return None


def _same(value):
    """A recorded value as compared (densities to 1e-9 g/cm³: JSON round trips and float sums)."""
    return round(float(value), 9) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _supersede_stale(outdir: Path, want: dict) -> None:
    """Move aside a run directory started under another protocol hash or NVT density.

    The directory name holds the protocol's name, not its content or the NVT density (which a sweep takes
    from its reference committee): without this check an edited protocol or another reference would
    silently return, or resume, the old trajectory under the new settings. The old run is kept, renamed.
    """
    have = _recorded(outdir)
    if have is None:
        return
    stale = {k: (have.get(k), want.get(k)) for k in _RUN_KEYS if _same(have.get(k)) != _same(want.get(k))}
    if stale:
        aside = outdir.with_name(f"{outdir.name}.superseded-{time.strftime('%Y%m%dT%H%M%S')}")
        outdir.rename(aside)
        logger.warning("%s was run with %s; kept as %s, running anew", outdir,
                       ", ".join(f"{k}={a} (now {b})" for k, (a, b) in stale.items()), aside.name)


def run_protocol(proto, ensemble: str, calc, name: str, *, workspace: str | Path, replica: int = 0,
                 species=None, start: str | Path | None = None, nvt_density: float | None = None,
                 label: str | None = None):
    """Run (or resume, or return) one trajectory; returns ``(MDResult, run directory)``."""
    from harness.io import read_frames, write_frames
    from harness.md.detectors import active_learning_detectors, validation_detectors
    from harness.md.protocol import protocol_hash
    from harness.md.runner import run_md
    from harness.md.start import check_start, prepare_start

    if ensemble not in ("npt", "nvt"):
        raise InputError(f"ensemble must be npt or nvt, got {ensemble!r}")
    rho = None
    if ensemble == "nvt":
        rho = nvt_density if nvt_density is not None else proto.nvt.density_g_cm3
        if rho == "reference":
            raise InputError(f"protocol {proto.name}: nvt.density_g_cm3 is 'reference'; give the reference "
                             "committee's mean NPT density (--nvt-density; sweeps resolve it automatically)")
        if rho <= 0:
            raise InputError(f"NVT density must be positive, got {rho}")
    outdir = run_dir(workspace, name, proto.name, ensemble, replica)
    started = {"protocol_hash": protocol_hash(proto), "nvt_density_g_cm3": rho}
    _supersede_stale(outdir, started)
    cached_start = outdir / "start.extxyz"
    if cached_start.exists():  # a resumed or finished run keeps its exact start
        atoms = read_frames(cached_start)[0]
    elif start is not None:
        atoms = read_frames(start)[-1]
        if rho is not None:
            from harness.datasets.volume_scan import volume_scan

            check_start(atoms, where=str(start), species=species)
            atoms = volume_scan(atoms, [rho])[0]
    else:
        logger.info("preparing the start (%s, OPLS-AA equilibration)", proto.system.composition)
        atoms = prepare_start(proto, density_g_cm3=rho, replica=replica)
    check_start(atoms, where=str(start) if start else "protocol start", species=species)
    if not cached_start.exists():
        write_frames(cached_start, [atoms])
        (outdir / "run.json").write_text(json.dumps(started))
    rules = validation_detectors if proto.detectors.rules == "validation" else active_learning_detectors
    dets = rules(ensemble == "npt", interval=proto.detectors.interval,
                 bond_length_method=proto.detectors.bond_length_method)
    for d in dets:
        d.patience = proto.detectors.patience
    meta = {"model": label or name, "protocol": proto.name, "protocol_hash": protocol_hash(proto),
            "protocol_spec": proto.model_dump(mode="json"), "replica": replica, "nvt_density_g_cm3": rho}
    result = run_md(atoms, calc, proto.settings(ensemble), outdir=outdir, seed=1000 * proto.system.seed + replica,
                    detectors=dets, meta=meta)
    return result, outdir
