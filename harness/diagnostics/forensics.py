"""Why a trajectory failed (issue #32 items 1-2): its failure record and the close contacts before it.

The paper explains DeePMD's failures by argument: two molecules approach closer than anything in the OPLS frames,
where the model has never seen the repulsion (the volume scans' "holes" fill that gap). This module measures it.

* :func:`contacts` — the closest *intermolecular* atom pair of every element pair (H-O, C-O, O-O, ...) in a frame,
  minimum image, with the atoms and molecules involved.
* :func:`contact_minima` — those distances frame by frame (a trajectory's history, or a training subset's frames).
* :func:`contact_floor` / :func:`closer_than_floor` — the closest each pair ever comes in a set of frames (a training
  subset), and the fraction of a trajectory's frames whose closest contact of that pair lies below it: the
  close-approach hypothesis as a number.
* :func:`explain_run` — a finished run's :class:`FailureRecord`: the failure event, the bond or molecules it names,
  the closest contacts at the failure, and the histories up to it (minimum contact per pair from the trajectory's
  frames and the finer pre-failure frames, the largest bond stretch, density, temperature and the committee's σ²F
  where the run recorded them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from harness.errors import InputError
from harness.md.detectors import Failure
from harness.workflow.contract import Record

__all__ = ["CUTOFF_A", "Contact", "FailureRecord", "pair_name", "contacts", "contact_minima", "contact_floor",
           "closer_than_floor", "committee_sigma2", "explain_run", "run_contact_frames"]

#: intermolecular pairs are searched within this distance (Å); a pair type with no contact inside it is absent
CUTOFF_A = 4.0


class Contact(Record):
    """The closest intermolecular pair of one element pair in a frame."""

    pair: str
    distance_A: float
    atoms: tuple[int, int]
    molecules: tuple[int, int]
    species: tuple[str, str] | None = None


class FailureRecord(Record):
    """What a failed run's outputs say about its failure (``harness explain``)."""

    run: str
    ensemble: str | None
    t_stab_ps: float
    failure: Failure | None
    bond_atoms: tuple[int, int] | None = None
    bond_molecule: int | None = None
    bond_species: str | None = None
    contacts_at_failure: list[Contact]
    n_trajectory_frames: int
    n_failure_frames: int
    failure_frames_interval_ps: float | None = None
    history: dict[str, list[float | None]]


def pair_name(a: str, b: str) -> str:
    """``H-O``: the two element symbols in alphabetical order."""
    return "-".join(sorted((a, b)))


def _mol_id(atoms: Atoms, where: str) -> np.ndarray:
    if "mol_id" in atoms.arrays:
        return np.asarray(atoms.arrays["mol_id"], dtype=int)
    from harness.systems.topology import assign_molecules

    a = atoms.copy()
    try:
        assign_molecules(a)
    except Exception as exc:  # noqa: BLE001 - a frame whose molecules cannot be found
        raise InputError(f"{where}: no mol_id and molecules not found by connectivity ({exc})") from None
    return np.asarray(a.arrays["mol_id"], dtype=int)


def contacts(atoms: Atoms, *, cutoff_A: float = CUTOFF_A, species: Sequence[str] | None = None,
             where: str = "frame") -> dict[str, Contact]:
    """The closest intermolecular atom pair of each element pair within ``cutoff_A`` (minimum image where the
    frame is periodic). Molecules: the frame's ``mol_id``, else covalent connectivity; ``species``: the name of
    each molecule (by ``mol_id``), recorded with the contact."""
    from ase.neighborlist import neighbor_list

    mol = _mol_id(atoms, where)
    i, j, d = neighbor_list("ijd", atoms, cutoff_A)
    keep = (i < j) & (mol[i] != mol[j])
    i, j, d = i[keep], j[keep], d[keep]
    symbols = np.array(atoms.get_chemical_symbols())
    names = np.array([pair_name(a, b) for a, b in zip(symbols[i], symbols[j])], dtype=object)
    out: dict[str, Contact] = {}
    for name in sorted(set(names)):
        sel = np.flatnonzero(names == name)
        k = sel[np.argmin(d[sel])]
        a, b = int(i[k]), int(j[k])
        out[name] = Contact(pair=name, distance_A=float(d[k]), atoms=(a, b), molecules=(int(mol[a]), int(mol[b])),
                            species=(species[mol[a]], species[mol[b]]) if species is not None else None)
    return out


def contact_minima(frames: Iterable[Atoms], *, cutoff_A: float = CUTOFF_A, where: str = "frames") -> pd.DataFrame:
    """One row per frame: ``time_ps`` (from the frame's info, NaN without) and the closest intermolecular distance
    of every element pair (NaN where a pair has no contact within ``cutoff_A``)."""
    rows = []
    for k, a in enumerate(frames):
        row = {"time_ps": float(a.info.get("time_ps", np.nan))}
        row.update({p: c.distance_A for p, c in contacts(a, cutoff_A=cutoff_A, where=f"{where}[{k}]").items()})
        rows.append(row)
    return pd.DataFrame(rows)


def contact_floor(minima: pd.DataFrame) -> dict[str, float]:
    """The closest each element pair comes in a set of frames (:func:`contact_minima`): the smallest intermolecular
    distance of that pair the set contains (a pair absent from every frame is left out)."""
    return {p: float(minima[p].min()) for p in minima.columns if p != "time_ps" and minima[p].notna().any()}


def closer_than_floor(minima: pd.DataFrame, floor: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per element pair both know: how many of a trajectory's frames have their closest contact of that pair below
    the training set's floor, of how many (``n_below``, ``n``, ``fraction``), and the closest such contact."""
    out = {}
    for p, f in floor.items():
        if p not in minima.columns:
            continue
        x = minima[p].dropna().to_numpy()
        if len(x) == 0:
            continue
        below = x < f
        out[p] = {"floor_A": f, "n": int(len(x)), "n_below": int(below.sum()), "fraction": float(below.mean()),
                  "closest_A": float(x.min())}
    return out


def run_contact_frames(run_dir: str | Path) -> tuple[list[Atoms], list[Atoms]]:
    """A run's trajectory frames and its pre-failure frames (``failure_frames.extxyz``; empty when the run kept
    none), each with ``time_ps`` in its info and ``mol_id``."""
    from ase.io import read

    from harness.diagnostics.trajectory import run_frames
    from harness.h5md import read_h5md
    from harness.md.prefailure import FILENAME

    run_dir = Path(run_dir)
    traj = run_dir / "trajectory.h5md"
    try:
        n = len(read_h5md(traj)["time_ps"])
    except (OSError, KeyError, FileNotFoundError) as exc:
        raise InputError(f"{run_dir}: no readable harness trajectory ({exc})") from None
    frames = run_frames(traj, range(n))
    fine: list[Atoms] = []
    if (run_dir / FILENAME).is_file():
        try:
            fine = read(run_dir / FILENAME, index=":", format="extxyz")
        except Exception as exc:  # noqa: BLE001 - a damaged file
            raise InputError(f"{run_dir / FILENAME}: not readable as extxyz ({exc})") from None
        for a in fine:
            a.wrap()
    return frames, fine


def _bond_of(failure: Failure | None) -> tuple[int, int] | None:
    m = re.match(r"bond (\d+)-(\d+) ", failure.message) if failure is not None else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def committee_sigma2(frames: Sequence[Atoms], calculators: Sequence) -> np.ndarray:
    """σ²_F of a committee (max over atoms of the per-atom force variance over members, eV²/Å²) on each frame."""
    from harness.models.committee import CommitteeCalculator

    calc = CommitteeCalculator(list(calculators))
    out = []
    for a in frames:
        b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        b.calc = calc
        b.get_forces()
        out.append(float(calc.results["sigma2_F"]))
    return np.array(out)


def explain_run(run_dir: str | Path, *, cutoff_A: float = CUTOFF_A, committee: Sequence | None = None) -> FailureRecord:
    """The failure record of the finished run in ``run_dir`` (its ``result.json``, trajectory, pre-failure frames
    and thermo table). A stable run gets a record with ``failure`` None and its histories. ``committee``: ASE
    calculators of a committee (two or more) evaluated on the same frames: their σ²_F joins the histories as
    ``sigma2_F_committee`` (a validation run of one member records none of its own)."""
    from harness.md.runner import read_result
    from harness.systems.topology import molecule_species_names

    run_dir = Path(run_dir)
    try:
        result = read_result(run_dir)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{run_dir / 'result.json'}: not a harness MD result ({exc})") from None
    if result is None:
        raise InputError(f"{run_dir}: no result.json (not a finished harness MD run)")
    failure = Failure(**result.failure) if result.failure else None
    frames, fine = run_contact_frames(run_dir)
    symbols = frames[0].get_chemical_symbols()
    mol = _mol_id(frames[0], f"{run_dir}: frame 0")
    species = molecule_species_names(symbols, mol)
    t_end = result.t_stab_ps
    both = [a for a in frames if a.info["time_ps"] <= t_end + 1e-9]
    if fine:  # the finer frames replace the coarse ones over the stretch they cover
        t0 = float(fine[0].info["time_ps"])
        both = [a for a in both if a.info["time_ps"] < t0 - 1e-9] + list(fine)
    hist = contact_minima(both, cutoff_A=cutoff_A, where=str(run_dir))
    hist["time_ps"] = hist["time_ps"].round(6)  # frames (H5MD, extxyz text) and thermo rows meet on a time grid
    if committee is not None:
        if len(committee) < 2:
            raise InputError("a committee of at least two models is needed for σ²_F")
        hist["sigma2_F_committee"] = committee_sigma2(both, committee)
    last = both[-1]
    at_failure = contacts(last, cutoff_A=cutoff_A, species=species, where=f"{run_dir}: last frame")
    thermo_path = run_dir / "thermo.parquet"
    if thermo_path.is_file():
        th = pd.read_parquet(thermo_path)
        th = th[th["time_ps"] <= t_end + 1e-9].assign(time_ps=lambda x: x["time_ps"].round(6))
        cols = [c for c in ("max_bond_stretch_A", "sigma2_F", "density_g_cm3", "temperature_K") if c in th.columns]
        hist = pd.merge(hist, th[["time_ps", *cols]], on="time_ps", how="outer").sort_values("time_ps")
    bond = _bond_of(failure)
    bond_mol = int(mol[bond[0]]) if bond is not None and bond[0] < len(mol) else None
    history = {c: [None if pd.isna(v) else float(v) for v in hist[c]] for c in hist.columns}
    dt_fine = float(np.median(np.diff([a.info["time_ps"] for a in fine]))) if len(fine) > 1 else None
    return FailureRecord(run=str(run_dir), ensemble=result.ensemble, t_stab_ps=result.t_stab_ps, failure=failure,
                         bond_atoms=bond, bond_molecule=bond_mol,
                         bond_species=species[bond_mol] if bond_mol is not None else None,
                         contacts_at_failure=sorted(at_failure.values(), key=lambda c: c.distance_A),
                         n_trajectory_frames=len(frames), n_failure_frames=len(fine),
                         failure_frames_interval_ps=dt_fine, history=history)
