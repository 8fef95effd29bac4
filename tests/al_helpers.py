"""Stand-ins for AL tests: an oracle that counts its calls, and a small campaign spec."""

from __future__ import annotations

from pathlib import Path

import yaml
from ase.calculators.lj import LennardJones

ROOT = Path(__file__).resolve().parents[1]


class CountingLJ(LennardJones):
    """Lennard-Jones (a cheap stand-in oracle) that appends one line per evaluated frame to ``log``."""

    def __init__(self, log: str, **kwargs):
        super().__init__(sigma=2.5, epsilon=0.01, rc=6.0, **kwargs)
        self.log = log

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, properties, system_changes)
        with open(self.log, "a") as f:
            f.write(f"{len(self.atoms)}\n")


def al_spec(tmp: Path, *, generations: int = 2, validation: bool = False, **exploration) -> Path:
    """A tiny DeePMD campaign on the shipped data with the counting oracle; returns the spec path."""
    spec = {
        "name": "al-test", "dataset": str(ROOT / "datasets" / "ec-emc-xtb.yaml"), "initial_subsets": ["OPLS"],
        "architecture": "deepmd", "committee": 2, "max_train_frames": 6, "generations": generations,
        "overrides": {"training": {"numb_steps": 20, "disp_freq": 10, "save_freq": 20}},
        "oracle": {"name": "ase:tests.al_helpers.CountingLJ", "options": {"log": str(tmp / "oracle.log")}},
        "exploration": {"compositions": ["EC=2,EMC=10", "EC=10,EMC=2"], "starts_per_composition": 2,
                        "length_ps": 0.01, "check_interval": 5, "checkpoint_interval": 10,
                        "bond_length_method": "mmff", "start_equilibration_ps": 0.2, "start_stride_ps": 0.1,
                        **exploration},
    }
    if validation:
        spec["validation"] = {"protocol": str(ROOT / "protocols" / "ci.yaml"),
                              "reference": {"arch": "gap", "subset": "OPLS+VS", "max_train_frames": 40}}
    path = tmp / "al.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
