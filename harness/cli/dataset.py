"""``harness dataset build|show|export``: ablation datasets from a YAML definition."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import err, handle_errors

app = typer.Typer(help="Build, inspect and export the ablation datasets defined in datasets/*.yaml.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


@app.command("build")
@handle_errors
def build(
    spec: Path = typer.Argument(..., help="Dataset definition (YAML)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated sources to build (default: all)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."),
) -> None:
    """Sample, label and write the sources of a dataset (resumable: finished samples and labels are reused)."""
    import sys

    from harness.datasets.build import build_dataset
    from harness.datasets.spec import load_dataset_spec

    s = load_dataset_spec(spec)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    manifest = build_dataset(s, only=names, progress=sys.stderr.isatty() if progress is None else progress,
                             say=lambda m: err(m))
    n = sum(v["n_frames"] for v in manifest["sources"].values())
    err(f"dataset {s.name}: {len(manifest['sources'])} sources, {n} labelled frames in {s.data_path}")


@app.command("show")
@handle_errors
def show(
    spec: Path = typer.Argument(..., help="Dataset definition (YAML)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Table of sources (built or not) and of subsets × frame counts × compositions."""
    import json

    from rich.console import Console
    from rich.table import Table

    from harness.datasets.build import load_manifest, source_file
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble

    s = load_dataset_spec(spec)
    manifest = load_manifest(s).get("sources", {})
    rows = []
    for name in [*s.subsets, *s.validation]:
        missing = [src for src in s.source_names(name) if not source_file(s, src).exists()]
        if missing:
            rows.append({"name": name, "role": "training" if name in s.subsets else "validation",
                         "missing": missing})
        else:
            rows.append(assemble(s, name).summary())
    if json_out:
        typer.echo(json.dumps({"dataset": s.name, "sources": manifest, "subsets": rows}, indent=1, default=str))
        return
    console = Console(width=None if Console().is_terminal else 160)
    src_table = Table(title=f"{s.name}: sources ({s.data_path})")
    for col in ("source", "type", "kind", "frames", "compositions", "failed labels", "reference"):
        src_table.add_column(col)
    for name, src in s.sources.items():
        m = manifest.get(name)
        if m and source_file(s, name).exists():
            comps = ", ".join(f"{k}:{v}" for k, v in m["by_composition"].items())
            ref = m.get("reference", {})
            src_table.add_row(name, src.config_type, src.kind, str(m["n_frames"]), comps,
                              str(len(m.get("failed", []))),
                              f"{ref.get('method', 'imported')} {ref.get('code', '')} {ref.get('version', '')}".strip())
        else:
            src_table.add_row(name, src.config_type, src.kind, "not built", "", "", "")
    console.print(src_table)
    sub_table = Table(title="subsets (train/valid split by content hash, "
                            f"valid_fraction {s.split.valid_fraction}, seed {s.split.seed})")
    for col in ("subset", "role", "frames", "train", "valid", "config types", "compositions", "weights"):
        sub_table.add_column(col)
    for r in rows:
        if "missing" in r:
            sub_table.add_row(r["name"], r["role"], f"needs {', '.join(r['missing'])}", "", "", "", "", "")
            continue
        types = ", ".join(f"{k}:{v}" for k, v in r["by_config_type"].items())
        comps = ", ".join(f"{k}:{v}" for k, v in r["by_composition"].items())
        weights = ", ".join(f"{src}×{w:g}" for src, w in r["weighted"]) or "1"
        sub_table.add_row(r["name"], r["role"], str(r["n_frames"]), str(r["n_train"]), str(r["n_valid"]),
                          types, comps, weights)
    console.print(sub_table)


@app.command("export")
@handle_errors
def export(
    spec: Path = typer.Argument(..., help="Dataset definition (YAML)."),
    name: str = typer.Argument(..., help="A subset, validation set or source name."),
    output: str = typer.Option(..., "--output", "-o", help="Output extxyz ('-' for standard output)."),
    split: str = typer.Option("all", "--split", help="all, train or valid."),
) -> None:
    """Write the frames of a subset, validation set or source (with weight and split info) as extxyz."""
    from harness.datasets.build import manifest_file, source_file
    from harness.datasets.spec import load_dataset_spec
    from harness.datasets.subsets import assemble, load_source
    from harness.errors import InputError
    from harness.io import check_output, write_frames

    s = load_dataset_spec(spec)
    inputs = [spec, manifest_file(s), *(source_file(s, src) for src in s.sources)]  # never written over
    check_output(output, inputs=inputs)
    if split not in ("all", "train", "valid"):
        raise InputError(f"--split must be all, train or valid, got {split!r}")
    if name in s.subsets or name in s.validation:
        sub = assemble(s, name)
        frames = {"all": sub.frames, "train": sub.train, "valid": sub.valid}[split]
    elif name in s.sources:
        if split != "all":
            raise InputError("--split applies to subsets, not to sources")
        frames = load_source(s, name)
    else:
        raise InputError(f"unknown subset or source {name!r}; subsets: {', '.join(s.subsets)}; "
                         f"validation: {', '.join(s.validation)}; sources: {', '.join(s.sources)}")
    if not frames:
        raise InputError(f"{name} has no frames in split {split!r}")
    write_frames(output, frames, inputs=inputs)
    err(f"export: {len(frames)} frames of {name} ({split})" + ("" if output == "-" else f" -> {output}"))
