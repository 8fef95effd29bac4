"""One validation trajectory of a model under an MD protocol: the library behind ``harness md`` and sweeps.

Resolves the start (the protocol's OPLS-AA-equilibrated system, or a given frame, rescaled to the NVT
density), the detectors and the run directory ``<workspace>/md/<name>/<protocol>/<ensemble>-r<replica>``,
then calls :func:`harness.md.runner.run_md` (which resumes or returns a finished run).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from harness.errors import InputError
from harness.md.lock import run_lock
from harness.md.runner import RunSettings

__all__ = ["run_dir", "run_protocol", "prepare_run", "PreparedRun", "md_seed", "start_index"]

logger = logging.getLogger(__name__)


def run_dir(workspace: str | Path, name: str, protocol_name: str, ensemble: str, replica: int) -> Path:
    return Path(workspace) / "md" / name / protocol_name / f"{ensemble}-r{replica}"


#: what a run directory was started with (``run.json``); a later call that asks for something else supersedes it.
#: ``model_sha256`` (the model file's content, where the model has one) is compared only where both sides know
#: it: a member retrained under the same name is another model, and its old runs are not its runs.
_RUN_KEYS = ("protocol_hash", "nvt_density_g_cm3", "model_sha256")


def _recorded(outdir: Path) -> dict | None:
    """The settings a run directory was started with (``run.json``, else a finished run's meta)."""
    for f in ("run.json", "result.json"):
        if (outdir / f).exists():
            data = json.loads((outdir / f).read_text())
            data = data.get("meta", data)
            return {"model_sha256": (data.get("model_stamp") or {}).get("sha256"), **data}
    return None


def _same(value):
    """A recorded value as compared (densities to 1e-9 g/cm³: JSON round trips and float sums)."""
    return round(float(value), 9) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _supersede_stale(outdir: Path, want: dict) -> None:
    """Move aside a run directory started under another protocol hash, NVT density or model file.

    The directory name holds the protocol's name, not its content or the NVT density (which a sweep takes
    from its reference committee): without this check an edited protocol or another reference would
    silently return, or resume, the old trajectory under the new settings. The old run is kept, renamed.
    """
    have = _recorded(outdir)
    if have is None:
        return
    stale = {k: (have.get(k), want.get(k)) for k in _RUN_KEYS if _same(have.get(k)) != _same(want.get(k))
             and (k != "model_sha256" or None not in (have.get(k), want.get(k)))}
    if stale:
        aside = outdir.with_name(f"{outdir.name}.superseded-{time.strftime('%Y%m%dT%H%M%S')}")
        outdir.rename(aside)
        logger.warning("%s was run with %s; kept as %s, running anew", outdir,
                       ", ".join(f"{k}={a} (now {b})" for k, (a, b) in stale.items()), aside.name)


@dataclass
class PreparedRun:
    """One trajectory ready to integrate: its start, settings, directory, seed, detectors and metadata."""

    atoms: Atoms
    settings: RunSettings
    outdir: Path
    seed: int
    detectors: list
    meta: dict


def _nvt_density(proto, ensemble: str, nvt_density: float | None) -> float | None:
    """The run's NVT density (None for NPT), checked before anything is written."""
    if ensemble not in ("npt", "nvt"):
        raise InputError(f"ensemble must be npt or nvt, got {ensemble!r}")
    if ensemble == "npt":
        return None
    rho = nvt_density if nvt_density is not None else proto.nvt.density_g_cm3
    if rho == "reference":
        raise InputError(f"protocol {proto.name}: nvt.density_g_cm3 is 'reference'; give the reference "
                         "committee's mean NPT density (--nvt-density; sweeps resolve it automatically)")
    if rho <= 0:
        raise InputError(f"NVT density must be positive, got {rho}")
    return rho


def prepare_run(proto, ensemble: str, name: str, *, workspace: str | Path, replica: int = 0, species=None,
                start: str | Path | None = None, nvt_density: float | None = None, label: str | None = None,
                model_stamp: dict | None = None) -> PreparedRun:
    """Everything :func:`run_protocol` resolves before integrating (the start, written once; the detectors;
    the run directory, a stale one moved aside): shared by single and batched runs."""
    rho = _nvt_density(proto, ensemble, nvt_density)
    outdir = run_dir(workspace, name, proto.name, ensemble, replica)
    with run_lock(outdir):  # never move aside or rewrite the start of a run another process is integrating
        return _prepare(proto, ensemble, name, outdir, workspace=workspace, replica=replica, species=species,
                        start=start, rho=rho, label=label, model_stamp=model_stamp)


def _prepare(proto, ensemble: str, name: str, outdir: Path, *, workspace, replica, species, start, rho, label,
             model_stamp) -> PreparedRun:
    from harness.io import read_frames, write_frames
    from harness.md.detectors import detectors_from_spec
    from harness.md.protocol import protocol_hash
    from harness.md.start import check_start, shared_start

    started = {"protocol_hash": protocol_hash(proto), "nvt_density_g_cm3": rho,
               "model_sha256": (model_stamp or {}).get("sha256")}
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
        own = proto.system.starts == "per_member"
        logger.info("start: %s, OPLS-AA equilibrated (%s)", proto.system.composition,
                    "this member's own" if own else "shared by the workspace's runs")
        atoms = shared_start(proto, Path(workspace) / "md" / "starts", density_g_cm3=rho,
                             replica=start_index(name, replica) if own else replica)
    check_start(atoms, where=str(start) if start else "protocol start", species=species)
    if not cached_start.exists():
        write_frames(cached_start, [atoms])
        (outdir / "run.json").write_text(json.dumps(started))
    dets = detectors_from_spec(proto.detectors, ensemble == "npt")
    meta = {"model": label or name, "protocol": proto.name, "protocol_hash": started["protocol_hash"],
            "protocol_spec": proto.model_dump(mode="json"), "replica": replica, "nvt_density_g_cm3": rho,
            **({"model_stamp": model_stamp} if model_stamp else {})}
    return PreparedRun(atoms, proto.settings(ensemble), outdir, md_seed(proto.system.seed, replica, name), dets, meta)


def md_seed(protocol_seed: int, replica: int, name: str) -> int:
    """The MD seed of every run: a hash of the protocol's (or exploration's) seed, the replica (or the start's
    index) and the run's name (one per member; an exploration's run directory), so that the members of a committee
    draw independent velocities and thermostat noise (SCIENCE.md §11)."""
    import hashlib

    return int(hashlib.sha256(f"{protocol_seed}/{replica}/{name}".encode()).hexdigest()[:8], 16)


def start_index(name: str, replica: int) -> int:
    """The start replica of a member's own liquid (``system.starts: per_member``): distinct from the shared
    starts (0, 1, ...) and, but for a hash collision, from every other member's."""
    return 1000 + md_seed(0, replica, name) % 1_000_000


def run_protocol(proto, ensemble: str, calc, name: str, *, workspace: str | Path, replica: int = 0,
                 species=None, start: str | Path | None = None, nvt_density: float | None = None,
                 label: str | None = None, model_stamp: dict | None = None):
    """Run (or resume, or return) one trajectory; returns ``(MDResult, run directory)``.

    ``model_stamp``: the model's provenance (architecture, file SHA-256, versions), kept in ``result.json``."""

    _nvt_density(proto, ensemble, nvt_density)  # bad input refused before the lock creates any folder
    with run_lock(run_dir(workspace, name, proto.name, ensemble, replica)):  # held from preparation to the result
        run = prepare_run(proto, ensemble, name, workspace=workspace, replica=replica, species=species, start=start,
                          nvt_density=nvt_density, label=label, model_stamp=model_stamp)
        return launch(run, calc), run.outdir


def launch(run: PreparedRun, calc):
    """Integrate ``run`` with ``calc`` (or resume it from its checkpoint, or return it finished) under its run
    directory's lock: the one way the harness runs a trajectory alone — validation runs, the diagnostics'
    liquids, ``harness md``, AL exploration; :mod:`harness.md.batched` advances several prepared runs together."""
    from harness.md.runner import run_md

    with run_lock(run.outdir):
        return run_md(run.atoms, calc, run.settings, outdir=run.outdir, seed=run.seed, detectors=run.detectors,
                      meta=run.meta)
