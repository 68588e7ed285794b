"""Cost of the qGAN against its classical baseline, measured in one run on the same machine.

Times (i) one training step of the 3-qubit generator (exact ``default.qubit`` and noisy
``default.mixed``) against the same step with the classical softmax generator (same
discriminator, same AMSGrad), for ten seeds trained together; (ii) one generator
evaluation alone (circuit vs softmax); and prints the ratios.  The table itself
(``python -m hepgen.quantum.table``) reports each row's wall time in ``results.json``.

Usage:

    OMP_NUM_THREADS=1 python benchmarks/bench_quantum_table.py --steps 100 --depth 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hepgen.quantum.circuits import TORINO_NOISE, born_probabilities, initial_distribution
from hepgen.quantum.qgan import train_qgan


def _time_training(target: np.ndarray, steps: int, **kw) -> float:
    train_qgan(target, steps=2, warmup=0, **kw)  # build the QNode / warm caches
    t0 = time.perf_counter()
    train_qgan(target, steps=steps, warmup=0, **kw)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="training steps timed (default 100)")
    p.add_argument("--depth", type=int, default=2, help="circuit depth (default 2)")
    p.add_argument("--seeds", type=int, default=10, help="seeds trained together (default 10)")
    a = p.parse_args()
    torch.set_num_threads(1)
    target = np.array([0.1011, 0.2994, 0.2844, 0.1743, 0.0852, 0.0362, 0.0141, 0.0053])
    target /= target.sum()
    seeds = list(range(a.seeds))
    t_q = _time_training(target, a.steps, init="normal", depth=a.depth, seeds=seeds)
    t_qn = _time_training(target, max(a.steps // 4, 5), init="normal", depth=a.depth, seeds=seeds,
                          noise=TORINO_NOISE)
    t_c = _time_training(target, a.steps, generator="softmax", seeds=seeds)
    print(f"training step, {a.seeds} seeds, depth {a.depth}: quantum exact {1e3 * t_q:.1f} ms, "
          f"quantum noisy {1e3 * t_qn:.1f} ms, classical softmax {1e3 * t_c:.1f} ms")
    print(f"ratio quantum exact / classical = {t_q / t_c:.2f}; noisy / classical = {t_qn / t_c:.2f}")

    w = torch.zeros(a.seeds, a.depth + 1, 3, dtype=torch.float64)
    p0 = initial_distribution("normal", 3, mu=1.9, sigma=1.3)
    logits = torch.zeros(a.seeds, 8, dtype=torch.float64)
    n = 200
    with torch.no_grad():
        born_probabilities(w, p0)
        t0 = time.perf_counter()
        for _ in range(n):
            born_probabilities(w, p0)
        t_circ = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for _ in range(n):
            torch.softmax(logits, -1)
        t_soft = (time.perf_counter() - t0) / n
    print(f"generator evaluation ({a.seeds} distributions): circuit {1e6 * t_circ:.0f} us, "
          f"softmax {1e6 * t_soft:.1f} us, ratio {t_circ / t_soft:.0f}")


if __name__ == "__main__":
    main()
