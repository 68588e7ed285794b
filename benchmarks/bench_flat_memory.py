"""Peak resident memory of streamed writers at several N: ``hepgen sample`` and ``hepgen simulate``.

Each run is a fresh process (``python -c 'hepgen.cli.main(...)'``); its peak resident set size is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read at its end, its wall time ``time.perf_counter``
around the command.  Flat memory means the peak does not grow with N.  Usage:

    python benchmarks/bench_flat_memory.py sample --checkpoint hepgen-demo/run/best.pt --n 1e5,1e6
    python benchmarks/bench_flat_memory.py simulate-showers --n 1e4,1e5
    python benchmarks/bench_flat_memory.py simulate-jets --n 200,1000

Prints one table row per N (N, peak RSS MiB, wall s) and, with ``--json``, writes them.
Outputs go to a temporary folder removed at the end (``--keep DIR`` keeps them there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_RUNNER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from hepgen.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "wall_s": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _argv(what: str, n: int, out: Path, args) -> list[str]:
    if what == "sample":
        return ["sample", args.checkpoint, "-o", str(out), "--n", str(n), "--seed", "0",
                "--threads", str(args.threads), "--chunk-size", str(args.chunk_size), "-q",
                *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]
    if what == "simulate-showers":
        return ["simulate", "showers", "-o", str(out), "--n", str(n), "--seed", "0", "-q"]
    if what == "simulate-jets":
        return ["simulate", "jets", "-o", str(out), "--n", str(n), "--seed", "0", "--type", "g",
                "--workers", "1", "-q"]
    raise ValueError(f"what: expected sample, simulate-showers or simulate-jets, found {what!r}")


def run_one(what: str, n: int, folder: Path, args) -> dict:
    out = folder / f"{what}_{n}.h5"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    res = subprocess.run([sys.executable, "-c", _RUNNER, *_argv(what, n, out, args)], capture_output=True,
                         text=True, env=env)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"{what} --n {n} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    row = {"what": what, "n": n, **json.loads(lines[-1]),
           "file_mib": out.stat().st_size / 2**20 if out.exists() else None}
    if not args.keep:
        out.unlink(missing_ok=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["sample", "simulate-showers", "simulate-jets"])
    p.add_argument("--checkpoint", default="hepgen-demo/run/best.pt", help="for sample")
    p.add_argument("--n", default="1e5,1e6", help="comma-separated sizes (1e5 notation allowed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=10_000, help="for sample")
    p.add_argument("--batch-size", type=int, help="for sample (default: hepgen sample's)")
    p.add_argument("--keep", help="keep the outputs in this folder")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args()
    sizes = [int(float(x)) for x in args.n.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{'what':<18}{'N':>12}{'peak RSS MiB':>14}{'wall s':>10}{'file MiB':>10}")
        for n in sizes:
            row = run_one(args.what, n, folder, args)
            rows.append(row)
            size = "" if row["file_mib"] is None else f"{row['file_mib']:.0f}"
            print(f"{args.what:<18}{n:>12}{row['peak_rss_mib']:>14.0f}{row['wall_s']:>10.1f}{size:>10}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
