"""Build the sources of a dataset spec: sample configurations, label them, write files + manifest.

Layout under the spec's ``data_dir``::

    <source>.extxyz.gz        labelled frames of one source (reproducible gzip)
    manifest.json             per source: counts by config type and composition, hashes,
                              reference provenance, failed labels, the command that rebuilds it
    .work/                    sampled (unlabelled) frames keyed by the source's parameter hash,
                              and partial labels of an interrupted build (safe to delete)

Rebuilding is resumable: sampled frames are reused while the source's parameters are unchanged,
and labels are reused from the previous output or an interrupted run when the frame content and
the reference settings match. Nothing is labelled twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from harness.datasets.spec import (DatasetSpec, ImportSource, IsolatedAtomsSource, IsolatedMDSource,
                                   LiquidMDSource, VolumeScanSource, params_hash)
from harness.errors import InputError
from harness.io import atomic_path, frame_uid, labelled, read_frames, sha256_file, write_frames
from harness.provenance import run_context
from harness.reference import make_oracle
from harness.reference.batch import label_to_file
from harness.units import ENERGY_UNITS_EV

__all__ = ["build_dataset", "ensure_built", "source_file", "sample_source", "frames_hash", "load_manifest"]

logger = logging.getLogger(__name__)


def source_file(spec: DatasetSpec, name: str) -> Path:
    return spec.data_path / f"{name}.extxyz.gz"


def manifest_file(spec: DatasetSpec) -> Path:
    return spec.data_path / "manifest.json"


def load_manifest(spec: DatasetSpec) -> dict[str, Any]:
    path = manifest_file(spec)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def frames_hash(frames: Sequence[Atoms]) -> str:
    """Hash of frame contents and labels (independent of file compression and key order)."""
    import hashlib

    h = hashlib.sha256()
    for a in frames:
        h.update(frame_uid(a).encode())
        if "REF_energy" in a.info:
            h.update(f"{a.info['REF_energy']:.8f}".encode())
        if "REF_forces" in a.arrays:
            f = np.asarray(a.arrays["REF_forces"], dtype=float).ravel().tolist()
            h.update((",".join(["%.6f"] * len(f)) % tuple(f)).encode())  # = np.char.mod("%.6f", ...) joined
        h.update(str(a.info.get("config_type", "")).encode())
    return h.hexdigest()[:16]


def _source_seed(spec: DatasetSpec, name: str) -> int:
    return int(spec.seed) * 1000 + sum(name.encode()) % 997


def sample_source(spec: DatasetSpec, name: str, *, progress: Callable[[str], None] | None = None) -> list[Atoms]:
    """Unlabelled frames of a generated source (``liquid_md``, ``isolated_md``, ``isolated_atoms``,
    ``volume_scan``)."""
    from harness.datasets.classical_md import sample_frames
    from harness.datasets.single_molecule import sample_isolated
    from harness.datasets.volume_scan import density_grid, volume_scan
    from harness.systems.box import build_box
    from harness.systems.composition import Composition
    from harness.systems.molecules import get_molecule

    src = spec.sources[name]
    seed = _source_seed(spec, name)
    say = progress or (lambda _msg: None)
    frames: list[Atoms] = []
    if isinstance(src, LiquidMDSource):
        comp = Composition.parse(src.composition)
        for k, run in enumerate(src.runs):
            rho = run.density_g_cm3 if run.density_g_cm3 is not None else src.packing_density_g_cm3
            say(f"{name}: run {k + 1}/{len(src.runs)} {run.ensemble} {run.temperature_K:g} K")
            box = build_box(comp, rho, seed=seed + k)
            got = sample_frames(box, ensemble=run.ensemble, temperature_K=run.temperature_K, n_frames=run.n_frames,
                                stride_ps=src.stride_ps, equilibration_ps=src.equilibration_ps,
                                pressure_bar=run.pressure_bar or 1.0, timestep_fs=src.timestep_fs, seed=seed + k,
                                threads=spec.threads, cutoff_nm=src.cutoff_nm)
            for f in got:
                f.info["run"] = k
            frames += got
    elif isinstance(src, IsolatedMDSource):
        for k, (species, count) in enumerate(src.molecules.items()):
            say(f"{name}: {count} isolated {species}")
            frames += sample_isolated(get_molecule(species), count, src.temperatures_K, stride_ps=src.stride_ps,
                                      equilibration_ps=src.equilibration_ps, seed=seed + 100 * k,
                                      threads=spec.threads)
    elif isinstance(src, IsolatedAtomsSource):
        frames = isolated_atoms(src)
    elif isinstance(src, VolumeScanSource):
        comp = Composition.parse(src.composition)
        box = build_box(comp, src.start_density_g_cm3, seed=seed)
        say(f"{name}: {src.n_scans} liquid frames to scan")
        starts = sample_frames(box, ensemble="nvt", temperature_K=src.start_temperature_K, n_frames=src.n_scans,
                               stride_ps=src.stride_ps, equilibration_ps=src.equilibration_ps,
                               timestep_fs=src.timestep_fs, seed=seed, threads=spec.threads, cutoff_nm=src.cutoff_nm)
        grid = density_grid(src.grid.low_g_cm3, src.grid.high_g_cm3, src.grid.n)
        for k, start in enumerate(starts):
            frames += volume_scan(start, grid, scan_id=f"{name}-{k}")
    else:  # pragma: no cover - import sources are not sampled
        raise TypeError(f"source {name} is not generated")
    for f in frames:
        f.info["config_type"] = src.config_type
        f.info["source"] = name
    return frames


def isolated_atoms(src: IsolatedAtomsSource) -> list[Atoms]:
    """One free atom per element, non-periodic, with 2S = multiplicity - 1 unpaired electrons as its
    initial magnetic moment (how ASE calculators such as tblite's take the spin state)."""
    frames = []
    for symbol, mult in src.multiplicities().items():
        a = Atoms(symbol, positions=[[0.0, 0.0, 0.0]], pbc=False)
        a.set_initial_magnetic_moments([float(mult - 1)])
        a.arrays["mol_id"] = np.zeros(1, dtype=int)
        a.info["composition"] = symbol
        a.info["spin_multiplicity"] = mult
        frames.append(a)
    return frames


def import_source(spec: DatasetSpec, name: str) -> list[Atoms]:
    """Frames of an ``import`` source with labels mapped to ``REF_*`` (eV, Å) and tags applied."""
    from harness.systems.topology import assign_molecules

    src = spec.sources[name]
    assert isinstance(src, ImportSource)
    path = (spec.path.parent / src.file)
    frames = read_frames(path)
    scale = ENERGY_UNITS_EV[src.energy_unit]
    out = []
    for k, a in enumerate(frames):
        b = labelled(a, where=f"{path}: frame {k}", energy_key=src.energy_key, forces_key=src.forces_key,
                     stress_key=src.stress_key, scale=scale,
                     hint=f"set energy_key/forces_key in source {name!r}")
        if src.config_type_key:
            raw = str(a.info.get(src.config_type_key, ""))
            b.info["config_type"] = src.config_type_map.get(raw, raw or src.config_type)
        else:
            b.info["config_type"] = src.config_type
        for key, value in src.tags.items():
            b.info[key] = value
        if "mol_id" not in b.arrays:
            assign_molecules(b)
        b.info["source"] = name
        b.info["uid"] = frame_uid(b)
        b.info["REF_method"] = b.info.get("REF_method", f"imported:{src.file}")
        out.append(b)
    return out


def _manifest_entry(spec: DatasetSpec, name: str, frames: list[Atoms], report=None, *, seconds: float,
                    phash: str) -> dict[str, Any]:
    path = source_file(spec, name)
    by_comp = Counter(str(f.info.get("composition", "?")) for f in frames)
    by_type = Counter(str(f.info.get("config_type", "?")) for f in frames)
    entry: dict[str, Any] = {
        "config_type": spec.sources[name].config_type,
        "kind": spec.sources[name].kind,
        "file": path.name,
        "file_sha256": sha256_file(path) if path.exists() else None,
        "frames_hash": frames_hash(frames),
        "n_frames": len(frames),
        "n_atoms": int(sum(len(f) for f in frames)),
        "by_config_type": dict(sorted(by_type.items())),
        "by_composition": dict(sorted(by_comp.items())),
        "params": spec.sources[name].model_dump(mode="json"),
        "params_hash": phash,
        "seed": _source_seed(spec, name),
        "command": f"harness dataset build {_rel(spec.path)} --only {name}",
        "seconds": round(seconds, 1),
    }
    src = spec.sources[name]
    if isinstance(src, IsolatedAtomsSource):
        entry["spin"] = {"multiplicity": src.multiplicities(),
                         "treatment": "each free atom in the multiplicity given (default: its ground state by "
                                      "Hund's rules), passed as 2S unpaired electrons through the initial magnetic "
                                      "moment; the reference's settings are the dataset's, unchanged (GFN2-xTB: "
                                      "no spin-polarisation term, as for every other label)"}
        entry["e0_eV"] = {str(f.get_chemical_symbols()[0]): float(f.info["REF_energy"]) for f in frames}
    if report is not None:
        entry["reference"] = report.provenance
        entry["reference_key"] = report.oracle_key
        entry["failed"] = [{"index": r.index, "uid": r.uid, "error": r.error} for r in report.failed]
        entry["labels_reused"] = sum(r.status == "cached" for r in report.records)
    return entry


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def build_dataset(
    spec: DatasetSpec,
    *,
    only: Sequence[str] | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build (or resume building) the spec's sources; returns the updated manifest."""
    say = say or (lambda msg: logger.info(msg))
    names = list(only) if only else list(spec.sources)
    unknown = [n for n in names if n not in spec.sources]
    if unknown:
        raise InputError(f"unknown source(s) {', '.join(unknown)}; sources of {spec.name}: {', '.join(spec.sources)}")
    data = spec.data_path
    work = data / ".work"  # made when a source is sampled: bad import data leaves nothing behind
    manifest = load_manifest(spec)
    manifest.setdefault("sources", {})
    oracle = None
    for name in names:
        src = spec.sources[name]
        t0 = time.perf_counter()
        phash = params_hash(src, _source_seed(spec, name), spec.reference.model_dump(mode="json"))
        out = source_file(spec, name)
        prev = manifest["sources"].get(name, {})
        if out.exists() and prev.get("params_hash") == phash and prev.get("file_sha256") == sha256_file(out):
            say(f"{name}: up to date ({prev.get('n_frames')} frames)")
            continue
        if isinstance(src, ImportSource):
            frames = import_source(spec, name)
            out.parent.mkdir(parents=True, exist_ok=True)
            write_frames(out, frames)
            manifest["sources"][name] = _manifest_entry(spec, name, frames, seconds=time.perf_counter() - t0,
                                                        phash=phash)
        else:
            work.mkdir(parents=True, exist_ok=True)
            sampled = work / f"{name}-{params_hash(src, _source_seed(spec, name))}.sampled.extxyz"
            if sampled.exists():
                frames = read_frames(sampled)
                say(f"{name}: reusing {len(frames)} sampled frames")
            else:
                frames = sample_source(spec, name, progress=say)
                write_frames(sampled, frames)
                say(f"{name}: sampled {len(frames)} frames")
            if oracle is None:
                oracle = make_oracle(spec.reference.name, {**spec.reference.options,
                                                           **({"threads": spec.threads} if spec.threads and spec.reference.name == "xtb" else {})})
            reuse = {}
            if out.exists():
                reuse = {frame_uid(f): f for f in read_frames(out)}
            say(f"{name}: labelling {len(frames)} frames with {oracle.name}")
            report = label_to_file(frames, out, oracle, manifest=work / f"{name}.label-manifest.json",
                                   progress=progress, source=str(sampled), reuse=reuse,
                                   command=f"harness dataset build {_rel(spec.path)} --only {name}")
            if not report.frames:
                raise InputError(f"source {name}: every frame failed to label (see {work / (name + '.label-manifest.json')})")
            manifest["sources"][name] = _manifest_entry(spec, name, report.frames, report,
                                                        seconds=time.perf_counter() - t0, phash=phash)
            if report.failed:
                say(f"{name}: {len(report.failed)} frame(s) failed to label and were left out (listed in the manifest)")
        manifest.update({
            "dataset": spec.name,
            "spec": spec.path.name,
            "spec_sha256": sha256_file(spec.path),
            "context": run_context(("core", "reference", "classical")),
            "rebuild": f"harness dataset build {_rel(spec.path)}",
        })
        with atomic_path(manifest_file(spec)) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
    return manifest


def ensure_built(dataset: Path, say: Callable[[str], None] | None = None) -> None:
    """Build the dataset of the definition file ``dataset`` if it is not built (a no-op when it is)."""
    from harness.datasets.spec import load_dataset_spec

    build_dataset(load_dataset_spec(dataset), say=say or (lambda msg: None))
