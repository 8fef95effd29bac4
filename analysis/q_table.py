"""Q comparison table (Markdown, CSV, LaTeX) from a workspace: python analysis/q_table.py WORKSPACE [OUTDIR]."""

from _common import load

from harness.report.build import q_table, to_latex, to_markdown

scores, members, ct, out = load()
species = sorted(c[2:] for c in members.columns if c.startswith("D_") and c != "D_w")
table = q_table(ct, species)
(out / "table.md").write_text(to_markdown(table))
table.to_csv(out / "table.csv", index=False)
(out / "table.tex").write_text(to_latex(table))
print(to_markdown(table))
