"""Fig. 1a: t_stab of every member per subset and architecture (log axis): python analysis/fig1a_stability.py WORKSPACE [OUTDIR]."""

from _common import load

from harness.report.figures import fig_stability

scores, members, ct, out = load()
print(fig_stability(members, scores[0].settings.tau_ps, out / "fig1a_stability.png",
                    subsets=list(dict.fromkeys(members.subset)), archs=list(dict.fromkeys(members.arch))))
