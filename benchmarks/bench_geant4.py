"""Geant4 seconds per shower at 1, 10, 100 GeV against GFlash on the same geometry, same process.

Simulates ``--counts`` showers at each energy of ``--energies`` (GeV) with the Geant4
engine (``hepgen[geant4]``) in ``--preset`` and, in the same process, ``--gflash-n``
showers per energy with GFlash (:mod:`hepgen.simulate.calorimeter`) on the preset's binning
and its GFlash counterpart (:func:`hepgen.simulate.geant4.presets.gflash_calorimeter`; for the
``demo`` preset, the Geant4 twin of the demo's calorimeter, GFlash's own ``SamplingCalorimeter()``),
and prints s/shower, showers/s and their ratio.  With ``--scoring-costs`` it also times
the scoring variants (bare Geant4: plain slabs, no scoring; the voxel volumes without
scoring; the primitive scorer; a Python sensitive detector called at every step) at ``--scoring-energy``, each in its own process
(one Geant4 run manager per process).  With ``--checkpoint CKPT ...`` it also times each
trained shower generator (a model trained on showers of the same preset, e.g. on Geant4
files of ``hepgen simulate showers --engine geant4``) at the same energies, batch
``--model-batch``, on ``--threads`` threads, and prints its speed-up over Geant4.
The last line of stdout is the result as JSON.
Usage (one core, ≈ 1 minute at the defaults):

    OMP_NUM_THREADS=1 python benchmarks/bench_geant4.py --scoring-costs
    python benchmarks/bench_geant4.py --checkpoint run_caloflow/best.pt run_vae/best.pt --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.simulate.calorimeter import ShowerSimulator, default_calorimeter
from hepgen.simulate.geant4 import geant4_version, get_engine, get_preset
from hepgen.simulate.geant4.presets import gflash_calorimeter


def geant4_times(preset: str, particle: str, energies_gev, counts, scoring: str) -> list[dict]:
    engine = get_engine(preset, scoring=scoring)
    engine.simulate([1000.0], particle, seed=1)  # warm-up (first-event caches)
    out = []
    for e, n in zip(energies_gev, counts):
        r = engine.simulate(np.full(int(n), e * 1000.0), particle, seed=7)
        out.append({"energy_gev": e, "n": int(n), "s_per_shower": r["seconds"] / n})
    return out


def model_rates(path: str, energies_gev, n: int, batch: int, n_voxels: int) -> dict:
    """Showers per second of a trained generator at each energy (after one warm-up call)."""
    gen = ShowerGenerator.load(path)
    if gen.geometry.n_voxels != n_voxels:
        raise ValueError(f"{path}: key 'geometry': expected a model of the preset's {n_voxels} voxels, "
                         f"found {gen.geometry.n_voxels}")
    gen.sample(np.full(batch, energies_gev[0] * 1000.0), seed=0, batch_size=batch)
    rates = {}
    for e in energies_gev:
        t0 = time.perf_counter()
        gen.sample(np.full(n, e * 1000.0), seed=1, batch_size=batch)
        rates[e] = n / (time.perf_counter() - t0)
    return {"checkpoint": path, "family": gen.model.family, "showers_per_s": rates}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="ds1-photon")
    p.add_argument("--particle", default="gamma")
    p.add_argument("--energies", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="GeV")
    p.add_argument("--counts", type=int, nargs="+", default=[20, 10, 3], help="Geant4 showers per energy")
    p.add_argument("--gflash-n", type=int, default=2000, help="GFlash showers per energy")
    p.add_argument("--scoring", default="primitive", choices=["primitive", "python", "none", "bare"])
    p.add_argument("--scoring-costs", action="store_true", help="also time none / primitive / python scoring")
    p.add_argument("--scoring-energy", type=float, default=10.0, help="GeV, for --scoring-costs")
    p.add_argument("--scoring-n", type=int, default=10)
    p.add_argument("--checkpoint", nargs="*", default=[], help="trained shower generators of this preset to time")
    p.add_argument("--model-n", type=int, default=5000, help="showers sampled per energy and model")
    p.add_argument("--model-batch", type=int, default=1000, help="showers per network call")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the models")
    p.add_argument("--geant4-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if len(args.counts) != len(args.energies):
        p.error(f"--counts: expected {len(args.energies)} numbers (one per energy), found {len(args.counts)}")

    g4 = geant4_times(args.preset, args.particle, args.energies, args.counts, args.scoring)
    if args.geant4_only:
        print(json.dumps(g4))
        return
    spec = get_preset(args.preset)
    # the demo preset is the twin of GFlash's default calorimeter: time that one, not a derived one
    sim = ShowerSimulator(spec.geometry, default_calorimeter() if args.preset == "demo" else gflash_calorimeter(spec))
    sim.simulate(np.full(50, 1000.0), seed=0)  # warm-up
    rows = []
    for row in g4:
        t0 = time.perf_counter()
        sim.simulate(np.full(args.gflash_n, row["energy_gev"] * 1000.0), seed=1)
        gf = args.gflash_n / (time.perf_counter() - t0)
        rows.append({**row, "gflash_showers_per_s": gf, "geant4_showers_per_s": 1 / row["s_per_shower"],
                     "gflash_speedup": gf * row["s_per_shower"]})
    print(f"{args.preset} ({spec.geometry.n_voxels} voxels), {args.particle}, Geant4 {geant4_version()} "
          f"({args.scoring} scoring) vs GFlash, one process, one core")
    print(f"{'E/GeV':>7} {'G4 n':>5} {'G4 s/shower':>12} {'GFlash showers/s':>17} {'GFlash/G4 speed-up':>19}")
    for r in rows:
        print(f"{r['energy_gev']:7g} {r['n']:5d} {r['s_per_shower']:12.4f} {r['gflash_showers_per_s']:17.1f} "
              f"{r['gflash_speedup']:19.0f}")
    if args.checkpoint:
        torch.set_num_threads(args.threads)
        models = [model_rates(c, args.energies, args.model_n, args.model_batch, spec.geometry.n_voxels)
                  for c in args.checkpoint]
        print(f"models ({args.threads} thread(s), batch {args.model_batch}, {args.model_n} showers per energy) vs "
              "Geant4 (one core):")
        print(f"{'E/GeV':>7} " + " ".join(f"{m['family'] + ' showers/s':>22} {'x Geant4':>10}" for m in models))
        for r in rows:
            e = r["energy_gev"]
            print(f"{e:7g} " + " ".join(f"{m['showers_per_s'][e]:22.0f} {m['showers_per_s'][e] * r['s_per_shower']:10.0f}"
                                      for m in models))
            r["models"] = {m["checkpoint"]: {"family": m["family"], "showers_per_s": m["showers_per_s"][e],
                                             "speedup_vs_geant4": m["showers_per_s"][e] * r["s_per_shower"]}
                           for m in models}
    result = {"benchmark": "geant4", "preset": args.preset, "particle": args.particle, "geant4": geant4_version(),
              "scoring": args.scoring, "gflash_n": args.gflash_n, "rows": rows, "cpu_count": os.cpu_count(),
              "python": platform.python_version()}
    if args.scoring_costs:
        costs = {}
        for scoring in ("bare", "none", "primitive", "python"):
            cmd = [sys.executable, __file__, "--geant4-only", "--preset", args.preset, "--particle", args.particle,
                   "--energies", str(args.scoring_energy), "--counts", str(args.scoring_n), "--scoring", scoring]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            costs[scoring] = json.loads(res.stdout.strip().splitlines()[-1])[0]["s_per_shower"]
        print(f"scoring cost at {args.scoring_energy:g} GeV ({args.scoring_n} showers each, s/shower): "
              + ", ".join(f"{k} {v:.4f}" for k, v in costs.items())
              + f"; relative to bare Geant4 (plain slabs): voxel volumes {costs['none'] / costs['bare']:.2f}, "
              f"primitive scorer {costs['primitive'] / costs['bare']:.2f}, Python per-step SD "
              f"{costs['python'] / costs['bare']:.2f}")
        result["scoring_costs_s_per_shower"] = costs
    print(json.dumps(result))


if __name__ == "__main__":
    main()
