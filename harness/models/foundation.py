"""Foundation (universal, pretrained) models, offline (issue #17; SCIENCE.md §9).

Nothing is downloaded at run time. A model is either **shipped inside a registry package** (its weights are
part of the wheel: SevenNet-0 in ``sevenn``; CHGNet in ``chgnet`` when installed) and known by name, or a
**file the user puts in place** (MACE-MP-0, MACE-OFF23, ...: downloaded once by hand, on a machine with
internet, into the models folder; ``HARNESS_MODELS_DIR``, default ``~/.cache/harness/models``). A shipped
model's weights are checked against the SHA-256 recorded here for the pinned package version; a user file
is checked against a hash given with it (``sha256:`` in a sweep spec) and its hash is always recorded.

Any model may carry a D3(BJ) dispersion term (``d3``: the functional of its training data, e.g. ``pbe``),
computed offline by ``dftd3`` (simple-dftd3) and added with ASE's ``SumCalculator``: the universal models
trained on PBE data lack dispersion, which a molecular liquid's density depends on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from harness.errors import InputError

__all__ = ["Foundation", "FOUNDATIONS", "d3_calculator", "foundation_calculator", "foundation_stamp", "models_dir", "weights_file"]


@dataclass(frozen=True)
class Foundation:
    name: str
    family: str  # sevennet | chgnet | mace
    description: str
    package: str  # the pip requirement that provides the code (and, when shipped, the weights)
    training_functional: str  # for D3: the functional of the training labels
    model: str | None = None  # the package's own model name (shipped weights)
    shipped: str | None = None  # path of the weights inside the package
    sha256: str | None = None  # of the weights (shipped: this package version's; file: where published)
    file: str | None = None  # expected file name in the models folder (user-supplied weights)
    url: str | None = None  # where to download it by hand


FOUNDATIONS: dict[str, Foundation] = {f.name: f for f in [
    Foundation("sevennet-0", "sevennet", "SevenNet-0 (11 Jul 2024), MPtrj, 0.84 M parameters, 5 Å cutoff",
               "sevenn==0.10.4", "pbe", model="7net-0",
               shipped="pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
               sha256="7052cb42b7b3be42b40b97fa0d21077a48c54b5548948fc4dcf346629f813c36"),
    Foundation("sevennet-0-22may2024", "sevennet", "SevenNet-0 (22 May 2024), MPtrj",
               "sevenn==0.10.4", "pbe", model="7net-0_22May2024",
               shipped="pretrained_potentials/SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
               sha256="5d389fafd512e6ae2830d74d0b66ffc49a55d3832653ff8e7bf7f1343013c1d1"),
    Foundation("sevennet-l3i5", "sevennet", "SevenNet-l3i5 (l_max 3, 5 interactions), MPtrj",
               "sevenn==0.10.4", "pbe", model="7net-l3i5",
               shipped="pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
               sha256="a7ff190d41efe5b8317a03d20a468e4036a1a3e64e0b14fdbab64ac3f4bfc09d"),
    Foundation("chgnet-0.3.0", "chgnet", "CHGNet 0.3.0, MPtrj (needs `pip install chgnet==0.4.2`; pulls pymatgen)",
               "chgnet==0.4.2", "pbe", model="0.3.0",
               shipped="pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar"),
    Foundation("mace-mp-0-small", "mace", "MACE-MP-0 small, MPtrj (user-supplied file)", "mace-torch==0.3.16", "pbe",
               file="2023-12-10-mace-128-L0_energy_epoch-249.model",
               url="https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/2023-12-10-mace-128-L0_energy_epoch-249.model"),
    Foundation("mace-mp-0-medium", "mace", "MACE-MP-0 medium, MPtrj (user-supplied file)", "mace-torch==0.3.16", "pbe",
               file="2023-12-03-mace-128-L1_epoch-199.model",
               url="https://github.com/ACEsuit/mace-mp/releases/download/mace_mp_0/2023-12-03-mace-128-L1_epoch-199.model"),
    Foundation("mace-off23-small", "mace", "MACE-OFF23 small, SPICE ωB97M-D3(BJ) organic molecules (user-supplied "
               "file; already includes dispersion: no d3)", "mace-torch==0.3.16", "wb97m-d3bj",
               file="MACE-OFF23_small.model",
               url="https://github.com/ACEsuit/mace-off/raw/main/mace_off23/MACE-OFF23_small.model"),
    Foundation("mace-off23-medium", "mace", "MACE-OFF23 medium, SPICE ωB97M-D3(BJ) (user-supplied file)",
               "mace-torch==0.3.16", "wb97m-d3bj", file="MACE-OFF23_medium.model",
               url="https://github.com/ACEsuit/mace-off/raw/main/mace_off23/MACE-OFF23_medium.model"),
]}


def models_dir() -> Path:
    """Where user-supplied foundation weights live: ``$HARNESS_MODELS_DIR``, else ``~/.cache/harness/models``."""
    return Path(os.environ.get("HARNESS_MODELS_DIR") or Path.home() / ".cache" / "harness" / "models")


def get(name: str) -> Foundation:
    try:
        return FOUNDATIONS[name]
    except KeyError:
        raise InputError(f"unknown foundation model {name!r}; known: {', '.join(FOUNDATIONS)} "
                         "(any other model file: give it as a file, e.g. -m path/to/model.model)") from None


def _package_dir(f: Foundation) -> Path:
    import importlib.util

    module = {"sevennet": "sevenn", "chgnet": "chgnet"}[f.family]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"foundation model {f.name}: its package is not installed (pip install '{f.package}')")
    return Path(list(spec.submodule_search_locations)[0])


def weights_file(f: Foundation, *, sha256: str | None = None) -> Path:
    """The weights of ``f`` on this machine, checked: shipped weights against the recorded hash, a user file
    against ``sha256`` (or the recorded one). A missing file is an error saying where to put it."""
    return _checked_weights(f, sha256)[0]


def _checked_weights(f: Foundation, sha256: str | None) -> tuple[Path, str]:
    """(path, SHA-256) of ``f``'s weights, read once."""
    from harness.io import sha256_file

    if f.shipped:
        path = _package_dir(f) / f.shipped
        if not path.is_file():
            raise InputError(f"foundation model {f.name}: {path} is missing from the installed package "
                             f"(reinstall '{f.package}')")
    else:
        path = models_dir() / f.file
        if not path.is_file():
            raise InputError(f"foundation model {f.name}: weights not found at {path}. Models are never downloaded "
                             f"at run time: download {f.url} on a machine with internet and put it there (or set "
                             f"HARNESS_MODELS_DIR to the folder holding {f.file})")
    got, want = sha256_file(path), sha256 or f.sha256
    if want is not None and got != want:
        raise InputError(f"foundation model {f.name}: {path} has SHA-256 {got}, expected {want} "
                         "(another version of the weights, or a damaged file)")
    return path, got


def d3_calculator(functional: str, d3: str | bool) -> Calculator:
    """dftd3's D3(BJ) term for ``functional`` (``d3`` true), or for the functional ``d3`` names."""
    try:
        from dftd3.ase import DFTD3
    except ImportError:
        raise InputError("d3: the dftd3 package is not installed (pip install dftd3==1.7.0)") from None
    method = functional if d3 is True else str(d3)
    if method.lower().startswith("wb97m"):
        raise InputError("d3: this model's training data (ωB97M-D3(BJ)) already include dispersion")
    try:
        return DFTD3(method=method.upper(), damping="d3bj")
    except Exception as exc:
        raise InputError(f"d3: no D3(BJ) parameters for {method!r} ({exc})") from None


def foundation_calculator(name: str, *, device: str = "cpu", options: dict[str, Any] | None = None) -> Calculator:
    """The ASE calculator of foundation model ``name`` (options: ``d3`` — true for the model's own training
    functional, or a functional name; ``sha256`` — the expected hash of a user-supplied file; ``dtype`` —
    float32/float64 for MACE files)."""
    options = dict(options or {})
    unknown = set(options) - {"d3", "sha256", "dtype"}
    if unknown:
        raise InputError(f"foundation model {name}: unknown option(s) {', '.join(sorted(unknown))} "
                         "(known: d3, sha256, dtype)")
    f = get(name)
    path = weights_file(f, sha256=options.get("sha256"))
    from harness.models.compat import torch_weights_only_workaround

    torch_weights_only_workaround()  # e3nn 0.4.4 constants and the packages' own checkpoints under torch >= 2.6
    if f.family == "sevennet":
        from sevenn.calculator import SevenNetCalculator

        calc: Calculator = SevenNetCalculator(model=str(path), device=device)
    elif f.family == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        calc = CHGNetCalculator(model=CHGNet.from_file(str(path)), use_device=device)
    else:
        from mace.calculators import MACECalculator

        calc = MACECalculator(model_paths=str(path), device=device, default_dtype=options.get("dtype", "float64"))
    if options.get("d3"):
        from ase.calculators.mixing import SumCalculator

        calc = SumCalculator([calc, d3_calculator(f.training_functional, options["d3"])])
    return calc


def foundation_stamp(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance: the model, its weights file and SHA-256, the package versions, the D3 term."""
    from harness.provenance import versions

    f = get(name)
    path, digest = _checked_weights(f, (options or {}).get("sha256"))
    groups = ("core", f.family, *(("d3",) if (options or {}).get("d3") else ()))
    return {"kind": "foundation", "arch": f.family, "name": f.name, "description": f.description,
            "file": str(path), "sha256": digest, "options": dict(options or {}),
            "versions": versions(*groups)}
