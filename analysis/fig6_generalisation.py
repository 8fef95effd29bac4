"""Paper Fig. 5: EC:EMC-trained committees in liquids they never saw (t_stab NPT, force RMSE on own frames).

    python analysis/fig6_generalisation.py WORKSPACE [OUTDIR]
"""

from _common import load_diagnostics, need

from harness.report.diagnostics import fig_generalisation

tables, out = load_diagnostics()
liquids = need(tables, "liquids", "out-of-distribution liquids")
cols = ["liquid", "composition", "committee", "members", "reached_tau", "t_stab_npt_ps", "t_stab_npt_ps_se",
        "failures", "forces_rmse_meV_A"]
print(liquids[cols].round(3).to_string(index=False))
print(fig_generalisation(liquids, out / "fig6_generalisation.png"))
