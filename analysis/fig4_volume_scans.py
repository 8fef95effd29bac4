"""Paper Figs 3-4: E(ρ) of the held-out volume scans, parity, and the baseline shift per composition.

    python analysis/fig4_volume_scans.py WORKSPACE [OUTDIR]

Prints the shift table (meV/atom, committee mean ± std over members; shifted = median |shift| beyond the
tolerance; verdict = the statistic: each member's one-sided 95 % bound against the tolerance, a majority of at
least 3 members, else undetermined) and writes fig4_volume_scans.png.
"""

from _common import load_diagnostics, need

from harness.report.diagnostics import fig_volume_scans

tables, out = load_diagnostics()
shifts = need(tables, "vscan_shifts", "volume-scan validation")
cols = ["committee", "validation_set", "composition", "shift_meV_atom", "shift_meV_atom_std", "shifted", "verdict",
        "verdict_why", "shape_rmse_meV_atom", "energy_rmse_meV_atom"]
print(shifts[cols].round(2).to_string(index=False))
print(fig_volume_scans(tables["vscan_frames"], shifts, out / "fig4_volume_scans.png"))
