"""``harness box``: pack a liquid cell of molecules at a density."""

from __future__ import annotations

from typing import List, Optional

import typer

from harness.cli.common import err, handle_errors

HELP = """Pack a periodic liquid cell with packmol and write it as extxyz (default: standard output).

Give molecule counts (--composition EC=16,EMC=32), or a ratio plus a size: --composition EC=3,EMC=7 --by weight --atoms 640 resolves 3:7 EC:EMC by weight to 16 EC + 32 EMC. Every atom carries mol_id; the frame records its composition, species SMILES, density and seed. Known molecules: EC, EMC, DEC, PC, VC, DMC; add others with --molecule NAME=SMILES.
"""


@handle_errors
def box(
    composition: str = typer.Option(..., "--composition", "-c",
                                    help="Counts NAME=N,... or, with --atoms/--molecules, a ratio (EC=3,EMC=7 or EC:EMC=3:7)."),
    density: float = typer.Option(..., "--density", "--density-g-cm3", help="Mass density in g/cm³."),
    seed: int = typer.Option(0, "--seed", help="packmol random seed (≥ 0)."),
    output: str = typer.Option("-", "--output", "-o", help="Output extxyz file; '-' for standard output."),
    by: Optional[str] = typer.Option(None, "--by", help="Ratio basis: mole, weight or volume (needs --atoms or --molecules)."),
    atoms: Optional[int] = typer.Option(None, "--atoms", help="Total number of atoms (resolve a ratio)."),
    molecules: Optional[int] = typer.Option(None, "--molecules", help="Total number of molecules (resolve a ratio)."),
    molecule: List[str] = typer.Option([], "--molecule", help="Extra species NAME=SMILES (repeatable)."),
    tolerance: float = typer.Option(2.0, "--tolerance", "--tolerance-A", help="Minimum intermolecular distance in Å."),
    nloop: int = typer.Option(200, "--nloop", help="packmol loop limit before giving up on a density."),
) -> None:
    from harness.cli.options import check_range
    from harness.io import check_output, write_frames
    from harness.systems.box import MAX_NLOOP, MIN_TOLERANCE_A, PACKMOL_MAX_SEED, build_box
    from harness.systems.composition import Composition, parse_counts, parse_ratio, resolve_ratio
    from harness.systems.molecules import MoleculeRegistry, parse_molecule_definition
    from harness.units import density_g_cm3

    check_range("--seed", seed, 0, PACKMOL_MAX_SEED, why="packmol's 32-bit seed")
    check_range("--tolerance", tolerance, MIN_TOLERANCE_A, unit="Å", why="closer intermolecular contacts are not a liquid's")
    check_range("--nloop", nloop, 1, MAX_NLOOP)
    check_range("--atoms", atoms, 1)
    check_range("--molecules", molecules, 1)
    check_output(output)  # before packmol runs
    extra = {}
    for text in molecule:
        mol = parse_molecule_definition(text)
        extra[mol.name] = mol
    registry = MoleculeRegistry(extra)
    if atoms is not None or molecules is not None:
        comp = resolve_ratio(parse_ratio(composition), basis=by or "mole", n_atoms=atoms, n_molecules=molecules,
                             registry=registry)
    else:
        if by is not None:
            from harness.errors import InputError

            raise InputError("--by needs --atoms or --molecules (a ratio resolves only against a total size)")
        comp = Composition.from_mapping(parse_counts(composition))
    for name, _ in comp.counts:
        registry[name].validate()
    frame = build_box(comp, density, seed=seed, tolerance_A=tolerance, registry=registry, nloop=nloop)
    write_frames(output, [frame])
    err(f"box: {comp} ({len(frame)} atoms), {density_g_cm3(frame):.4f} g/cm³, edge {frame.cell[0, 0]:.3f} Å, "
        f"seed {seed}" + ("" if output == "-" else f" -> {output}"))


box.__doc__ = HELP
