"""Does training on virials change a model's NPT density? (issue #28 item 2: one stress choice per preset).

Two arms of the same recipe that differ only in the virial term of the loss (e.g. MACE ``loss: virials`` vs
``loss: weighted``, same data split and seed), compared two ways:

1. **Static pressure error** on the labelled periodic frames of the validation sets: per frame the
   configurational pressure P = -tr(σ)/3 of the model against the reference's (GPa), its RMSE and mean (the
   bias that shifts an NPT density: ρ_model - ρ_ref ≈ -ΔP ρ κ_T), and the stress-component RMSE (meV/Å³).
   Between the arms, a paired Wilcoxon signed-rank test on |ΔP| per frame (two-sided, level 0.05, at least
   6 frames), stating the direction.
2. **NPT density** (``--npt``): each arm's member runs the given protocol's NPT (``harness md``, resumable, in
   ``--workspace``); the density after the protocol's equilibration, its mean and SEM from n_eff, and the
   MSER/halves stationarity check. The two arms' difference with Welch's z (each run's own SEM).

A single member per arm measures one training seed: the between-member spread of a committee is not in it, and
the script says so. Nothing here is a timed test; it prints a table and (``--json``) writes the numbers.

    python benchmarks/virial_training.py --with DIR --without DIR [--data FILE ...]
        [--npt --protocol protocols/study-cpu.yaml --workspace ../runs/virials] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT / "datasets" / "ec-emc-xtb" / f"{n}.extxyz.gz" for n in
        ("val_liquid", "val_liquid_ec_rich", "val_vs_1_2", "val_vs_2_1")]
GPA_PER_EV_A3 = 160.21766208
LIQUID = "liquid-like (0.8-1.4 g/cm³)"


def pressures(member: Path, files: list[Path]) -> dict[str, np.ndarray]:
    """Per periodic labelled frame: the model's and the reference's configurational pressure (GPa), the stress
    component errors (eV/Å³), the frame's density (g/cm³) and file index."""
    from harness.models.evaluate import predict, read_labelled
    from harness.models.load import load_model, sources_from_cli
    from harness.units import density_g_cm3

    model = load_model(sources_from_cli([str(member)])[0])
    p_mod, p_ref, ds, rho, src = [], [], [], [], []
    for k, f in enumerate(files):
        frames = [a for a in read_labelled(f) if a.pbc.all() and "REF_stress" in a.info]
        for a, pred in zip(frames, predict(model.calculator, frames, species=model.species, where=str(f))):
            ref = np.asarray(a.info["REF_stress"], dtype=float)
            p_mod.append(-pred.stress[:3].mean() * GPA_PER_EV_A3)
            p_ref.append(-ref[:3].mean() * GPA_PER_EV_A3)
            ds.append(pred.stress - ref)
            rho.append(density_g_cm3(a))
            src.append(k)
    return {"p_model": np.array(p_mod), "p_ref": np.array(p_ref), "dstress": np.array(ds), "rho": np.array(rho),
            "file": np.array(src)}


def static_summary(p: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    dp = (p["p_model"] - p["p_ref"])[mask]
    n = int(mask.sum())
    return {"n_frames": n, "pressure_rmse_GPa": float(np.sqrt(np.mean(dp ** 2))),
            "pressure_bias_GPa": float(dp.mean()),
            "pressure_bias_se_GPa": float(dp.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "stress_rmse_meV_A3": float(1000 * np.sqrt(np.mean(p["dstress"][mask] ** 2)))}


def paired_test(a: np.ndarray, b: np.ndarray, alpha: float = 0.05, min_n: int = 6) -> dict:
    """Wilcoxon signed-rank on paired |ΔP| (arm with virials vs without); undetermined below ``min_n`` pairs."""
    from scipy.stats import wilcoxon

    n = len(a)
    out = {"test": "Wilcoxon signed-rank on per-frame |ΔP|, two-sided", "level": alpha, "n": n, "min_n": min_n}
    if n < min_n:
        return out | {"verdict": "undetermined", "why": f"{n} frames < {min_n}"}
    p = float(wilcoxon(a, b).pvalue)
    smaller = "with" if np.median(a - b) < 0 else "without"
    verdict = f"smaller pressure error {smaller} virials" if p < alpha else "no difference detected (not evidence of none)"
    return out | {"p": p, "median_difference_GPa": float(np.median(a - b)), "verdict": verdict}


def npt_density(member: Path, protocol: Path, workspace: Path) -> dict:
    """Run (or resume) the protocol's NPT with ``harness md`` and summarise the density after equilibration."""
    import pandas as pd

    from harness.md.protocol import load_protocol
    from harness.observables.stats import correlated_mean, stationarity

    cmd = [str(Path(sys.executable).with_name("harness")), "md", "-p", str(protocol), "-e", "npt", "-m", str(member),
           "-w", str(workspace)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"harness md failed for {member}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    thermo = sorted(workspace.glob("md/**/npt-r0/thermo.parquet"), key=lambda q: q.stat().st_mtime)[-1]
    proto = load_protocol(protocol)
    t = pd.read_parquet(thermo)
    rho = t.loc[t["time_ps"] >= proto.equilibration_ps, "density_g_cm3"].to_numpy()
    result = json.loads((thermo.parent / "result.json").read_text())
    cm, st = correlated_mean(rho), stationarity(rho)
    return {"run": str(thermo.parent), "t_stab_ps": result.get("t_stab_ps"), "completed": result.get("completed"),
            "failure": result.get("failure"),
            "n": cm.n, "n_eff": cm.n_eff, "density_g_cm3": cm.mean, "density_se_g_cm3": cm.sem,
            "stationary": st.stationary, "stationarity_rule": st.rule}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with", dest="with_", type=Path, required=True, help="member trained with virials")
    ap.add_argument("--without", type=Path, required=True, help="the same recipe without virials")
    ap.add_argument("--data", type=Path, nargs="*", default=DATA, help="labelled periodic validation frames")
    ap.add_argument("--npt", action="store_true", help="also run each member's NPT and compare densities")
    ap.add_argument("--protocol", type=Path, default=ROOT / "protocols" / "study-cpu.yaml")
    ap.add_argument("--workspace", type=Path, default=Path("runs") / "virials")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    arms = {"with": args.with_, "without": args.without}
    p = {k: pressures(v, args.data) for k, v in arms.items()}
    report: dict = {"members": {k: str(v) for k, v in arms.items()}, "data": [str(f) for f in args.data],
                    "caveat": "one member per arm: one training seed, no between-member spread", "static": {}}
    rho = p["with"]["rho"]
    liquid = (rho > 0.8) & (rho < 1.4)  # liquid-like densities (the scans also reach 0.1 and 2 g/cm³)
    groups = {"all periodic": np.ones_like(liquid), LIQUID: liquid}
    groups |= {f.name.split(".")[0]: p["with"]["file"] == k for k, f in enumerate(args.data)}
    print(f"{'frames':28s} {'arm':8s} {'n':>4s} {'P RMSE GPa':>11s} {'P bias GPa':>16s} {'σ RMSE meV/Å³':>14s}")
    for g, mask in groups.items():
        report["static"][g] = {k: static_summary(p[k], mask) for k in arms}
        for k in arms:
            s = report["static"][g][k]
            print(f"{g:28s} {k:8s} {s['n_frames']:4d} {s['pressure_rmse_GPa']:11.3f} "
                  f"{s['pressure_bias_GPa']:+8.3f} ± {s['pressure_bias_se_GPa']:.3f} {s['stress_rmse_meV_A3']:14.2f}")
    for g in ("all periodic", LIQUID):
        m = groups[g]
        t = paired_test(np.abs(p["with"]["p_model"] - p["with"]["p_ref"])[m],
                        np.abs(p["without"]["p_model"] - p["without"]["p_ref"])[m])
        report["static"][g]["paired"] = t
        print(f"{g}: {t['test']}, n={t['n']}, p={t.get('p', float('nan')):.3g}: {t['verdict']}")
    if args.npt:
        d = {k: npt_density(v, args.protocol, args.workspace / k) for k, v in arms.items()}
        diff = d["with"]["density_g_cm3"] - d["without"]["density_g_cm3"]
        se = math.hypot(d["with"]["density_se_g_cm3"], d["without"]["density_se_g_cm3"])
        report["npt"] = d | {"difference_g_cm3": diff, "difference_se_g_cm3": se, "z": diff / se if se else None}
        for k in arms:
            r = d[k]
            print(f"NPT {k:8s}: ρ = {r['density_g_cm3']:.4f} ± {r['density_se_g_cm3']:.4f} g/cm³ "
                  f"(n_eff {r['n_eff']:.1f} of {r['n']}; stationary {r['stationary']}; t_stab {r['t_stab_ps']} ps)")
        print(f"NPT with - without: {diff:+.4f} ± {se:.4f} g/cm³ (z = {diff / se if se else float('nan'):.2f})")
    print(report["caveat"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
