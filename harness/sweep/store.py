"""The workspace index: one SQLite file (``<workspace>/harness.sqlite``) with a row per task.

A task row holds its content-hash key, kind, label, parameters, dependency keys, status
(pending/running/done/failed/skipped), error summary, result (JSON) and output files with their
SHA-256, so a finished task can be verified (a truncated or edited artifact is detected and the task
recomputed). Views per kind (``models``, ``trajectories``, ``observables``, ``scores``) expose the
results as rows for reports. Only the driver process writes; every write commits at once, so a killed
sweep loses at most the tasks that were running.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from harness.io import sha256_file

__all__ = ["Store", "STATUSES", "SUPERSEDED"]

STATUSES = ("pending", "running", "done", "failed", "skipped")
#: rows of a sweep whose key is no longer in its plan (a parameter changed); kept for provenance
SUPERSEDED = "superseded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    params TEXT NOT NULL,
    deps TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    result TEXT,
    outputs TEXT,
    started REAL,
    finished REAL,
    wall_s REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sweep TEXT
);
CREATE INDEX IF NOT EXISTS tasks_kind ON tasks(kind, status);
CREATE VIEW IF NOT EXISTS models AS SELECT key, label, status, json_extract(result, '$.workdir') AS workdir,
    json_extract(result, '$.arch') AS arch, json_extract(result, '$.subset') AS subset,
    json_extract(result, '$.seed') AS seed, result FROM tasks WHERE kind = 'train';
CREATE VIEW IF NOT EXISTS trajectories AS SELECT key, label, status, json_extract(result, '$.run_dir') AS run_dir,
    json_extract(result, '$.ensemble') AS ensemble, json_extract(result, '$.t_stab_ps') AS t_stab_ps, result
    FROM tasks WHERE kind = 'md';
CREATE VIEW IF NOT EXISTS observables AS SELECT key, label, status, result FROM tasks WHERE kind = 'observe';
CREATE VIEW IF NOT EXISTS scores AS SELECT key, label, status, json_extract(result, '$.arch') AS arch,
    json_extract(result, '$.subset') AS subset, json_extract(result, '$.committee.Q.mean') AS Q, result
    FROM tasks WHERE kind = 'score';
"""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- reading -------------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM tasks WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._row(row)

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for k in ("params", "deps", "result", "outputs"):
            if d.get(k) is not None:
                d[k] = json.loads(d[k])
        return d

    def tasks(self, *, kind: str | None = None, status: str | None = None, sweep: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM tasks WHERE 1=1", []
        for col, val in (("kind", kind), ("status", status), ("sweep", sweep)):
            if val is not None:
                q += f" AND {col} = ?"
                args.append(val)
        return [self._row(r) for r in self.db.execute(q + " ORDER BY started, key", args)]

    def counts(self, sweep: str | None = None) -> dict[tuple[str, str], int]:
        q = "SELECT kind, status, COUNT(*) AS n FROM tasks"
        rows = self.db.execute(q + (" WHERE sweep = ?" if sweep else "") + " GROUP BY kind, status",
                               (sweep,) if sweep else ())
        return {(r["kind"], r["status"]): r["n"] for r in rows}

    def verified(self, key: str) -> dict | None:
        """The stored result of a finished task whose output files are unchanged, else None."""
        row = self.get(key)
        if row is None or row["status"] != "done":
            return None
        for path, digest in (row["outputs"] or {}).items():
            p = Path(path)
            if not p.is_file() or sha256_file(p) != digest:
                return None
        return row["result"]

    # -- writing (driver only) -------------------------------------------------------------------------
    def register(self, key: str, kind: str, label: str, params: dict, deps: Iterable[str], sweep: str) -> None:
        self.db.execute(
            "INSERT INTO tasks (key, kind, label, params, deps, status, sweep) VALUES (?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT(key) DO UPDATE SET label = excluded.label, sweep = excluded.sweep",
            (key, kind, label, json.dumps(params, sort_keys=True, default=str), json.dumps(list(deps)), sweep))

    def retire(self, sweep: str, keys: Iterable[str]) -> int:
        """Mark the sweep's rows that are not in ``keys`` (the current plan) as superseded."""
        keys = set(keys)
        old = [r["key"] for r in self.db.execute("SELECT key FROM tasks WHERE sweep = ?", (sweep,)) if r["key"] not in keys]
        self.db.executemany("UPDATE tasks SET status = 'superseded' WHERE key = ?", [(k,) for k in old])
        return len(old)

    def mark_running(self, key: str) -> None:
        self.db.execute("UPDATE tasks SET status = 'running', started = ?, error = NULL, attempts = attempts + 1 "
                        "WHERE key = ?", (time.time(), key))

    def mark_done(self, key: str, result: dict, outputs: dict[str, str], wall_s: float) -> None:
        self.db.execute("UPDATE tasks SET status = 'done', result = ?, outputs = ?, finished = ?, wall_s = ?, "
                        "error = NULL WHERE key = ?",
                        (json.dumps(result, default=str), json.dumps(outputs), time.time(), wall_s, key))

    def mark_failed(self, key: str, error: str, wall_s: float | None = None) -> None:
        self.db.execute("UPDATE tasks SET status = 'failed', error = ?, finished = ?, wall_s = ? WHERE key = ?",
                        (error, time.time(), wall_s, key))

    def mark_interrupted(self, key: str, reason: str) -> None:
        """Stopped at a walltime (harness.deadline): run again, resuming, by the next run."""
        self.db.execute("UPDATE tasks SET status = 'interrupted', error = ?, finished = ? WHERE key = ?",
                        (reason, time.time(), key))

    def mark_skipped(self, key: str, reason: str) -> None:
        self.db.execute("UPDATE tasks SET status = 'skipped', error = ? WHERE key = ?", (reason, key))
