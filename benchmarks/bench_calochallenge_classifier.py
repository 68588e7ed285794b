"""Does the CaloChallenge classifier protocol see a known defect, and at what sample size?

Takes two shower files of the same simulator (independent seeds) and makes the second one
"generated" by scaling the energies of one layer by ``1 + --shift`` (default: layer 0, 3 %)
and, with ``--cut``, removing the voxels below an energy; ``--shift 0`` gives a null test.  For every size in ``--sizes`` (showers per side) it runs
hepgen's default classifier (:func:`hepgen.metrics.classifier.classifier_two_sample_test`)
and the CaloChallenge protocol (:mod:`hepgen.domains.showers.calochallenge`) with the
settings given (the protocol's by default; ``--hidden``, ``--epochs``, ``--min-steps`` and
``--standardise`` change them), on ``cls-low`` and ``cls-high`` inputs.  Prints one line per
run and writes the numbers as JSON to ``--out``.

    hepgen simulate showers -o real.h5 --n 60000 --seed 1
    hepgen simulate showers -o gen.h5 --n 60000 --seed 2
    python benchmarks/bench_calochallenge_classifier.py real.h5 gen.h5 --sizes 10000 --hidden 256

The full-width network (2048) costs ~0.6 s per batch of 1000 on one busy CPU thread: the
protocol on 10k showers per side (600 steps) takes ~7 min per input level.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from hepgen._io import atomic_path
from hepgen.data.formats import read_showers
from hepgen.domains.showers.calochallenge import PROTOCOL, calochallenge_levels
from hepgen.metrics.classifier import classifier_two_sample_test, high_level_inputs, low_level_inputs
from hepgen.metrics.observables import high_level_features


def shifted(showers: np.ndarray, geometry, layer: int, shift: float) -> np.ndarray:
    """A copy of ``showers`` with the energies of ``layer`` scaled by ``1 + shift``."""
    out = np.array(showers, dtype=np.float64, copy=True)
    out[:, geometry.layer_slices[layer]] *= 1.0 + shift
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("real")
    p.add_argument("generated")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--shift", type=float, default=0.03)
    p.add_argument("--layer", type=int, default=0)
    p.add_argument("--cut", type=float, default=0.0,
                   help="also set generated voxels below this energy (MeV) to zero (a missing low-energy tail)")
    p.add_argument("--levels", nargs="+", default=["low_level", "high_level"])
    p.add_argument("--hidden", type=int, default=PROTOCOL["hidden"])
    p.add_argument("--epochs", type=int, default=PROTOCOL["epochs"])
    p.add_argument("--lr", type=float, default=PROTOCOL["lr"])
    p.add_argument("--min-steps", type=int)
    p.add_argument("--standardise", action="store_true")
    p.add_argument("--no-hepgen", action="store_true", help="skip hepgen's default classifier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    real, gen = read_showers(args.real), read_showers(args.generated)
    geometry = real.geometry
    g_showers = shifted(gen.showers, geometry, args.layer, args.shift)
    g_showers[g_showers < args.cut] = 0.0
    rows = []
    for n in args.sizes:
        rs, re_ = real.showers[:n], real.incident_energies[:n]
        gs, ge = g_showers[:n], gen.incident_energies[:n]
        row = {"n_per_side": len(rs), "shift": args.shift, "layer": args.layer, "cut": args.cut}
        if not args.no_hepgen:
            fr = high_level_features(rs, re_, geometry)
            fg = high_level_features(gs, ge, geometry)
            pairs = {"low_level": (low_level_inputs(rs, re_), low_level_inputs(gs, ge)),
                     "high_level": (high_level_inputs(fr, re_), high_level_inputs(fg, ge))}
            for level in args.levels:
                t = time.perf_counter()
                res = classifier_two_sample_test(*pairs[level], seed=args.seed)
                row[f"hepgen_{level}"] = {"auc": res["auc"], "auc_err": res["auc_err"],
                                          "seconds": time.perf_counter() - t}
                print(f"n={len(rs)} hepgen {level}: AUC {res['auc']:.4f} ± {res['auc_err']:.4f} "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
        for level in args.levels:
            t = time.perf_counter()
            res = calochallenge_levels(rs, re_, gs, ge, geometry, levels=(level,), seed=args.seed,
                                       hidden=args.hidden, epochs=args.epochs, lr=args.lr,
                                       min_steps=args.min_steps, standardise=args.standardise)[level]
            h = res.pop("history")
            row[f"calochallenge_{level}"] = {**res, "seconds": time.perf_counter() - t,
                                             "val_loss_first_last": [h["val_loss"][0], h["val_loss"][-1]]}
            print(f"n={len(rs)} calochallenge {level} (hidden {args.hidden}, {res['epochs']} epochs, "
                  f"{res['steps']} steps{', standardised' if args.standardise else ''}): AUC {res['auc']:.4f} "
                  f"(uncalibrated {res['auc_uncalibrated']:.4f}), JSD {res['jsd']:.4f}, best epoch "
                  f"{res['best_epoch']}, val loss {h['val_loss'][0]:.4f} → {min(h['val_loss']):.4f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        rows.append(row)
    result = {"real": args.real, "generated": args.generated, "threads": args.threads, "rows": rows}
    if args.out:
        with atomic_path(args.out) as tmp:
            with open(tmp, "w") as f:
                json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
