"""Toy L1 events for the anomaly tests: W/Z-like background (1–2 leptons, MET, up to 6 jets)."""

import numpy as np

from hepgen.data.l1 import L1Events, layout_event


def toy_background(n: int, seed: int = 0) -> L1Events:
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n):
        leps = [(25 + rng.exponential(10), rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi))
                for _ in range(rng.integers(1, 3))]
        jets = [(15 + rng.exponential(15), rng.uniform(-3.5, 3.5), rng.uniform(-np.pi, np.pi))
                for _ in range(rng.integers(0, 7))]
        met = (leps[0][0] * rng.uniform(0.3, 1.3), (leps[0][2] + np.pi) % (2 * np.pi) - np.pi)
        flavour = rng.random(len(leps)) < 0.5
        events.append(layout_event(met, [lp for lp, e in zip(leps, flavour) if e],
                                   [lp for lp, e in zip(leps, flavour) if not e], jets))
    return L1Events(np.stack(events), np.zeros(n, np.int16), ("toy_W",))


def toy_anomaly() -> L1Events:
    """The background's topology (one e, one μ, three jets, MET) at TeV energies."""
    ev = layout_event((1500.0, 0.0), [(1500.0, 0.3, np.pi - 0.1)], [(1200.0, -0.4, 2.0)],
                      [(900.0, 1.0, -1.0), (800.0, -1.5, 1.0), (700.0, 0.2, -2.5)])
    return L1Events(ev[None], np.zeros(1, np.int16), ("anomaly",))
