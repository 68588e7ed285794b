"""Weak scaling of data-parallel training: samples/s per process for 1, 2, … processes.

Each point launches ``torchrun --standalone --nproc-per-node W -m hepgen.cli train`` on the
same showers with the same per-process batch size and a fixed number of optimiser steps,
and reads the training time from the run's ``train_log.csv`` (the loop's time, without
start-up and preprocessing fit).  Perfect weak scaling keeps samples/s per process constant
as W grows; on a machine with fewer cores than ``W × threads`` it cannot.

Usage:

    python benchmarks/bench_ddp.py --procs 1,2 --threads 1 --steps 60 -o /tmp/ddp
    python benchmarks/bench_ddp.py --procs 1,2,4,8 --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", default="1,2", help="comma-separated process counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--steps", type=int, default=60, help="optimiser steps per process")
    p.add_argument("--batch-size", type=int, default=256, help="per-process batch size")
    p.add_argument("--family", default="flow")
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=20_000, help="showers to simulate")
    p.add_argument("-o", "--out", default="bench-ddp")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import yaml

    from hepgen.data.formats import write_showers
    from hepgen.data.geometry import default_binning
    from hepgen.simulate.calorimeter import simulate_dataset

    data = out / "showers.h5"
    if not data.is_file():
        write_showers(data, simulate_dataset(args.n, geometry=default_binning(), seed=5))
    rows = []
    for w in (int(x) for x in args.procs.split(",")):
        run = out / f"w{w}"
        cfg = {"family": args.family, "epochs": 1, "max_steps": args.steps, "batch_size": args.batch_size,
               "threads": args.threads, "tensorboard": False, "select_by": "val_loss", "val_fraction": 0.02,
               "device": args.device}
        (out / f"w{w}.yaml").write_text(yaml.safe_dump(cfg))
        cmd = ["torchrun", "--standalone", "--nproc-per-node", str(w), "-m", "hepgen.cli", "train", str(data),
               "-o", str(run), "--config", str(out / f"w{w}.yaml"), "-q"]
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd[0] = str(torchrun) if torchrun.exists() else "torchrun"
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        subprocess.run(cmd, check=True, env=env)
        with open(run / "train_log.csv") as fh:
            last = list(csv.DictReader(fh))[-1]
        steps, seconds = int(last["step"]), float(last["seconds"])
        per_proc = steps * args.batch_size / seconds
        rows.append({"processes": w, "steps": steps, "seconds": seconds,
                     "samples_per_s_per_process": per_proc, "samples_per_s_total": per_proc * w})
    base = rows[0]["samples_per_s_per_process"]
    print(f"{'procs':>5} {'steps':>6} {'seconds':>8} {'samples/s/proc':>15} {'total':>10} {'efficiency':>10}")
    for r in rows:
        r["weak_scaling_efficiency"] = r["samples_per_s_per_process"] / base
        print(f"{r['processes']:5d} {r['steps']:6d} {r['seconds']:8.1f} {r['samples_per_s_per_process']:15.0f} "
              f"{r['samples_per_s_total']:10.0f} {r['weak_scaling_efficiency']:10.2f}")
    (out / "ddp.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
