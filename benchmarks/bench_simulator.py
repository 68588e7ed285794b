"""Throughput of the GFlash-based reference shower simulator, in showers per second.

Simulates ``--n`` showers with log-uniform incident energies in ``--energy-range`` (MeV) on
the built-in 384-voxel binning (or ``--binning``), best of ``--repeats`` runs, and prints a
short table; the last line of stdout is the same result as JSON.  Usage:

    python benchmarks/bench_simulator.py --n 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from hepgen.data.geometry import default_binning, load_geometry
from hepgen.simulate.calorimeter import ShowerSimulator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="showers per run")
    p.add_argument("--energy-range", type=float, nargs=2, default=[1e3, 1e5], metavar=("LO", "HI"))
    p.add_argument("--binning", help="CaloChallenge XML or geometry JSON (default: built-in binning)")
    p.add_argument("--max-spots", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    geometry = load_geometry(args.binning) if args.binning else default_binning()
    sim = ShowerSimulator(geometry, max_spots=args.max_spots)
    lo, hi = args.energy_range
    energies = np.exp(np.random.default_rng(0).uniform(np.log(lo), np.log(hi), args.n))
    sim.simulate(energies[: min(50, args.n)], seed=0)  # warm-up

    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        sim.simulate(energies, seed=r, batch_size=args.batch_size)
        times.append(time.perf_counter() - t0)
    best = min(times)
    spots = int(sim.n_spots(energies).sum())
    result = {
        "benchmark": "simulator",
        "n": args.n,
        "n_voxels": geometry.n_voxels,
        "energy_range_mev": [lo, hi],
        "max_spots": args.max_spots,
        "batch_size": args.batch_size,
        "best_s": best,
        "showers_per_s": args.n / best,
        "spots_per_s": spots / best,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(f"geometry: {geometry.n_voxels} voxels, {args.n} showers, E in [{lo:g}, {hi:g}] MeV (log-uniform)")
    print(f"best of {args.repeats}: {best:.3f} s  →  {args.n / best:,.0f} showers/s  ({spots / best:,.0f} spots/s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
