"""Fig. 1b: NPT density distributions vs the reference: python analysis/fig1b_density.py WORKSPACE [OUTDIR]."""

import sys
from pathlib import Path

from _common import load

from harness.report.data import density_samples
from harness.report.figures import fig_density

scores, members, ct, out = load()
grid = scores[0].settings.density_grid
print(fig_density(density_samples(Path(sys.argv[1]), scores), scores[0].reference_committee, grid,
                  out / "fig1b_density.png"))
