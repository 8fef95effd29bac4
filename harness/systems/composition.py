"""Compositions: how many molecules of each species a cell holds.

A composition is written ``EC=16,EMC=32`` (molecule counts). A ratio plus a size resolves to whole
molecules: ``resolve_ratio({"EC": 3, "EMC": 7}, basis="weight", n_atoms=640)`` gives 16 EC + 32 EMC
(3:7 EC:EMC by weight is 1:1.97 by molecules; SCIENCE.md §2).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from harness.errors import InputError
from harness.systems.molecules import MoleculeRegistry

__all__ = ["Composition", "parse_counts", "parse_ratio", "resolve_ratio"]

Basis = Literal["mole", "weight", "volume"]


@dataclass(frozen=True)
class Composition:
    """Molecule counts by species name, in a fixed order (the order molecules are placed)."""

    counts: tuple[tuple[str, int], ...]

    @classmethod
    def from_mapping(cls, counts: Mapping[str, int]) -> "Composition":
        return cls(tuple((k, int(v)) for k, v in counts.items()))

    @classmethod
    def parse(cls, text: str) -> "Composition":
        return cls.from_mapping(parse_counts(text))

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    @property
    def n_molecules(self) -> int:
        return sum(n for _, n in self.counts)

    def n_atoms(self, registry: MoleculeRegistry | None = None) -> int:
        registry = registry or MoleculeRegistry()
        return sum(registry[k].n_atoms * n for k, n in self.counts)

    def mass_amu(self, registry: MoleculeRegistry | None = None) -> float:
        registry = registry or MoleculeRegistry()
        return sum(registry[k].mass_amu * n for k, n in self.counts)

    def __str__(self) -> str:
        return ",".join(f"{k}={n}" for k, n in self.counts)


def _split_pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"{what} {text!r}: item {item!r} must look like NAME=NUMBER (e.g. EC=16,EMC=32)")
        pairs.append((name, value))
    if not pairs:
        raise InputError(f"{what} {text!r} is empty; expected e.g. EC=16,EMC=32")
    names = [n for n, _ in pairs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"{what} {text!r} names {', '.join(sorted(dup))} more than once")
    return pairs


def parse_counts(text: str) -> dict[str, int]:
    """Parse ``EC=16,EMC=32`` into whole-molecule counts (each ≥ 0, total > 0)."""
    counts: dict[str, int] = {}
    for name, value in _split_pairs(text, "composition"):
        try:
            f = float(value)
        except ValueError:
            raise InputError(f"composition {text!r}: count of {name} is not a number: {value!r}") from None
        if f < 0 or f != int(f):
            raise InputError(
                f"composition {text!r}: count of {name} must be a whole number of molecules, got {value}; "
                "give a ratio with --atoms/--molecules to resolve fractions"
            )
        counts[name] = int(f)
    if sum(counts.values()) == 0:
        raise InputError(f"composition {text!r} has no molecules")
    return counts


def parse_ratio(text: str) -> dict[str, float]:
    """Parse ``EC=3,EMC=7`` (or ``EC:EMC=3:7``) into positive ratio weights."""
    text = text.replace(" ", "")
    if ":" in text:
        lhs, sep, rhs = text.partition("=")
        names, values = lhs.split(":"), rhs.split(":")
        if not sep or len(names) != len(values):
            raise InputError(f"ratio {text!r} must look like EC:EMC=3:7 or EC=3,EMC=7")
        pairs = list(zip(names, values))
    else:
        pairs = _split_pairs(text, "ratio")
    ratio: dict[str, float] = {}
    for name, value in pairs:
        try:
            ratio[name] = float(value)
        except ValueError:
            raise InputError(f"ratio {text!r}: part of {name} is not a number: {value!r}") from None
        if not np.isfinite(ratio[name]) or ratio[name] < 0:
            raise InputError(f"ratio {text!r}: part of {name} must be a non-negative number")
    if sum(ratio.values()) <= 0:
        raise InputError(f"ratio {text!r} has no positive part")
    return ratio


def resolve_ratio(
    ratio: Mapping[str, float],
    *,
    basis: Basis = "mole",
    n_atoms: int | None = None,
    n_molecules: int | None = None,
    tolerance: float = 0.02,
    registry: MoleculeRegistry | None = None,
) -> Composition:
    """Whole-molecule counts for a ratio and a total size.

    Parameters
    ----------
    ratio
        Parts per species (any scale), e.g. ``{"EC": 3, "EMC": 7}``.
    basis
        What the ratio measures: ``mole`` (molecules), ``weight`` (mass) or ``volume`` (pure-liquid
        volumes, using each molecule's ``density_g_cm3``).
    n_atoms, n_molecules
        Exactly one: the total number of atoms or of molecules in the cell.
    tolerance
        Largest accepted absolute error in any mole fraction.

    Raises
    ------
    InputError
        If no whole-molecule counts hit the total exactly within ``tolerance``.
    """
    registry = registry or MoleculeRegistry()
    if (n_atoms is None) == (n_molecules is None):
        raise InputError("give exactly one of a total atom count or a total molecule count to resolve a ratio")
    total = n_atoms if n_atoms is not None else n_molecules
    if total is None or total <= 0:
        raise InputError(f"total size must be a positive number, got {total}")
    names = list(ratio)
    mols = [registry[n] for n in names]
    parts = np.array([ratio[n] for n in names], dtype=float)
    if basis == "mole":
        x = parts
    elif basis == "weight":
        x = parts / np.array([m.mass_amu for m in mols])
    elif basis == "volume":
        missing = [m.name for m in mols if m.density_g_cm3 is None]
        if missing:
            raise InputError(f"volume ratio needs pure-liquid densities; none known for {', '.join(missing)}")
        x = parts * np.array([m.density_g_cm3 for m in mols]) / np.array([m.mass_amu for m in mols])
    else:
        raise InputError(f"unknown ratio basis {basis!r}; use mole, weight or volume")
    x = x / x.sum()
    size = np.array([m.n_atoms for m in mols]) if n_atoms is not None else np.ones(len(mols), dtype=int)
    scale = total / float(np.dot(x, size))
    ideal = x * scale
    best: tuple[float, tuple[int, ...]] | None = None
    ranges = [range(max(0, int(np.floor(v)) - 2), int(np.ceil(v)) + 3) if xi > 0 else range(0, 1)
              for v, xi in zip(ideal, x)]
    for cand in itertools.product(*ranges):
        c = np.array(cand)
        if int(np.dot(c, size)) != total or c.sum() == 0:
            continue
        err = float(np.max(np.abs(c / c.sum() - x)))
        if best is None or err < best[0]:
            best = (err, tuple(int(v) for v in cand))
    unit = "atoms" if n_atoms is not None else "molecules"
    wanted = ", ".join(f"{n} {xi:.3f}" for n, xi in zip(names, x))
    if best is None or best[0] > tolerance:
        hint = f" (closest: {', '.join(f'{n}={k}' for n, k in zip(names, best[1]))})" if best else ""
        raise InputError(
            f"ratio {':'.join(names)} = {':'.join(f'{p:g}' for p in parts)} by {basis} does not resolve to whole "
            f"molecules totalling {total} {unit} within mole-fraction tolerance {tolerance} "
            f"(wanted mole fractions {wanted}){hint}"
        )
    return Composition(tuple(zip(names, best[1])))
