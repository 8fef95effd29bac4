"""Paper §4.4: errors on relabelled frames of each model's own trajectory, against time and the reference.

    python analysis/fig5_trajectory_errors.py WORKSPACE [OUTDIR]

Prints energy (meV/atom) and force (meV/Å) RMSE per committee and run (mean over members, with the slope of
the force RMSE in time) and writes fig5_trajectory_errors.png.
"""

from _common import load_diagnostics, need

from harness.report.diagnostics import fig_trajectory_errors

tables, out = load_diagnostics()
print(need(tables, "traj_error_summary", "trajectory errors").round(3).to_string(index=False))
if "traj_errors" in tables:
    print(fig_trajectory_errors(tables["traj_errors"], out / "fig5_trajectory_errors.png"))
