"""The workspace index: one SQLite file (``<workspace>/harness.sqlite``) with a row per task.

A task row holds its content-hash key, kind, label, parameters, dependency keys, status
(pending/running/done/failed/skipped), error summary, result (JSON) and output files with their
SHA-256, so a finished task can be verified (a truncated or edited artifact is detected and the task
recomputed). Views per kind (``models``, ``trajectories``, ``observables``, ``scores``) expose the
results as rows for reports. Only the driver process writes; every write commits at once, so a killed
sweep loses at most the tasks that were running. A damaged file (not SQLite, cut short, malformed pages) is a
one-line :class:`~harness.errors.InputError` naming it and what to do, never a ``sqlite3`` traceback.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from harness.errors import InputError
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


#: primary SQLite result codes of a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGED = (11, 26)


def _cut_short(path: Path) -> str | None:
    """Why the SQLite file ``path`` is shorter than its own header says (a truncated copy), or None.

    Checked only when no write-ahead log is beside it (no writer has it open), since a checkpoint in progress may
    write the header before the last pages."""
    try:
        if Path(f"{path}-wal").exists():
            return None
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError:
        return None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return None  # empty (a new store) or not SQLite at all: SQLite itself says so
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    n_pages = int.from_bytes(head[28:32], "big")
    if n_pages == 0 or head[24:28] != head[92:96]:  # the header's page count is valid only when these agree
        return None
    if size < page * n_pages:
        return f"cut short: {size} bytes, its header says {page * n_pages}"
    return None


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and (why := _cut_short(self.path)):
            raise self._damaged(why)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            with self._guard():
                self.db.row_factory = sqlite3.Row
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
        except BaseException:
            self.db.close()
            raise

    def _damaged(self, why: object) -> InputError:
        return InputError(f"{self.path}: damaged workspace store ({why}); restore it from a backup, or move it away "
                          "and run the same sweep again to rebuild it (trained members and finished MD runs on disk "
                          "are reused)")

    @contextlib.contextmanager
    def _guard(self):
        """Turn SQLite's 'file is not a database' and 'database disk image is malformed' into an InputError."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _DAMAGED:
                raise self._damaged(exc) from None
            raise

    def close(self) -> None:
        self.db.close()

    # -- reading -------------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        with self._guard():
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
        with self._guard():
            return [self._row(r) for r in self.db.execute(q + " ORDER BY started, key", args)]

    def counts(self, sweep: str | None = None) -> dict[tuple[str, str], int]:
        q = "SELECT kind, status, COUNT(*) AS n FROM tasks"
        with self._guard():
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
    def _write(self, sql: str, args: tuple = ()) -> None:
        with self._guard():
            self.db.execute(sql, args)

    def register(self, key: str, kind: str, label: str, params: dict, deps: Iterable[str], sweep: str) -> None:
        self._write(
            "INSERT INTO tasks (key, kind, label, params, deps, status, sweep) VALUES (?, ?, ?, ?, ?, 'pending', ?) "
            "ON CONFLICT(key) DO UPDATE SET label = excluded.label, sweep = excluded.sweep",
            (key, kind, label, json.dumps(params, sort_keys=True, default=str), json.dumps(list(deps)), sweep))

    def retire(self, sweep: str, keys: Iterable[str], kinds: Iterable[str] | None = None) -> int:
        """Mark the sweep's rows that are not in ``keys`` (the current plan) as superseded; with ``kinds``, only rows
        of those kinds (a part of the plan that holds every task of them)."""
        keys = set(keys)
        kinds = None if kinds is None else set(kinds)
        with self._guard():
            old = [r["key"] for r in self.db.execute("SELECT key, kind FROM tasks WHERE sweep = ?", (sweep,))
                   if r["key"] not in keys and (kinds is None or r["kind"] in kinds)]
            self.db.executemany("UPDATE tasks SET status = 'superseded' WHERE key = ?", [(k,) for k in old])
        return len(old)

    def mark_running(self, key: str) -> None:
        self._write("UPDATE tasks SET status = 'running', started = ?, error = NULL, attempts = attempts + 1 "
                    "WHERE key = ?", (time.time(), key))

    def mark_done(self, key: str, result: dict, outputs: dict[str, str], wall_s: float) -> None:
        self._write("UPDATE tasks SET status = 'done', result = ?, outputs = ?, finished = ?, wall_s = ?, "
                    "error = NULL WHERE key = ?",
                    (json.dumps(result, default=str), json.dumps(outputs), time.time(), wall_s, key))

    def mark_failed(self, key: str, error: str, wall_s: float | None = None) -> None:
        self._write("UPDATE tasks SET status = 'failed', error = ?, finished = ?, wall_s = ? WHERE key = ?",
                    (error, time.time(), wall_s, key))

    def mark_interrupted(self, key: str, reason: str) -> None:
        """Stopped at a walltime (harness.deadline): run again, resuming, by the next run."""
        self._write("UPDATE tasks SET status = 'interrupted', error = ?, finished = ? WHERE key = ?",
                    (reason, time.time(), key))

    def mark_skipped(self, key: str, reason: str) -> None:
        self._write("UPDATE tasks SET status = 'skipped', error = ? WHERE key = ?", (reason, key))
