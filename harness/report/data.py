"""Collect a workspace's scored committees from the store into tidy tables (one row per member)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.sweep.store import Store
from harness.units import A2_PER_PS_TO_1E6_CM2_PER_S

__all__ = ["write_tables", "load_scores", "member_table", "committee_table", "density_samples", "learning_curves"]


def write_tables(tables: dict[str, pd.DataFrame], outdir: Path, files: dict[str, Path]) -> None:
    """Each table as ``<name>.csv`` in ``outdir``, recorded in ``files``."""
    for name, df in tables.items():
        files[f"{name}.csv"] = Path(outdir) / f"{name}.csv"
        df.to_csv(files[f"{name}.csv"], index=False)


def load_scores(workspace: str | Path, sweep: str | None = None) -> list[dict]:
    """Results of every finished score task (one per committee)."""
    path = Path(workspace) / "harness.sqlite"
    if not path.exists():
        raise InputError(f"{workspace}: no harness.sqlite (run `harness sweep run SPEC --workspace {workspace}`)")
    store = Store(path)
    rows = store.tasks(kind="score", status="done", sweep=sweep)
    store.close()
    if not rows:
        raise InputError(f"{workspace}: no scored committees yet (see `harness sweep status -w {workspace}`)")
    return [r["result"] for r in rows]


def member_table(scores: list[dict]) -> pd.DataFrame:
    """One row per committee member: t_stab, density, D per species, KL, S, R, V, Q (D in 1e-6 cm²/s)."""
    rows = []
    for sc in scores:
        for m in sc["members"]:
            d = m.get("diffusion") or {}
            tags = sc.get("tags") or {}
            row = {"committee": sc["committee_id"], "arch": sc["arch"], "subset": sc["subset"], "member": m["name"],
                   "campaign": tags.get("campaign"), "chain": tags.get("chain"),
                   "generation": tags.get("generation", np.nan),
                   "finetune": (tags.get("finetune") or {}).get("name"),
                   "finetune_lr": (tags.get("finetune") or {}).get("lr", np.nan),
                   "t_stab_npt_ps": m["t_stab_npt_ps"], "t_stab_nvt_ps": m["t_stab_nvt_ps"],
                   "density_g_cm3": (m.get("density_g_cm3") or {}).get("mean", np.nan),
                   "kl": np.nan if m.get("kl") is None else m["kl"],
                   "D_w": d.get("D_weighted_block_A2_ps", np.nan) * A2_PER_PS_TO_1E6_CM2_PER_S,
                   "S": m["S"], "R": m["R"], "V": m["V"], "Q": m["Q"]}
            for sp, v in (d.get("species") or {}).items():
                row[f"D_{sp}"] = v["D_block_A2_ps"] * A2_PER_PS_TO_1E6_CM2_PER_S
            rows.append(row)
    return pd.DataFrame(rows)


def committee_table(members: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over members per committee for every numeric column."""
    num = [c for c in members.columns if c not in ("committee", "arch", "subset", "member", "campaign", "chain",
                                                   "finetune")]
    g = members.groupby(["committee", "arch", "subset"], sort=False, dropna=False)[num]
    mean, sem = g.mean(), g.sem(ddof=1)
    n = g.size().rename("members")
    out = mean.join(sem, rsuffix="_se").join(n).reset_index()
    return out


def density_samples(scores: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """NPT density samples per committee and member (from the runs' cached observables)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for sc in scores:
        key = sc["settings"]["analysis_hash"]
        for m in sc["members"]:
            run = m.get("npt_run")
            if not run:
                continue
            cache = Path(run) / f"observables-{key}.json"
            if cache.exists():
                data = json.loads(cache.read_text())
                if data.get("density_samples"):
                    out.setdefault(sc["committee_id"], {})[m["name"]] = np.array(data["density_samples"])
    return out


def learning_curves(workspace: str | Path) -> pd.DataFrame:
    """Every trained member's learning curve in ``workspace`` (``ModelArtifact.curve``), one row per point:
    committee (``arch/subset/preset-key``), member, arch, subset, position (epoch or step; NaN for the
    harness's evaluation of the kept model), wall_s, validation and training RMSEs (meV/atom, meV/Å)."""
    from harness.models.train import list_models

    rows = []
    for art in list_models(workspace):
        if art.status != "ok" or not art.curve:
            continue
        member = Path(art.workdir)
        committee = f"{art.arch}/{art.dataset.get('subset', member.parents[1].name)}/{member.parent.name}"
        for p in art.curve:
            unit = "epoch" if "epoch" in p else "step" if "step" in p else None
            rows.append({"committee": committee, "member": member.name, "arch": art.arch,
                         "subset": art.dataset.get("subset", member.parents[1].name), "preset": art.preset,
                         "unit": unit, "position": p.get(unit, np.nan) if unit else np.nan,
                         "wall_s": p.get("wall_s", np.nan), "stage": p.get("stage", 1),
                         "source": p.get("source", "tool"),
                         **{k: p.get(k, np.nan) for k in ("valid_forces_rmse_meV_A", "valid_energy_rmse_meV_atom",
                                                          "train_forces_rmse_meV_A", "train_energy_rmse_meV_atom")}})
    return pd.DataFrame(rows)
