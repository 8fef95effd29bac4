"""Freed memory stays in harness processes (harness.tools.malloc_env / keep_freed_memory): glibc stops handing
freed heap back to the kernel between force calls, so pages are not faulted in and zeroed again each time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.tools import MALLOC, keep_freed_memory, malloc_env

# Allocate 20 blocks of 1 MiB, touch every page, free them; ten rounds. Under glibc's defaults the first
# free raises the mmap threshold to 1 MiB and the trim threshold to 2 MiB, so each round's 20 MiB of freed
# heap top is trimmed and faulted in again (~5000 minor faults a round); with the harness settings it stays.
ROUNDS = """
import ctypes, resource, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "keep":
    from harness.tools import keep_freed_memory
    assert keep_freed_memory({})
def round_():
    blocks = [libc.malloc(1 << 20) for _ in range(20)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    for b in reversed(blocks):
        libc.free(ctypes.c_void_p(b))
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variables inherited from the test process
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_not_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    assert default > 10 * 2000, f"glibc's defaults should fault the 20 MiB in each round: {default} faults"
    assert kept < 500, f"with the harness settings the freed heap stays: {kept} faults in 10 rounds"


def test_the_users_own_settings_win():
    assert malloc_env({}) == {var: str(value) for var, value in MALLOC.items()}
    assert "MALLOC_TRIM_THRESHOLD_" not in malloc_env({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert len(malloc_env({"MALLOC_TRIM_THRESHOLD_": "0"})) == 2
    if sys.platform.startswith("linux"):
        assert not keep_freed_memory({"MALLOC_TOP_PAD_": "lots"})  # unreadable: not applied, no error


def test_cli_and_training_tools_get_the_settings(monkeypatch):
    from harness.models.base import thread_env

    for var in MALLOC:
        monkeypatch.delenv(var, raising=False)
    env = thread_env(1)
    assert all(env[var] == str(value) for var, value in MALLOC.items())
    out = subprocess.run([sys.executable, "-c", "import os, harness.cli.main as m; "
                          "print(os.environ['MALLOC_TRIM_THRESHOLD_'])"], capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if not k.startswith("MALLOC_")})
    assert out.stdout.strip() == str(MALLOC["MALLOC_TRIM_THRESHOLD_"])
