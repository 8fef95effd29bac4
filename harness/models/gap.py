"""GAP backend: ``gap_fit`` (quippy-ase) with a 2-body + turbo-SOAP descriptor set, quippy ``Potential``.

Committee members differ in ``rnd_seed``, which drives the sparse-point selection (the paper's
reference committee). Per-frame weights reach GAP as per-configuration regularisation:
a frame of weight w gets ``energy_sigma``/``force_sigma`` = default / sqrt(w).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers

from harness.errors import InputError
from harness.io import sha256_file, write_frames
from harness.models.base import ModelArtifact, TrainInputs, default_threads, reference_virial, run_tool, training_copy
from harness.provenance import versions
from harness.tools import find_executable

__all__ = ["GAPTrainer", "gap_command", "gap_string"]

PRESETS: dict[str, dict[str, Any]] = {
    # CPU: turbo-SOAP (0.15 s with gradients per 160-atom cell vs 0.69 s for classic SOAP, DESIGN.md),
    # small l_max/alpha_max and few sparse points so that a member fits in about a minute and MD
    # costs well under the 379 ms/step DESIGN.md measured for a full-size SOAP GAP.
    "mini": {
        "two_body": {"cutoff": 4.0, "n_sparse": 15, "delta": 0.5, "theta_uniform": 1.0},
        "soap_turbo": {"rcut_hard": 4.0, "rcut_soft": 3.5, "l_max": 3, "alpha_max": 4, "atom_sigma_r": 0.5,
                       "atom_sigma_t": 0.5, "zeta": 4, "delta": 0.1, "n_sparse": 100},
        "default_sigma": [0.002, 0.1, 0.05, 0.0],
        "sparse_method": "cur_points",
    },
    # converged for this liquid on CPU cores (issue #13): the paper's descriptor family with a 2-body term,
    # turbo-SOAP l_max 4 / alpha_max 6 in 4.5 Å and 500 sparse environments per species (fit <= 15 min
    # on one core for ~480 Full frames; the kernel adds little to MD, which the descriptor dominates)
    "study": {
        "two_body": {"cutoff": 5.0, "n_sparse": 20, "delta": 0.5, "theta_uniform": 1.0},
        "soap_turbo": {"rcut_hard": 4.5, "rcut_soft": 4.0, "l_max": 4, "alpha_max": 6, "atom_sigma_r": 0.5,
                       "atom_sigma_t": 0.5, "zeta": 4, "delta": 0.1, "n_sparse": 500},
        "default_sigma": [0.002, 0.05, 0.05, 0.0],
        "sparse_method": "cur_points",
    },
    # the best this 2-core CPU affords (issue #13 item 7): study's 2-body term and sigmas, turbo-SOAP l_max 4 /
    # alpha_max 5 in 4.0 Å with 400 sparse environments per species. Measured on Full (~480 frames): a fit in
    # minutes on one core, ~0.3 s per 160-atom MD step (study: 13 min, ~0.6 s)
    "cpu": {
        "two_body": {"cutoff": 5.0, "n_sparse": 20, "delta": 0.5, "theta_uniform": 1.0},
        "soap_turbo": {"rcut_hard": 4.0, "rcut_soft": 3.5, "l_max": 4, "alpha_max": 5, "atom_sigma_r": 0.5,
                       "atom_sigma_t": 0.5, "zeta": 4, "delta": 0.1, "n_sparse": 400},
        "default_sigma": [0.002, 0.05, 0.05, 0.0],
        "sparse_method": "cur_points",
    },
    # the paper's descriptor family at practitioner size
    "paper": {
        "two_body": {"cutoff": 5.0, "n_sparse": 20, "delta": 0.5, "theta_uniform": 1.0},
        "soap_turbo": {"rcut_hard": 5.0, "rcut_soft": 4.5, "l_max": 4, "alpha_max": 8, "atom_sigma_r": 0.5,
                       "atom_sigma_t": 0.5, "zeta": 4, "delta": 0.1, "n_sparse": 2000},
        "default_sigma": [0.001, 0.05, 0.05, 0.0],
        "sparse_method": "cur_points",
    },
}

_KNOWN = {"two_body", "soap_turbo", "default_sigma", "sparse_method", "extra_args"}


def gap_string(hp: dict[str, Any], species: tuple[str, ...]) -> str:
    """The ``gap={...}`` descriptor definition for the species present."""
    z = [atomic_numbers[s] for s in species]
    n = len(z)
    tb = hp["two_body"]
    parts = [f"distance_2b cutoff={tb['cutoff']} cutoff_transition_width=0.5 covariance_type=ard_se "
             f"delta={tb['delta']} theta_uniform={tb['theta_uniform']} n_sparse={tb['n_sparse']} "
             f"sparse_method=uniform add_species=T"]
    st = hp["soap_turbo"]
    # arrays inside gap={...} need doubled braces, or gap_fit reads only their first field.
    # One soap_turbo per central species with add_species=F: gap_fit's default (T) expands *each* of them
    # into one copy per species, i.e. n x n descriptors (3 identical sets for H, C, O), tripling the fit's
    # memory and time and the MD cost
    vec = lambda v: "{{" + " ".join(str(v) for _ in range(n)) + "}}"  # noqa: E731
    for k in range(1, n + 1):
        parts.append(
            f"soap_turbo l_max={st['l_max']} alpha_max={vec(st['alpha_max'])} atom_sigma_r={vec(st['atom_sigma_r'])} "
            f"atom_sigma_t={vec(st['atom_sigma_t'])} atom_sigma_r_scaling={vec(0.0)} atom_sigma_t_scaling={vec(0.0)} "
            f"amplitude_scaling={vec(1.0)} central_weight={vec(1.0)} rcut_hard={st['rcut_hard']} "
            f"rcut_soft={st['rcut_soft']} basis=poly3gauss scaling_mode=polynomial radial_enhancement=1 "
            f"compress_mode=trivial species_Z={{{{{' '.join(map(str, z))}}}}} n_species={n} central_index={k} add_species=F "
            f"covariance_type=dot_product zeta={st['zeta']} delta={st['delta']} n_sparse={st['n_sparse']} "
            f"sparse_method={hp['sparse_method']}")
    return "{" + " : ".join(parts) + "}"


class GAPTrainer:
    name = "gap"

    def presets(self) -> dict[str, dict[str, Any]]:
        return PRESETS

    def train(self, inputs: TrainInputs, hyperparameters: dict[str, Any], workdir: Path) -> ModelArtifact:
        unknown = set(hyperparameters) - _KNOWN - {"dtype"}
        if unknown:
            raise InputError(f"gap: unknown hyperparameter(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(_KNOWN))} (extra_args passes gap_fit options through)")
        hp = dict(hyperparameters)
        hp.pop("dtype", None)
        args = gap_command(inputs, hp, workdir)
        env = {"OMP_NUM_THREADS": str(inputs.threads or default_threads())}  # gap_fit's OpenBLAS threads
        seconds = run_tool(args, cwd=workdir, log=workdir / "train.log", env=env)
        model = workdir / "gap.xml"
        files = {"model": "gap.xml"}
        shas = {"model": sha256_file(model)}
        for k, extra in enumerate(sorted(workdir.glob("gap.xml.sparseX.*"))):
            files[f"sparse{k}"] = extra.name
            shas[f"sparse{k}"] = sha256_file(extra)
        return ModelArtifact(arch="gap", preset="", seed=inputs.seed, workdir=str(workdir), files=files,
                             file_sha256=shas, hyperparameters=hyperparameters,
                             kept_model={"file": "gap.xml", "reason": "closed-form fit: gap_fit writes one model"},
                             e0={"method": "isolated_atoms" if inputs.e0 else "average", "values": inputs.e0 or {}},
                             device="cpu", dtype="float64", versions=versions("core", "gap"),
                             train_seconds=seconds, log="train.log")

    def calculator(self, artifact: ModelArtifact, *, device: str = "cpu") -> Calculator:
        return self.load_file(artifact.path("model"), device=device, dtype=artifact.dtype)

    def load_file(self, path: str | Path, *, device: str = "cpu", dtype: str = "float64") -> Calculator:
        _check_gap_xml(Path(path))
        return _gap_potential(str(path))


def gap_command(inputs: TrainInputs, hp: dict[str, Any], workdir: Path) -> list[str]:
    """The ``gap_fit`` command for ``inputs`` (train.xyz written in ``workdir``): energies, forces and the
    virials of periodic frames (``REF_virial`` = -V·sigma, regularised by ``default_sigma``'s third entry, as
    every backend trains on them: SCIENCE.md §11)."""
    sig = hp["default_sigma"]
    frames = []
    for a in inputs.train:
        w = float(a.info.get("weight", 1.0))
        b = training_copy(a, ("REF_energy", "config_type"))
        virial = reference_virial(a)
        if virial is not None:
            b.info["REF_virial"] = virial
        if w != 1.0:
            b.info["energy_sigma"] = sig[0] / math.sqrt(w)
            b.info["force_sigma"] = sig[1] / math.sqrt(w)
            b.info["virial_sigma"] = sig[2] / math.sqrt(w)
        if not b.pbc.any():
            # gap_fit needs a cell; a big one for isolated molecules (cut-offs are < 6 Å)
            b.cell = [40.0, 40.0, 40.0]
            b.center()
        frames.append(b)
    write_frames(workdir / "train.xyz", frames)
    args = [find_executable("gap_fit", env_var="HARNESS_GAP_FIT"), "at_file=train.xyz",
            f"gap={gap_string(hp, inputs.species)}",
            "default_sigma={" + " ".join(str(s) for s in sig) + "}",
            "energy_parameter_name=REF_energy", "force_parameter_name=REF_forces",
            "virial_parameter_name=REF_virial", "stress_parameter_name=NONE", "sparse_jitter=1e-8",
            f"rnd_seed={inputs.seed + 1}", "gp_file=gap.xml", "do_copy_at_file=F"]  # gap_fit refuses seed 0
    if inputs.e0:
        args.append("e0={" + ":".join(f"{s}:{e}" for s, e in inputs.e0.items()) + "}")
    else:
        args.append("e0_method=average")
    return args + list(hp.get("extra_args", []))


def _check_gap_xml(path: Path) -> None:
    """Refuse a file that is not a GAP potential before quippy reads it: its XML parser (FoX) stops the
    whole process, with exit status 0, on malformed XML."""
    import xml.etree.ElementTree as ET

    from harness.errors import InputError

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: not a GAP potential file (XML: {exc})") from None
    if next(root.iter("Potential"), None) is None:
        raise InputError(f"{path}: not a GAP potential file (no <Potential> element)")


def _gap_potential(path: str) -> Calculator:
    """quippy's Potential, computing forces and stress in one pass once stress has been asked for.

    ASE's NPT integrators call ``get_forces`` and ``get_stress`` separately; plain ``Potential`` then
    evaluates the GAP twice per step (0.72 s vs 0.31 s per 160-atom step on one core, measured).
    """
    from quippy.potential import Potential

    class _Potential(Potential):
        _with_stress = False

        def calculate(self, atoms=None, properties=None, system_changes=None, *args, **kwargs):
            props = list(properties or ["energy", "forces"])
            if "stress" in props:
                self._with_stress = True
            if self._with_stress and atoms is not None and atoms.pbc.all():
                props = list(dict.fromkeys([*props, "energy", "forces", "stress"]))
            return super().calculate(atoms, props, system_changes, *args, **kwargs)

    return _Potential(param_filename=path)
