"""Q comparison table (Markdown, CSV, LaTeX) from a workspace: python analysis/q_table.py WORKSPACE [OUTDIR]."""

from _common import load

from harness.report.data import committee_flags, species_of
from harness.report.build import q_table, to_latex, to_markdown

scores, members, ct, out = load()
species = species_of(members)
table = q_table(ct, species, committee_flags(members))
(out / "table.md").write_text(to_markdown(table))
table.to_csv(out / "table.csv", index=False)
(out / "table.tex").write_text(to_latex(table))
print(to_markdown(table))
