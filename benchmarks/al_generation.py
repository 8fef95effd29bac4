"""Wall-time split of AL generations (train / explore / label / validate) and the labelling check.

Reads a campaign's store (``--workspace``; default: runs ``protocols/al/ci.yaml`` in a temporary
workspace first). Per generation: summed task seconds by stage and its share; frames selected vs frames
labelled vs oracle calls (must all be equal: nothing labelled twice). Then the harness's labelling cost per
frame against a bare oracle call on the same frame, measured now (ratio; the harness adds a resume file,
a manifest and provenance per frame).

    python benchmarks/al_generation.py [--workspace runs/al] [--campaign deepmd-mini]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = {"train": "train", "al_start": "explore", "explore": "explore", "label": "label", "al_set": "label",
         "md": "validate", "observe": "validate", "ref_density": "validate", "score": "validate"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path)
    p.add_argument("--campaign")
    args = p.parse_args()
    ws = args.workspace
    if ws is None:
        ws = Path(tempfile.mkdtemp(prefix="al-bench-"))
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "harness"), "al", "run", str(ROOT / "protocols/al/ci.yaml"),
                        "-w", str(ws)], check=True)
        print(f"ran protocols/al/ci.yaml in {time.perf_counter() - t0:.0f} s (fresh workspace {ws})")

    from harness.workflow.store import Store

    store = Store(ws / "harness.sqlite")
    rows = [r for r in store.tasks(status="done", sweep=args.campaign)]
    store.close()
    by_gen: dict[tuple, dict[str, float]] = {}
    ref = 0.0
    for r in rows:
        par, res = r["params"], r["result"] or {}
        tags = par.get("tags") or res.get("tags") or {}
        gen = par.get("generation", tags.get("generation", res.get("generation")))
        chain = par.get("chain", tags.get("chain", res.get("chain")))
        if r["kind"] == "al_start":
            gen, chain = "starts", "-"
        if gen is None:
            ref += r["wall_s"] or 0.0  # the reference committee (trained and run once per campaign)
            continue
        d = by_gen.setdefault((str(chain), str(gen)), {})
        d[STAGE[r["kind"]]] = d.get(STAGE[r["kind"]], 0.0) + (r["wall_s"] or 0.0)
    print(f"\n{'chain':<10} {'gen':>6} " + " ".join(f"{s:>16}" for s in ("train", "explore", "label", "validate")))
    for (chain, gen), d in sorted(by_gen.items()):
        tot = sum(d.values()) or 1.0
        print(f"{chain:<10} {gen:>6} " + " ".join(f"{d.get(s, 0):9.0f} s {100 * d.get(s, 0) / tot:3.0f} %"
                                                  for s in ("train", "explore", "label", "validate")))
    print(f"reference committee (training + validation runs, shared by all generations): {ref:.0f} s")
    sets = [r for r in rows if r["kind"] == "al_set"]
    print(f"\n{'chain':<10} {'gen':>4} {'runs':>5} {'selected':>9} {'labelled':>9} {'oracle calls':>13} {'ratio':>6}")
    for r in sorted(sets, key=lambda r: (r["result"]["chain"], r["result"]["generation"])):
        s = r["result"]
        runs = len(r["deps"]) - (1 if s["generation"] else 0)
        ratio = s["oracle_calls"] / s["n_selected"] if s["n_selected"] else float("nan")
        print(f"{s['chain']:<10} {s['generation']:>4} {runs:>5} {s['n_selected']:>9} {s['n_new']:>9} "
              f"{s['oracle_calls']:>13} {ratio:6.2f}")
        assert s["oracle_calls"] == s["n_selected"], "a frame was labelled twice (or a selected frame not at all)"

    labels = [r for r in rows if r["kind"] == "label" and r["result"].get("labelled_file")]
    if labels:
        from harness.io import read_frames
        from harness.reference import make_oracle

        lab = labels[0]
        frame = read_frames(lab["result"]["labelled_file"])[0]
        oracle = make_oracle(lab["params"]["oracle"]["name"], lab["params"]["oracle"]["options"])
        a = frame.copy()
        t0 = time.perf_counter()
        a.calc = oracle.make_calculator()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        bare = time.perf_counter() - t0
        task = sum(r["wall_s"] for r in labels) / len(labels)
        print(f"\nlabel task per frame {task:.2f} s vs bare oracle call {bare:.2f} s on a {len(frame)}-atom frame: "
              f"ratio {task / bare:.2f}")


if __name__ == "__main__":
    main()
