"""Inference benchmark: ``hepgen bench`` on a checkpoint plus a 10⁶-shower streaming run.

Measures, in one run on one machine (see :mod:`hepgen.bench`): throughput and latency over
a batch-size scan on 1 and all CPU threads (and the GPU when present), the speed-up over
the reference simulator, the roofline ratio against measured dense-matmul FLOP/s, peak
memory, and the fidelity cost (classifier AUC, separation power) of every sampling path.
Then it runs ``hepgen sample --n N_STREAM`` in a child process and reports its peak RSS.
Finally it prints the issue's targets next to the measured numbers.

    python benchmarks/bench_inference.py --checkpoint hepgen-demo/run/best.pt -o bench-out

Timings are meaningful only on an otherwise idle machine; the JSON records the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from hepgen.bench import format_table, run_bench, write_bench
from hepgen.domains.showers.generator import ShowerGenerator

_CHILD = """
import json, sys
from hepgen.cli import main
rc = main(sys.argv[1:])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("HEPGEN_PEAK_RSS_KIB", hwm)
sys.exit(rc)
"""


def stream_memory(checkpoint: str, n: int, out_dir: Path, chunk_size: int = 10_000) -> dict:
    """Peak RSS (MiB) of ``hepgen sample --n n`` in a child process, and its wall time.

    The child reads its own ``VmHWM`` (Linux) at the end: ``getrusage(RUSAGE_CHILDREN)``
    would report the RSS of the forked copy of this (large) process before ``exec``.
    """
    out = out_dir / "stream.h5"
    for p in (out, out.with_name(out.name + ".partial")):
        if p.exists():
            p.unlink()
    cmd = [sys.executable, "-c", _CHILD, "sample", checkpoint, "-o", str(out), "--n", str(n),
           "--chunk-size", str(chunk_size), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    peak_kib = int(proc.stdout.split("HEPGEN_PEAK_RSS_KIB")[1].split()[0])
    size = out.stat().st_size
    out.unlink()
    return {"n": n, "chunk_size": chunk_size, "seconds": dt, "showers_per_s": n / dt,
            "peak_rss_mib": peak_kib / 1024, "file_mib": size / 2**20}


def targets(res: dict) -> list[str]:
    """The issue's targets next to the measured numbers."""
    lines = []
    big = [r for r in res["runs"] if r["batch_size"] >= 1000 and r["device"] == "cpu"]
    if big:
        best = max(big, key=lambda r: r["showers_per_s"])
        lines.append(f"best CPU row at batch >= 1000: {best['path']} {best['threads']} thr batch {best['batch_size']}: "
                     f"roofline {best['roofline_ratio']:.2f} (target >= 0.50), "
                     f"{best['speedup_vs_simulator']:.1f}x simulator (target >= 10x)")
        for path in ("int8", "ort-int8", "bf16"):
            for nt in res["threads"]:
                def rate(p, nt=nt):
                    rows = [r["showers_per_s"] for r in big if r["path"] == p and r["threads"] == nt]
                    return max(rows) if rows else None
                ref = rate("ort" if path == "ort-int8" else "fp32")
                got = rate(path)
                if got and ref:
                    lines.append(f"{path} vs {'ort' if path == 'ort-int8' else 'fp32'} at {nt} thr, batch >= 1000: "
                                 f"{got / ref:.2f}x (target >= 1.5x)")
    fid = (res.get("fidelity") or {}).get("paths", {})
    for path, row in fid.items():
        if path != "fp32":
            lines.append(f"{path}: AUC low-level {row['delta_auc_low_level']:+.3f}, high-level "
                         f"{row['delta_auc_high_level']:+.3f} vs fp32 (target: worse by <= 0.02; "
                         f"AUC error ~{row['auc_err']:.3f})")
    if "stream" in res:
        s = res["stream"]
        lines.append(f"streaming {s['n']:,} showers: peak RSS {s['peak_rss_mib']:.0f} MiB (target < 2048 MiB), "
                     f"{s['showers_per_s']:.0f} showers/s incl. gzip writing")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="hepgen-demo/run/best.pt")
    p.add_argument("-o", "--output", default="bench-inference")
    p.add_argument("--batch-sizes", default="1,10,100,1000,10000")
    p.add_argument("--threads", default=None, help="e.g. 1,2 (default: 1 and all cores)")
    p.add_argument("--paths", default="fp32,int8,compile,ort,ort-int8,bf16")
    p.add_argument("--fidelity", type=int, default=10_000, help="showers per path for the AUC comparison")
    p.add_argument("--stream-n", type=int, default=1_000_000, help="showers for the memory run (0: skip)")
    p.add_argument("--min-time", type=float, default=1.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    gen = ShowerGenerator.load(args.checkpoint)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    res = run_bench(
        gen,
        batch_sizes=[int(x) for x in args.batch_sizes.split(",")],
        threads=[int(x) for x in args.threads.split(",")] if args.threads else None,
        paths=args.paths.split(","),
        fidelity_n=args.fidelity,
        min_time=args.min_time,
        checkpoint=args.checkpoint,
        progress=True,
    )
    if args.stream_n:
        res["stream"] = stream_memory(args.checkpoint, args.stream_n, out)
    res["targets"] = targets(res)
    js, png = write_bench(res, out)
    print(format_table(res))
    print("compile seconds:", json.dumps(res["compile_s"]), "| ONNX export seconds:", res["onnx_export_s"])
    print("\n".join(res["targets"]))
    print(f"torch threads default {torch.get_num_threads()}, cpu_count {os.cpu_count()}; "
          f"load average {res['machine']['load_avg_start']} -> {res['machine']['load_avg_end']}")
    print(f"results: {js}\nplot:    {png}")


if __name__ == "__main__":
    main()
