"""Batched model evaluation for batched MD (:mod:`harness.md.batched`): one call, many structures.

- MACE: the structures' graphs are joined into one ``torch_geometric`` batch and go through the model in
  one forward/backward pass (energies, forces and stresses per graph), on the calculator's device and dtype.
- DeePMD: structures with the same atom types in the same order (replicas, members' runs of one liquid)
  go to ``DeepPot.eval`` as frames of one call.
- Anything else (GAP, committees, stand-ins): one structure at a time through its ASE calculator.

Each evaluator gives what the model's own ASE calculator gives for the same structure (tested: a batch of
one reproduces the unbatched trajectory).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from harness.md.batched import BatchEvaluator, EachEvaluator

__all__ = ["MACEBatch", "DeePMDBatch", "batch_evaluator", "torchsim_model"]


class MACEBatch:
    """One MACE model (a ``MACECalculator`` holding one model) evaluated on many structures per call."""

    def __init__(self, calc: Calculator):
        if len(calc.models) != 1:
            raise ValueError("MACEBatch evaluates one model; give a committee's members separately")
        self.calc = calc
        self.model = calc.models[0]
        self.name = "MACE(batched)"

    def evaluate(self, frames: Sequence[Atoms]) -> list[dict[str, Any]]:
        import torch
        from ase.stress import full_3x3_to_voigt_6_stress
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools

        c = self.calc
        keyspec = mace_data.KeySpecification(info_keys=c.info_keys, arrays_keys={**c.arrays_keys,
                                                                                  c.charges_key: "charges"})
        with torch_tools.default_dtype(c.default_dtype):
            graphs = [mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(a, key_specification=keyspec, head_name=c.head),
                z_table=c.z_table, cutoff=c.r_max, heads=c.available_heads) for a in frames]
        batch = torch_geometric.Batch.from_data_list(graphs).to(c.device)
        dtype = next(self.model.parameters()).dtype
        for key in batch.keys:
            value = batch[key]
            if torch.is_tensor(value) and torch.is_floating_point(value):
                batch[key] = value.to(dtype=dtype)
        periodic = all(a.pbc.all() for a in frames)
        out = self.model(batch.to_dict(), compute_stress=periodic, training=False)
        energy = out["energy"].detach().cpu().numpy() * c.energy_units_to_eV
        forces = out["forces"].detach().cpu().numpy() * (c.energy_units_to_eV / c.length_units_to_A)
        stress = (out["stress"].detach().cpu().numpy() * (c.energy_units_to_eV / c.length_units_to_A ** 3)
                  if periodic and out.get("stress") is not None else None)
        ptr = batch["ptr"].cpu().numpy()
        results = []
        for k in range(len(frames)):
            r = {"energy": float(energy[k]), "free_energy": float(energy[k]), "forces": forces[ptr[k]:ptr[k + 1]]}
            if stress is not None:
                r["stress"] = full_3x3_to_voigt_6_stress(stress[k])
            results.append(r)
        return results


class DeePMDBatch:
    """A DeePMD model (deepmd's ``DP`` calculator) evaluated on many structures: one ``DeepPot.eval`` call per
    group of structures with the same atom types."""

    def __init__(self, calc: Calculator):
        self.calc = calc
        self.name = "DeePMD(batched)"

    def evaluate(self, frames: Sequence[Atoms]) -> list[dict[str, Any]]:
        groups: dict[tuple, list[int]] = {}
        for k, a in enumerate(frames):
            groups.setdefault((tuple(a.get_chemical_symbols()), bool(a.pbc.any())), []).append(k)
        results: list[dict[str, Any] | None] = [None] * len(frames)
        for (symbols, periodic), idx in groups.items():
            atype = [self.calc.type_dict[s] for s in symbols]
            coords = np.stack([frames[k].get_positions().reshape(-1) for k in idx])
            cells = np.stack([np.asarray(frames[k].get_cell()).reshape(-1) for k in idx]) if periodic else None
            e, f, v = self.calc.dp.eval(coords=coords, cells=cells, atom_types=atype)[:3]
            for j, k in enumerate(idx):
                r = {"energy": e[j][0], "free_energy": e[j][0], "forces": f[j], "virial": v[j].reshape(3, 3)}
                if periodic:  # as deepmd's DP calculator: stress = -virial / volume, Voigt order
                    r["stress"] = (-v[j] / frames[k].get_volume())[[0, 4, 8, 5, 2, 1]]
                results[k] = r
        return results  # type: ignore[return-value]


def batch_evaluator(calculator: Calculator) -> BatchEvaluator:
    """The batched evaluator of a model's ASE calculator (one structure at a time when it has none)."""
    kind = type(calculator).__name__
    if kind == "MACECalculator" and len(getattr(calculator, "models", ())) == 1:
        return MACEBatch(calculator)
    if kind == "DP" and hasattr(calculator, "dp"):
        return DeePMDBatch(calculator)
    return EachEvaluator(calculator)


def torchsim_model(calculator, device: str = "cpu"):
    """A TorchSim model of a harness model's ASE calculator: a single MACE model runs on TorchSim's ``MaceModel``
    (on ``device``, in the calculator's precision); anything else through :class:`EvaluatorModel` and the batched
    evaluator of ``md_batch`` (:func:`harness.models.batch.batch_evaluator`)."""
    import torch

    models = getattr(calculator, "models", None)
    if type(calculator).__name__ == "MACECalculator" and models is not None and len(models) == 1:
        from torch_sim.models.mace import MaceModel

        dtype = next(models[0].parameters()).dtype
        return MaceModel(model=models[0], device=torch.device(device), dtype=dtype, compute_stress=True)
    from harness.md.torchsim import EvaluatorModel

    return EvaluatorModel(batch_evaluator(calculator), device=device)
