"""A workspace from Python, for notebooks: the typed results of a sweep, campaign or ``harness validate`` run as
pandas tables, a run's trajectory as ASE frames or an MDAnalysis ``Universe``, the findings and the figures.

    >>> import harness
    >>> ws = harness.Workspace("runs/demo")
    >>> ws.q_table()                       # the report's Q table (mean ± SE per committee, with its flags)
    >>> ws.members()                        # one row per member: t_stab, density, D, KL, S, R, V, Q, flags
    >>> ws.runs()                           # every MD run: committee, member, ensemble, t_stab, failure, run_dir
    >>> atoms = ws.trajectory(ws.runs().run_dir[0])                    # list of ase.Atoms
    >>> u = ws.trajectory(ws.runs().run_dir[0], as_="mdanalysis")      # MDAnalysis Universe (residues: molecules)

Everything is read from ``WORKSPACE/harness.sqlite`` (results validated into their typed classes: a result of
an older schema is left out, as the engine would rerun it) and the run directories it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.validation.contract import ScoreResult

__all__ = ["Workspace"]


class Workspace:
    """A harness workspace (a folder with ``harness.sqlite``), read-only."""

    def __init__(self, path: str | Path, *, sweep: str | None = None):
        self.path = Path(path)
        self.sweep = sweep
        if not (self.path / "harness.sqlite").is_file():
            raise InputError(f"{self.path}: not a harness workspace (no harness.sqlite; run `harness sweep run SPEC "
                             f"--workspace {self.path}` or `harness demo --workspace {self.path}` first)")

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r}{f', sweep={self.sweep!r}' if self.sweep else ''})"

    # -- the store ---------------------------------------------------------------------------------------------

    def _rows(self, kind: str | None = None, status: str | None = None) -> list[dict]:
        from harness.workflow.store import Store

        store = Store(self.path / "harness.sqlite")
        try:
            return store.tasks(kind=kind, status=status, sweep=self.sweep)
        finally:
            store.close()

    def tasks(self, kind: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Every task in the store: key, kind, label, status, attempts, wall time, error."""
        cols = ["key", "kind", "label", "status", "attempts", "wall_s", "error", "sweep"]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self._rows(kind, status)], columns=cols)

    def results(self, kind: str) -> list:
        """The finished results of one task kind as their typed classes (``score`` -> ``ScoreResult``, ``observe``
        -> ``ObserveResult``, ...); results of another schema (an older harness) are left out."""
        from harness.workflow.contract import stored_results

        return stored_results(self._rows(kind, "done"), _params_class(kind))

    # -- tables ------------------------------------------------------------------------------------------------

    def _scores(self) -> list["ScoreResult"]:
        from harness.report.data import load_scores

        return load_scores(self.path, self.sweep)

    def members(self) -> pd.DataFrame:
        """One row per scored member (:func:`harness.report.data.member_table`)."""
        from harness.report.data import member_table

        return member_table(self._scores())

    def committees(self) -> pd.DataFrame:
        """Mean and standard error over members per committee (:func:`harness.report.data.committee_table`)."""
        from harness.report.data import committee_table

        return committee_table(self.members())

    def q_table(self) -> pd.DataFrame:
        """The report's Q table: per committee, Q and its terms, t_stab, density and D (mean ± SE), flags."""
        from harness.report.build import q_table
        from harness.report.data import committee_flags, committee_table, species_of

        members = self.members()
        return q_table(committee_table(members), species_of(members), committee_flags(members))

    def learning_curves(self) -> pd.DataFrame:
        """Every trained member's learning curve (:func:`harness.report.data.learning_curves`)."""
        from harness.report.data import learning_curves

        return learning_curves(self.path)

    def runs(self) -> pd.DataFrame:
        """Every finished MD run: committee, arch, subset, member, seed, ensemble, t_stab (ps), failure detector,
        run directory."""
        rows = [{"committee": r.committee, "arch": r.arch, "subset": r.subset, "member": r.member, "seed": r.seed,
                 "ensemble": r.ensemble, "t_stab_ps": r.t_stab_ps,
                 "failure": r.failure.detector if r.failure else None, "run_dir": r.run_dir} for r in self.results("md")]
        return pd.DataFrame(rows, columns=["committee", "arch", "subset", "member", "seed", "ensemble", "t_stab_ps",
                                           "failure", "run_dir"])

    def findings(self, **kw) -> list:
        """The paper's findings as statistics (:func:`harness.report.findings.findings`), on this workspace."""
        from harness.report.data import member_table
        from harness.report.findings import findings_of, run_summary

        scores = self._scores()
        members = member_table(scores)
        return findings_of(members, run_summary(scores, members), **kw)

    def report(self, outdir: str | Path) -> dict[str, Path]:
        """Write the report (tables, figures, report.html) into ``outdir``; the files written, by name."""
        from harness.report.build import build_report

        return build_report(self.path, outdir, sweep=self.sweep)

    # -- trajectories ------------------------------------------------------------------------------------------

    def trajectory(self, run_dir: str | Path, *, as_: str = "ase"):
        """A run's trajectory (``trajectory.h5md`` in its directory): a list of ``ase.Atoms`` (positions unwrapped,
        cell per frame, ``info["time_ps"]``, ``arrays["mol_id"]``) or, with ``as_="mdanalysis"``, an in-memory
        MDAnalysis ``Universe`` whose residues are the molecules."""
        from harness.observables.trajectory import load_trajectory

        path = Path(run_dir)
        traj = load_trajectory(path / "trajectory.h5md" if path.is_dir() else path)
        if as_ == "ase":
            from ase import Atoms

            frames = []
            for t in range(len(traj.time_ps)):
                a = Atoms(numbers=traj.numbers, positions=traj.positions[t], cell=traj.cells[t], pbc=traj.periodic)
                a.info["time_ps"] = float(traj.time_ps[t])
                a.arrays["mol_id"] = traj.mol_id.copy()
                frames.append(a)
            return frames
        if as_ == "mdanalysis":
            import MDAnalysis as mda
            import numpy as np
            from ase.data import chemical_symbols
            from ase.geometry import cell_to_cellpar
            from MDAnalysis.coordinates.memory import MemoryReader

            n_mol = int(traj.mol_id.max()) + 1 if len(traj.mol_id) else 0
            u = mda.Universe.empty(len(traj.numbers), n_residues=n_mol, atom_resindex=traj.mol_id, trajectory=True)
            u.add_TopologyAttr("elements", [chemical_symbols[z] for z in traj.numbers])
            u.add_TopologyAttr("masses", traj.masses)
            u.add_TopologyAttr("resnames", list(traj.species) if len(traj.species) == n_mol else ["MOL"] * n_mol)
            dims = np.array([cell_to_cellpar(c) for c in traj.cells], dtype=np.float32)
            u.load_new(traj.positions.astype(np.float32), format=MemoryReader, dimensions=dims,
                       dt=float(np.diff(traj.time_ps).mean()) if len(traj.time_ps) > 1 else 1.0)
            return u
        raise InputError(f"trajectory: as_={as_!r}; choose 'ase' or 'mdanalysis'")


def _params_class(kind: str):
    """The params class of a task kind (its result class and schema come with it)."""
    import harness.al.contract  # noqa: F401  (every study kind's task kinds, so that all are known)
    import harness.diagnostics.contract  # noqa: F401
    import harness.finetune.contract  # noqa: F401
    import harness.validation.contract  # noqa: F401
    from harness.workflow.contract import task_kinds

    kinds = task_kinds()
    if kind not in kinds:
        raise InputError(f"unknown task kind {kind!r}; kinds: {', '.join(sorted(kinds))}")
    return kinds[kind]
