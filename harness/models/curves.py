"""Learning curves: the validation error of a member against training wall time (SCIENCE.md §4).

Each backend's tool already logs its validation error while it trains; these parsers turn those logs
into one list of points per member (``ModelArtifact.curve``):

``{"epoch" | "step": int, "wall_s": float, "valid_energy_rmse_meV_atom": float,
"valid_forces_rmse_meV_A": float, ...}``

``wall_s`` counts from the start of the training tool's process (``t_start``, a ``time.time()``
taken just before it was launched; interpreter start-up and data preparation included), so points of
different architectures compare as the cost of getting there. The last point of every curve is the
harness's own evaluation of the kept model on the whole validation split (``"source": "harness"``,
see :func:`harness.models.train.train_member`); GAP, fitted in closed form, has only that point.

- MACE (``mace_run_train``): the ``mode: "eval"`` lines of ``results/<name>_run-<seed>_train.txt``
  (``rmse_e_per_atom`` in eV/atom, ``rmse_f`` in eV/Å), timed by the matching ``Initial:`` /
  ``Epoch N:`` lines of ``logs/<name>_run-<seed>.log``; ``epoch`` counts completed epochs (0: before
  training), ``stage`` is 2 after mace logged the switch to stage two (SWA).
- DeePMD (``dp --pt train``): ``lcurve.out`` (``rmse_e_val``/``rmse_f_val`` in eV/atom and eV/Å,
  over the ``numb_btch`` validation frames of each display), timed by the ``Batch N:`` lines of
  ``train.log``.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Sequence

__all__ = ["mace_curve", "deepmd_curve", "curve_point", "curve_table", "read_curve", "final_point"]

logger = logging.getLogger(__name__)

_MACE_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: (?:Initial|Epoch (\d+)): head: (\S+?),")
_DP_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)\] DEEPMD INFO\s+Batch\s+(\d+):")


def _meV(value: Any) -> float | None:
    try:
        v = 1000.0 * float(value)
    except (TypeError, ValueError):
        return None
    return round(v, 3) if math.isfinite(v) else None


def curve_point(position: dict[str, int], wall_s: float | None, **values: float | None) -> dict[str, Any]:
    """One point: the position (``{"epoch": n}`` or ``{"step": n}``), wall seconds and the finite values."""
    out: dict[str, Any] = dict(position)
    if wall_s is not None:
        out["wall_s"] = round(float(wall_s), 3)
    out.update({k: v for k, v in values.items() if isinstance(v, float) and math.isfinite(v)})
    return out


def read_curve(parser, workdir: str | Path, t_start: float | None) -> list[dict[str, Any]]:
    """``parser(workdir, t_start)``, or an empty curve (with a warning) if the tool's logs cannot be read:
    a curve is a diagnostic and never fails a member."""
    try:
        return parser(workdir, t_start)
    except Exception as exc:  # noqa: BLE001 - log formats of other tool versions
        logger.warning("%s: no learning curve (%s: %s)", workdir, type(exc).__name__, exc)
        return []


def final_point(metrics: dict[str, float], wall_s: float | None) -> dict[str, Any] | None:
    """The harness's evaluation of the kept model as the last curve point (None without validation frames)."""
    keys = ("valid_energy_rmse_meV_atom", "valid_forces_rmse_meV_A", "train_energy_rmse_meV_atom",
            "train_forces_rmse_meV_A")
    if "valid_forces_rmse_meV_A" not in metrics:
        return None
    point = curve_point({}, wall_s, **{k: float(metrics[k]) for k in keys if k in metrics})
    point["source"] = "harness"
    return point


def _mace_runs(workdir: Path) -> list[dict[str, Any]]:
    """The ``mace_run_train`` processes of a log (a walltime-stopped member is resumed several times, each
    appending to the same log): per run its first and last log times, its epoch lines' times (-1: ``Initial``)
    and when it switched to stage two."""
    runs: list[dict[str, Any]] = []
    for log in sorted(workdir.glob("logs/*.log")):
        if log.name.endswith("_debug.log"):
            continue
        for line in log.read_text(errors="replace").splitlines():
            try:
                t = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                continue
            if "VERIFYING SETTINGS" in line or not runs:
                runs.append({"start": t, "end": t, "epochs": {}, "stage_two": None})
            run = runs[-1]
            run["end"] = t
            m = _MACE_TIME.match(line)
            if m:
                run["epochs"][int(m.group(2)) if m.group(2) is not None else -1] = t
            elif "Changing loss based on Stage Two Weights" in line and run["stage_two"] is None:
                run["stage_two"] = t
    return runs


def mace_curve(workdir: str | Path, t_start: float | None = None) -> list[dict[str, Any]]:
    """The validation curve ``mace_run_train`` logged in ``workdir`` (empty if it logged none).

    A member resumed after walltime stops has one ``mace_run_train`` process per piece, each starting with an
    ``Initial`` evaluation of its checkpoint and redoing the epoch it was stopped in: the curve keeps the first
    ``Initial`` (the untrained model), the last evaluation of each epoch, and ``wall_s`` on one clock of training
    time summed over the pieces (each piece's start-up counted once, as measured for the last from ``t_start``)."""
    workdir = Path(workdir)
    results = sorted(workdir.glob("results/*_train.txt"))
    if not results:
        return []
    runs = _mace_runs(workdir)
    lead = max(0.0, runs[-1]["start"] - t_start) if (runs and t_start is not None) else 0.0
    offsets, total = [], 0.0
    for r in runs:  # training seconds before each piece, start-ups included
        offsets.append(total)
        total += r["end"] - r["start"] + lead
    train_loss: dict[tuple[int, int], list[float]] = {}
    rows: dict[int, tuple[int, dict]] = {}  # epoch index -> (piece, its last evaluation)
    piece = -1
    for line in results[0].read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("mode") == "opt" and row.get("epoch") is not None:
            train_loss.setdefault((piece, int(row["epoch"])), []).append(float(row["loss"]))
        elif row.get("mode") == "eval" and row.get("head", "Default") == "Default":
            index = -1 if row.get("epoch") is None else int(row["epoch"])
            if index == -1:
                piece += 1  # every process starts with an Initial evaluation
                if piece > 0:
                    continue  # a resumed piece re-evaluating its checkpoint: not a new point
            rows[index] = (max(piece, 0), row)
    if piece + 1 != len(runs):
        logger.warning("%s: %d runs in the results, %d in the logs; curve times may be off", workdir, piece + 1,
                       len(runs))
    points = []
    for index in sorted(rows):
        k, row = rows[index]
        run = runs[min(k, len(runs) - 1)] if runs else None
        t = run["epochs"].get(index) if run else None
        wall = (offsets[min(k, len(runs) - 1)] + lead + (t - run["start"])
                if (t is not None and t_start is not None) else None)
        losses = train_loss.get((k, index), [])
        point = curve_point({"epoch": index + 1}, wall,
                            valid_energy_rmse_meV_atom=_meV(row.get("rmse_e_per_atom")),
                            valid_forces_rmse_meV_A=_meV(row.get("rmse_f")),
                            train_loss=round(sum(losses) / len(losses), 6) if losses else None)
        stage_two = any(r["stage_two"] is not None for r in runs[:k]) or (
            run is not None and run["stage_two"] is not None and t is not None and t > run["stage_two"])
        if stage_two:
            point["stage"] = 2
        points.append(point)
    return points


def deepmd_curve(workdir: str | Path, t_start: float | None = None) -> list[dict[str, Any]]:
    """The curve in ``lcurve.out`` of a ``dp --pt train`` run in ``workdir`` (empty if absent)."""
    workdir = Path(workdir)
    lcurve = workdir / "lcurve.out"
    if not lcurve.exists():
        return []
    names: list[str] = []
    rows: list[list[str]] = []
    for line in lcurve.read_text().splitlines():
        if line.startswith("#"):
            fields = line[1:].split()
            if fields and fields[0] == "step":
                names = fields
            continue
        if line.strip():
            rows.append(line.split())
    times: dict[int, float] = {}
    log = workdir / "train.log"
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            m = _DP_TIME.match(line)
            if m:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
                times[int(m.group(3))] = t  # the last line of a step: after its validation
    points = []
    for row in rows:
        if len(row) != len(names):
            continue
        d = dict(zip(names, row))
        step = int(float(d["step"]))
        t = times.get(step)
        points.append(curve_point({"step": step}, t - t_start if (t is not None and t_start is not None) else None,
                                  valid_energy_rmse_meV_atom=_meV(d.get("rmse_e_val")),
                                  valid_forces_rmse_meV_A=_meV(d.get("rmse_f_val")),
                                  train_energy_rmse_meV_atom=_meV(d.get("rmse_e_trn")),
                                  train_forces_rmse_meV_A=_meV(d.get("rmse_f_trn")),
                                  lr=float(d["lr"]) if "lr" in d else None))
    return points


def curve_table(curve: Sequence[dict[str, Any]], *, last: int = 5) -> list[tuple[str, str, str, str]]:
    """The last ``last`` points as rows of (position, wall s, valid E meV/atom, valid F meV/Å)."""
    rows = []
    for p in list(curve)[-last:]:
        if "epoch" in p:
            pos = f"epoch {p['epoch']}" + (" (stage 2)" if p.get("stage") == 2 else "")
        elif "step" in p:
            pos = f"step {p['step']}"
        else:
            pos = "final"
        if p.get("source") == "harness":
            pos = f"{pos} kept model" if pos != "final" else "kept model"
        e, f = p.get("valid_energy_rmse_meV_atom"), p.get("valid_forces_rmse_meV_A")
        rows.append((pos, f"{p['wall_s']:.0f}" if "wall_s" in p else "-", f"{e:.2f}" if e is not None else "-",
                     f"{f:.1f}" if f is not None else "-"))
    return rows
