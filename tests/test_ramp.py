"""The heating ramp (issue #33 item 3): the thermostat's target rises linearly, the kinetic temperature follows it,
and a stand-in model that breaks at a known temperature fails there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from harness.md.detectors import NonFinite
from harness.md.runner import RunSettings, run_md, read_result

N, T_BREAK = 400, 700.0


class BreaksWhenHot(Calculator):
    """An ideal gas whose forces turn NaN once the instantaneous kinetic temperature (3N − 3 degrees of freedom)
    exceeds ``t_break``: a model that fails at a known temperature."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, t_break: float):
        super().__init__()
        self.t_break = t_break

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        hot = self.atoms.get_kinetic_energy() * 2 / ((3 * n - 3) * units.kB) > self.t_break
        f = np.full((n, 3), np.nan) if hot else np.zeros((n, 3))
        self.results = {"energy": 0.0, "forces": f, "stress": np.zeros(6)}


def _gas(seed=0, kT_over_p=None):
    rng = np.random.default_rng(seed)
    edge = 60.0
    return Atoms(f"Ar{N}", positions=rng.uniform(0, edge, (N, 3)), cell=[edge] * 3, pbc=True)


def _settings(length_ps=14.0):
    # 300 -> 1000 K at 50 K/ps, 5-fs steps (no real forces: positions are exact), the thermostat's 50 fs coupling
    return RunSettings("npt", 300.0, length_ps=length_ps, timestep_fs=5.0, pressure_atm=100.0, tdamp_fs=50,
                       pdamp_fs=500, frame_interval=10**9, thermo_interval=10, checkpoint_interval=10**9,
                       final_temperature_K=1000.0)


def test_ramp_target_is_linear_and_the_kinetic_temperature_follows_it(tmp_path):
    from tests.helpers import IdealGas

    s = _settings()
    run_md(_gas(), IdealGas(), s, outdir=tmp_path, seed=1)
    th = pd.read_parquet(tmp_path / "thermo.parquet")
    assert th.target_temperature_K.iloc[0] == pytest.approx(300.0)
    assert th.target_temperature_K.iloc[-1] == pytest.approx(1000.0)
    assert np.allclose(th.target_temperature_K, 300.0 + 50.0 * th.time_ps, atol=1e-6)
    # the kinetic temperature tracks the target: 2-ps windows' means within 4 % (one sample's relative std is
    # sqrt(2/(3N − 3)) = 4 %; a window holds 40 rows); a run at constant 300 K would miss by up to 230 %
    th["window"] = (th.time_ps // 2).astype(int)
    w = th[th.time_ps > 0.5].groupby("window")[["temperature_K", "target_temperature_K"]].mean()
    assert np.allclose(w.temperature_K, w.target_temperature_K, rtol=0.04), w


def test_a_model_that_breaks_at_700_K_fails_there_and_one_that_does_not_is_censored(tmp_path):
    s = _settings()
    res = run_md(_gas(), BreaksWhenHot(T_BREAK), s, outdir=tmp_path / "hot", seed=2, detectors=[NonFinite(interval=1)])
    assert res.failure is not None and res.failure["detector"] == "non_finite"
    t_fail = s.target_K(res.failure["step"])
    # the instantaneous temperature crosses 700 K before the target does (fluctuations of ~4 %, max over many
    # samples): the target at failure lies in [600, 705] K; without the ramp the run would never fail
    assert 600.0 <= t_fail <= 705.0, t_fail
    cool = run_md(_gas(), BreaksWhenHot(5000.0), s, outdir=tmp_path / "cool", seed=2, detectors=[NonFinite(interval=1)])
    assert cool.failure is None and cool.t_stab_ps == pytest.approx(14.0)
    assert read_result(tmp_path / "cool").settings["final_temperature_K"] == 1000.0


def test_a_ramp_refuses_nvt(tmp_path):
    from dataclasses import replace

    from tests.helpers import IdealGas

    with pytest.raises(ValueError, match="NPT only"):
        run_md(_gas(), IdealGas(), replace(_settings(0.1), ensemble="nvt"), outdir=tmp_path, seed=0)
