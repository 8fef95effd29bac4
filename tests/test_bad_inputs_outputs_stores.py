"""Bad input, round three (issue #30 items 3 and 6): output paths and damaged stores and artifacts.

Each row runs one command through the CLI and wants exit status 2, no traceback, a message naming the culprit, and
nothing changed: the output path untouched (a device stays a device, an input keeps its inode and bytes), no
temporary left beside it, no file made in the test folder. A row fails on a traceback (exit 1), a silent success
(exit 0: a device replaced by a regular file, an input overwritten, a committee evaluated without a member) or a
message that does not say what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from harness.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
FOUNDATION = ROOT / "models" / "foundation" / "carbonates-mace-mini.model"
DEMO = ROOT / "models" / "demo"
DATASET = ROOT / "datasets" / "ec-emc-xtb.yaml"
ATOMS = ROOT / "datasets" / "ec-emc-xtb" / "atoms.extxyz.gz"  # 3 labelled isolated atoms: evaluate in a second
PROTOCOL = ROOT / "protocols" / "ci.yaml"
EMT = "ase:ase.calculators.emt.EMT"


@pytest.fixture(autouse=True)
def _dev_full_survives():
    """Put /dev/full back should a run replace it (what the code before issue #30 did), so a failing row cannot
    break the machine for the rows after it."""
    before = os.stat("/dev/full")
    yield
    after = os.stat("/dev/full")
    if not stat.S_ISCHR(after.st_mode) and os.geteuid() == 0:
        os.unlink("/dev/full")
        os.mknod("/dev/full", 0o666 | stat.S_IFCHR, before.st_rdev)
        os.chmod("/dev/full", 0o666)


# -- what the rows are made of ---------------------------------------------------------------------------------------
def _frames(d: Path) -> Path:
    from ase.build import molecule

    from harness.io import write_frames

    p = d / "frames.extxyz"
    if not p.exists():
        write_frames(p, [molecule("H2O")])
    return p


def _export(out) -> list[str]:
    return ["dataset", "export", str(DATASET), "atoms", "-o", str(out)]


def _label(d: Path, out) -> list[str]:
    return ["label", str(_frames(d)), "-o", str(out), "-r", EMT]


def _evaluate(model: Path | str, *extra) -> list[str]:
    return ["evaluate", str(ATOMS), "-m", str(model), *extra]


def _validate(d: Path, *, reference: Path = DEMO / "gap-OPLS", ws: Path | None = None) -> list[str]:
    return ["validate", "-m", str(FOUNDATION), "-r", str(reference), "-p", str(PROTOCOL), "-w", str(ws or d / "ws")]


def _md(d: Path, model: Path) -> list[str]:
    return ["md", "-m", str(model), "-p", str(PROTOCOL), "-e", "npt", "-w", str(d / "ws")]


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "fifo")
    return d / "fifo"


def _char_device(d: Path) -> Path:
    """A private copy of /dev/null (a character device) inside the test folder."""
    p = d / "null"
    try:
        os.mknod(p, 0o666 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
    except PermissionError:
        pytest.skip("making a device node needs root")
    return p


def _folder(d: Path, name: str = "afolder") -> Path:
    (d / name).mkdir()
    return d / name


def _a_file(d: Path) -> Path:
    (d / "afile").write_text("not a folder\n")
    return d / "afile"


def _read_only_folder(d: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes in a folder whatever its mode (the EACCES row stands in)")
    f = _folder(d, "readonly")
    f.chmod(0o555)
    return f


def _refusing_folder(d: Path, monkeypatch) -> Path:
    """A folder where making the temporary output fails with EACCES (as in a folder of another user)."""
    f = _folder(d, "refusing")
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == f.resolve():
            raise PermissionError(13, "Permission denied", str(Path(dir) / ".out.tmp"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return f


def _symlink_to_input(d: Path) -> Path:
    link = d / "link.extxyz"
    link.symlink_to(_frames(d))
    return link


def _dataset_copy(d: Path) -> Path:
    """ec-emc-xtb.yaml with its built data, copied (an export may then aim at one of its own source files)."""
    shutil.copytree(DATASET.parent / "ec-emc-xtb", d / "ec-emc-xtb")
    shutil.copy(DATASET, d / "ec-emc-xtb.yaml")
    return d / "ec-emc-xtb.yaml"


def _empty_store(d: Path) -> Path:
    from harness.workflow.store import Store

    ws = d / "ws"
    ws.mkdir(exist_ok=True)
    Store(ws / "harness.sqlite").close()
    return ws


def _random_store(d: Path) -> Path:
    ws = d / "ws"
    ws.mkdir()
    (ws / "harness.sqlite").write_bytes(bytes(range(256)) * 32)
    return ws


def _truncated_store(d: Path) -> Path:
    """A store of 300 tasks cut to half its length (a copy interrupted, a full disk)."""
    from harness.workflow.store import Store

    ws = d / "ws"
    ws.mkdir()
    s = Store(ws / "harness.sqlite")
    for k in range(300):
        s.register(f"key{k}", "train", f"task {k} " * 20, {"padding": "x" * 200}, [], "sweep")
    s.close()
    p = ws / "harness.sqlite"
    size = p.stat().st_size
    assert size > 16384 and not Path(f"{p}-wal").exists()
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    return ws


def _committee(d: Path, edit=None) -> Path:
    """A copy of the shipped demo MACE committee (2 members), with ``edit`` applied to it."""
    c = d / "mace-OPLS"
    shutil.copytree(DEMO / "mace-OPLS", c)
    if edit is not None:
        edit(c)
    return c


def _no_artifact(c: Path) -> None:  # a member whose training never finished (or whose artifact was deleted)
    (c / "member-1-seed1" / "artifact.json").unlink()


def _member_gone(c: Path) -> None:  # committee.json lists a member whose folder is gone
    shutil.rmtree(c / "member-1-seed1")


def _cut_artifact(c: Path) -> None:
    p = c / "member-0-seed0" / "artifact.json"
    p.write_text(p.read_text()[:500])


def _list_artifact(c: Path) -> None:
    (c / "member-0-seed0" / "artifact.json").write_text("[1, 2, 3]\n")


def _cut_committee_json(c: Path) -> None:
    p = c / "committee.json"
    p.write_text(p.read_text()[:300])


def _gap_reference(d: Path, edit) -> Path:
    c = d / "gap-OPLS"
    shutil.copytree(DEMO / "gap-OPLS", c)
    edit(c)
    return c


STORE_NEEDLES = ["harness.sqlite", "damaged", "restore it"]


# id: (argv from the test folder and monkeypatch, text the error must contain)
CASES = [
    # -- outputs: never replace what is not a regular file --------------------------------------------------------
    pytest.param(lambda d, mp: _export("/dev/full"), ["/dev/full", "character device", "not a regular file"],
                 id="dataset export -o /dev/full"),
    pytest.param(lambda d, mp: _label(d, "/dev/full"), ["/dev/full", "character device"], id="label -o /dev/full"),
    pytest.param(lambda d, mp: ["box", "-c", "EC=1", "--density", "1.0", "-o", "/dev/full"],
                 ["/dev/full", "character device"], id="box -o /dev/full"),
    pytest.param(lambda d, mp: ["al", "export", "-w", str(d / "ws"), "-o", "/dev/full"],
                 ["/dev/full", "character device"], id="al export -o /dev/full"),
    pytest.param(lambda d, mp: _evaluate(FOUNDATION, "-o", "/dev/full"), ["/dev/full", "character device"],
                 id="evaluate -o /dev/full (a folder expected)"),
    pytest.param(lambda d, mp: ["report", "-w", str(_empty_store(d)), "-o", "/dev/full"],
                 ["/dev/full", "character device"], id="report -o /dev/full (a folder expected)"),
    pytest.param(lambda d, mp: _export(_char_device(d)), ["null", "character device"],
                 id="dataset export -o a private character device"),
    pytest.param(lambda d, mp: _export(_fifo(d)), ["fifo", "FIFO", "not a regular file"], id="dataset export -o FIFO"),
    pytest.param(lambda d, mp: _label(d, _fifo(d)), ["fifo", "FIFO"], id="label -o FIFO"),
    pytest.param(lambda d, mp: _export("/proc/harness-out.extxyz"), ["/proc/harness-out.extxyz", "kernel interface"],
                 id="dataset export -o /proc/..."),
    pytest.param(lambda d, mp: _export("/sys/harness-out.extxyz"), ["/sys/harness-out.extxyz", "kernel interface"],
                 id="dataset export -o /sys/..."),
    pytest.param(lambda d, mp: _label(d, "/proc/self/harness-out.extxyz"), ["/proc/self/harness-out.extxyz", "kernel"],
                 id="label -o /proc/self/..."),
    # -- outputs: a folder where a file goes, a folder that cannot be written in ----------------------------------
    pytest.param(lambda d, mp: _export(_folder(d)), ["afolder", "is a folder", "file name"],
                 id="dataset export -o an existing folder"),
    pytest.param(lambda d, mp: _label(d, _folder(d)), ["afolder", "is a folder"], id="label -o an existing folder"),
    pytest.param(lambda d, mp: ["al", "export", "-w", str(d / "ws"), "-o", str(_folder(d))], ["afolder", "is a folder"],
                 id="al export -o an existing folder"),
    pytest.param(lambda d, mp: ["al", "export", "-w", str(d / "ws"), "-o", str(_a_file(d) / "out.extxyz")],
                 ["afile is a file, not a folder"], id="al export -o under a file"),
    pytest.param(lambda d, mp: _export(_refusing_folder(d, mp) / "out.extxyz"), ["out.extxyz", "Permission denied"],
                 id="dataset export into a folder refusing the temporary (EACCES)"),
    pytest.param(lambda d, mp: _export(_read_only_folder(d) / "out.extxyz"), ["out.extxyz", "cannot write in"],
                 id="dataset export into a read-only folder (not as root)"),
    # -- outputs: never over an input ---------------------------------------------------------------------------
    pytest.param(lambda d, mp: _label(d, _frames(d)), ["frames.extxyz", "is the input"], id="label -o its own input"),
    pytest.param(lambda d, mp: _label(d, _symlink_to_input(d)), ["link.extxyz", "is the input"],
                 id="label -o a link to its input"),
    pytest.param(lambda d, mp: ["label", str(_frames(d)), "-o", str(d / "out.extxyz"), "-r", EMT,
                                "--manifest", str(_frames(d))], ["frames.extxyz", "is the input"],
                 id="label --manifest its own input"),
    pytest.param(lambda d, mp: ["dataset", "export", str(_dataset_copy(d)), "OPLS", "-o",
                                str(d / "ec-emc-xtb" / "opls.extxyz.gz")], ["opls.extxyz.gz", "is the input"],
                 id="dataset export -o one of its own source files"),
    # -- damaged stores --------------------------------------------------------------------------------------------
    pytest.param(lambda d, mp: ["sweep", "status", "-w", str(_random_store(d))], STORE_NEEDLES,
                 id="sweep status: store of random bytes"),
    pytest.param(lambda d, mp: ["sweep", "status", "-w", str(_truncated_store(d))], [*STORE_NEEDLES, "cut short"],
                 id="sweep status: truncated store"),
    pytest.param(lambda d, mp: ["report", "-w", str(_random_store(d)), "-o", str(d / "report")], STORE_NEEDLES,
                 id="report: store of random bytes"),
    pytest.param(lambda d, mp: ["report", "-w", str(_truncated_store(d)), "-o", str(d / "report")], STORE_NEEDLES,
                 id="report: truncated store"),
    pytest.param(lambda d, mp: _validate(d, ws=_random_store(d)), STORE_NEEDLES, id="validate: store of random bytes"),
    pytest.param(lambda d, mp: _validate(d, ws=_truncated_store(d)), STORE_NEEDLES, id="validate: truncated store"),
    pytest.param(lambda d, mp: ["al", "status", "-w", str(_random_store(d))], STORE_NEEDLES,
                 id="al status: store of random bytes"),
    # -- damaged artifacts ---------------------------------------------------------------------------------------
    pytest.param(lambda d, mp: _evaluate(_committee(d, _cut_artifact) / "member-0-seed0"),
                 ["member-0-seed0/artifact.json", "damaged", "train the member again"],
                 id="evaluate: member with a truncated artifact.json"),
    pytest.param(lambda d, mp: _evaluate(_committee(d, _cut_artifact)), ["member-0-seed0/artifact.json", "damaged"],
                 id="evaluate: committee with a truncated artifact.json"),
    pytest.param(lambda d, mp: _md(d, _committee(d, _cut_artifact) / "member-0-seed0"),
                 ["member-0-seed0/artifact.json", "damaged"], id="md: member with a truncated artifact.json"),
    pytest.param(lambda d, mp: _evaluate(_committee(d, _list_artifact) / "member-0-seed0"),
                 ["member-0-seed0/artifact.json", "not a model artifact"], id="evaluate: artifact.json that is a list"),
    pytest.param(lambda d, mp: _validate(d, reference=_gap_reference(d, _cut_committee_json)),
                 ["gap-OPLS/committee.json", "damaged"], id="validate: reference with a truncated committee.json"),
    # -- committees missing a member -----------------------------------------------------------------------------
    pytest.param(lambda d, mp: _evaluate(_committee(d, _no_artifact)),
                 ["mace-OPLS", "member-1-seed1 (no artifact.json)", "--members-present"],
                 id="evaluate: committee member without artifact.json"),
    pytest.param(lambda d, mp: _evaluate(_committee(d, _member_gone)),
                 ["mace-OPLS", "member-1-seed1 (listed in committee.json, no folder)", "--members-present"],
                 id="evaluate: committee member listed but gone"),
    pytest.param(lambda d, mp: _md(d, _committee(d, _no_artifact)), ["member-1-seed1", "--members-present"],
                 id="md: committee member without artifact.json"),
    pytest.param(lambda d, mp: _validate(d, reference=_gap_reference(d, _member_gone)),
                 ["gap-OPLS", "member-1-seed1", "--members-present"],
                 id="validate: reference committee missing a member"),
]


def _snapshot(d: Path) -> dict[Path, tuple[int, int, int, bytes | None]]:
    """Every path under ``d`` with its type, inode, size and (for small regular files) bytes."""
    out = {}
    for p in d.rglob("*"):
        st = p.lstat()
        small = stat.S_ISREG(st.st_mode) and st.st_size < 1 << 20
        out[p] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, p.read_bytes() if small else None)
    return out


def _outputs(argv: list[str]) -> list[Path]:
    return [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in ("-o", "--output", "--manifest")]


def _temporaries(folder: Path, name: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(f".{name}."))
    except OSError:
        return []


@pytest.mark.parametrize("make, needles", CASES)
def test_bad_output_or_store_clear_error(make, needles, runner, tmp_path, monkeypatch):
    argv = make(tmp_path, monkeypatch)
    outputs = _outputs(argv)
    stats = {p: os.stat(p) if p.exists() else None for p in outputs}
    before = _snapshot(tmp_path)
    result = runner.invoke(app, argv)
    text = result.output  # standard output and error
    assert result.exit_code == 2, f"exit {result.exit_code}\n{text}"
    assert "Traceback" not in text, text
    assert len([ln for ln in text.splitlines() if ln.startswith("error: ")]) == 1, f"not one error line: {text!r}"
    for n in needles:
        assert n in text, f"{n!r} not in {text!r}"
    for p, st in stats.items():  # untouched: the same file (a device stays a device), or still nothing
        now = os.stat(p) if p.exists() else None
        assert (now is None) == (st is None), f"{p} made or removed"
        if st is not None:
            kind = (stat.S_IFMT(now.st_mode), now.st_ino, now.st_rdev)
            assert kind == (stat.S_IFMT(st.st_mode), st.st_ino, st.st_rdev), f"{p} replaced"
        assert not _temporaries(p.parent, p.name), f"temporaries left beside {p}"
    assert _snapshot(tmp_path) == before, "files made, changed or left behind in the test folder"


def test_members_present_opt_in(runner, tmp_path):
    """With --members-present a committee missing a member is evaluated with the members present (and says so)."""
    for name, edit in (("no-artifact", _no_artifact), ("gone", _member_gone)):
        (tmp_path / name).mkdir()
        c = _committee(tmp_path / name, edit)
        result = runner.invoke(app, _evaluate(c, "--members-present", "--json"))
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout[result.stdout.index("{"):])  # MACE may print a notice before it
        assert [Path(m["path"]).name for m in out["models"]] == ["member-0-seed0"]


@pytest.mark.parametrize("command", [["evaluate"], ["validate"], ["md"], ["score"]])
def test_members_present_in_help(runner, command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--members-present" in result.output


def test_damaged_store_found_by_the_query_too(tmp_path):
    """With a write-ahead log beside it the header's length is not checked (a writer may be mid-checkpoint): the
    first query that meets a missing page still gives the one-line error, never a sqlite3 traceback."""
    from harness.errors import InputError
    from harness.workflow.store import Store

    ws = _truncated_store(tmp_path)
    Path(f"{ws / 'harness.sqlite'}-wal").touch()
    with pytest.raises(InputError, match="harness.sqlite: damaged workspace store .*malformed"):
        store = Store(ws / "harness.sqlite")
        try:
            store.tasks()
        finally:
            store.close()
