"""Wheels for an offline install on a compute node (``make wheelhouse``; no index needed to install).

Compute nodes often have no internet. This collects, for a target Python version and platform, the wheels
of the harness and of exactly the distributions the chosen backends need, pinned to the versions of this
environment (``requirements/lock.txt``): the dependency closure of the project's core requirements plus
the backends' (``gap``: quippy-ase; ``deepmd``: deepmd-kit, mpich, torch; ``mace``: mace-torch, torch;
``sevennet``: sevenn, torch, the foundation models shipped in a wheel),
read from the installed distributions' metadata. ``--exclude`` leaves out what the node already has
(e.g. its own CUDA build of torch) together with everything only it needs. Writes ``requirements.txt``
beside the wheels and prints their total size.

    python -m harness.wheelhouse --dest wheelhouse --python 3.12 --backends mace,deepmd --exclude torch
    # on the node:  python -m venv .venv && .venv/bin/pip install --no-index --find-links wheelhouse \\
    #                   -r wheelhouse/requirements.txt && .venv/bin/pip install --no-index --no-deps wheelhouse/liquid_mlip_harness-*.whl
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

__all__ = ["BACKENDS", "select", "uncovered", "build", "main"]

PROJECT = "liquid-mlip-harness"
#: distributions each backend adds to the core (the project's other requirements)
#: (TorchSim, the batched MD engine of the torch models, comes with them: harness.md.torchsim)
BACKENDS: dict[str, tuple[str, ...]] = {"gap": ("quippy-ase",),
                                        "deepmd": ("deepmd-kit", "mpich", "torch", "torch-sim-atomistic"),
                                        "mace": ("mace-torch", "torch", "torch-sim-atomistic"),
                                        # the foundation models shipped in a wheel (harness.models.foundation)
                                        "sevennet": ("sevenn", "torch")}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: str, env: dict[str, str]) -> list[str]:
    out = []
    for spec in metadata.requires(dist) or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.append(_canon(req.name))
    return out


def select(backends: list[str], exclude: list[str] = (), *, python: str | None = None,
           core: list[str] | None = None) -> dict[str, str]:
    """``{distribution: version}`` to ship: the closure of the core and ``backends`` minus ``exclude`` (and
    what only the excluded need). Markers are evaluated for ``python`` (default: this interpreter). ``core``:
    these distributions in place of the project's own requirements (a bundle for one job, e.g. the GPU node's
    benchmark, run from a source tree)."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    env = dict(default_environment())
    if python:
        env.update(python_version=python, python_full_version=f"{python}.0")
    all_backend = {_canon(d) for ds in BACKENDS.values() for d in ds}
    chosen = {_canon(d) for b in backends for d in BACKENDS[b]}
    base = [_canon(d) for d in core] if core is not None else _requires(PROJECT, env)
    top = [d for d in base if d not in all_backend or d in chosen] + sorted(chosen)
    skip = {_canon(e) for e in exclude}
    pins: dict[str, str] = {}
    stack = [d for d in top if d not in skip]
    while stack:
        name = stack.pop()
        if name in pins or name in skip:
            continue
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise ValueError(f"{name} is required but not installed here: run `make install` first") from None
        stack += [d for d in _requires(name, env) if d not in pins]
    return dict(sorted(pins.items()))


def uncovered(used: list[str], backends: list[str], exclude: list[str] = (), *, python: str | None = None,
              core: list[str] | None = None) -> list[str]:
    """The distributions in ``used`` (what a job imported) that a bundle would neither ship nor find on the node
    (``exclude``): a bundle that would fail there at import time, found before it travels."""
    have = set(select(backends, exclude, python=python, core=core)) | {_canon(e) for e in exclude}
    return sorted({_canon(u) for u in used} - have - {_canon(PROJECT)})


def _platforms(platform: str) -> list[str]:
    """A manylinux tag and every older one it accepts (pip needs them listed with --python-version)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    tags = [f"manylinux_2_{v}_{arch}" for v in range(glibc, 16, -1)]
    return tags + [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}", f"linux_{arch}"]


def build(dest: Path, backends: list[str], exclude: list[str] = (), *, python: str | None = None,
          platform: str = "manylinux_2_34_x86_64", project_root: Path | None = None,
          core: list[str] | None = None) -> tuple[dict[str, str], int]:
    """Download the selected wheels (and build the harness's own) into ``dest``; returns (pins, total bytes)."""
    dest.mkdir(parents=True, exist_ok=True)
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = select(backends, exclude, python=python, core=core)
    pip = [sys.executable, "-m", "pip"]
    target = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
              *[a for p in _platforms(platform) for a in ("--platform", p)]]
    reqs = [f"{n}=={v}" for n, v in pins.items()]
    done = subprocess.run([*pip, "download", "--quiet", "--no-deps", "-d", str(dest), *target, *reqs])
    if done.returncode != 0:  # find which have no wheel for the target; pure-Python ones are built here
        for r in reqs:
            one = subprocess.run([*pip, "download", "--quiet", "--no-deps", "-d", str(dest), *target, r],
                                 capture_output=True, text=True)
            if one.returncode != 0:
                built = subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(dest), r],
                                       capture_output=True, text=True)
                if built.returncode != 0:
                    raise RuntimeError(f"no wheel of {r} for Python {python} on {platform}:\n{one.stderr[-800:]}")
    root = project_root or Path(__file__).resolve().parents[1]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(dest), str(root)],
                   check=True)
    (dest / "requirements.txt").write_text("".join(f"{r}\n" for r in reqs))
    total = sum(p.stat().st_size for p in dest.glob("*.whl"))
    return pins, total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.wheelhouse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=Path("wheelhouse"))
    p.add_argument("--python", default=None, help="target Python version, e.g. 3.12 (default: this one)")
    p.add_argument("--platform", default="manylinux_2_34_x86_64", help="target platform tag (newest glibc)")
    p.add_argument("--backends", default="gap,deepmd,mace,sevennet",
                   help="comma-separated: gap, deepmd, mace, sevennet (or none)")
    p.add_argument("--exclude", default="", help="comma-separated distributions the node already has, e.g. torch")
    p.add_argument("--core", default=None, help="comma-separated distributions in place of the project's own "
                   "requirements (a bundle for one job run from a source tree)")
    p.add_argument("--check", type=Path, default=None, help="no download: check that the bundle covers the "
                   "'distributions' a job's JSON lists (benchmarks/gpu_md.py --json); exit 1 naming what is missing")
    p.add_argument("--optional", default="", help="with --check: comma-separated distributions the job imports "
                   "where installed and does without (e.g. numpy's optional charset-normalizer)")
    a = p.parse_args(argv)
    backends = [b for b in a.backends.split(",") if b and b != "none"]
    core = [c for c in a.core.split(",") if c] if a.core is not None else None
    exclude = [e for e in a.exclude.split(",") if e]
    if a.check is not None:
        import json

        used = json.loads(a.check.read_text())["distributions"]
        missing = uncovered(used, backends, [*exclude, *(o for o in a.optional.split(",") if o)], python=a.python,
                            core=core)
        if missing:
            print(f"wheelhouse: {a.check} imported {', '.join(missing)}: neither in the bundle nor on the node",
                  file=sys.stderr)
            return 1
        print(f"wheelhouse: the bundle covers the {len(used)} distributions {a.check} imported")
        return 0
    try:
        pins, total = build(a.dest, backends, exclude, python=a.python, platform=a.platform, core=core)
    except (ValueError, RuntimeError) as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 2
    print(f"{a.dest}: {len(pins)} distributions + the harness, {total / 2**20:.1f} MiB of wheels "
          f"(backends: {', '.join(backends) or 'none'}; excluded: {a.exclude or 'nothing'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
