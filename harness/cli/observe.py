"""``harness observe`` (any trajectory) and ``harness score`` (Q of a committee against a reference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import handle_errors, is_file


def _analysis_spec(path: Optional[Path]):
    from harness.config import load_yaml
    from harness.observables.analysis import AnalysisSpec

    return AnalysisSpec() if path is None else load_yaml(path, AnalysisSpec)


def _fmt_d(v: Optional[float]) -> str:
    from harness.units import diffusivity_1e6_cm2_s

    return "-" if v is None else f"{diffusivity_1e6_cm2_s(v):.2f}"


@handle_errors
def observe(
    trajectory: Path = typer.Argument(..., help="harness H5MD file, or any trajectory ASE reads (extxyz, LAMMPS "
                                      "dump, ...), or one MDAnalysis reads with --topology (XTC, DCD, ...)."),
    topology: Optional[Path] = typer.Option(None, "--topology", help="Topology for MDAnalysis formats (PDB, GRO, ...)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="ASE format name when the suffix is ambiguous."),
    dt_ps: Optional[float] = typer.Option(None, "--dt-ps", help="Time between frames in ps (overrides stored times)."),
    equilibration_ps: float = typer.Option(0.0, "--equilibration-ps", min=0, help="Discarded from the start."),
    block_ps: Optional[float] = typer.Option(None, "--block-ps", help="MSD block length (default: analysis spec)."),
    stride_ps: Optional[float] = typer.Option(None, "--block-stride-ps", help="Time between block origins."),
    skip_ps: Optional[float] = typer.Option(None, "--skip-ps", help="Ballistic lags dropped from each block's fit."),
    analysis: Optional[Path] = typer.Option(None, "--analysis", help="Analysis spec YAML (grid, KL rule, diffusion)."),
    no_kinisi: bool = typer.Option(False, "--no-kinisi", help="Skip kinisi's Bayesian estimator (faster)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Density statistics (when the cell varies), per-species centre-of-mass self-diffusivity and COM RDF peaks.

    Molecules come from the file's mol_id, else from covalent connectivity of the first frame (an isolated
    atom is its own molecule). Positions are unwrapped with each frame's cell (harness H5MD must already be
    unwrapped and is checked). D is given in 1e-6 cm²/s from two estimators: the block scheme (mean ±
    std/sqrt(blocks), the paper's error bar, which enters Q) and kinisi's Bayesian posterior (mean and 95 %
    credible interval, the honest uncertainty).
    """
    from harness.errors import InputError
    from harness.observables.analysis import trajectory_observables
    from harness.observables.trajectory import load_trajectory

    spec = _analysis_spec(analysis)
    changes = {k: v for k, v in (("block_ps", block_ps), ("block_stride_ps", stride_ps), ("skip_ps", skip_ps))
               if v is not None}
    if no_kinisi:
        changes["kinisi"] = False
    if changes:
        from harness.observables.diffusion import DiffusionSpec

        try:
            diff = DiffusionSpec(**{**spec.diffusion.model_dump(), **changes})
        except ValueError as exc:
            raise InputError(f"diffusion options: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}") from None
        spec = spec.model_copy(update={"diffusion": diff})
    traj = load_trajectory(trajectory, topology=topology, dt_ps=dt_ps, fmt=fmt)
    out = trajectory_observables(traj, spec, equilibration_ps=equilibration_ps)
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    typer.echo(f"{trajectory}: {out['n_frames']} frames after {equilibration_ps:g} ps, {out['frame_dt_ps']:g} ps apart; "
               "molecules " + ", ".join(f"{k}={v}" for k, v in out["molecules"].items()))
    rho = out.get("density_g_cm3")
    if rho and rho["std"] > 0:
        typer.echo(f"density: {rho['mean']:.4f} ± {rho['sem']:.4f} g/cm³ (SEM, {rho['n_eff']:.0f} effective of "
                   f"{rho['n']} samples), std {rho['std']:.4f}")
    elif rho:
        typer.echo(f"density: {rho['mean']:.4f} g/cm³ (fixed cell)")
    diff = out.get("diffusion")
    if diff:
        d = spec.diffusion
        typer.echo(f"COM self-diffusivity, 1e-6 cm²/s (blocks {d.block_ps:g} ps every {d.block_stride_ps:g} ps, "
                   f"first {d.skip_ps:g} ps dropped):")
        typer.echo(f"  {'species':<10}{'n':>4}  {'block D ± SE':>18}  {'kinisi D [95 %]':>26}")
        for name, s in diff["species"].items():
            kin = (f"{_fmt_d(s['D_kinisi_A2_ps'])} [{_fmt_d(s['kinisi_low_A2_ps'])}, {_fmt_d(s['kinisi_high_A2_ps'])}]"
                   if "D_kinisi_A2_ps" in s else "-")
            typer.echo(f"  {name:<10}{s['n_molecules']:>4}  {_fmt_d(s['D_block_A2_ps']):>9} ± "
                       f"{_fmt_d(s['sem_block_A2_ps']):<6}  {kin:>26}")
        kin = (f"{_fmt_d(diff['D_weighted_kinisi_A2_ps'])} [{_fmt_d(diff['D_weighted_kinisi_low_A2_ps'])}, "
               f"{_fmt_d(diff['D_weighted_kinisi_high_A2_ps'])}]" if "D_weighted_kinisi_A2_ps" in diff else "-")
        typer.echo(f"  {'weighted':<10}{'':>4}  {_fmt_d(diff['D_weighted_block_A2_ps']):>9}{'':9}  {kin:>26}")
    peaks = out.get("com_rdf_first_peak")
    if peaks:
        typer.echo("COM RDF first peak: " + ", ".join(f"{k} {v['g']:.2f} at {v['r_A']:.2f} Å" for k, v in peaks.items()))


def _runsets(sources, workspace: Path, protocol: str, replica: int):
    """The NPT/NVT run directories of each model (None where a run is missing)."""
    from harness.md.launch import run_dir
    from harness.models.load import run_name
    from harness.observables.analysis import RunSet

    sets = []
    for k, src in enumerate(sources):
        name = run_name(src)
        runs = {e: run_dir(workspace, name, protocol, e, replica) for e in ("npt", "nvt")}
        label = Path(src.path).name if src.kind == "member" else f"member-{k}"
        sets.append(RunSet(label, *(r if r.exists() else None for r in runs.values())))
    return sets


def _protocol(protocol: Optional[str], workspace: Path, sources):
    """The MD protocol of the runs: a YAML file, or a name whose spec is read from the runs' result.json."""
    from harness.errors import InputError
    from harness.md.protocol import MDProtocol, load_protocol
    from harness.models.load import run_name

    if protocol is not None and is_file(protocol):
        return load_protocol(protocol)
    names, specs = set(), {}
    for src in sources:
        for r in (workspace / "md" / run_name(src)).glob("*/*/result.json"):
            name = r.parent.parent.name
            names.add(name)
            meta = json.loads(r.read_text()).get("meta", {})
            if "protocol_spec" in meta:
                specs.setdefault(name, meta["protocol_spec"])
    if protocol is None:
        if len(names) != 1:
            raise InputError(f"runs under {workspace}/md use protocols {sorted(names) or 'none'}; choose one with "
                             "--protocol (a name or a protocol YAML)")
        protocol = names.pop()
    if protocol not in specs:
        raise InputError(f"no finished runs with protocol {protocol!r} under {workspace}/md for these models "
                         "(or they predate stored protocol specs: pass --protocol protocols/<name>.yaml)")
    return MDProtocol.model_validate(specs[protocol])


MODEL_HELP = ("A committee directory, a model file (MACE .model, DeePMD .pth/.pb, GAP .xml; repeat --model for "
              "several: a committee; one file is a committee of one), foundation:NAME[+d3] (a foundation model "
              "shipped offline, e.g. foundation:sevennet-0+d3) or ase:package.module.Class.")
ARCH_HELP = "Architecture of the model files when their suffix does not tell (gap, deepmd, mace)."
MEMBERS_PRESENT_HELP = ("Use the members of a committee that are present when some are missing (a member folder "
                        "without artifact.json, or a member committee.json lists that is gone); without this option "
                        "such a committee is an error.")


def _interval(low, high) -> str:
    return "-" if low is None or high is None else f"{low:.2f}-{high:.2f}"


def print_score(res: dict, model: str, reference: str, protocol: str) -> None:
    """The Q table of a score result (``harness score``, ``harness validate``)."""
    ref, st = res["reference"], res["settings"]
    typer.echo(f"Q of {model} against {reference} ({protocol}: tau {st['tau_ps']:g} ps, "
               f"equilibration {st['equilibration_ps']:g} ps)")
    typer.echo(f"reference: density {ref['density_g_cm3']:.4f} g/cm³, D_ref {_fmt_d(ref['D_ref_A2_ps'])} "
               f"(1e-6 cm²/s), KL baseline {ref['kl_baseline']:.4f} over {ref['kl_pairs']} ordered pairs; "
               f"KL rule {st['kl_rule']}")
    species = sorted({s for m in res["members"] if m["diffusion"] for s in m["diffusion"]["species"]})
    width = max([18, *(len(m["name"]) + 2 for m in res["members"])])
    head = (f"{'member':<{width}}{'t_NPT ps':>9}{'t_NVT ps':>9}{'rho g/cm3':>10}"
            + "".join(f"{'D(' + s + ')':>9}" for s in species) + f"{'D(w)':>8}{'KL':>8}{'S':>7}{'R':>7}{'V':>7}{'Q':>7}{'Q 95 %':>13}")
    typer.echo(head)
    for m in res["members"]:
        d = m["diffusion"] or {}
        rho = f"{m['density_g_cm3']['mean']:.4f}" if m["density_g_cm3"] else "-"
        ds = "".join(f"{_fmt_d(d.get('species', {}).get(s, {}).get('D_block_A2_ps')):>9}" for s in species)
        kl = f"{m['kl']:.3f}" if m["kl"] is not None else "-"
        typer.echo(f"{m['name']:<{width}}{m['t_stab_npt_ps']:>9.3g}{m['t_stab_nvt_ps']:>9.3g}{rho:>10}{ds}"
                   f"{_fmt_d(d.get('D_weighted_block_A2_ps')):>8}{kl:>8}{m['S']:>7.3f}{m['R']:>7.3f}{m['V']:>7.3f}"
                   f"{m['Q']:>7.3f}{_interval(m.get('Q_low'), m.get('Q_high')):>13}")
    c = res["committee"]
    pad = width + 9 + 9 + 10 + 9 * len(species) + 8 + 8
    if len(res["members"]) == 1:  # a committee of one: its Q, no spread
        typer.echo(f"{'committee of one (no spread)':<{pad}}" + "".join(f"{c[t]['mean']:>7.3f}" for t in "SRVQ")
                   + f"{_interval(c['Q'].get('low'), c['Q'].get('high')):>13}")
    else:
        typer.echo(f"{'committee mean ± SE':<{pad}}" + "".join(f"{c[t]['mean']:>7.3f}" for t in "SRVQ")
                   + f"{_interval(c['Q'].get('low'), c['Q'].get('high')):>13}")
        typer.echo(f"{'':<{pad}}" + "".join(f"{'±' + format(c[t]['sem'], '.3f'):>7}" for t in "SRVQ"))
    if c["Q"].get("basis"):
        typer.echo(f"Q's {100 * c['Q']['level']:.0f} % interval: members' R (density block bootstrap), V (D's own error) "
                   f"and S (exact) summed; the committee's: {c['Q']['basis']}")
    for m in res["members"]:
        for ens in ("npt", "nvt"):
            f = m[f"{ens}_failure"]
            if f:
                typer.echo(f"  {m['name']} {ens.upper()} failed at {f['time_ps']:g} ps: {f['detector']} ({f['message']})")
    for name, stamp in (res.get("models") or {}).items():
        what = stamp.get("calculator") or stamp.get("file")
        sha = f", sha256 {stamp['sha256'][:12]}" if stamp.get("sha256") else ""
        typer.echo(f"  {name}: {stamp.get('arch')} {what}{sha}")


@handle_errors
def score(
    workspace: Path = typer.Option(Path("runs/default"), "--workspace", "-w", help="Workspace with models/ and md/."),
    model: list[str] = typer.Option(..., "--model", "-m", metavar="MODEL", help=MODEL_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=ARCH_HELP),
    reference: list[str] = typer.Option(..., "--reference", "-r", metavar="REFERENCE",
                                        help="Reference committee directory (e.g. GAP on Full), or model files as "
                                        "for --model."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="Protocol name or YAML (default: the one "
                                           "the runs used, when unique)."),
    replica: int = typer.Option(0, "--replica", min=0, help="Replica of the per-member runs."),
    analysis: Optional[Path] = typer.Option(None, "--analysis", help="Analysis spec YAML overriding the protocol's."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    members_present: bool = typer.Option(False, "--members-present", help=MEMBERS_PRESENT_HELP),
) -> None:
    """Q of a model committee against a reference committee, per member and for the committee.

    Needs one NPT and one NVT run per member of both committees (`harness md --model <member dir or file>`), in WORKSPACE/md/<model>/<protocol>/{npt,nvt}-r<replica>; `harness validate` runs them and scores in one command. Prints t_stab (NPT, NVT), mean density, D per species and D(weighted) in 1e-6 cm²/s, the terms S, R, V and Q, and each model's provenance. Members that did not reach the horizon tau get R = 0 (NPT) or V = 0 (NVT).
    """
    from harness.errors import InputError
    from harness.models.load import model_stamp, sources_from_cli
    from harness.observables.analysis import score as score_fn

    if not workspace.is_dir():
        raise InputError(f"{workspace}: no such workspace (its md/ holds the runs to score; `harness md` or "
                         "`harness validate` makes them)")
    models = sources_from_cli(model, arch=arch, members=False, members_present=members_present)
    refs = sources_from_cli(reference, members=False, members_present=members_present)
    proto = _protocol(protocol, workspace, [*models, *refs])
    spec = _analysis_spec(analysis) if analysis is not None else proto.analysis
    model_sets = _runsets(models, workspace, proto.name, replica)
    res = score_fn(model_sets, _runsets(refs, workspace, proto.name, replica), spec,
                   tau_ps=proto.horizon_ps, equilibration_ps=proto.equilibration_ps)
    label, ref_label = " ".join(model), " ".join(reference)
    res["model"], res["reference"]["committee"], res["protocol"] = label, ref_label, proto.name
    res["models"] = {s.name: model_stamp(src) for s, src in zip(model_sets, models)}
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    print_score(res, label, ref_label, proto.name)
