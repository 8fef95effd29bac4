import numpy as np
import pytest
from ase import Atoms

from harness.errors import InputError
from harness.io import atomic_path, frame_uid, read_frames, write_frames


def _frame(shift=0.0):
    rng = np.random.default_rng(1)
    return Atoms("CO2", positions=rng.normal(size=(3, 3)) + shift, cell=[7.3, 7.3, 7.3], pbc=True)


def test_uid_survives_extxyz_round_trip(tmp_path):
    frames = [_frame(s) for s in (0.0, 1e-4, 0.3)]
    write_frames(tmp_path / "f.extxyz", frames)
    back = read_frames(tmp_path / "f.extxyz")
    assert [frame_uid(a) for a in back] == [frame_uid(a) for a in frames]
    assert len({frame_uid(a) for a in frames}) == 3
    assert frame_uid(frames[0]).startswith("u") and len(frame_uid(frames[0])) == 16


def test_uid_sees_cell_and_species():
    a = _frame()
    b = a.copy()
    b.set_cell([7.4, 7.3, 7.3])
    c = a.copy()
    c.numbers = [6, 8, 7]
    assert len({frame_uid(a), frame_uid(b), frame_uid(c)}) == 3


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, match", [
    ("", "file is empty"),
    ("2\nProperties=species:S:1 pbc=\"F F F\"\nH\nH\n", "frame 0 has no positions"),
    ("hello world\nfoo\n", "cannot parse frames"),
    ("2\n\nH 0 0 0\nH 0 0 0\n", "frame 0 has no positions"),
])
def test_bad_files(tmp_path, text, match):
    p = tmp_path / "bad.extxyz"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        read_frames(p)
    assert str(p) in str(exc.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_frames(tmp_path / "none.extxyz")
    with pytest.raises(InputError, match="is a directory"):
        read_frames(tmp_path)
