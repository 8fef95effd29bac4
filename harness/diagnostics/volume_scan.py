"""Volume-scan validation (paper Figs 3–4, SCIENCE.md §9): E(ρ) of rigid-molecule scans, model against
reference, and the zero-density *baseline shift* per composition.

A rigid-molecule scan takes a liquid frame to the dilute limit without touching any molecule, so the
energy of its most dilute frames is the sum of the molecules' own energies. A model trained on one
composition without isolated molecules only ever saw that sum for one mix of molecules: it can put the
energy of each molecule anywhere, as long as the training mix adds up, and at another composition its whole
E(ρ) curve is shifted by a constant. The shift per composition is the mean model − reference energy of the
scans' dilute frames (density ≤ ``dilute_g_cm3``; the most dilute frame of a scan with none), per member,
in eV per cell and meV/atom. Members can be shifted in opposite directions (one +60, another −55 meV/atom:
their mean is ~0), so a committee is *shifted* when the **median of its members' |shift|** exceeds
``tolerance_meV_atom`` (SCIENCE.md §11), i.e. when most members are; the mean is reported beside it. The curves
with each member's shift removed show what is left (the shape of E(ρ)).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from harness.errors import InputError

__all__ = ["scan_table", "baseline_shifts", "shift_verdict", "DILUTE_G_CM3", "TOLERANCE_MEV_ATOM", "MIN_MEMBERS"]

#: frames at or below this density count as the zero-density limit (the scans' grid starts at 0.1 g/cm³,
#: where molecules are ≥ 10 Å apart)
DILUTE_G_CM3 = 0.3
#: a committee whose mean dilute-limit error exceeds this is reported as shifted (a few times a good model's
#: energy error, far below the shifts of tens of meV/atom the paper's Fig. 4 shows)
TOLERANCE_MEV_ATOM = 10.0


def scan_table(frames: Sequence[Atoms], energies: Mapping[str, Sequence[float]], *, where: str = "scan") -> pd.DataFrame:
    """One row per frame and member: ``member``, ``frame``, ``scan_id``, ``composition``, ``density_g_cm3``,
    ``n_atoms``, ``energy_ref_eV``, ``energy_eV`` (``energies``: member name -> predicted energy per frame)."""
    rows = []
    for k, a in enumerate(frames):
        if "REF_energy" not in a.info:
            raise InputError(f"{where}: frame {k} has no REF_energy label")
        rho = a.info.get("density_g_cm3")
        if rho is None:
            if not a.pbc.all():
                raise InputError(f"{where}: frame {k} is not periodic: not a volume-scan frame")
            from harness.units import density_g_cm3

            rho = density_g_cm3(a)
        base = {"frame": k, "scan_id": str(a.info.get("scan_id", "scan")),
                "composition": str(a.info.get("composition") or a.get_chemical_formula()),
                "density_g_cm3": float(rho), "n_atoms": len(a), "energy_ref_eV": float(a.info["REF_energy"])}
        for name, e in energies.items():
            if len(e) != len(frames):
                raise InputError(f"{where}: member {name} has {len(e)} energies for {len(frames)} frames")
            rows.append({**base, "member": name, "energy_eV": float(e[k])})
    df = pd.DataFrame(rows)
    if len(df):
        df["error_eV"] = df.energy_eV - df.energy_ref_eV
        df["error_meV_atom"] = 1000 * df.error_eV / df.n_atoms
    return df


def baseline_shifts(table: pd.DataFrame, *, dilute_g_cm3: float = DILUTE_G_CM3,
                    tolerance_meV_atom: float = TOLERANCE_MEV_ATOM) -> list[dict[str, Any]]:
    """Per composition: the committee's zero-density baseline shift and whether it is shifted.

    Each entry: ``composition``, ``n_atoms``, ``dilute_frames`` (per member), ``shift_eV`` and
    ``shift_meV_atom`` (mean over members), ``shift_meV_atom_std`` (over members), ``members`` (name ->
    shift, meV/atom), ``median_abs_shift_meV_atom``, ``members_shifted`` (how many exceed the tolerance),
    ``shape_rmse_meV_atom`` (RMSE of the energy error once each member's shift is removed, over all its frames
    of that composition) and ``shifted`` (median |shift| > ``tolerance_meV_atom``).
    """
    out = []
    for comp, g in table.groupby("composition", sort=True):
        per_member = {}
        shape = []
        n_dilute = 0
        bounds = {}
        for name, m in g.groupby("member", sort=True):
            dilute = m[m.density_g_cm3 <= dilute_g_cm3]
            if dilute.empty:  # the most dilute frame of each scan
                dilute = m.loc[m.groupby("scan_id").density_g_cm3.idxmin()]
            n_dilute = len(dilute)
            shift = float(dilute.error_eV.mean())
            per_member[name] = shift
            shape.append((m.error_eV - shift) / m.n_atoms)
            e = 1000 * dilute.error_eV.to_numpy() / dilute.n_atoms.to_numpy()
            se = float(np.std(e, ddof=1) / np.sqrt(len(e))) if len(e) > 1 else float("nan")
            bounds[name] = (abs(float(e.mean())), se)
        natoms = int(g.n_atoms.iloc[0])
        shifts = np.array(list(per_member.values()))
        mean = float(shifts.mean())
        per_atom = 1000 * np.abs(shifts) / int(g.n_atoms.iloc[0])
        median_abs = float(np.median(per_atom))
        out.append({"composition": comp, "n_atoms": natoms, "dilute_frames": n_dilute,
                    "shift_eV": mean, "shift_meV_atom": 1000 * mean / natoms,
                    "shift_meV_atom_std": float(1000 * shifts.std(ddof=1) / natoms) if len(shifts) > 1 else 0.0,
                    "members": {k: 1000 * v / natoms for k, v in per_member.items()},
                    "shape_rmse_meV_atom": float(1000 * np.sqrt(np.mean(np.concatenate(shape) ** 2))),
                    "median_abs_shift_meV_atom": median_abs,
                    "members_shifted": int(np.sum(per_atom > tolerance_meV_atom)),
                    "shifted": bool(median_abs > tolerance_meV_atom), "rule": "median over members of |shift|",
                    "tolerance_meV_atom": tolerance_meV_atom, "dilute_g_cm3": dilute_g_cm3,
                    **shift_verdict(bounds, tolerance_meV_atom)})
    return out


#: a committee's shift verdict needs this many members (a majority of 2 is both of them: no spread seen)
MIN_MEMBERS = 3
_Z95 = 1.6448536269514722  # one-sided 95 %


def shift_verdict(bounds: Mapping[str, tuple[float, float]], tolerance_meV_atom: float) -> dict[str, Any]:
    """The committee's verdict on "shifted", as a statistic (SCIENCE.md §11-12).

    Per member, |shift| (meV/atom, mean over its dilute frames) with its standard error over those frames: *above*
    the tolerance when the one-sided 95 % lower bound |shift| − 1.645 SE exceeds it, *below* when the upper bound
    is under it, else undecided (one dilute frame: no SE, undecided). The committee is ``shifted`` when a majority
    of its members are above, ``not shifted`` when a majority are below, ``undetermined`` otherwise or with fewer
    than :data:`MIN_MEMBERS` members (members are independent draws of the training recipe; a majority of two
    says nothing about the spread)."""
    status = {}
    for name, (abs_shift, se) in bounds.items():
        if not np.isfinite(se):
            status[name] = "undecided"
        elif abs_shift - _Z95 * se > tolerance_meV_atom:
            status[name] = "above"
        elif abs_shift + _Z95 * se < tolerance_meV_atom:
            status[name] = "below"
        else:
            status[name] = "undecided"
    n = len(status)
    above = sum(v == "above" for v in status.values())
    below = sum(v == "below" for v in status.values())
    if n < MIN_MEMBERS:
        verdict, why = "undetermined", f"{n} member(s) < {MIN_MEMBERS}"
    elif above > n / 2:
        verdict, why = "shifted", f"{above} of {n} members above the tolerance"
    elif below > n / 2:
        verdict, why = "not shifted", f"{below} of {n} members below the tolerance"
    else:
        verdict, why = "undetermined", f"{above} above, {below} below, {n - above - below} undecided of {n}"
    return {"verdict": verdict, "verdict_why": why, "member_status": status,
            "test": "per member: one-sided 95 % bound of |mean dilute-frame error| vs the tolerance (SE over the "
                    "dilute frames); committee: majority of members", "level": 0.05, "min_members": MIN_MEMBERS}
