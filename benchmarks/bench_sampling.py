"""Sampling speed of a trained generator versus the reference simulator, in one run.

Both produce showers for the same incident energies on the same machine; the table gives
showers/s of each and the ratio.  Usage:

    python benchmarks/bench_sampling.py --checkpoint hepgen-demo/run/best.pt --n 5000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.simulate.calorimeter import ShowerSimulator


def _rate(fn, n: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="hepgen-demo/run/best.pt")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = ShowerGenerator.load(args.checkpoint)
    lo, hi = gen.meta.get("energy_range", [1e3, 1e5])
    energies = np.exp(np.random.default_rng(0).uniform(np.log(lo), np.log(hi), args.n))
    sim = ShowerSimulator(gen.geometry)
    sim_rate = _rate(lambda: sim.simulate(energies, seed=1), args.n, repeats=1)
    rows = {"simulator": sim_rate}
    for bs in (1, 100, 1000, 10_000):
        n = min(args.n, 200) if bs == 1 else args.n
        rows[f"generator_batch_{bs}"] = _rate(lambda: gen.sample(energies[:n], seed=0, batch_size=bs), n)
    print(f"torch threads: {torch.get_num_threads()}, geometry: {gen.geometry.n_voxels} voxels")
    print(f"{'source':24s} {'showers/s':>12s} {'vs simulator':>13s}")
    for name, rate in rows.items():
        print(f"{name:24s} {rate:12.1f} {rate / sim_rate:12.1f}x")
    print(json.dumps({"showers_per_s": rows, "threads": torch.get_num_threads(), "n": args.n}))


if __name__ == "__main__":
    main()
