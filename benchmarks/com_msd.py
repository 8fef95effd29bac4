"""COM-MSD block analysis: harness (vectorised FFT) vs a naive O(L²)-per-block MSD and vs tidynamics.

A 640-atom EC:EMC-like trajectory (16 molecules of 10 atoms + 32 of 15 atoms, rigid, Brownian COMs)
of 10 000 frames 0.1 ps apart, analysed with the paper's scheme (100 ps equilibration, 100 ps blocks
with origins 10 ps apart, first 10 ps dropped). All three run the same block loop
(``harness.observables.diffusion.block_diffusivity``) and differ only in the MSD routine, so the
ratios isolate the MSD cost; the harness number is the full analysis (COM, drift removal, blocks,
fits); the harness loop alone also keeps per-molecule MSDs and bootstraps β's interval (issue #28), so
its ratios are conservative. Targets (issue #6): naive / harness >= 10, harness / tidynamics <= 1.5.

    python benchmarks/com_msd.py [--frames 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def make_trajectory(n_frames: int, dt_ps: float, seed: int = 0):
    from harness.observables.trajectory import Trajectory

    rng = np.random.default_rng(seed)
    sizes = [10] * 16 + [15] * 32  # atoms per molecule: 640 in all
    numbers = np.concatenate([[6, 6, 6, 8, 8, 8, 1, 1, 1, 1]] * 16 + [[6, 6, 6, 6, 8, 8, 8] + [1] * 8] * 32)
    mol_id = np.repeat(np.arange(len(sizes)), sizes)
    box = 19.0
    com = rng.uniform(0, box, (len(sizes), 3))[None] + np.cumsum(
        rng.normal(0, np.sqrt(2 * 0.5 * dt_ps), (n_frames, len(sizes), 3)), axis=0)
    offsets = rng.normal(0, 1.0, (len(numbers), 3))
    positions = com[:, mol_id, :] + offsets[None]
    from ase.data import atomic_masses

    return Trajectory(positions, np.tile(np.eye(3) * box, (n_frames, 1, 1)), np.arange(n_frames) * dt_ps,
                      numbers, atomic_masses[numbers], mol_id, "synthetic")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--dt-ps", type=float, default=0.1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    import tidynamics

    from harness.observables import diffusion as dif

    traj = make_trajectory(args.frames, args.dt_ps)
    spec = dif.DiffusionSpec(block_ps=100, block_stride_ps=10, skip_ps=10, kinisi=False)
    t = traj.after(100.0)
    dt, length, stride, skip = dif._block_grid(t, spec)
    com, groups = dif._com_by_species(t)

    def tidy(x):
        return np.mean([tidynamics.msd(x[:, i]) for i in range(x.shape[1])], axis=0)

    t_harness = best_of(lambda: dif.species_diffusivity(traj, spec, equilibration_ps=100.0), args.repeat)
    t_fft = best_of(lambda: dif.block_diffusivity(com, dt, length, stride, skip, groups), args.repeat)
    t_tidy = best_of(lambda: dif.block_diffusivity(com, dt, length, stride, skip, groups, msd=tidy), args.repeat)
    t_naive = best_of(lambda: dif.block_diffusivity(com, dt, length, stride, skip, groups, msd=dif.msd_naive), 1)
    res = dif.species_diffusivity(traj, spec, equilibration_ps=100.0)
    n_blocks = len(next(iter(res.values())).block.D_blocks)
    print(f"trajectory: {traj.positions.shape[1]} atoms, {traj.n_frames} frames, {len(groups)} species, "
          f"{n_blocks} blocks of {length} frames")
    print("D (true 0.5 Å²/ps): " + ", ".join(f"{k} {v.block.D:.3f} ± {v.block.sem:.3f}" for k, v in res.items()))
    print(f"harness full analysis (COM + drift + FFT blocks + fits): {t_harness:.3f} s")
    print(f"block loop, harness FFT MSD:   {t_fft:.3f} s")
    print(f"block loop, tidynamics MSD:    {t_tidy:.3f} s")
    print(f"block loop, naive O(L^2) MSD:  {t_naive:.3f} s")
    print(f"ratio naive / harness:         {t_naive / t_harness:.1f}  (target >= 10)")
    print(f"ratio harness / tidynamics:    {t_harness / t_tidy:.2f}  (target <= 1.5; full analysis vs MSD loop)")
    print(f"ratio harness FFT / tidynamics (same loop): {t_fft / t_tidy:.2f}")


if __name__ == "__main__":
    main()
