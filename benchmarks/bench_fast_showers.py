"""Issue 14 in one run: fidelity and speed of shower checkpoints against the reference simulator.

For each checkpoint (e.g. the demo's teacher and its distilled student)::

    python benchmarks/bench_fast_showers.py hepgen-demo/run/best.pt hepgen-demo/student/best.pt \
        --real hepgen-demo/data/test.h5 --threads 2 -o bench-fast

* fidelity: the checkpoint samples the reference file's conditions; ``hepgen evaluate``'s
  classifier AUCs (low / high level), mean separation power, and optionally the CaloChallenge
  protocol (``--calochallenge``, slow on a CPU: see docs/metrics.md);
* speed, measured here and now with :func:`hepgen.bench.run_bench`: showers/s at batch 1000
  on ``--threads`` threads through ``--path`` (default ``fp32``; ``auto``: the demo's path), the
  ratio to the reference simulator on the same threads, and the roofline ratio (network matmul
  FLOP/s over measured dense-matmul FLOP/s);
* the simulator against an independent sample of itself (the floor of every fidelity figure).

The table is printed and written to ``OUT/bench_fast_showers.json``.  Targets of issue 14:
AUC <= 0.55 / 0.52, >= 10x the simulator, >= 15k showers/s at batch 1000, roofline >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hepgen._io import json_safe
from hepgen.bench import run_bench
from hepgen.data.formats import ShowerData, read_showers
from hepgen.domains.showers.evaluate import evaluate
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import auto_sampling_path
from hepgen.simulate.calorimeter import ShowerSimulator


def _fidelity(real: ShowerData, generated: ShowerData, seed: int, calochallenge: bool) -> dict:
    m = evaluate(real, generated, real.geometry, seed=seed, groups="fast,classifier",
                 classifier_protocol="both" if calochallenge else "hepgen")
    clf = m.get("classifier", {})
    row = {"auc_low": clf.get("low_level", {}).get("auc"), "auc_high": clf.get("high_level", {}).get("auc"),
           "sep_mean": m["separation_power_mean"]}
    cc = m.get("classifier_calochallenge")
    if cc:
        row["cc_auc_low"] = cc.get("low_level", {}).get("auc")
        row["cc_auc_high"] = cc.get("high_level", {}).get("auc")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--real", required=True, help="reference showers (the test file)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calochallenge", action="store_true", help="also the CaloChallenge classifier protocol")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--path", default="fp32",
                    help="sampling path timed (hepgen.domains.showers.inference.SAMPLING_PATHS, or 'auto': the "
                         "demo's choice on this CPU); the fidelity figures come from fp32 samples")
    ap.add_argument("-o", "--output", default="bench-fast")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    real = read_showers(args.real)
    path_timed = auto_sampling_path() if args.path == "auto" else args.path
    rows = []
    # the floor: the simulator against an independent sample at the same conditions
    t0 = time.perf_counter()
    showers = ShowerSimulator(real.geometry).simulate(real.incident_energies, seed=args.seed + 12345)
    sim = ShowerData(showers, real.incident_energies, dict(real.conditions), real.geometry)
    rows.append({"model": "simulator (reference)", **_fidelity(real, sim, args.seed, args.calochallenge),
                 "showers_per_s": len(real) / (time.perf_counter() - t0)})
    for path in args.checkpoints:
        gen = ShowerGenerator.load(path)
        showers = gen.sample(real.incident_energies, real.conditions, seed=args.seed)
        generated = ShowerData(showers, real.incident_energies, dict(real.conditions), real.geometry)
        row = {"model": f"{gen.model.family} ({path})", **_fidelity(real, generated, args.seed, args.calochallenge)}
        res = run_bench(gen, batch_sizes=[1000], threads=[args.threads], paths=[path_timed], min_time=2.0,
                        simulator_n=2000, seed=args.seed)
        run = res["runs"][0]
        row.update(showers_per_s=run["showers_per_s"], speedup=run["speedup_vs_simulator"],
                   roofline=run["roofline_ratio"], params=sum(p.numel() for p in gen.model.parameters()))
        rows.append(row)
    (out / "bench_fast_showers.json").write_text(json.dumps(json_safe(rows), indent=2))
    keys = ["auc_low", "auc_high", "cc_auc_low", "cc_auc_high", "sep_mean", "showers_per_s", "speedup", "roofline"]
    keys = [k for k in keys if any(k in r for r in rows)]
    print(f"{'model':60s} " + " ".join(f"{k:>13s}" for k in keys))
    for r in rows:
        vals = [r.get(k) for k in keys]
        print(f"{r['model'][:60]:60s} " + " ".join(f"{'—':>13s}" if v is None else f"{v:13.4g}" for v in vals))
    print(f"targets: AUC <= 0.55 / 0.52, speed-up >= 10, >= 15000 showers/s at batch 1000, roofline >= 0.5 "
          f"({args.threads} threads, sampling path {path_timed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
