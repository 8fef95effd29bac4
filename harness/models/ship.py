"""Ship trained committees: copy what loading and tracing them needs, nothing else.

A committee directory the harness trained holds its training inputs, checkpoints and scratch beside the
model files. :func:`export_committee` copies ``committee.json`` and, per successfully trained member,
``artifact.json`` (provenance: dataset content keys, seed, hyperparameters, package versions, learning curve,
validation RMSE), the files the artifact lists (hashed; a GAP model's sparse-point files among them) and the
training log. The files are packed (:mod:`harness.models.packing`: gzipped where that saves a fifth, a DeePMD
member's compressed model made at load from its frozen one) and unpacked into the cache, checked against their
training hashes, when loaded. The copy is a committee directory like any (``models: [{committee: DIR}]`` in a
sweep, ``-m DIR`` on the command line): members load from wherever it lies. Paths inside the repository are
written relative to it.

    python -m harness.models.ship DEST COMMITTEE_DIR [COMMITTEE_DIR ...]

writes ``DEST/<arch>-<subset>/`` per committee and ``DEST/manifest.json`` (each committee's members, their
validation errors and file hashes, and where they came from).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.models.base import ModelArtifact
from harness.models.packing import pack

__all__ = ["export_committee", "export", "repack", "main"]

ROOT = Path(__file__).resolve().parents[2]


def _relative(value: Any) -> Any:
    """Absolute paths inside the repository made relative to it (recursively)."""
    if isinstance(value, dict):
        return {k: _relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v) for v in value]
    if isinstance(value, str) and value.startswith(str(ROOT) + "/"):
        return str(Path(value).relative_to(ROOT))
    return value


def export_committee(src: str | Path, dest_root: str | Path, *, compact: bool = True) -> dict[str, Any]:
    """Copy committee directory ``src`` to ``dest_root/<arch>-<subset>`` (which must not exist), its members'
    files packed (:func:`harness.models.packing.pack`; ``compact=False``: as trained); returns its manifest
    entry."""
    src = Path(src)
    if not (src / "committee.json").is_file():
        raise InputError(f"{src}: not a committee directory (no committee.json)")
    committee = json.loads((src / "committee.json").read_text())
    dest = Path(dest_root) / f"{committee.get('arch', 'model')}-{committee.get('subset', src.name)}"
    if dest.exists():
        raise InputError(f"{dest} exists; remove it first")
    members = []
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for adir in sorted(p.parent for p in src.glob("*/artifact.json")):
            art = ModelArtifact.load(adir)
            if art.status != "ok":
                continue
            art.verify()
            out = tmp / adir.name
            out.mkdir()
            packed = pack(art, out) if compact else {}
            if not compact:
                for role, rel in art.files.items():
                    shutil.copy2(art.path(role), out / rel)
            if art.log and (adir / art.log).is_file():
                shutil.copy2(adir / art.log, out / art.log)
            data = json.loads((adir / "artifact.json").read_text())
            data["workdir"] = adir.name  # set to the folder it is loaded from (ModelArtifact.load)
            data.pop("packed", None)
            if packed:
                data["packed"] = packed
            (out / "artifact.json").write_text(json.dumps(_relative(data), indent=1) + "\n")
            made = [role for role, how in packed.items() if how["how"] != "gzip"]
            members.append({"member": adir.name, "seed": art.seed, "files": art.file_sha256,
                            "stored_bytes": sum(p.stat().st_size for p in out.iterdir()),
                            **({"made_at_load": made} if made else {}),
                            **{k: v for k, v in art.metrics.items() if k.startswith("valid_")}})
        if not members:
            shutil.rmtree(tmp)
            raise InputError(f"{src}: no successfully trained members")
        (tmp / "committee.json").write_text(json.dumps(_relative(committee), indent=1) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(dest)
    return {"committee": dest.name, "arch": committee.get("arch"), "subset": committee.get("subset"),
            "preset": committee.get("preset"), "source": _relative(str(src.resolve())), "members": members}


def export(dest: str | Path, committees: list[str | Path]) -> Path:
    """Export each committee (:func:`export_committee`) into ``dest`` and write ``dest/manifest.json``."""
    import subprocess

    from harness.provenance import run_context

    dest = Path(dest)
    entries = []
    for c in committees:
        entries.append(export_committee(c, dest))
    manifest = dest / "manifest.json"
    old = json.loads(manifest.read_text()) if manifest.is_file() else {"committees": []}
    keep = [e for e in old["committees"] if e["committee"] not in {x["committee"] for x in entries}]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    exported = {**run_context(("core", "gap", "deepmd", "mace")), "harness_commit": commit or None}
    manifest.write_text(json.dumps({"committees": keep + entries, "exported": exported}, indent=1) + "\n")
    return manifest


def repack(dest: str | Path) -> Path:
    """Store the committees already shipped in ``dest`` packed (:mod:`harness.models.packing`), each member's
    files unchanged once unpacked; ``manifest.json`` keeps where each came from."""
    dest = Path(dest)
    manifest = dest / "manifest.json"
    data = json.loads(manifest.read_text())
    for i, entry in enumerate(data["committees"]):
        src = dest / entry["committee"]
        new = export_committee(src, dest / ".repack")
        old = src.with_name(src.name + ".old")
        src.rename(old)
        (dest / ".repack" / entry["committee"]).rename(src)
        shutil.rmtree(old)
        data["committees"][i] = {**new, "source": entry.get("source")}
    shutil.rmtree(dest / ".repack", ignore_errors=True)
    manifest.write_text(json.dumps(data, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(export(argv[0], argv[1:]))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
