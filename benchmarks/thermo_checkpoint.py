"""Cost of one MD checkpoint's thermo write as a run grows: the append-only table vs rewriting the whole table.

A run writes a thermo row every few steps and flushes at every checkpoint. Rewriting the whole Parquet file at
each checkpoint (the harness before issue #18) costs time in proportion to the rows so far, so a long run pays
quadratically; the append-only table writes only the rows since the last checkpoint. For a table of N rows
already written (1 000 and 100 000: a 1 ns run at 0.5 fs with a row every 20 steps), this times one checkpoint
adding ``--new`` rows both ways, in the same run. Target: the append-only cost at 100 000 rows within 1.5x of its
cost at 1 000 rows.

    python benchmarks/thermo_checkpoint.py [--sizes 1000 100000] [--new 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def rows(start: int, n: int) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"step": s, "time_ps": s * 0.0005, "temperature_K": 500 + rng.normal(), "potential_eV": -1e4 + rng.normal(),
             "kinetic_eV": 10 + rng.normal(), "volume_A3": 1900 + rng.normal(), "density_g_cm3": 1.0 + 0.01 * rng.normal(),
             "pressure_GPa": rng.normal(), "max_bond_stretch_A": 0.1 * rng.random()} for s in range(start, start + n)]


def time_append(n: int, new: int, repeat: int) -> float:
    from harness.h5md import ThermoTable

    best = np.inf
    with tempfile.TemporaryDirectory() as d:
        t = ThermoTable(Path(d) / "thermo.parquet")
        t.rows = rows(0, n)
        t.flush()
        for k in range(repeat):
            for r in rows(n + k * new, new):
                t.append(r)
            t0 = time.perf_counter()
            t.flush()
            best = min(best, time.perf_counter() - t0)
    return best


def time_rewrite(n: int, new: int, repeat: int) -> float:
    best = np.inf
    with tempfile.TemporaryDirectory() as d:
        table = rows(0, n)
        path = Path(d) / "thermo.parquet"
        for k in range(repeat):
            table += rows(n + k * new, new)
            t0 = time.perf_counter()
            tmp = path.with_suffix(".tmp")
            pd.DataFrame(table).to_parquet(tmp, index=False)
            tmp.replace(path)
            best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    p.add_argument("--new", type=int, default=50, help="rows per checkpoint (1000 steps, a row every 20)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    res = {n: (time_append(n, args.new, args.repeat), time_rewrite(n, args.new, args.repeat)) for n in args.sizes}
    print(f"one checkpoint adding {args.new} rows (best of {args.repeat}):")
    for n, (a, w) in res.items():
        print(f"  {n:>7} rows so far: append-only {1000 * a:7.2f} ms, whole rewrite {1000 * w:8.2f} ms "
              f"(rewrite / append {w / a:6.1f}x)")
    lo, hi = min(args.sizes), max(args.sizes)
    print(f"cost at {hi} rows / cost at {lo} rows: append-only {res[hi][0] / res[lo][0]:.2f}x, "
          f"whole rewrite {res[hi][1] / res[lo][1]:.1f}x")


if __name__ == "__main__":
    main()
