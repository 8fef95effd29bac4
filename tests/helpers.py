"""Stand-ins for tests: oracles for the labelling logic (not of the reference method itself), and typed results
built from the parts a test cares about."""

from __future__ import annotations

from ase.calculators.emt import EMT


class CountingOracle:
    """EMT labels; counts calculator constructions; can simulate a kill or a failing frame."""

    name = "EMT-stand-in"

    def __init__(self, *, kill_at: int | None = None, fail_uids: set[str] | None = None, fail_first: bool = False):
        self.calls = 0
        self.kill_at = kill_at
        self.fail_uids = fail_uids or set()
        self.fail_first = fail_first

    def make_calculator(self, *, safer: bool = False):
        self.calls += 1
        if self.kill_at is not None and self.calls > self.kill_at:
            raise KeyboardInterrupt  # what a Ctrl-C / SIGINT looks like to the labelling loop
        oracle = self

        class _Calc(EMT):
            def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                from harness.io import frame_uid

                if frame_uid(atoms) in oracle.fail_uids or (oracle.fail_first and not safer):
                    raise RuntimeError("SCF exploded (stand-in)")
                super().calculate(atoms, properties, system_changes)

        return _Calc()

    def provenance(self):
        return {"method": "EMT", "code": "ase", "version": "test", "settings": {}}


class IdealGas:
    """Zero energy, forces and stress: an ideal gas stand-in calculator."""

    def __new__(cls):
        import numpy as np
        from ase.calculators.calculator import Calculator

        class _IdealGas(Calculator):
            implemented_properties = ["energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                super().calculate(atoms, properties, system_changes)
                self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3)), "stress": np.zeros(6)}

        return _IdealGas()


def score_result(committee_id: str, arch: str, members=(), *, q: tuple[float, float] = (1.0, 0.0), subset=None,
                 tags=None, tau_ps: float = 10.0):
    """A valid :class:`~harness.validation.contract.ScoreResult` built from the parts a test cares about: member
    dicts (``name`` and what differs; the rest filled in: stable to ``tau_ps``, no density or diffusion), the
    committee's Q (mean, SE) and the tags; every other field a neutral value."""
    from harness.observables.density import DensityGrid
    from harness.observables.diffusion import DiffusionSpec
    from harness.validation.contract import ScoreResult

    def member(m):
        return {"t_stab_npt_ps": tau_ps, "t_stab_nvt_ps": tau_ps, "npt_failure": None, "nvt_failure": None,
                "npt_run": f"md/{m['name']}/npt-r0", "nvt_run": f"md/{m['name']}/nvt-r0", "density_g_cm3": None,
                "kl": None, "diffusion": None, "S": 1.0, "R": 1.0, "V": 1.0, "Q": 3.0, **m}

    term = {"mean": 1.0, "std": 0.0, "sem": 0.0}
    return ScoreResult.model_validate({
        "members": [member(m) for m in members],
        "committee": {"S": term, "R": term, "V": term, "Q": {"mean": q[0], "std": q[1], "sem": q[1]}},
        "reference": {"members": ["member-0"], "npt_members_used": ["member-0"], "kl_baseline": 0.0, "kl_pairs": 0,
                      "D_ref_A2_ps": 0.3, "nvt_members_used": 1, "density_g_cm3": 0.95},
        "settings": {"tau_ps": tau_ps, "equilibration_ps": 1.0, "kl_rule": {}, "timestep_fs": 0.5,
                     "check_interval_steps": 10, "density_grid": DensityGrid().model_dump(),
                     "diffusion": DiffusionSpec().model_dump(), "D_in_Q": "weighted", "analysis_hash": "0" * 16},
        "committee_id": committee_id, "arch": arch, "subset": subset, "reference_committee": "ref:gap/Full",
        "tags": tags or {}})


def mace_pair_and_lj_reference(model, folder):
    """The committees and model sources of a small validation plan: two MACE members (copies of ``model`` in
    ``folder``, one committee) and a Lennard-Jones stand-in reference; for plans whose subject is the MD tasks."""
    import shutil
    from pathlib import Path

    from harness.models.load import ModelSource
    from harness.validation.committee import Committee

    files = [Path(folder) / "a.model", Path(folder) / "b.model"]
    for f in files:
        shutil.copy(model, f)
    committees = {"model:mace": Committee(id="model:mace", arch="mace", subset="mace", role="external"),
                  "model:lj": Committee(id="model:lj", arch="ase", subset="lj", role="reference")}
    sources = {"model:mace": [ModelSource(kind="file", path=str(f), arch="mace") for f in files],
               "model:lj": [ModelSource(kind="ase", calculator="ase:ase.calculators.lj.LennardJones",
                                        options={"sigma": 2.0, "epsilon": 0.002, "rc": 5.0})]}
    return committees, sources
