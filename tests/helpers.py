"""Stand-in oracles for tests of the labelling logic (not of the reference method itself)."""

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
