"""Collect a workspace's scored committees from the store into tidy tables (one row per member)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.stats import censored
from harness.workflow.store import Store
from harness.units import A2_PER_PS_TO_1E6_CM2_PER_S

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["write_tables", "typed_scores", "unique_scores", "load_scores", "member_table", "protocol_facts", "species_of", "committee_flags", "committee_table", "q_interval", "density_samples", "learning_curves",
           "member_training", "TRAINING_COLUMNS"]


def write_tables(tables: dict[str, pd.DataFrame], outdir: Path, files: dict[str, Path]) -> None:
    """Each table as ``<name>.csv`` in ``outdir``, recorded in ``files``."""
    for name, df in tables.items():
        files[f"{name}.csv"] = Path(outdir) / f"{name}.csv"
        df.to_csv(files[f"{name}.csv"], index=False)


def typed_scores(scores: Iterable["ScoreResult | dict"]) -> list["ScoreResult"]:
    """Scores as :class:`~harness.validation.contract.ScoreResult` (their JSON form validated: an unknown or missing
    key is refused)."""
    from harness.validation.contract import ScoreResult

    return [s if isinstance(s, ScoreResult) else ScoreResult.model_validate(s) for s in scores]


def unique_scores(scores: list["ScoreResult"]) -> list["ScoreResult"]:
    """One score per committee and runs: the same runs scored by two sweeps of a workspace (one with state-point axes,
    one without) are one row, not two; the one that knows its state point is kept (the maps need it)."""
    seen: set = set()
    return [sc for sc in sorted(scores, key=lambda sc: sc.state_point is None)
            if not ((k := (sc.committee_id, tuple((m.npt_run, m.nvt_run) for m in sc.members))) in seen or seen.add(k))]


def load_scores(workspace: str | Path, sweep: str | None = None, *, all_states: bool = False) -> list["ScoreResult"]:
    """Results of every finished score task (one per committee), as
    :class:`~harness.validation.contract.ScoreResult` (a result stored by an older harness is left out: rerunning
    the sweep recomputes it from the stored observables in seconds). A sweep with state-point axes scores each
    committee at every point: only the protocol's own (primary) point's scores are returned unless ``all_states``."""
    from harness.validation.contract import ScoreParams
    from harness.workflow.contract import stored_results

    path = Path(workspace) / "harness.sqlite"
    if not path.exists():
        raise InputError(f"{workspace}: no harness.sqlite (run `harness sweep run SPEC --workspace {workspace}`)")
    store = Store(path)
    rows = store.tasks(kind="score", status="done", sweep=sweep)
    store.close()
    if not rows:
        raise InputError(f"{workspace}: no scored committees yet (see `harness sweep status -w {workspace}`)")
    out = stored_results(rows, ScoreParams)
    if not out:
        raise InputError(f"{workspace}: its {len(rows)} score result(s) were written by an older harness; rerun the "
                         "sweep (or campaign) command on it to recompute them (trained models and finished runs are "
                         "reused)")
    if not all_states:
        out = [sc for sc in out if sc.state_point is None or sc.state_point.primary]
    out = unique_scores(out)
    return out


def member_table(scores: Iterable["ScoreResult | dict"]) -> pd.DataFrame:
    """One row per committee member: t_stab, density, D per species, KL, S, R, V, Q (D in 1e-6 cm²/s), with what
    the verdicts need beside them (:mod:`harness.report.findings`): whether each run failed and at which step, the
    density's own standard error and effective sample count, and each D's own standard error (kinisi's 95 %
    interval / 3.92 when it ran, else the overlapping-block SE, which is too small)."""
    rows = []
    for sc in typed_scores(scores):
        tags = sc.tags
        finetune = tags.get("finetune") or {}
        res = sc.reference.R_resolution
        for m in sc.members:
            d, rho, st = m.diffusion, m.density_g_cm3, m.density_stationarity
            sp = sc.state_point
            row = {"committee": sc.committee_id, "arch": sc.arch, "subset": sc.subset, "member": m.name,
                   "temperature_K": sp.temperature_K if sp else np.nan, "composition": sp.composition if sp else None,
                   "campaign": tags.get("campaign"), "chain": tags.get("chain"),
                   "generation": tags.get("generation", np.nan),
                   "finetune": finetune.get("name"), "finetune_lr": finetune.get("lr", np.nan),
                   "t_stab_npt_ps": m.t_stab_npt_ps, "t_stab_nvt_ps": m.t_stab_nvt_ps,
                   "npt_failed": m.npt_failure is not None, "nvt_failed": m.nvt_failure is not None,
                   "npt_failure_step": m.npt_failure.step if m.npt_failure else np.nan,
                   "npt_failure_detector": m.npt_failure.detector if m.npt_failure else None,
                   "density_g_cm3": rho.mean if rho else np.nan, "density_run_se_g_cm3": rho.sem if rho else np.nan,
                   "density_n_eff": rho.n_eff if rho else np.nan,
                   "kl": np.nan if m.kl is None else m.kl,
                   "D_w": (d.D_weighted_block_A2_ps if d else np.nan) * A2_PER_PS_TO_1E6_CM2_PER_S,
                   "cell_length_A": d.cell_length_A if d else np.nan,
                   "S": m.S, "R": m.R, "V": m.V, "Q": m.Q,
                   "Q_low": np.nan if m.Q_low is None else m.Q_low, "Q_high": np.nan if m.Q_high is None else m.Q_high}
            flags = []
            row["density_stationary"] = st.stationary if st else None
            if st and st.stationary is False:
                flags.append(f"density transient (MSER-5 cut {st.mser_truncation} samples, halves p "
                             f"{'n/a' if st.halves_p is None else format(st.halves_p, '.2g')})")
            elif st and st.stationary is None:
                flags.append(f"density stationarity unchecked ({st.n} samples)")
            row["R_informative"] = res.informative if res else None
            reached = bool(censored(np.array([m.t_stab_npt_ps]), sc.settings.tau_ps,
                                    np.array([m.npt_failure is not None]))[0])
            if res and not res.informative and reached:  # R counts only for members stable to the horizon
                flags.append("R uninformative")
            for sp, v in (d.species if d else {}).items():
                lo, hi = v.beta_low, v.beta_high
                ci = "" if lo is None or hi is None else f", 95 % {lo:.2f}–{hi:.2f}"
                if v.diffusive is False:
                    flags.append(f"D_{sp} not diffusive (β {v.beta:.2f}{ci})")
                elif v.diffusive is None:
                    flags.append(f"D_{sp} diffusion undetermined (β {v.beta:.2f}{ci})")
                row[f"D_{sp}"] = v.D_block_A2_ps * A2_PER_PS_TO_1E6_CM2_PER_S
                if v.kinisi_low_A2_ps is not None and v.kinisi_high_A2_ps is not None:
                    se = (v.kinisi_high_A2_ps - v.kinisi_low_A2_ps) / 3.92
                else:
                    se = np.nan if v.sem_block_A2_ps is None else v.sem_block_A2_ps
                row[f"D_{sp}_run_se"] = se * A2_PER_PS_TO_1E6_CM2_PER_S
                row[f"D_{sp}_beta"] = v.beta
                row[f"D_{sp}_beta_low"] = np.nan if lo is None else lo
                row[f"D_{sp}_beta_high"] = np.nan if hi is None else hi
            row["flags"] = "; ".join(flags)
            rows.append(row)
    return pd.DataFrame(rows)


def committee_flags(members: pd.DataFrame) -> dict[str, str]:
    """Per committee, the verdict flags of its members counted (``density transient 2/3; R uninformative 3/3``)."""
    out = {}
    if "flags" not in members.columns:
        return out
    for cid, rows in members.groupby("committee", sort=False):
        counts: dict[str, int] = {}
        for f in rows["flags"].fillna(""):
            for part in {x.split(" (")[0] for x in str(f).split("; ") if x}:
                counts[part] = counts.get(part, 0) + 1
        out[cid] = "; ".join(f"{k} {v}/{len(rows)}" for k, v in sorted(counts.items()))
    return out


def species_of(members: pd.DataFrame) -> list[str]:
    """The molecular species whose diffusivity columns ``D_<species>`` the member table has (not ``D_w`` nor the
    ``_run_se`` / ``_beta`` / ``_beta_low`` / ``_beta_high`` columns beside each)."""
    return sorted(c[2:] for c in members.columns
                  if c.startswith("D_") and c != "D_w" and not c.endswith(("_run_se", "_beta", "_beta_low", "_beta_high")))


def protocol_facts(scores: Iterable["ScoreResult | dict"]) -> dict:
    """What the verdicts need from the MD protocol the scored runs used: timestep (fs) and detector check interval
    (steps), as each score recorded them (None when no score did)."""
    for sc in typed_scores(scores):
        if sc.settings.timestep_fs is not None:
            return {"timestep_fs": sc.settings.timestep_fs, "check_interval_steps": sc.settings.check_interval_steps}
    return {"timestep_fs": None, "check_interval_steps": None}


def q_interval(members: pd.DataFrame) -> tuple[float, float]:
    """Q's 95 % interval of one committee's member rows (:func:`harness.quality.committee_interval`); NaN where a
    member has none."""
    from harness.quality import committee_interval

    if "Q_low" not in members or members[["Q_low", "Q_high"]].isna().any(axis=None):
        return np.nan, np.nan
    ci = committee_interval(list(members.Q), list(members.Q_low), list(members.Q_high))
    return ci.low, ci.high


def committee_table(members: pd.DataFrame, by: tuple[str, ...] = ("committee", "arch", "subset")) -> pd.DataFrame:
    """Mean and standard error over members per committee (``by``: the grouping columns) for every numeric column,
    and Q's interval (``Q_ci_low``, ``Q_ci_high``: :func:`harness.quality.committee_interval` of the members' Q and
    their own intervals; NaN where a member has none)."""
    keys = list(by)
    num = [c for c in members.select_dtypes("number").columns if c not in (*keys, "member")]
    g = members.groupby(keys, sort=False, dropna=False)[num]
    mean, sem = g.mean(), g.sem(ddof=1)
    n = g.size().rename("members")
    out = mean.join(sem, rsuffix="_se").join(n)

    if not len(members):
        return out.reset_index()
    ci = pd.DataFrame({k: pd.Series(dict(zip(("Q_ci_low", "Q_ci_high"), q_interval(rows))))
                       for k, rows in members.groupby(keys, sort=False, dropna=False)}).T
    ci.index.names = keys
    return out.join(ci).reset_index()


def density_samples(workspace: str | Path,
                    scores: Iterable["ScoreResult | dict"]) -> dict[str, dict[str, np.ndarray]]:
    """NPT density samples per committee and member, from the store's observe results of the scored runs."""
    from harness.validation.contract import ObserveParams
    from harness.workflow.contract import stored_results

    store = Store(Path(workspace) / "harness.sqlite")
    try:
        samples = {o.run: o.density_samples for o in stored_results(store.tasks(kind="observe", status="done"),
                                                                   ObserveParams)}
    finally:
        store.close()
    out: dict[str, dict[str, np.ndarray]] = {}
    for sc in typed_scores(scores):
        for m in sc.members:
            x = samples.get(m.npt_run)
            if x:
                out.setdefault(sc.committee_id, {})[m.name] = np.array(x)
    return out


def learning_curves(workspace: str | Path) -> pd.DataFrame:
    """The learning curve (``ModelArtifact.curve``) of every member in ``workspace``, one row per point: committee,
    member, arch, subset, preset, position (epoch or step; NaN for the harness's evaluation of the kept model),
    wall_s, validation and training RMSEs (meV/atom, meV/Å).

    The members are those of the store's ``train`` and ``model`` results — so a committee brought as trained
    members (a shipped one, e.g. ``models/study-cpu``) shows its curves beside those trained here, under the
    committee ids of the Q table — then any other member directory under ``workspace/models`` (``harness train``),
    as ``arch/subset/preset-key``."""
    rows = []
    for where, (committee, art) in _member_artifacts(workspace).items():
        if art.status != "ok" or not art.curve:
            continue
        subset = art.dataset.get("subset", where.parents[1].name)
        for p in art.curve:
            unit = "epoch" if "epoch" in p else "step" if "step" in p else None
            rows.append({"committee": committee, "member": where.name, "arch": art.arch, "subset": subset,
                         "preset": art.preset, "unit": unit, "position": p.get(unit, np.nan) if unit else np.nan,
                         "wall_s": p.get("wall_s", np.nan), "stage": p.get("stage", 1),
                         "source": p.get("source", "tool"),
                         **{k: p.get(k, np.nan) for k in ("valid_forces_rmse_meV_A", "valid_energy_rmse_meV_atom",
                                                          "train_forces_rmse_meV_A", "train_energy_rmse_meV_atom")}})
    return pd.DataFrame(rows)


#: the members.csv columns :func:`member_training` adds
TRAINING_COLUMNS = ("valid_forces_rmse_meV_A", "valid_energy_rmse_meV_atom", "valid_stress_rmse_meV_A3",
                    "valid_n_frames", "train_n_frames", "train_seconds", "curve_unit", "curve_end",
                    "curve_end_valid_forces_meV_A", "curve_end_change_from", "curve_end_change_pct")


def member_training(workspace: str | Path) -> pd.DataFrame:
    """What each member's training measured, one row per member (committee, member and :data:`TRAINING_COLUMNS`):
    the validation RMSEs of the kept model (its artifact's metrics), the training time and the learning curve's end
    — the last position the tool reported (epoch or step) in the last stage, its validation force RMSE, and the
    relative change of that RMSE (``curve_end_change_pct``: negative while still falling) since
    ``curve_end_change_from``, the last point at least a tenth of the stage before the end (else the point before
    the last; NaN with one point). SCIENCE.md §4: a model's quality is never quoted without them."""
    rows = []
    for where, (committee, art) in _member_artifacts(workspace).items():
        if art.status != "ok":
            continue
        row = {"committee": committee, "member": where.name,
               **{k: art.metrics.get(k, np.nan) for k in TRAINING_COLUMNS[:5]}, "train_seconds": art.train_seconds}
        tool = [p for p in art.curve if p.get("source", "tool") == "tool" and p.get("valid_forces_rmse_meV_A")
                is not None and ("epoch" in p or "step" in p)]
        if tool:
            stage = max(p.get("stage", 1) for p in tool)
            pts = [p for p in tool if p.get("stage", 1) == stage]
            unit = "epoch" if "epoch" in pts[-1] else "step"
            pos = np.array([p[unit] for p in pts], float)
            f = np.array([p["valid_forces_rmse_meV_A"] for p in pts], float)
            # from the last point at least a tenth of the stage before the end (else the one before the last)
            before = np.flatnonzero(pos <= pos[-1] - 0.1 * (pos[-1] - (pos[0] if stage > 1 else 0.0)))
            ref = before[-1] if len(before) else len(pos) - 2
            row.update(curve_unit=unit, curve_end=pos[-1], curve_end_valid_forces_meV_A=f[-1],
                       curve_end_change_from=pos[ref] if ref >= 0 else np.nan,
                       curve_end_change_pct=100 * (f[-1] / f[ref] - 1) if ref >= 0 else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["committee", "member", *TRAINING_COLUMNS])


def _member_artifacts(workspace: str | Path) -> dict[Path, tuple[str, "ModelArtifact"]]:
    """Every member of ``workspace``: artifact directory -> (committee id, artifact), each read once."""
    from harness.models.base import ModelArtifact
    from harness.models.train import member_dirs
    from harness.validation.contract import ModelParams, TrainParams
    from harness.workflow.contract import stored_results

    members: dict[Path, tuple[str, ModelArtifact]] = {}  # artifact directory -> (committee, artifact)
    path = Path(workspace) / "harness.sqlite"
    if path.exists():
        store = Store(path)
        try:
            results = [*stored_results(store.tasks(kind="train", status="done"), TrainParams),
                       *stored_results(store.tasks(kind="model", status="done"), ModelParams)]
        finally:
            store.close()
        for r in results:
            where = r.workdir or (r.model.path if r.model.kind == "member" else None)
            if where and (Path(where) / "artifact.json").is_file() and Path(where).resolve() not in members:
                members[Path(where).resolve()] = (r.committee, ModelArtifact.load(where))
    for member in member_dirs(workspace):
        if member.resolve() not in members:  # each artifact read once
            art = ModelArtifact.load(member)
            subset = art.dataset.get("subset", member.parents[1].name)
            members[member.resolve()] = (f"{art.arch}/{subset}/{member.parent.name}", art)
    return members
