"""Committees of models as one ASE calculator (SCIENCE.md §4; cf. MACE's ``MACECalculator``).

The committee's ``energy``/``forces``/``stress`` are the member means; the spread is in
``energy_var`` (eV²), ``forces_var`` (eV²/Å², per atom and component, population variance),
per-member values in ``energy_comm``/``forces_comm``/``stress_comm``, and the active-learning
uncertainty ``sigma2_F`` = max over atoms of the per-atom force variance summed over components
(eV²/Å²), with DP-GEN's ``max_devi_f`` = max over atoms of the root of the same quantity (eV/Å).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

__all__ = ["CommitteeCalculator", "force_deviation"]


def force_deviation(forces_comm: np.ndarray) -> tuple[float, float]:
    """``(sigma2_F, max_devi_f)`` of member forces of shape ``(K, n_atoms, 3)``.

    sigma2_F = max_i (1/K) sum_k |F_ik - mean_k F_ik|^2 (eV²/Å²); max_devi_f = sqrt(sigma2_F).
    """
    f = np.asarray(forces_comm, dtype=float)
    per_atom = np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=2), axis=0)
    s2 = float(per_atom.max()) if per_atom.size else 0.0
    return s2, float(np.sqrt(s2))


class CommitteeCalculator(Calculator):
    """Mean and spread of several ASE calculators evaluated on the same structure.

    A member that has just been evaluated on the same positions, cell and numbers (the member driving
    an active-learning trajectory) answers from its cache: asking the committee at a check costs the
    other members only.

    Parameters
    ----------
    members
        Member calculators (≥ 1); each is evaluated on its own copy of the atoms.
    names
        Optional labels of the members (kept in ``self.names``).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energy_var", "forces_var",
                              "energy_comm", "forces_comm", "stress_comm", "sigma2_F", "max_devi_f"]

    def __init__(self, members: Sequence[Calculator], *, names: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ValueError("a committee needs at least one member")
        self.members = list(members)
        self.names = list(names) if names is not None else [f"m{k}" for k in range(len(self.members))]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties or "stress_comm" in properties
        energies, forces, stresses = [], [], []
        for calc in self.members:
            a = self.atoms.copy()
            a.calc = calc
            energies.append(a.get_potential_energy())
            # raw member forces: the atoms that drive MD apply their own constraints to the mean
            forces.append(a.get_forces(apply_constraint=False))
            if want_stress:
                if not a.pbc.all():
                    raise PropertyNotImplementedError("stress needs a periodic cell")
                stresses.append(a.get_stress(voigt=True))
        e = np.array(energies)
        f = np.array(forces)
        s2, devi = force_deviation(f)
        self.results = {
            "energy": float(e.mean()),
            "free_energy": float(e.mean()),
            "forces": f.mean(axis=0),
            "energy_var": float(e.var()),
            "forces_var": f.var(axis=0),
            "energy_comm": e,
            "forces_comm": f,
            "sigma2_F": s2,
            "max_devi_f": devi,
        }
        if want_stress:
            st = np.array(stresses)
            self.results["stress"] = st.mean(axis=0)
            self.results["stress_comm"] = st
