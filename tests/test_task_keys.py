"""Old work survives a refactor (issue #31 item 5): the task keys of every shipped spec are pinned.

A task's key is the hash of its kind, worker name, typed parameters and dependency keys; a workspace skips a
task whose key is done in its store. So a change that alters any key makes every workspace planned before it
run that task again (hours of training and MD for the CPU study). This test plans each shipped sweep, AL and
transfer spec and compares its keys with ``tests/data/task_keys.json``, written by the commit before the
workflow engine moved. Keys hold absolute paths (the dataset file, the workspace), so they are compared
location-free: the repository root is replaced by ``<ROOT>`` in the parameters before hashing, recursively through
the dependencies.

A change that is meant to rerun work (a new parameter, a fixed bug in a worker) regenerates the file:
``HARNESS_WRITE_TASK_KEYS=1 pytest tests/test_task_keys.py``, and says so in its commit message.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "task_keys.json"
SPECS = sorted(str(p.relative_to(ROOT)) for kind in ("sweeps", "al", "transfer")
               for p in (ROOT / "protocols" / kind).glob("*.yaml"))


def _plan(rel: str):
    path = ROOT / rel
    kind = path.parent.name
    if kind == "al":
        from harness.al.plan import plan_al
        from harness.al.spec import load_al

        spec, files = load_al(path)
        return plan_al(spec, files, ROOT / "runs" / "golden")
    from harness.sweep.plan import plan_sweep

    if kind == "transfer":
        from harness.transfer import load_transfer

        spec, files = load_transfer(path)
    else:
        from harness.sweep.spec import load_sweep

        spec, files = load_sweep(path)
    return plan_sweep(spec, files, ROOT / "runs" / "golden")


def location_free_keys(tasks) -> dict[str, str]:
    """Each task's key recomputed with the repository root replaced by ``<ROOT>``: {key: label}."""
    by_key = {t.key: t for t in tasks}
    done: dict[str, str] = {}

    def key(t) -> str:
        if t.key in done:
            return done[t.key]
        if isinstance(t.deps, dict):
            deps = {r: sorted(key(by_key[k]) for k in ks) for r, ks in t.deps.items()}
        else:
            deps = sorted(key(by_key[k]) for k in t.deps)
        params = json.dumps(t.params_json(), sort_keys=True, default=str).replace(str(ROOT), "<ROOT>")
        blob = json.dumps([t.kind, t.key_name, params, deps], sort_keys=True)
        done[t.key] = f"{t.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
        return done[t.key]

    return {key(t): t.label for t in tasks}


def test_planned_task_keys_are_those_of_the_previous_engine():
    got = {rel: location_free_keys(_plan(rel)) for rel in SPECS}
    if os.environ.get("HARNESS_WRITE_TASK_KEYS"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
        pytest.skip(f"wrote {GOLDEN}")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(want), "the shipped specs changed: regenerate tests/data/task_keys.json"
    for rel in SPECS:
        changed = {label for k, label in want[rel].items() if k not in got[rel]}
        new = {label for k, label in got[rel].items() if k not in want[rel]}
        assert not changed and not new, (f"{rel}: {len(changed)} task(s) would run again in an existing workspace, "
                                         f"e.g. {sorted(changed)[:3]}; {len(new)} new, e.g. {sorted(new)[:3]}")
