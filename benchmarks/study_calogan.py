"""CaloGAN study on Geant4 showers of the ``calogan`` preset: layer-by-layer GAN, timing beside the paper's.

Paganini, de Oliveira, Nachman, "CaloGAN", arXiv:1705.02355 (PRD 97 (2018) 014021): a GAN
that generates the three layers of different granularity (3 × 96, 12 × 12, 12 × 6 cells)
of a Pb/LAr calorimeter layer by layer, conditioned on the energy.  This script

1. simulates ``--n`` e⁺ showers with Geant4 in the ``calogan`` preset (hepgen's data-free
   EM physics list, docs/geant4.md), energies log-uniform in ``--energy-range`` GeV;
2. trains hepgen's ``gan`` family with ``arch: layered`` (the CaloGAN-style layer-by-layer
   generator, ``layer_sizes`` = [288, 144, 72] from the geometry) and hepgen's best family,
   ``caloflow`` (its preset), each on the first half for ``--minutes`` of CPU;
3. samples each at the held-out half's energies, scores it with hepgen's fast metrics
   (CaloChallenge separation power of the high-level features; ``report_<model>/`` holds
   ``hepgen evaluate``'s report) and times sampling on CPU at batch sizes 1, 10, 128, 1024
   against the measured Geant4 time per shower;
4. prints the timing table beside the paper's and, as its last stdout line, the result as JSON.

The paper's timing table is quoted only as far as the issue states it (Geant4 1,772 ms per
shower; the GAN in milliseconds on CPU and microseconds on GPU); its per-batch entries are
not re-checked here and are not printed as numbers.  Differences to the paper, stated in the
output: physics list, energy range (the paper: 1–100 GeV), data size, CPU budget, hardware.

Usage (one core; ≈ 5 minutes at the defaults, of which ≈ 1 minute Geant4):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_calogan.py --n 600 --minutes 1.5 -o runs/study_calogan
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.config import apply_overrides, preset
from hepgen.data.formats import ShowerData
from hepgen.domains.showers.evaluate import FAST_GROUPS, evaluate, write_outputs
from hepgen.simulate.geant4 import simulate_geant4
from hepgen.train.trainer import train

PAPER_G4_MS = 1772.0  # arXiv:1705.02355, timing table: Geant4 per shower (as quoted in issue 23)


def _subset(data: ShowerData, idx) -> ShowerData:
    return ShowerData(data.showers[idx], data.incident_energies[idx],
                      {k: v[idx] for k, v in data.conditions.items()}, data.geometry, dict(data.attrs))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", default="runs/study_calogan", help="output folder")
    p.add_argument("--n", type=int, default=600, help="Geant4 showers (half for training, half held out)")
    p.add_argument("--energy-range", type=float, nargs=2, default=(1.0, 10.0), metavar=("LO", "HI"),
                   help="e+ energies, GeV, log-uniform (the paper: 1-100 GeV; 100 GeV costs ~1.8 s/shower here)")
    p.add_argument("--minutes", type=float, default=1.5, help="training budget per model (wall clock)")
    p.add_argument("--models", nargs="+", default=["gan", "caloflow"], choices=["gan", "caloflow"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 20:
        raise ValueError(f"--n: expected at least 20 showers, found {args.n}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    lo, hi = args.energy_range
    t0 = time.perf_counter()
    data = simulate_geant4(out / "calogan_g4.h5", args.n, preset="calogan", particle="e+",
                           energy_range=(lo * 1000.0, hi * 1000.0), seed=args.seed, workers=args.workers,
                           chunk_size=max(10, args.n // 10), progress=False)
    g4_wall = time.perf_counter() - t0
    g4_ms = 1000.0 * data.attrs["cpu_seconds"] / len(data)
    half = len(data) // 2
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(data))
    train_data, test_data = _subset(data, np.sort(perm[:half])), _subset(data, np.sort(perm[half:]))

    ref = evaluate(_subset(test_data, np.arange(0, len(test_data), 2)),
                   _subset(test_data, np.arange(1, len(test_data), 2)), classifier=False, groups=("features",),
                   seed=args.seed)
    layer_sizes = [s.stop - s.start for s in data.geometry.layer_slices]
    e_mid = float(np.sqrt(lo * hi)) * 1000.0
    models = {}
    for family in args.models:
        extra = ["batch_size=64"] if family == "gan" else []
        config = apply_overrides(preset(family), [f"max_minutes={args.minutes}", "epochs=100000",
                                                  f"threads={args.threads}", f"seed={args.seed}", *extra])
        t0 = time.perf_counter()
        gen = train(train_data, config, out / family, progress=False)
        train_s = time.perf_counter() - t0
        fake = gen.sample_like(test_data, seed=args.seed + 1)
        metrics, details = evaluate(test_data, fake, classifier=False, groups=FAST_GROUPS, seed=args.seed,
                                    return_details=True)
        write_outputs(metrics, test_data, fake, out / f"report_{family}", details=details,
                      train_log=out / family / "train_log.csv")
        gen.sample(np.full(8, e_mid), seed=0, batch_size=8)  # warm-up
        timing = {}
        for batch in (1, 10, 128, 1024):
            n = max(batch, 64) if batch < 1024 else 2048
            t0 = time.perf_counter()
            gen.sample(np.full(n, e_mid), seed=1, batch_size=batch)
            timing[batch] = 1000.0 * (time.perf_counter() - t0) / n
        models[family] = {"train_seconds": train_s, "ms_per_shower": {str(k): v for k, v in timing.items()},
                          "separation_power_mean": metrics["separation_power_mean"],
                          "params": sum(q.numel() for q in gen.model.parameters())}

    print(f"data: {len(data)} Geant4 e+ showers of the calogan preset, {lo:g}-{hi:g} GeV log-uniform, "
          f"{data.geometry.n_voxels} voxels (layers {layer_sizes}); Geant4 {g4_ms:.0f} ms/shower "
          f"(wall {g4_wall:.0f} s, {args.workers} worker(s))")
    for family, m in models.items():
        print(f"model {family}: {m['params']:,} parameters, trained {m['train_seconds']:.0f} s on {half} showers, "
              f"{args.threads} thread(s); mean separation power of the high-level features on the held-out "
              f"{len(test_data)}: {m['separation_power_mean']:.3f} (Geant4 half vs half: "
              f"{ref['separation_power_mean']:.3f})")
    print()
    print("| per shower | CaloGAN paper (arXiv:1705.02355) | " + " | ".join(f"here: {f} (CPU)" for f in models) + " |")
    print("|---|---|" + "---|" * len(models))
    print(f"| Geant4 | {PAPER_G4_MS:,.0f} ms (1-100 GeV, its physics list) | " + " | ".join(
        f"{g4_ms:.1f} ms ({lo:g}-{hi:g} GeV, data-free EM list)" for _ in models) + " |")
    for batch in ("1", "10", "128", "1024"):
        print(f"| model, batch {batch} | ms on CPU, µs on GPU (per-batch values not re-checked) | " + " | ".join(
            f"{m['ms_per_shower'][batch]:.3f} ms" for m in models.values()) + " |")
    print("| speed-up at batch 1024 | – | " + " | ".join(
        f"{g4_ms / m['ms_per_shower']['1024']:,.0f}x" for m in models.values()) + " |")
    print()
    print("differences: physics list (hepgen's data-free EM list), energies (not 1-100 GeV), "
          f"{half} training showers (the paper: 100k per particle), {args.minutes:g} min of CPU training per model "
          "(the paper: GPU, many epochs), e+ only.")
    result = {"n": len(data), "energy_range_gev": [lo, hi], "geant4_ms_per_shower": g4_ms,
              "paper_geant4_ms_per_shower": PAPER_G4_MS, "models": models,
              "separation_power_mean_g4_vs_g4": ref["separation_power_mean"],
              "layer_sizes": layer_sizes, "threads": args.threads, "omp": os.environ.get("OMP_NUM_THREADS")}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
