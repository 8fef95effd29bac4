"""Any model as an ASE calculator, with its provenance: the one place models are loaded.

A :class:`ModelSource` names one model — a member trained by the harness (its directory), a model
file trained elsewhere (a MACE ``.model``, a DeePMD ``.pth``/``.pb``, a GAP ``.xml``) or any ASE
calculator (``ase:package.module.Class`` with keyword options). :func:`load_model` gives its ASE
calculator; :func:`model_stamp` its provenance (architecture, file SHA-256, package versions, as
janus-core stamps its models), which every trajectory and score records; :func:`run_name` the name of
its MD runs. MD receives the calculator and never imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ase.calculators.calculator import Calculator
from pydantic import Field, model_validator

from harness.config import HarnessModel
from harness.errors import InputError
from harness.models.base import ARCHITECTURES, MODEL_SUFFIXES, ModelArtifact, get_trainer

__all__ = ["ModelSource", "LoadedModel", "load_model", "load_committee", "model_stamp", "run_name", "sources_from_cli",
           "committee_sources", "committee_info", "model_calculator", "arch_of_file"]

logger = logging.getLogger(__name__)


class ModelSource(HarnessModel):
    """One model: a trained member (``member``), a model file (``file``), an ASE calculator (``ase``) or a
    foundation model known by name (``foundation``: :mod:`harness.models.foundation`; ``options``: d3, sha256)."""

    kind: Literal["member", "file", "ase", "foundation"]
    path: str | None = Field(None, description="member directory (member) or model file (file)")
    arch: str | None = Field(None, description="architecture of a model file (default: from its suffix)")
    calculator: str | None = Field(None, description="ase:package.module.Class (ase)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the ASE calculator")
    dtype: str = Field("float64", pattern="^(float32|float64)$", description="evaluation precision of a file")
    name: str | None = Field(None, description="foundation model name (foundation)")

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "foundation":
            from harness.models.foundation import get

            object.__setattr__(self, "arch", get(self.name or "").family)  # an unknown name: the known ones
            return self
        if self.kind in ("member", "file") and not self.path:
            raise ValueError(f"a {self.kind} model needs a path")
        if self.kind == "ase" and not (self.calculator or "").startswith("ase:"):
            raise ValueError(f"an ASE model needs calculator: ase:package.module.Class, got {self.calculator!r}")
        if self.kind == "file":
            arch = self.arch or arch_of_file(self.path)
            if arch not in ARCHITECTURES:
                raise ValueError(f"unknown architecture {arch!r} of {self.path}; known: {', '.join(ARCHITECTURES)}")
            object.__setattr__(self, "arch", arch)
        return self


def arch_of_file(path: str | Path, arch: str | None = None) -> str:
    """The architecture of a model file: ``arch`` when given, else from the suffix (InputError if unknown)."""
    if arch:
        return arch
    suffix = Path(path).suffix
    for a, suffixes in MODEL_SUFFIXES.items():
        if suffix in suffixes:
            return a
    known = ", ".join(f"{s} ({a})" for a, ss in MODEL_SUFFIXES.items() for s in ss)
    raise InputError(f"{path}: cannot tell the architecture from the suffix {suffix!r} (known: {known}); give --arch")


@dataclass
class LoadedModel:
    calculator: Calculator
    species: tuple[str, ...] | None  # elements the model was trained on, when known
    stamp: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    from harness.io import sha256_file

    return sha256_file(path)


def _member(path: str | Path) -> ModelArtifact:
    art = ModelArtifact.load(path)
    if art.status != "ok":
        raise InputError(f"{path}: this member failed to train ({(art.error or '').splitlines()[0]})")
    art.verify()
    return art


def _ase(src: ModelSource):
    from harness.reference.ase_calc import ASECalculatorOracle

    return ASECalculatorOracle(src.calculator[4:], src.options, role="model")


def model_stamp(src: ModelSource) -> dict[str, Any]:
    """Provenance of a model: kind, architecture, file and its SHA-256, package versions (or the ASE
    calculator's import path, options and package version)."""
    from harness.provenance import versions

    if src.kind == "member":
        art = _member(src.path)
        return {"kind": "member", "arch": art.arch, "file": str(Path(art.workdir) / art.files["model"]) if "model" in art.files else None,
                "sha256": art.file_sha256.get("model"), "versions": art.versions, "preset": art.preset,
                "seed": art.seed, "member_dir": art.workdir}
    if src.kind == "file":
        path = Path(src.path)
        if not path.is_file():
            raise InputError(f"model file {path}: no such file")
        d3 = _file_d3(src)
        return {"kind": "file", "arch": src.arch, "file": str(path.resolve()), "sha256": _sha256(path),
                "versions": versions("core", src.arch, *(("d3",) if d3 else ())), "dtype": src.dtype,
                **({"d3": d3} if d3 else {})}
    if src.kind == "foundation":
        from harness.models.foundation import foundation_stamp

        return foundation_stamp(src.name, src.options)
    prov = _ase(src).provenance()
    return {"kind": "ase", "arch": "ase", "calculator": src.calculator, "options": src.options,
            "versions": {prov["code"]: prov["version"]}}


def run_name(src: ModelSource, stamp: dict[str, Any] | None = None) -> str:
    """Name of a model's MD runs (``<workspace>/md/<name>/...``): a member's is its workspace path
    (:func:`harness.models.train.model_run_name`), a file's its architecture, stem and content hash, an
    ASE calculator's its class and a hash of its options."""
    from harness.models.train import model_run_name

    if src.kind == "member":
        return model_run_name(src.path)
    if src.kind == "file":
        sha = (stamp or {}).get("sha256") or _sha256(Path(src.path))
        stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(src.path).stem)
        d3 = _file_d3(src)
        return f"{src.arch}-file-{stem}-{sha[:10]}" + (f"+d3-{re.sub(r'[^A-Za-z0-9_.-]', '_', d3)}" if d3 else "")
    opts = hashlib.sha256(json.dumps(src.options, sort_keys=True, default=str).encode()).hexdigest()[:10]
    if src.kind == "foundation":
        return f"foundation-{src.name}-{opts}"
    return f"ase-{src.calculator.rsplit('.', 1)[-1]}-{opts}"


def _file_d3(src: ModelSource) -> str | None:
    """A model file's D3(BJ) term (``options: {d3: FUNCTIONAL}``, the functional of its training data), or None."""
    unknown = set(src.options) - {"d3"}
    if unknown:
        raise InputError(f"model file {src.path}: unknown option(s) {', '.join(sorted(unknown))} (a model file "
                         "takes d3: the functional of its training data)")
    d3 = src.options.get("d3")
    if d3 in (None, False):
        return None
    if not isinstance(d3, str):
        raise InputError(f"model file {src.path}: d3 takes the functional of the model's training data (e.g. "
                         f"d3: pbe), not {d3!r}: the harness cannot tell it from the file")
    return d3


def load_model(src: ModelSource, *, device: str = "cpu") -> LoadedModel:
    """The ASE calculator of a model and the elements it knows (when known). The provenance stamp is
    :func:`model_stamp`'s (a sweep stamps each model once, in its ``model``/``train`` task, not per run)."""
    if src.kind == "member":
        art = _member(src.path)
        return LoadedModel(get_trainer(art.arch).calculator(art, device=device), tuple(art.species) or None)
    if src.kind == "file":
        d3 = _file_d3(src)
        try:
            calc = get_trainer(src.arch).load_file(src.path, device=device, dtype=src.dtype)
        except InputError:
            raise
        except Exception as exc:  # the backend could not read it: say which file and as what
            raise InputError(f"model file {src.path}: cannot load it as a {src.arch} model "
                             f"({type(exc).__name__}: {exc})") from None
        if d3:
            from ase.calculators.mixing import SumCalculator

            from harness.models.foundation import d3_calculator

            calc = SumCalculator([calc, d3_calculator(d3, d3)])
        return LoadedModel(calc, None)
    if src.kind == "foundation":
        from harness.models.foundation import foundation_calculator

        return LoadedModel(foundation_calculator(src.name, device=device, options=src.options), None)
    return LoadedModel(_ase(src).make_calculator(), None)


def load_committee(directory: str | Path, *, device: str = "cpu", members_present: bool = False) -> LoadedModel:
    """A :class:`~harness.models.committee.CommitteeCalculator` over the successfully trained members of a
    committee directory, the union of their elements, and their stamps (``members_present``:
    :func:`committee_sources`)."""
    from harness.models.committee import CommitteeCalculator

    sources = committee_sources(directory, members_present=members_present)
    loaded = [load_model(s, device=device) for s in sources]
    species = sorted({e for m in loaded for e in (m.species or ())})
    calc = CommitteeCalculator([m.calculator for m in loaded], names=[Path(s.path).name for s in sources])
    return LoadedModel(calc, tuple(species) or None, {"committee": [model_stamp(s) for s in sources]})


def committee_info(directory: str | Path) -> dict[str, Any]:
    """The contents of a committee directory's ``committee.json``; InputError when it is missing or damaged."""
    path = Path(directory) / "committee.json"
    if not path.is_file():
        raise InputError(f"{directory}: not a committee directory (no committee.json)")
    from harness.io import read_json_object

    return read_json_object(path, what="a committee description", todo="restore it, or train the committee again")


def _member_order(name: str) -> tuple[int, str]:
    """``member-<i>-seed<s>`` by i (member-10 after member-2), then by name."""
    head = name.removeprefix("member-").split("-", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30, name)


def committee_sources(directory: str | Path, *, members_present: bool = False) -> list[ModelSource]:
    """The successfully trained members of a committee directory (``committee.json``).

    A member that is missing is an InputError naming it: a ``member-*`` folder without ``artifact.json`` (its
    training never finished), or a member ``committee.json`` lists as trained whose folder or artifact is gone.
    ``members_present``: use the members present instead (with a warning). Members that failed to train (their
    artifact says so) are left out either way.
    """
    directory = Path(directory)
    info = committee_info(directory)
    listed = info.get("members") if isinstance(info.get("members"), list) else []
    status = info.get("status") if isinstance(info.get("status"), list) else []
    expected = {str(m) for m, s in zip(listed, [*status, *["ok"] * len(listed)]) if s == "ok"}
    folders = {p.name for p in directory.glob("member-*") if p.is_dir()}
    with_artifact = {p.parent.name for p in directory.glob("*/artifact.json")}
    missing = sorted((expected | folders) - with_artifact)
    if missing:
        why = [f"{m} ({'no artifact.json' if (directory / m).is_dir() else 'listed in committee.json, no folder'})"
               for m in missing]
        if not members_present:
            raise InputError(f"{directory}: committee member(s) missing: {', '.join(why)}; restore them or train the "
                             f"committee again, or give --members-present to use the {len(with_artifact)} present")
        logger.warning("%s: using the members present; missing: %s", directory, ", ".join(why))
    out = []
    for name in sorted(with_artifact, key=_member_order):
        art = ModelArtifact.load(directory / name)
        if art.status == "ok":
            out.append(ModelSource(kind="member", path=str((directory / name).resolve()), arch=art.arch))
    if not out:
        raise InputError(f"{directory}: no successfully trained members")
    return out


def sources_from_cli(models: list[str], *, arch: str | None = None, options: dict[str, Any] | None = None,
                     dtype: str = "float64", members: bool = True, members_present: bool = False) -> list[ModelSource]:
    """Models named on a command line: a committee directory, model files, ``ase:...``, and (``members``)
    trained member directories. A committee (scored as one) is named by its directory, never member by member;
    one missing a member is an error unless ``members_present`` (:func:`committee_sources`)."""
    if not models:
        raise InputError("no model given")
    out: list[ModelSource] = []
    for m in models:
        if m.startswith("ase:"):
            out.append(ModelSource(kind="ase", calculator=m, options=options or {}))
            continue
        if m.startswith("foundation:"):  # foundation:NAME or foundation:NAME+d3
            name, _, extra = m[len("foundation:"):].partition("+")
            if extra not in ("", "d3"):
                raise InputError(f"--model {m}: foundation:NAME or foundation:NAME+d3")
            out.append(ModelSource(kind="foundation", name=name, options={**(options or {}),
                                                                           **({"d3": True} if extra else {})}))
            continue
        p = Path(m)
        if (p / "committee.json").exists():
            out += committee_sources(p, members_present=members_present)
        elif (p / "artifact.json").exists():
            if not members:
                raise InputError(f"--model {m}: not a committee directory (no committee.json): give the committee "
                                 f"{p.parent} or its model files")
            out.append(ModelSource(kind="member", path=str(p.resolve()), arch=ModelArtifact.load(p).arch))
        elif p.is_file():
            out.append(ModelSource(kind="file", path=str(p.resolve()), arch=arch_of_file(p, arch), dtype=dtype))
        else:
            raise InputError(f"--model {m}: neither a trained member (artifact.json), a committee (committee.json), "
                             "a model file, foundation:NAME nor ase:package.module.Class")
    return out


def model_calculator(model: str | Path, *, device: str = "cpu", arch: str | None = None,
                     members_present: bool = False):
    """(calculator, run name, species, provenance stamp) of a trained member, a committee directory (its
    :class:`~harness.models.committee.CommitteeCalculator`; the stamp lists its members'; ``members_present``:
    :func:`committee_sources`) or a model file."""
    from harness.models.train import model_run_name

    model = Path(model)
    if (model / "committee.json").exists():
        c = load_committee(model, device=device, members_present=members_present)
        return c.calculator, model_run_name(model), c.species, c.stamp
    (src,) = sources_from_cli([str(model)], arch=arch)
    loaded, stamp = load_model(src, device=device), model_stamp(src)
    return loaded.calculator, run_name(src, stamp), loaded.species, stamp
