"""Observables of harness MD runs and the Q score of a committee against a reference committee.

``AnalysisSpec`` (the ``analysis:`` section of an MD protocol, or its own YAML file) fixes everything
a comparison must share: the density grid, the KL rule, the diffusion block lengths. It is not part of
the protocol's hash, so re-analysing never reruns MD. ``observe_run`` analyses one run directory
(``result.json``, ``thermo.parquet``, ``trajectory.h5md``) and caches its observables next to it,
keyed by the analysis hash. ``score`` assembles the Q inputs for a model committee and a reference
committee and calls the pure ``harness.quality.committee_score``.

Which diffusivity enters Q: the block-scheme D (the paper's estimator), composition-weighted by
molecule counts. kinisi's posterior (mean and 95 % interval) is reported beside it as the honest
uncertainty.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from harness.config import HarnessModel
from harness.errors import InputError
from harness.observables.density import DensityGrid, KLRule, density_summary, distribution, kl_divergence, \
    reference_kl
from harness.observables.diffusion import DiffusionSpec, species_diffusivity, weighted_diffusivity

__all__ = ["score_observed", "AnalysisSpec", "analysis_hash", "observe_run", "RunSet", "score", "trajectory_observables"]

OBSERVABLES_VERSION = 5  # 2: beta, cell length, Yeh-Hummer, density stationarity; 3: unchecked stationarity is None;
#                           4: β's 95 % interval (molecule bootstrap), diffusive True/False/None from it;
#                           5: the run's timestep and detector check interval


class AnalysisSpec(HarnessModel):
    """Analysis settings shared by every model of a comparison."""

    density_grid: DensityGrid = DensityGrid()
    kl: KLRule = KLRule()
    diffusion: DiffusionSpec = DiffusionSpec()
    rdf_max_frames: int = Field(100, ge=1, description="frames used for RDFs (evenly spaced)")


def analysis_hash(spec: AnalysisSpec) -> str:
    data = {"version": OBSERVABLES_VERSION, **spec.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _density_dict(rho) -> dict:
    s = density_summary(rho)
    return {"mean": s.mean, "std": s.std, "sem": s.sem, "n": s.n, "n_eff": s.n_eff}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _all3(values) -> bool | None:
    """Three-valued AND: False if any is False, None if any is None, else True."""
    values = list(values)
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _diffusion_dict(traj, spec: AnalysisSpec, equilibration_ps: float, temperature_K: float | None = None) -> dict:
    """Per-species D (block scheme, kinisi) with the checks a verdict needs: the MSD's local exponent β over the
    fit window with its 95 % interval (``diffusive``: the interval ≥ 0.9; False wholly below, None when it
    straddles), the cell length and the Yeh-Hummer finite-size correction (its
    coefficient without a viscosity)."""
    from harness.observables.diffusion import DIFFUSIVE_BETA, yeh_hummer

    res = species_diffusivity(traj, spec.diffusion, equilibration_ps=equilibration_ps)
    t = traj.after(equilibration_ps)
    length = float(np.mean(np.abs(np.linalg.det(t.cells)))) ** (1 / 3)
    species = {}
    for name, r in res.items():
        d = {"n_molecules": r.n_molecules, "D_block_A2_ps": r.block.D, "sem_block_A2_ps": r.block.sem,
             "n_blocks": len(r.block.D_blocks), "beta": r.block.beta,
             "beta_low": _finite(r.block.beta_low), "beta_high": _finite(r.block.beta_high),
             "diffusive": r.block.diffusive}
        if r.kinisi is not None:
            d.update(D_kinisi_A2_ps=r.kinisi.D, kinisi_low_A2_ps=r.kinisi.low, kinisi_high_A2_ps=r.kinisi.high)
        species[name] = d
    counts = {k: v["n_molecules"] for k, v in species.items()}
    out = {"species": species,
           "D_weighted_block_A2_ps": weighted_diffusivity({k: v["D_block_A2_ps"] for k, v in species.items()}, counts),
           "diffusive": _all3(v["diffusive"] for v in species.values()), "beta_threshold": DIFFUSIVE_BETA,
           "cell_length_A": length}
    if temperature_K is not None:
        eta = spec.diffusion.viscosity_mPa_s
        out["yeh_hummer"] = {"temperature_K": temperature_K, "viscosity_mPa_s": eta,
                             "coefficient_A2_ps_mPa_s": yeh_hummer(temperature_K, length),
                             "delta_D_A2_ps": yeh_hummer(temperature_K, length, eta) if eta else None}
    if spec.diffusion.kinisi:
        total = sum(counts.values())
        samples = sum(res[k].kinisi.samples * counts[k] / total for k in res)
        lo, hi = np.percentile(samples, [2.5, 97.5])
        out.update(D_weighted_kinisi_A2_ps=float(np.mean(samples)), D_weighted_kinisi_low_A2_ps=float(lo),
                   D_weighted_kinisi_high_A2_ps=float(hi))
    return out


def trajectory_observables(traj, spec: AnalysisSpec, *, equilibration_ps: float, rdf: bool = True) -> dict:
    """Density statistics (when the cell varies), per-species COM diffusivity and COM RDFs of any
    ``Trajectory`` (the engine of ``harness observe``)."""
    from harness.observables.rdf import com_rdfs

    t = traj.after(equilibration_ps)
    out: dict = {"source": traj.source, "n_frames": t.n_frames, "equilibration_ps": equilibration_ps,
                 "molecules": {k: traj.species.count(k) for k in sorted(set(traj.species))}}
    if t.n_frames < 2:
        raise InputError(f"{traj.source}: {t.n_frames} frame(s) left after {equilibration_ps:g} ps equilibration")
    out["frame_dt_ps"] = t.frame_dt_ps
    if traj.periodic:
        rho = t.densities_g_cm3()
        if np.ptp(rho) > 1e-9 * rho.mean():
            out["density_g_cm3"] = _density_dict(rho)
        else:
            out["density_g_cm3"] = {"mean": float(rho.mean()), "std": 0.0, "sem": 0.0, "n": len(rho), "n_eff": 0}
        out["diffusion"] = _diffusion_dict(traj, spec, equilibration_ps)
        if rdf:
            r = com_rdfs(t, max_frames=spec.rdf_max_frames)
            out["com_rdf_first_peak"] = {k: dict(zip(("r_A", "g"), v.first_peak())) for k, v in r.items()}
    return out


def _read_result(run_dir: Path) -> dict:
    path = run_dir / "result.json"
    if not path.exists():
        raise InputError(f"{run_dir}: no result.json (the run has not finished; rerun `harness md` to resume it)")
    data = json.loads(path.read_text())
    if not data.get("completed", True):
        raise InputError(f"{run_dir}: the run was interrupted; rerun `harness md` to finish it")
    return data


def observe_run(run_dir: str | Path, spec: AnalysisSpec, *, equilibration_ps: float, tau_ps: float) -> dict:
    """Observables of one harness MD run, cached as ``observables-<analysis hash>.json`` in the run dir.

    NPT: density samples after the equilibration cut (from the thermo table) and their statistics;
    NVT: per-species and weighted COM diffusivity. Both only when the run reached ``tau_ps``, i.e. it
    has no failure and ``t_stab_ps >= tau_ps`` (SCIENCE.md §5: a failure at the last check is a failure):
    an unstable member's observables never enter Q.
    """
    from harness.io import atomic_path

    run_dir = Path(run_dir)
    result = _read_result(run_dir)
    key = analysis_hash(spec)
    cache = run_dir / f"observables-{key}.json"
    reached = result["failure"] is None and result["t_stab_ps"] >= tau_ps * (1 - 1e-9)
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("equilibration_ps") == equilibration_ps and data.get("tau_ps") == tau_ps \
                and data.get("t_stab_ps") == result["t_stab_ps"] and data.get("reached_tau") == reached:
            return data
    ens = result["ensemble"]
    spec_ = (result.get("meta") or {}).get("protocol_spec") or {}
    out = {"run": str(run_dir), "ensemble": ens, "t_stab_ps": result["t_stab_ps"], "length_ps": result["length_ps"],
           "failure": result["failure"], "equilibration_ps": equilibration_ps, "tau_ps": tau_ps,
           "analysis_hash": key, "reached_tau": reached,
           # what the verdicts need of the protocol ("a few steps" after a failure): timestep and check interval
           "timestep_fs": spec_.get("timestep_fs", (result.get("settings") or {}).get("timestep_fs")),
           "check_interval_steps": (spec_.get("detectors") or {}).get("interval")}
    if out["reached_tau"]:
        if ens == "npt":
            import pandas as pd

            th = pd.read_parquet(run_dir / "thermo.parquet")
            th = th[th["time_ps"] >= equilibration_ps - 1e-9]
            rho = th["density_g_cm3"].to_numpy()
            if len(rho) < 2:
                raise InputError(f"{run_dir}: {len(rho)} density samples after {equilibration_ps:g} ps equilibration")
            out["density_g_cm3"] = _density_dict(rho)
            out["density_samples"] = rho.tolist()
            from harness.observables.stats import stationarity

            out["density_stationarity"] = stationarity(rho).as_dict()
        else:
            from harness.observables.trajectory import load_trajectory

            traj = load_trajectory(run_dir / "trajectory.h5md")
            out["diffusion"] = _diffusion_dict(traj, spec, equilibration_ps,
                                               (result.get("settings") or {}).get("temperature_K"))
    with atomic_path(cache) as tmp:
        Path(tmp).write_text(json.dumps(out) + "\n")
    return out


@dataclass(frozen=True)
class RunSet:
    """The runs of one committee member: its NPT and NVT run directories (None when missing)."""

    name: str
    npt: Path | None
    nvt: Path | None


def _member_observables(members: list[RunSet], spec, eq, tau, *, role: str) -> dict[str, dict]:
    out = {}
    for m in members:
        if m.npt is None or m.nvt is None:
            missing = " and ".join(e for e, p in (("NPT", m.npt), ("NVT", m.nvt)) if p is None)
            raise InputError(f"{role} member {m.name}: no {missing} run (run `harness md` for it first)")
        out[m.name] = {"npt": observe_run(m.npt, spec, equilibration_ps=eq, tau_ps=tau),
                       "nvt": observe_run(m.nvt, spec, equilibration_ps=eq, tau_ps=tau)}
    return out


#: R cannot see a density error smaller than this (g/cm³) when it is "informative"; the findings' margin
R_RESOLUTION_G_CM3 = 0.02
#: fewest effective samples of a reference member's NPT density for R to mean something
R_MIN_N_EFF = 10


def _protocol_facts(observed: dict[str, dict]) -> dict:
    """The timestep (fs) and detector check interval (steps) the runs used (from their observables)."""
    for v in observed.values():
        for ens in ("npt", "nvt"):
            o = v.get(ens) or {}
            if o.get("timestep_fs") is not None:
                return {"timestep_fs": o["timestep_fs"], "check_interval_steps": o.get("check_interval_steps")}
    return {"timestep_fs": None, "check_interval_steps": None}


def kl_resolution(ref_samples: dict[str, np.ndarray], baseline: float) -> dict:
    """What the density term can see: a model whose P(ρ) is the reference's shifted by δ has D_KL ≈ δ²/(2σ²)
    (Gaussians of the reference's width σ), and R drops below 1 only when D_KL exceeds the reference's own KL
    baseline, i.e. for |δ| > δ_min = σ·sqrt(2·baseline). R is *uninformative* when δ_min exceeds
    ``R_RESOLUTION_G_CM3`` or a reference member has fewer than ``R_MIN_N_EFF`` effective samples: R = 1 then
    says nothing about the density (SCIENCE.md §11)."""
    from harness.observables.stats import correlated_mean

    sigma = float(np.mean([np.std(x, ddof=1) for x in ref_samples.values()]))
    n_eff = min(correlated_mean(x).n_eff for x in ref_samples.values())
    delta = sigma * float(np.sqrt(2 * max(baseline, 0.0)))
    reasons = []
    if delta > R_RESOLUTION_G_CM3:
        reasons.append(f"the reference's KL baseline {baseline:.3g} nats hides density shifts below {delta:.3g} g/cm³ "
                       f"(> {R_RESOLUTION_G_CM3:g})")
    if n_eff < R_MIN_N_EFF:
        reasons.append(f"a reference member has {n_eff:.1f} effective density samples (< {R_MIN_N_EFF})")
    return {"sigma_g_cm3": sigma, "delta_min_g_cm3": delta, "min_n_eff": float(n_eff), "informative": not reasons,
            "why": "; ".join(reasons)}


def _intervals(rows: list[dict], cs, mod: dict[str, dict], ref_samples: dict[str, np.ndarray], ref: dict[str, dict],
               baseline: float, D_ref: float, spec: AnalysisSpec) -> None:
    """Each member row's R, V and Q interval (:mod:`harness.observables.uncertainty`), added to the rows."""
    from harness.observables.uncertainty import LEVEL, diffusion_se, member_intervals

    blk, stride = spec.diffusion.block_ps, spec.diffusion.block_stride_ps
    ref_se = [diffusion_se(v["nvt"]["diffusion"], blk, stride) for v in ref.values() if v["nvt"]["reached_tau"]]
    se_ref = math.sqrt(sum(x * x for x in ref_se)) / len(ref_se)
    S, d_hat, D, se, dens = {}, {}, {}, {}, {}
    for row, ms in zip(rows, cs.members):
        name, npt, nvt = row["name"], mod[row["name"]]["npt"], mod[row["name"]]["nvt"]
        S[name] = ms.S
        d_hat[name] = row["kl"] - baseline if ms.reached_npt else None
        D[name] = nvt["diffusion"]["D_weighted_block_A2_ps"] if ms.reached_nvt else None
        se[name] = diffusion_se(nvt["diffusion"], blk, stride) if ms.reached_nvt else 0.0
        if ms.reached_npt:
            dens[name] = np.asarray(npt["density_samples"], dtype=float)
    try:
        ivs = member_intervals(S, d_hat, D, se, dens, ref_samples, D_ref, se_ref, spec.density_grid, spec.kl,
                               level=LEVEL)
    except ValueError as exc:
        raise InputError(f"Q interval: {exc}") from None
    for row in rows:
        iv = ivs[row["name"]]
        row.update(R_low=iv.R.low if iv.R else 0.0, R_high=iv.R.high if iv.R else 0.0,
                   V_low=iv.V.low if iv.V else 0.0, V_high=iv.V.high if iv.V else 0.0,
                   Q_low=iv.Q.low, Q_high=iv.Q.high)


def score(model: list[RunSet], reference: list[RunSet], spec: AnalysisSpec, *, tau_ps: float,
          equilibration_ps: float) -> dict:
    """Q of a model committee against a reference committee from their members' run directories (observables
    computed or read from each run's cache): :func:`score_observed` of them."""
    ref = _member_observables(reference, spec, equilibration_ps, tau_ps, role="reference")
    mod = _member_observables(model, spec, equilibration_ps, tau_ps, role="model")
    return score_observed(mod, ref, spec, tau_ps=tau_ps, equilibration_ps=equilibration_ps)


def score_observed(mod: dict[str, dict], ref: dict[str, dict], spec: AnalysisSpec, *, tau_ps: float,
                   equilibration_ps: float) -> dict:
    """Q of a model committee against a reference committee, with every input and setting recorded, from the
    observables of each member's runs (member name -> {"npt": observables, "nvt": observables}, as
    :func:`observe_run` returns them; an NPT run that reached tau carries its ``density_samples``).

    Reference: P_ref = mean of the distributions of reference members whose NPT run reached tau
    (at least two, for the KL baseline); D_ref = mean of the weighted block D of reference members
    whose NVT run reached tau (at least one).
    """
    from harness.observables.uncertainty import LEVEL
    from harness.quality import MemberInputs, committee_interval, committee_score

    grid, rule = spec.density_grid, spec.kl
    ref_samples = {k: np.array(v["npt"]["density_samples"]) for k, v in ref.items() if v["npt"]["reached_tau"]}
    if len(ref_samples) < 2:
        raise InputError(f"reference committee: {len(ref_samples)} of {len(ref)} members reached the horizon "
                         f"({tau_ps:g} ps) in NPT; the density term needs at least two")
    try:
        rk = reference_kl(ref_samples, grid, rule)
    except ValueError as exc:
        raise InputError(f"reference committee: {exc}") from None
    ref_D = [v["nvt"]["diffusion"]["D_weighted_block_A2_ps"] for v in ref.values() if v["nvt"]["reached_tau"]]
    if not ref_D:
        raise InputError(f"reference committee: no member reached the horizon ({tau_ps:g} ps) in NVT; "
                         "D_ref is undefined")
    D_ref = float(np.mean(ref_D))
    if not (D_ref > 0 and np.isfinite(D_ref)):
        # V = 1 - tanh(|D_m - D_ref| / D_ref) needs a positive, finite reference (user input, not a bug)
        raise InputError(f"reference committee: the diffusivity D_ref = {D_ref:.3g} Å²/ps (mean weighted block D of "
                         f"{len(ref_D)} member(s) stable in NVT) is not positive and finite; V is undefined "
                         "(do its molecules move? check the NVT runs with `harness observe`)")
    if not np.isfinite(rk.baseline):
        raise InputError(f"reference committee: the KL baseline between its members is {rk.baseline} (their density "
                         f"distributions do not overlap under the KL rule {rule.describe()}); use the kde or "
                         "pseudocount rule")
    inputs, rows = [], []
    for name, v in mod.items():
        npt, nvt = v["npt"], v["nvt"]
        kl = D = None
        if npt["reached_tau"]:
            try:
                kl = kl_divergence(distribution(npt["density_samples"], grid, rule), rk.pooled)
            except ValueError as exc:
                raise InputError(f"model member {name}: {exc}") from None
        if nvt["reached_tau"]:
            D = nvt["diffusion"]["D_weighted_block_A2_ps"]
        inputs.append(MemberInputs(name, npt["t_stab_ps"], nvt["t_stab_ps"], kl, D,
                                   npt_failed=npt["failure"] is not None, nvt_failed=nvt["failure"] is not None))
        rows.append({"name": name, "t_stab_npt_ps": npt["t_stab_ps"], "t_stab_nvt_ps": nvt["t_stab_ps"],
                     "npt_failure": npt["failure"], "nvt_failure": nvt["failure"],
                     "npt_run": npt["run"], "nvt_run": nvt["run"],
                     "density_g_cm3": npt.get("density_g_cm3"), "kl": kl,
                     "density_stationarity": npt.get("density_stationarity"),
                     "diffusion": nvt.get("diffusion")})
    cs = committee_score(inputs, tau_ps=tau_ps, kl_baseline=rk.baseline, D_ref=D_ref)
    for row, ms in zip(rows, cs.members):
        row.update(S=ms.S, R=ms.R, V=ms.V, Q=ms.Q)
    _intervals(rows, cs, mod, ref_samples, ref, rk.baseline, D_ref, spec)
    ref_density = [v["npt"]["density_g_cm3"]["mean"] for v in ref.values() if v["npt"]["reached_tau"]]
    resolution = kl_resolution(ref_samples, rk.baseline)
    committee = cs.as_dict()["committee"]
    ci = committee_interval([r["Q"] for r in rows], [r["Q_low"] for r in rows], [r["Q_high"] for r in rows],
                            level=LEVEL)
    committee["Q"].update(low=ci.low, high=ci.high, basis=ci.basis, level=LEVEL)
    return {
        "members": rows,
        "committee": committee,
        "reference": {"members": list(ref), "npt_members_used": list(rk.members), "kl_baseline": rk.baseline,
                      "kl_pairs": rk.pairs, "D_ref_A2_ps": D_ref, "nvt_members_used": len(ref_D),
                      "density_g_cm3": float(np.mean(ref_density)), "R_resolution": resolution},
        "settings": {"tau_ps": tau_ps, "equilibration_ps": equilibration_ps, "kl_rule": rule.describe(),
                     **_protocol_facts(mod), 
                     "density_grid": grid.model_dump(), "diffusion": spec.diffusion.model_dump(),
                     "D_in_Q": "block (composition-weighted, molecule counts)", "analysis_hash": analysis_hash(spec)},
    }
