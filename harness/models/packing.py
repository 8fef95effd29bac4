"""Shipped members in less space: files gzipped, or made at load from another file, and unpacked into the cache.

A committee shipped in the repository (:mod:`harness.models.ship`) is read by everyone who clones it and
carried to GPU nodes with the working tree (64 MiB per call). Its members' files are stored as small as they
can be without changing the member:

* **gzip** where it saves at least a fifth (a GAP model's sparse-point files: 2.3 MB to under 1 kB; a MACE
  model: 3.7 to 0.3 MB); the rest (a frozen DeePMD model: 10 %) as they are;
* **made at load** where a file is a deterministic function of another: a DeePMD member's compressed model
  (``dp compress`` of its frozen model, 39 MB against 1.4 MB). The same deepmd-kit makes the same model: the same
  weights, tables and TorchScript code; the file differs between installations only in TorchScript's debug
  records (the source paths of the installation) and its serialization id, so the made file is compared with the
  trained one by its content (:func:`torchscript_content_sha256`, recorded at packing, where it is checked).

``artifact.json`` keeps the files' training hashes and records, per packed role, how it is stored
(``packed``). :func:`unpacked` writes the member's files into the cache (``$HARNESS_CACHE/members/<hash>/``),
checks every one against its training hash (a made one: its content hash) and reuses them; a file that does not
come back as trained (another deepmd-kit making another compressed model) is an :class:`InputError` naming the
member and the role. :meth:`ModelArtifact.verify` checks the stored files
without unpacking (what keying a sweep needs).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from harness.errors import InputError
from harness.io import sha256_file
from harness.models.base import DERIVED, ModelArtifact

__all__ = ["pack", "unpacked", "GZIP_MIN_SAVING"]

#: gzip a file only when that saves at least this fraction of it
GZIP_MIN_SAVING = 0.2


def _derive(how: str, src: Path, dest: Path) -> None:
    module, func = DERIVED[how].split(":")
    getattr(importlib.import_module(module), func)(src, dest)


def torchscript_content_sha256(path: Path) -> str:
    """SHA-256 of a TorchScript archive's content: every record (name below the archive's top folder, bytes) but the
    debug records (``*.debug_pkl``: source ranges, with the path of the installation that compiled it) and
    ``.data/serialization_id``. Measured: ``dp compress`` of one frozen model by two installations of the same
    deepmd-kit gives files that differ only there."""
    import zipfile

    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            rel = name.split("/", 1)[-1]
            if rel.endswith(".debug_pkl") or rel == ".data/serialization_id":
                continue
            h.update(rel.encode() + b"\0")
            h.update(hashlib.sha256(z.read(name)).digest())
    return h.hexdigest()


#: how a made file is compared with the one trained where not by its bytes (:func:`sha256_file`): by its content
CONTENT = {"dp-compress": torchscript_content_sha256}


def _derivations(art: ModelArtifact) -> dict[str, dict[str, str]]:
    """Roles of ``art`` that can be made at load from another of its files."""
    if art.arch == "deepmd" and art.hyperparameters.get("compress") and {"model", "frozen"} <= set(art.files):
        return {"model": {"how": "dp-compress", "from": "frozen"}}
    return {}


def pack(art: ModelArtifact, dest: Path) -> dict[str, dict[str, str]]:
    """Write the files of verified member ``art`` into folder ``dest`` as small as they can be stored; return the
    ``packed`` entry of its artifact. A file that could be made at load but whose remake here differs in content
    is stored instead (gzipped or as is)."""
    dest = Path(dest)
    packed: dict[str, dict[str, str]] = {}
    for role, spec in _derivations(art).items():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            made = Path(tmp) / art.files[role]
            shutil.copy2(art.path(spec["from"]), Path(tmp) / art.files[spec["from"]])
            _derive(spec["how"], Path(tmp) / art.files[spec["from"]], made)
            content = CONTENT.get(spec["how"], sha256_file)
            made_content = content(made)
            if made_content == content(art.path(role)):
                packed[role] = {**spec, "content_sha256": made_content}
    for role, rel in art.files.items():
        if role in packed:
            continue
        data = art.path(role).read_bytes()
        small = gzip.compress(data, compresslevel=9, mtime=0)
        if len(small) <= (1 - GZIP_MIN_SAVING) * len(data):
            (dest / f"{rel}.gz").write_bytes(small)
            packed[role] = {"how": "gzip", "file": f"{rel}.gz", "sha256": hashlib.sha256(small).hexdigest()}
        else:
            shutil.copy2(art.path(role), dest / rel)
    return packed


def _cache_key(art: ModelArtifact) -> str:
    return hashlib.sha256(json.dumps([art.files, art.file_sha256], sort_keys=True).encode()).hexdigest()[:24]


def _check(art: ModelArtifact, folder: Path) -> str | None:
    """The first role whose file in ``folder`` is not the trained one (a made one: not its content), or None."""
    for role, rel in art.files.items():
        p = folder / rel
        how = art.packed.get(role, {})
        if not p.is_file():
            return role
        if how.get("how") in DERIVED:
            if CONTENT.get(how["how"], sha256_file)(p) != how.get("content_sha256"):
                return role
        elif sha256_file(p) != art.file_sha256.get(role):
            return role
    return None


def unpacked(art: ModelArtifact) -> Path:
    """The folder holding packed member ``art``'s files as trained (made once into the cache, then reused)."""
    from harness.io import cache_dir

    root = cache_dir() / "members"
    final = root / _cache_key(art)
    if final.is_dir() and _check(art, final) is None:
        return final
    art.verify()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        src = Path(art.workdir)
        later = []
        for role, rel in art.files.items():
            how = art.packed.get(role, {})
            if how.get("how") == "gzip":
                with gzip.open(src / how["file"], "rb") as fin, open(tmp / rel, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            elif how.get("how") in DERIVED:
                later.append(role)
            else:
                shutil.copy2(src / rel, tmp / rel)
        for role in later:
            how = art.packed[role]
            _derive(how["how"], tmp / art.files[how["from"]], tmp / art.files[role])
        bad = _check(art, tmp)
        if bad is not None:
            why = ""
            if bad in later:
                made = art.packed[bad]
                why = (f" ({made['how']} of its {made['from']} file here gives another file than at training, "
                       f"e.g. another version of the tool than {art.versions}; the {made['from']} file itself is "
                       f"intact and can be loaded as a model file)")
            raise InputError(f"{art.workdir}: packed model file {art.files[bad]} does not unpack to the file "
                             f"trained ({'content' if bad in later else 'hash'} mismatch){why}")
        keep = set(art.files.values())
        for p in tmp.iterdir():  # only what was made, nothing the tool left beside it
            if p.name not in keep:
                p.unlink() if p.is_file() else shutil.rmtree(p)
        try:
            os.rename(tmp, final)
        except OSError:  # another process unpacked it first (or a stale copy is there): keep a good one
            if _check(art, final) is not None:
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final

