"""Interleaved timing of a shower checkpoint's sampling candidates (issue 14), for ratios on a shared machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_sampling_paths.py hepgen-demo/run/best.pt --threads 1 --rounds 9
    OMP_NUM_THREADS=2 python benchmarks/bench_sampling_paths.py hepgen-demo/run/best.pt --threads 2 --rounds 9

Candidates: ``zuko`` (``ShowerSampler.from_generator(gen, fast=False)``: the model's own
``sample_from_noise``, the state before the fast spline sampler), ``fp32`` (the fast sampler,
:func:`hepgen.domains.showers.inference.build_sampler`) and the other sampling paths of
:func:`~hepgen.domains.showers.inference.prepare_path` on top of it.  All run in one process on the
same inputs (batch ``--batch``), called in turn A, B, C, … for ``--rounds`` rounds; the median
per candidate gives showers/s and the ratios to ``zuko`` and to ``fp32``.  Interleaving spreads
the load of other processes over all candidates alike, so the ratios stay meaningful where
absolute figures do not.  The first call of each candidate (the compilation for ``compile``)
is timed apart, with its largest difference to ``zuko``'s showers.  Fidelity (ΔAUC per path):
``hepgen bench CKPT --paths fp32,bf16,int8 --fidelity 10000 --real test.h5``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import ShowerSampler, prepare_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--paths", default="bf16,int8,compile", help="paths besides zuko and fp32 (comma-separated)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = ShowerGenerator.load(args.checkpoint)
    fp32 = ShowerSampler.from_generator(gen)
    cands = {"zuko": ShowerSampler.from_generator(gen, fast=False), "fp32": fp32}
    for p in filter(None, args.paths.split(",")):
        cands[p] = prepare_path(fp32, p)
    g = torch.Generator().manual_seed(args.seed)
    lo, hi = gen.meta.get("energy_range", [1e3, 1e5])
    e = torch.exp(torch.empty(args.batch, 1).uniform_(float(np.log(lo)), float(np.log(hi)), generator=g))
    # extra conditions (models trained with some): zeros, the timing does not depend on their values
    extra = fp32.condition_matrix({k: np.zeros((args.batch, 1)) for k in fp32.condition_names}, args.batch)
    extra = None if extra is None else torch.as_tensor(extra)
    z = torch.randn(args.batch, fp32.noise_dim, generator=g)
    times: dict[str, list[float]] = {k: [] for k in cands}
    with torch.no_grad():
        ref = cands["zuko"](e, z, extra)
        for k, m in cands.items():
            t0 = time.perf_counter()
            out = m(e, z, extra)
            print(f"{k:8s} first call {time.perf_counter() - t0:7.1f} s   max |diff| to zuko {(out - ref).abs().max().item():.3g} MeV",
                  flush=True)
        for _ in range(args.rounds):
            for k, m in cands.items():
                t0 = time.perf_counter()
                m(e, z, extra)
                times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"threads {args.threads}, batch {args.batch}, {args.rounds} interleaved rounds, "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'candidate':10s} {'showers/s':>10s} {'x zuko':>7s} {'x fp32':>7s}")
    for k in cands:
        print(f"{k:10s} {args.batch / med[k]:10.0f} {med['zuko'] / med[k]:7.2f} {med['fp32'] / med[k]:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
