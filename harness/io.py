"""Frame I/O: extxyz reading with clear errors, atomic writing, content hashes.

Reference labels live under ``REF_*`` keys (``REF_energy`` eV, ``REF_forces`` eV/Å, ``REF_stress``
eV/Å³ in Voigt order xx yy zz yz xz xy, ASE sign convention). Every frame carries a content-hash
``uid`` of its species, positions, cell and periodicity (:func:`frame_uid`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

from harness.errors import InputError

__all__ = ["read_frames", "write_frames", "frame_uid", "atomic_path", "check_output", "sha256_file", "labelled",
           "implausible_labels", "read_json_object", "cache_dir", "STDIO"]

STDIO = "-"


def cache_dir() -> Path:
    """Per-user cache (``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``)."""
    root = os.environ.get("HARNESS_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness"


def _fmt(values: np.ndarray) -> bytes:
    v = np.asarray(values, dtype=float).ravel().tolist()
    return (",".join(["%.8f"] * len(v)) % tuple(v)).encode()  # = np.char.mod("%.8f", ...) joined, 4x faster


def frame_uid(atoms: Atoms) -> str:
    """Content hash of species, positions, cell and pbc: ``u`` + 15 hex digits.

    Coordinates are hashed as the 8-decimal text extxyz writes, so the uid survives a write/read
    round trip exactly. The leading letter keeps extxyz readers from parsing it as a number.
    """
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(_fmt(atoms.positions))
    h.update(_fmt(atoms.cell[:]))
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return "u" + h.hexdigest()[:15]


def read_json_object(path: str | os.PathLike, *, what: str, todo: str) -> dict:
    """The JSON object in ``path``; InputError naming the file and ``todo`` when it is damaged (unreadable, cut
    short, not JSON) or not an object (``what`` says what it should be)."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError (cut short)
        raise InputError(f"{path}: damaged ({exc}); {todo}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not {what} (a JSON {type(data).__name__}); {todo}")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extxyz_frames(lines: list[str]):
    """(frame index, line index of its atom count, atom count or None when that line is no count) of each frame
    of an extxyz text, cut by the atom-count lines (blank lines between frames skipped); stops at a bad count."""
    i, k = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except (ValueError, IndexError):
            yield k, i, None
            return
        yield k, i, n
        k, i = k + 1, i + n + 2


def _failing_frame(text: str) -> str:
    """``"frame K (line L): "`` of the first extxyz frame that does not parse on its own, or "" when each does."""
    from ase.io import read

    lines = text.splitlines()
    for k, i, n in _extxyz_frames(lines):
        try:
            if n is None:
                raise ValueError
            read(io.StringIO("\n".join(lines[i:i + n + 2]) + "\n"), format="extxyz")
        except Exception:
            return f"frame {k} (line {i + 1}): "
    return ""


def _check_extxyz_headers(text: str, source: str) -> None:
    """Refuse extxyz frames whose ``Properties`` lack positions (ASE would silently give zeros)."""
    lines = text.splitlines()
    for frame, i, n in _extxyz_frames(lines):
        if n is None:
            return  # let the reader produce its own message
        comment = lines[i + 1] if i + 1 < len(lines) else ""
        if "Properties=" in comment:
            props = comment.split("Properties=", 1)[1].split()[0].strip('"')
            fields = props.split(":")[0::3]
            if "pos" not in fields:
                raise InputError(f"{source}: frame {frame} has no positions (Properties={props})")


def read_frames(path: str | os.PathLike, *, format: str | None = None) -> list[Atoms]:
    """All frames of a file (``-`` reads extxyz from standard input).

    Raises
    ------
    InputError
        Missing, unreadable, empty or malformed file, or frames without positions; the message
        names the file (and frame).
    """
    from ase.io import read

    source = "<stdin>" if str(path) == STDIO else str(path)
    if str(path) == STDIO:
        text = sys.stdin.read()
        fmt = format or "extxyz"
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{source}: no such file")
        if p.is_dir():
            raise InputError(f"{source}: is a directory, expected a frames file")
        try:
            if p.suffix == ".gz":
                import gzip

                with gzip.open(p, "rt") as fh:
                    text = fh.read()
            else:
                text = p.read_text()
        except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:  # zlib: a corrupt gzip body
            raise InputError(f"{source}: cannot read ({exc})") from None
        stem_suffix = Path(p.stem).suffix if p.suffix == ".gz" else p.suffix
        fmt = format or ("extxyz" if stem_suffix in (".xyz", ".extxyz") else None)
    if not text.strip():
        raise InputError(f"{source}: file is empty")
    if fmt in (None, "extxyz"):
        _check_extxyz_headers(text, source)
    try:
        if fmt is None and str(path).endswith(".gz"):
            raise InputError(f"{source}: compressed files must be .xyz.gz or .extxyz.gz")
        if fmt is None:
            frames = read(str(path), index=":")
        else:
            frames = read(io.StringIO(text), index=":", format=fmt)
    except Exception as exc:  # ASE raises many types for malformed files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = _failing_frame(text) if fmt == "extxyz" else ""
        raise InputError(f"{source}: {where}cannot parse frames ({msg})") from None
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise InputError(f"{source}: contains no frames")
    for k, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise InputError(f"{source}: frame {k} has no atoms")
        pos = atoms.positions
        if not np.all(np.isfinite(pos)):
            raise InputError(f"{source}: frame {k} has non-finite positions")
        if len(atoms) > 1 and not np.any(pos):
            raise InputError(f"{source}: frame {k} has no positions (every atom at the origin)")
    return list(frames)


#: kernel interfaces: files there are not outputs, whatever their mode says
_KERNEL_TREES = (Path("/proc"), Path("/sys"))


def _special(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file or a folder (None when it is one of those)."""
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), folder: bool = False) -> None:
    """Refuse an output path that writing would damage or cannot use, before any work is done.

    Outputs are written to a temporary file beside ``path`` and renamed onto it (:class:`atomic_path`), which
    is right only for a regular file or a new path. Refused, each with a one-line :class:`InputError` naming
    the path: a device, FIFO or socket (never replaced by a regular file), anything under ``/proc`` or
    ``/sys``, an existing folder where a file is expected (or a file where a ``folder`` is), a path whose
    folder is a file or cannot be written in, and an output that is one of ``inputs`` (the same file, by
    :func:`os.path.samefile`). ``-`` (standard output) always passes. Nothing is created.
    """
    if str(path) == STDIO:
        return
    p = Path(os.path.abspath(path))
    try:
        st = os.stat(p)  # follows links: a link to a device is a device
    except (FileNotFoundError, NotADirectoryError):  # a new path (its folders are checked below)
        st = None
    except OSError as exc:
        raise InputError(f"{path}: cannot use as output ({exc.strerror or exc})") from None
    what = _special(st.st_mode) if st is not None else None
    if what:
        hint = " (for standard output give '-' where the command takes it)" if stat.S_ISFIFO(st.st_mode) or \
            stat.S_ISCHR(st.st_mode) else ""
        raise InputError(f"{path}: is {what}, not a regular file; an output replaces only a regular file or "
                         f"makes a new one{hint}")
    real = Path(os.path.realpath(p))
    for tree in _KERNEL_TREES:
        if real == tree or tree in real.parents:
            raise InputError(f"{path}: under {tree}, a kernel interface, not a place for output files; "
                             "choose another output path")
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: is a file, not a folder; give a folder for the output")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: is a folder; give a file name for the output")
        for inp in inputs:
            if str(inp) == STDIO:
                continue
            try:
                same = os.path.samefile(p, inp)
            except OSError:  # the input is gone or unreadable: its reader says so
                same = False
            if same:
                raise InputError(f"{path}: is the input {inp} itself; write the output to another file")
    # the folder that will hold the output (or the temporary beside it): its nearest existing ancestor must be a
    # folder this process may write in (``mkdir -p`` makes the rest)
    base = p if folder and st is not None else p.parent
    for anc in (base, *base.parents):
        if os.path.exists(anc):
            break
    if not os.path.isdir(anc):
        raise InputError(f"cannot create {path} ({anc} is a file, not a folder): choose another output path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {anc} (permission denied or a read-only file system); "
                         "choose another output path")


class atomic_path:
    """Context manager yielding a temporary path beside ``path``; renamed onto it on success.

    On an exception the temporary file is removed, so no partial output is ever left behind. The path is
    checked (:func:`check_output`, with ``inputs``) on entry and again just before the rename, so a device,
    FIFO, socket, folder or kernel file is never replaced and a folder that cannot be written in is a
    one-line :class:`InputError`.
    """

    def __init__(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()):
        self.path = Path(path)
        self.inputs = list(inputs)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        check_output(self.path, inputs=self.inputs)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror or exc}: {exc.filename}); "
                             "choose another output path") from None
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        try:
            check_output(self.path, inputs=self.inputs)  # the path may have changed during the work
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise InputError(f"{self.path}: cannot write ({exc.strerror or exc}); choose another output path") from None
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise


def _plain(frames: Iterable[Atoms]) -> list[Atoms]:
    out = []
    for atoms in frames:
        a = atoms.copy()  # drops the calculator, so ASE writes only our keys
        a.calc = None
        out.append(a)
    return out


def write_frames(path: str | os.PathLike, frames: Sequence[Atoms], *, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write frames as extxyz, atomically (``-``: standard output; ``.gz``: reproducible gzip).

    ``path`` must be a regular file or a new path and none of ``inputs`` (:func:`check_output`)."""
    from ase.io import write

    frames = _plain(frames)
    if str(path) == STDIO:
        buf = io.StringIO()
        write(buf, frames, format="extxyz")
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
        return
    if str(path).endswith(".gz"):
        import gzip

        buf = io.StringIO()
        write(buf, frames, format="extxyz")
        with atomic_path(path, inputs=inputs) as tmp, open(tmp, "wb") as raw:
            # mtime=0 and no file name: identical frames give identical bytes (stable hashes)
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                gz.write(buf.getvalue().encode())
        return
    with atomic_path(path, inputs=inputs) as tmp:
        write(tmp, frames, format="extxyz")


#: labels beyond these are not a molecular liquid's in eV and eV/Å (total energies of the heaviest elements with
#: all-electron DFT stay below ~1e4 eV/atom in magnitude; forces in an MD liquid stay within tens of eV/Å): a label
#: past them almost always carries another unit (Hartree read as eV is fine, kJ/mol or meV read as eV is not)
PLAUSIBLE_ENERGY_EV_ATOM = 1.0e4
PLAUSIBLE_FORCE_EV_A = 1.0e3


def implausible_labels(energy_eV: float, forces_eV_A: np.ndarray, n_atoms: int, *, where: str) -> bool:
    """Warn (log) when a frame's labels are beyond :data:`PLAUSIBLE_ENERGY_EV_ATOM` per atom or
    :data:`PLAUSIBLE_FORCE_EV_A` per component, naming the frame and the likely cause; True when it warned."""
    e_atom = abs(energy_eV) / max(n_atoms, 1)
    f_max = float(np.max(np.abs(forces_eV_A))) if np.size(forces_eV_A) else 0.0
    if e_atom <= PLAUSIBLE_ENERGY_EV_ATOM and f_max <= PLAUSIBLE_FORCE_EV_A:
        return False
    logging.getLogger("harness.io").warning(
        "%s: implausible labels (|E| %.3g eV/atom, max |F| %.3g eV/Å; bounds %g eV/atom, %g eV/Å): another energy "
        "unit? (give it with --energy-unit or the source's energy_unit)", where, e_atom, f_max,
        PLAUSIBLE_ENERGY_EV_ATOM, PLAUSIBLE_FORCE_EV_A)
    return True


def labelled(a: Atoms, *, where: str, energy_key: str = "REF_energy", forces_key: str = "REF_forces",
             stress_key: str | None = "REF_stress", scale: float = 1.0, hint: str = "") -> Atoms:
    """A copy of frame ``a`` with its labels under ``REF_energy`` (eV), ``REF_forces`` (eV/Å) and, for a
    periodic frame that has one, ``REF_stress`` (as stored, times ``scale``); the foreign keys removed.

    A label may also sit in the frame's single-point calculator (ASE's extxyz reader puts ``energy``,
    ``forces`` and ``stress`` there). ``scale``: eV per energy unit of the labels. A missing, non-numeric,
    misshapen or non-finite label is an :class:`~harness.errors.InputError` naming ``where`` and the key
    (``hint`` says how to name other keys)."""
    from harness.errors import InputError

    results = getattr(a.calc, "results", {}) if a.calc is not None else {}
    energy = a.info.get(energy_key, results.get(energy_key if energy_key != "REF_energy" else "energy"))
    forces = a.arrays.get(forces_key)
    if forces is None and forces_key in ("forces", "REF_forces"):
        forces = results.get("forces")
    if energy is None or forces is None:
        missing = [n for n, v in ((energy_key, energy), (forces_key, forces)) if v is None]
        found = [k for k, v in a.info.items() if "energ" in k.lower() and np.ndim(v) == 0]
        found += [k for k, v in a.arrays.items() if k not in ("positions", "numbers") and np.shape(v) == (len(a), 3)]
        has = f"; it has {', '.join(found)}" if found else ""
        raise InputError(f"{where}: no label(s) {', '.join(missing)}{has}{f' ({hint})' if hint else ''}")
    try:
        energy = float(energy) * scale
    except (TypeError, ValueError):
        raise InputError(f"{where}: {energy_key}={energy!r} is not a number") from None
    forces = np.asarray(forces, dtype=float) * scale
    if forces.shape != (len(a), 3):
        raise InputError(f"{where}: {forces_key} has shape {forces.shape}, expected ({len(a)}, 3)")
    if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise InputError(f"{where}: non-finite labels ({energy_key}, {forces_key})")
    implausible_labels(energy, forces, len(a), where=where)
    b = a.copy()
    b.calc = None
    for key in (energy_key, stress_key):
        if key:
            b.info.pop(key, None)
    b.arrays.pop(forces_key, None)
    b.info["REF_energy"] = energy
    b.arrays["REF_forces"] = forces
    stress = a.info.get(stress_key) if stress_key else None
    if stress is None and stress_key in ("stress", "REF_stress"):
        stress = results.get("stress")
    if stress is not None and a.pbc.all():
        b.info["REF_stress"] = np.asarray(stress, dtype=float).ravel() * scale
    return b
