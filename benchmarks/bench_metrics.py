"""Cost (seconds) of each validation metric as the sample size grows, e.g. 1e3 → 1e4 → 1e5.

Real and generated samples are correlated Gaussians of ``--dim`` features (images of
``--image-shape`` for the SSIM), ``n`` rows each.  Every metric runs once per size with the
settings ``hepgen`` uses by default (caps such as ``mmd_gaussian(max_samples=10_000)`` or
``kpd(batch_size=5000)`` included, so their cost flattens out).  Before each run the cost is
predicted from the previous size with the metric's scaling (``n``, ``n²``, or constant); a run
predicted to take longer than ``--max-seconds`` (default 60) is skipped and reported as such.
Prints a table; writes the numbers as JSON to ``--out`` (and as the last line of stdout).

    python benchmarks/bench_metrics.py --sizes 1000 10000 100000 --out bench_metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from hepgen._io import atomic_path
from hepgen.metrics import (
    birthday_support_size,
    classification_accuracy_score,
    fisher_z_test,
    fpd,
    frechet_distance,
    jensen_shannon,
    kpd,
    ks_statistic,
    mean_pairwise_ssim,
    mmd_gaussian,
    mode_collapse_indicators,
    nearest_neighbour_memorisation,
    prdc,
    separation_power,
    wasserstein_1d,
)


def _per_feature(fn: Callable) -> Callable:
    return lambda a, b: [fn(a[:, i], b[:, i]) for i in range(a.shape[1])]


def _metrics(image_shape: tuple[int, ...]):
    """name → (call(real, gen, real_images, gen_images), work(n) for the cost prediction, note)."""
    half = lambda n: max(n // 2, 1)
    return {
        "ks_statistic (per feature)": (lambda r, g, *_: _per_feature(ks_statistic)(r, g), lambda n: n, ""),
        "wasserstein_1d (per feature)": (lambda r, g, *_: _per_feature(wasserstein_1d)(r, g), lambda n: n, ""),
        "separation_power (per feature)": (lambda r, g, *_: _per_feature(separation_power)(r, g), lambda n: n, ""),
        "jensen_shannon (per feature)": (lambda r, g, *_: _per_feature(jensen_shannon)(r, g), lambda n: n, ""),
        "fisher_z_test": (lambda r, g, *_: fisher_z_test(r, g), lambda n: n, ""),
        "frechet_distance": (lambda r, g, *_: frechet_distance(r, g), lambda n: n, ""),
        "fpd": (lambda r, g, *_: fpd(r, g, min_samples=2 * len(r) // 5, max_samples=len(r)), lambda n: n,
                "batches 0.4n..n (JetNet: 20k..50k), 20 batches x 10 points"),
        "kpd": (lambda r, g, *_: kpd(r, g), lambda n: 1,
                "defaults: 10 batches of 5000 drawn with replacement, whatever n"),
        "mmd_gaussian": (lambda r, g, *_: mmd_gaussian(r, g), lambda n: min(n, 10_000) ** 2,
                         "default max_samples=10000"),
        "prdc (k=5)": (lambda r, g, *_: prdc(r, g), lambda n: min(n, 10_000) ** 2,
                       "default max_samples=10000 per sample (seeded subsample)"),
        "nearest_neighbour_memorisation": (
            lambda r, g, *_: nearest_neighbour_memorisation(r[: half(len(r))], g, r[half(len(r)):]),
            lambda n: min(n // 2, 50_000) * 2 * min(n, 10_000),
            "train = reference = n/2, generated = n; caps: 10000 generated/reference, 50000 train"),
        "birthday_support_size": (
            lambda r, g, *_: birthday_support_size(g, quantile=1e-3, reference=r, n_trials=50),
            lambda n: 1, "quantile 1e-3 of reference distances, 50 trials"),
        "mode_collapse_indicators": (lambda r, g, *_: mode_collapse_indicators(r, g), lambda n: n, ""),
        "mean_pairwise_ssim": (lambda r, g, ri, gi: mean_pairwise_ssim(gi, data_range=float(ri.max())),
                               lambda n: 1, f"500 pairs of {'x'.join(map(str, image_shape))} images, 3 powers"),
        "classification_accuracy_score": (
            lambda r, g, *_: classification_accuracy_score(g[: half(len(g))], r[: half(len(r))],
                                                           g[half(len(g)):], r[half(len(r)):]),
            lambda n: n, "HGB, n/2 per class and part"),
    }


def _data(n: int, dim: int, image_shape: tuple[int, ...], seed: int):
    rng = np.random.default_rng(seed)
    mix = np.eye(dim) + 0.3 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = rng.normal(size=(n, dim)) @ mix
    gen = rng.normal(size=(n, dim)) @ mix * 1.05 + 0.05
    real_img = rng.exponential(1.0, size=(n, *image_shape))
    gen_img = rng.exponential(1.1, size=(n, *image_shape))
    return real, gen, real_img, gen_img


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--dim", type=int, default=20, help="features per sample")
    p.add_argument("--image-shape", type=int, nargs="+", default=[12, 12], help="image shape for SSIM")
    p.add_argument("--max-seconds", type=float, default=60.0, help="skip runs predicted to take longer")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (None-like: 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_metrics.json", help="JSON output file")
    args = p.parse_args()
    sizes = sorted(args.sizes)
    shape = tuple(args.image_shape)
    metrics = _metrics(shape)
    seconds: dict[str, dict[str, float | None]] = {m: {} for m in metrics}
    skipped: dict[str, dict[str, str]] = {m: {} for m in metrics}
    with threadpool_limits(limits=args.threads or None):
        for n in sizes:
            real, gen, real_img, gen_img = _data(n, args.dim, shape, args.seed)
            for name, (call, work, _) in metrics.items():
                done = [(int(k), v) for k, v in seconds[name].items() if v is not None]
                if done:
                    n_prev, t_prev = done[-1]
                    predicted = t_prev * work(n) / work(n_prev)
                    if predicted > args.max_seconds:
                        seconds[name][str(n)] = None
                        skipped[name][str(n)] = f"predicted {predicted:.0f} s > {args.max_seconds:g} s"
                        continue
                t0 = time.perf_counter()
                call(real, gen, real_img, gen_img)
                seconds[name][str(n)] = time.perf_counter() - t0
                print(f"  n={n:>7d}  {name:<34s} {seconds[name][str(n)]:8.3f} s", flush=True)

    width = max(len(m) for m in metrics) + 2
    print(f"\nseconds per call, d = {args.dim} features, {args.threads or 'default'} thread(s)")
    print("metric".ljust(width) + "".join(f"{'n=' + format(n, 'g'):>12s}" for n in sizes))
    for name, (_, _, note) in metrics.items():
        cells = [f"{seconds[name][str(n)]:12.3f}" if seconds[name][str(n)] is not None else f"{'skipped':>12s}"
                 for n in sizes]
        print(name.ljust(width) + "".join(cells) + (f"   ({note})" if note else ""))
    for name, by_n in skipped.items():
        for n, why in by_n.items():
            print(f"skipped {name} at n={n}: {why}")
    result = {
        "benchmark": "metrics",
        "sizes": sizes,
        "dim": args.dim,
        "image_shape": list(shape),
        "threads": args.threads,
        "seconds": seconds,
        "skipped": skipped,
        "notes": {name: note for name, (_, _, note) in metrics.items() if note},
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    with atomic_path(args.out) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
