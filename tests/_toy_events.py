"""Synthetic event images for the event-domain tests: a few bright sprays per event whose
total energy grows with the gluino mass (so there is something for the conditioning to learn)."""

import numpy as np

from hepgen.config import TrainConfig
from hepgen.data.events import EventImages
from hepgen.domains.events import DOMAIN
from hepgen.simulate.detector import Calorimeter, DetectorConfig


def toy_events(n=60, masses=((1000.0, 300.0), (1400.0, 600.0)), seed=0, side=64):
    rng = np.random.default_rng(seed)
    cal = Calorimeter(DetectorConfig(n_eta=side, n_phi=side, smear=False))
    rows, conds = [], []
    for ev in range(n):
        mg, mn = masses[ev % len(masses)]
        conds.append([mg, mn, 0.0])
        for _ in range(rng.integers(2, 5)):
            eta0, phi0, pt0 = rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 0.5) * mg
            k = 15
            pt = pt0 * rng.dirichlet(np.ones(k))
            eta, phi = eta0 + rng.normal(0, 0.2, k), phi0 + rng.normal(0, 0.2, k)
            rows.append(np.stack([np.full(k, ev), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                                  pt * np.cosh(eta)], 1))
    p = np.concatenate(rows)
    img = cal.images(np.full(len(p), 211), p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 0].astype(int), n, rng)
    return EventImages(img, np.array(conds), None, np.zeros(n, np.int8), {"eta_max": 2.5})


def untrained_dcgan(data, conditions=()):
    """A tiny untrained conditional DCGAN event generator fitted to ``data``, in eval mode: what the
    benchmark tests sample from and save as checkpoints (``conditions``: extra conditions, e.g. ``["mu"]``)."""
    cfg = TrainConfig(family="dcgan", model={"noise_dim": 8, "filters": 4}, conditions=list(conditions))
    pre = DOMAIN.fit_preprocessor(data, cfg)
    gen = DOMAIN.generator(DOMAIN.build_model(cfg, data, pre), pre, data, DOMAIN.meta(data, cfg))
    gen.model.eval()
    return gen
