"""Fig. 1c/d: COM diffusivity per species vs the reference: python analysis/fig1cd_diffusivity.py WORKSPACE [OUTDIR]."""

from _common import load

from harness.report.data import species_of
from harness.report.figures import fig_diffusivity

scores, members, ct, out = load()
species = species_of(members)
for panel, sp in zip("cdefg", species):
    print(fig_diffusivity(ct, sp, scores[0].reference_committee, out / f"fig1{panel}_D_{sp}.png",
                          subsets=list(dict.fromkeys(members.subset)), archs=list(dict.fromkeys(members.arch)),
                          panel=panel))
