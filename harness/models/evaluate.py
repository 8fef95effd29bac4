"""Errors of a model on labelled frames (``harness evaluate``; issue #16 item 1; SCIENCE.md §9).

Energies in meV/atom, force components in meV/Å, stress components in meV/Å³, each as RMSE and MAE, over
all frames and per ``config_type`` and per composition (the frame's ``composition`` info, else its
chemical formula). A committee (:class:`~harness.models.committee.CommitteeCalculator`) also gives its
predicted uncertainty per atom (the root of the per-atom force variance summed over components, eV/Å)
beside the actual error of its mean force (the norm of the error vector): the calibration data.

Labels are read with a key mapping and an energy unit as in a dataset's import sources; a frame without a
label, with non-finite labels or with an element the model never saw is an error naming the file, frame
and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from harness.errors import InputError
from harness.units import ENERGY_UNITS_EV

__all__ = ["Prediction", "read_labelled", "predict", "error_table", "calibration"]


@dataclass
class Prediction:
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None  # Voigt, eV/Å³
    force_sigma: np.ndarray | None = None  # per atom, eV/Å (committees)
    extra: dict[str, Any] = field(default_factory=dict)


def read_labelled(path: str | Path, *, energy_key: str = "REF_energy", forces_key: str = "REF_forces",
                  stress_key: str = "REF_stress", energy_unit: str = "eV") -> list[Atoms]:
    """Frames of ``path`` with their labels as ``REF_energy`` (eV), ``REF_forces`` (eV/Å) and, for periodic
    frames that have one, ``REF_stress`` (Voigt, eV/Å³), mapped as in a dataset's import sources
    (:func:`harness.io.labelled`)."""
    from ase.stress import full_3x3_to_voigt_6_stress

    from harness.io import labelled, read_frames

    if energy_unit not in ENERGY_UNITS_EV:
        raise InputError(f"energy unit {energy_unit!r}: one of {', '.join(ENERGY_UNITS_EV)}")
    out = []
    for k, a in enumerate(read_frames(path)):
        where = f"{path}: frame {k}"
        b = labelled(a, where=where, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                     scale=ENERGY_UNITS_EV[energy_unit], hint="give --energy-key/--forces-key")
        if "REF_stress" in b.info:
            s = b.info["REF_stress"]
            if s.size not in (6, 9):
                raise InputError(f"{where}: {stress_key} has {s.size} values, expected 6 (Voigt) or 9")
            b.info["REF_stress"] = full_3x3_to_voigt_6_stress(s.reshape(3, 3)) if s.size == 9 else s
        out.append(b)
    return out


def predict(calc: Calculator, frames: Sequence[Atoms], *, species: Sequence[str] | None = None,
            where: str = "data", stress: bool = True) -> list[Prediction]:
    """The model's energy, forces, stress (periodic frames with a stress label, unless ``stress`` is off) and
    committee spread on every frame."""
    out = []
    for k, a in enumerate(frames):
        if species is not None:
            unseen = sorted(set(a.get_chemical_symbols()) - set(species))
            if unseen:
                raise InputError(f"{where}: frame {k} has element(s) {', '.join(unseen)} the model never saw "
                                 f"(it knows {', '.join(species)})")
        b = a.copy()
        b.calc = calc
        energy = float(b.get_potential_energy())
        forces = np.array(b.get_forces(apply_constraint=False))
        s = np.array(b.get_stress()) if stress and a.pbc.all() and "REF_stress" in a.info else None
        finite = np.isfinite(energy) and np.isfinite(forces).all() and (s is None or np.isfinite(s).all())
        if not finite:
            raise InputError(f"{where}: frame {k}: the model predicts a non-finite energy, force or stress "
                             "(a diverged or corrupt model, or a geometry far outside its training)")
        res = getattr(calc, "results", {})
        sigma = np.sqrt(np.sum(res["forces_var"], axis=1)) if "forces_var" in res else None
        out.append(Prediction(energy, forces, s, sigma))
    return out


def _group_keys(a: Atoms) -> dict[str, str]:
    return {"config_type": str(a.info.get("config_type", "Default")),
            "composition": str(a.info.get("composition") or a.get_chemical_formula())}


def _metrics(frames: Sequence[Atoms], preds: Sequence[Prediction]) -> dict[str, float]:
    de = np.array([(p.energy - a.info["REF_energy"]) / len(a) for a, p in zip(frames, preds)])
    df = np.concatenate([(p.forces - a.arrays["REF_forces"]).ravel() for a, p in zip(frames, preds)])
    out = {"n_frames": len(frames), "n_atoms": int(sum(len(a) for a in frames)),
           "energy_rmse_meV_atom": float(1000 * np.sqrt(np.mean(de ** 2))),
           "energy_mae_meV_atom": float(1000 * np.mean(np.abs(de))),
           "forces_rmse_meV_A": float(1000 * np.sqrt(np.mean(df ** 2))),
           "forces_mae_meV_A": float(1000 * np.mean(np.abs(df)))}
    ds = [(p.stress - a.info["REF_stress"]) for a, p in zip(frames, preds) if p.stress is not None]
    if ds:
        ds_ = np.concatenate(ds)
        out.update(n_stress_frames=len(ds), stress_rmse_meV_A3=float(1000 * np.sqrt(np.mean(ds_ ** 2))),
                   stress_mae_meV_A3=float(1000 * np.mean(np.abs(ds_))))
    return out


def error_table(frames: Sequence[Atoms], preds: Sequence[Prediction]) -> dict[str, Any]:
    """``{"all": metrics, "config_type": {name: metrics}, "composition": {name: metrics}}``."""
    table: dict[str, Any] = {"all": _metrics(frames, preds)}
    for by in ("config_type", "composition"):
        groups: dict[str, list[int]] = {}
        for k, a in enumerate(frames):
            groups.setdefault(_group_keys(a)[by], []).append(k)
        table[by] = {g: _metrics([frames[i] for i in idx], [preds[i] for i in idx]) for g, idx in sorted(groups.items())}
    return table


def calibration(frames: Sequence[Atoms], preds: Sequence[Prediction]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per atom: the committee's predicted force uncertainty and the actual error of its mean force (eV/Å);
    None for a single model."""
    if any(p.force_sigma is None for p in preds):
        return None
    sigma = np.concatenate([p.force_sigma for p in preds])
    err = np.concatenate([np.linalg.norm(p.forces - a.arrays["REF_forces"], axis=1) for a, p in zip(frames, preds)])
    return sigma, err
