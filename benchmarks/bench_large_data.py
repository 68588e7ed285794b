"""Training on showers larger than memory: peak RSS and throughput, streamed vs in memory.

Writes a CaloChallenge-dataset-3-sized synthetic file (a CylindricalBinning of 45 layers x
50 alpha x 18 r = 40,500 voxels, float32, HDF5-chunked by 16 rows, no compression: 162 kB per
shower, 100k showers = 16.2 GB), trains one epoch of a small family on it *streamed*
(:mod:`hepgen.data.chunked`, the default memory budget), and one epoch of the same model on a
small file (default 5k showers) *in memory*.  Each training runs in its own process so that
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own.

Throughput = training showers / time of the epoch (from the loop's start to the end of epoch 1's
validation: the epoch's batches — reading, preprocessing and optimiser steps — and its
validation; without set-up: the in-memory run's file read, the streamed run's two-pass
preprocessing fit), in wall time and in the process's CPU time (all its threads; on a shared
machine the CPU time is the fairer comparison of two runs made one after the other).
The set-up times are reported separately.

The synthetic showers are valid (non-negative, E_dep / E_inc in [0.2, 0.8]) and sparse (about
70 % empty voxels), built from 512 random templates scaled per shower: the numbers measure
reading and training, not physics.  The files are deleted at the end unless ``--keep`` (a kept file of the right size is reused).

Usage:

    python benchmarks/bench_large_data.py --n 100000 -o /work/tmp/bench-large   # 16.2 GB, the target
    python benchmarks/bench_large_data.py --n 20000 --small-n 5000 -o /tmp/bl    # smaller

Prints a markdown table and writes ``OUT/bench_large_data.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_LAYERS, N_ALPHA, N_R = 45, 50, 18


def geometry():
    from hepgen.data.geometry import CylindricalBinning

    return CylindricalBinning.regular(N_LAYERS, list(np.linspace(0.0, 450.0, N_R + 1)), n_alpha=N_ALPHA)


def write_file(path: Path, n: int, seed: int, block: int = 500) -> dict:
    """A synthetic DS3-sized file written block by block (bounded memory); returns timing facts."""
    import h5py

    from hepgen._io import atomic_path
    from hepgen.data.formats import GEOMETRY_ATTR, KIND_ATTR

    geo = geometry()
    v = geo.n_voxels
    rng = np.random.default_rng(seed)
    templates = (rng.exponential(1.0, (512, v)) * (rng.random((512, v)) > 0.7)).astype(np.float32)
    templates /= templates.sum(axis=1, keepdims=True)
    t0 = time.perf_counter()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("showers", shape=(n, v), dtype=np.float32, chunks=(16, v))
        e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n)).reshape(-1, 1)
        response = rng.uniform(0.2, 0.8, n)
        for s in range(0, n, block):
            t = min(n, s + block)
            pick = rng.integers(0, len(templates), t - s)
            ds[s:t] = templates[pick] * (e_inc[s:t, 0] * response[s:t])[:, None].astype(np.float32)
        f.create_dataset("incident_energies", data=e_inc)
        f.attrs[GEOMETRY_ATTR] = json.dumps(geo.to_dict())
        f.attrs[KIND_ATTR] = "showers"
    dt = time.perf_counter() - t0
    size = path.stat().st_size
    return {"showers": n, "bytes": size, "seconds": dt, "write_MBps": size / dt / 1e6}


def _rows(path: Path) -> int | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return int(f["showers"].shape[0])
    except (OSError, KeyError):
        return None


def config(args):
    from hepgen.config import TrainConfig

    return TrainConfig(family=args.family, model={"latent_dim": 32, "hidden_features": 256, "n_hidden": 2},
                       epochs=1, batch_size=256, lr=1e-3, seed=0, threads=args.threads, tensorboard=False,
                       select_by="val_loss", n_eval=500, val_fraction=0.1)


def run_one(args) -> None:
    """One training in this process; prints a JSON line with its numbers."""
    import torch

    from hepgen.domains import get_domain
    from hepgen.train.trainer import train

    from hepgen.train import trainer

    torch.set_num_threads(args.threads)
    # the epoch's "seconds" in train_log.csv become this process's CPU time (all its threads:
    # robust to other jobs on a shared machine); the wall time of the same span is kept beside it
    walls: list[float] = []

    def cpu_clock() -> float:
        walls.append(time.perf_counter())
        return time.process_time()

    trainer._clock = cpu_clock
    t0 = time.perf_counter()
    data = get_domain("showers").read(args.data, memory_budget_gb=args.memory_budget_gb)
    t_read = time.perf_counter() - t0
    streamed = bool(getattr(data, "streamed", False))
    t1 = time.perf_counter()
    train(data, config(args), args.run, progress=False)
    t_train = time.perf_counter() - t1
    with open(Path(args.run) / "train_log.csv") as fh:
        row = next(csv.DictReader(fh))
    from hepgen.checkpoint import load_checkpoint

    n_train = load_checkpoint(Path(args.run) / "last.pt")["meta"]["n_train"]
    epoch_cpu_s = float(row["seconds"])
    epoch_s = walls[-1] - walls[0]  # fit's start to the epoch's validation
    print(json.dumps({
        "mode": "streamed" if streamed else "in memory", "showers": len(data), "n_train": n_train,
        "read_s": t_read, "train_call_s": t_train, "epoch_s": epoch_s, "setup_s": t_train - epoch_s,
        "epoch_cpu_s": epoch_cpu_s, "showers_per_cpu_s": n_train / epoch_cpu_s,
        "showers_per_s": n_train / epoch_s, "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "train_loss": float(row["train_loss"]), "val_loss": float(row["val_loss"]),
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="showers in the large file (100k = 16.2 GB)")
    p.add_argument("--small-n", type=int, default=5_000, help="showers in the small in-memory file")
    p.add_argument("--family", default="vae")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-o", "--out", default="bench-large-data")
    p.add_argument("--keep", action="store_true", help="keep the data files")
    p.add_argument("--skip-small", action="store_true", help="only the streamed run")
    p.add_argument("--budget-gb", type=float, default=4.0,
                   help="memory budget of the large file's run (default 4, hepgen's default; a file above it is streamed)")
    # internal: one training in a child process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--memory-budget-gb", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_one(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"n_voxels": N_LAYERS * N_ALPHA * N_R, "family": args.family, "threads": args.threads}
    jobs = [("streamed", out / "large.h5", args.n, 1)]
    if not args.skip_small:
        jobs.append(("in memory", out / "small.h5", args.small_n, 2))
    try:
        for name, path, n, seed in jobs:
            if args.keep and path.is_file() and _rows(path) == n:  # a file kept by an earlier --keep run
                result[f"write {name}"] = w = {"showers": n, "bytes": path.stat().st_size, "seconds": None,
                                               "write_MBps": None, "reused": True}
            else:
                result[f"write {name}"] = w = write_file(path, n, seed)
            if w.get("reused"):
                print(f"reused {path}: {n} showers, {w['bytes'] / 1e9:.2f} GB", flush=True)
            else:
                print(f"wrote {path}: {n} showers, {w['bytes'] / 1e9:.2f} GB in {w['seconds']:.0f} s "
                      f"({w['write_MBps']:.0f} MB/s)", flush=True)
            cmd = [sys.executable, __file__, "--child", "--data", str(path), "--run", str(out / f"run-{seed}"),
                   "--family", args.family, "--threads", str(args.threads)]
            if name == "streamed":
                cmd += ["--memory-budget-gb", str(args.budget_gb)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            if proc.returncode != 0:
                raise SystemExit(f"{name} run failed:\n{proc.stderr[-4000:]}")
            result[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(result[name]), flush=True)
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            for name, path, _, _ in jobs:
                path.unlink(missing_ok=True)
    (out / "bench_large_data.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    print("\n| mode | showers | file GB | peak RSS GB | epoch wall s | showers/s (wall) | epoch CPU s "
          "| showers/CPU-s | set-up wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, _, _ in jobs:
        r = result[name]
        print(f"| {r['mode']} | {r['showers']} | {result['write ' + name]['bytes'] / 1e9:.2f} | "
              f"{r['peak_rss_GB']:.2f} | {r['epoch_s']:.0f} | {r['showers_per_s']:.1f} | {r['epoch_cpu_s']:.0f} | "
              f"{r['showers_per_cpu_s']:.1f} | {r['setup_s'] + r['read_s']:.0f} |")
    if "in memory" in result:
        for key, what in (("showers_per_s", "wall"), ("showers_per_cpu_s", "CPU")):
            ratio = result["streamed"][key] / result["in memory"][key]
            print(f"streamed / in-memory throughput ({what} time): {ratio:.2f}")


if __name__ == "__main__":
    main()
