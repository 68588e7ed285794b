"""Synthetic JetNet-layout jets for fast tests of the jet models and the trainer's jet path.

Not physics: two "types" whose clouds differ in width and multiplicity, enough to check
that a conditional model learns something and that the plumbing is right.  Pythia-based
physics checks are in ``tests/test_jets_pythia.py``.
"""

import numpy as np

from hepgen.data.jets import JetData
from hepgen.metrics.jets import jet_mass


def toy_jets(n: int, n_particles: int = 6, seed: int = 0, types=(0, 2)) -> JetData:
    rng = np.random.default_rng(seed)
    jt = rng.choice(np.asarray(types), size=n)
    width = np.where(jt == types[0], 0.05, 0.15)
    lo = max(1, n_particles // 3)
    mult = np.where(jt == types[0], rng.integers(lo, n_particles // 2 + 1, size=n),
                    rng.integers(n_particles // 2, n_particles + 1, size=n))
    pf = np.zeros((n, n_particles, 4), dtype=np.float32)
    for i in range(n):
        k = mult[i]
        pt = np.sort(rng.dirichlet(np.full(k, 1.5)))[::-1] * 0.95
        pf[i, :k, 0] = rng.normal(0, width[i], k)
        pf[i, :k, 1] = rng.normal(0, width[i], k)
        pf[i, :k, 2] = pt
        pf[i, :k, 3] = 1.0
    pt_jet = rng.normal(1000.0, 80.0, n)
    eta = rng.uniform(-2.0, 2.0, n)
    jf = np.stack([pt_jet, eta, jet_mass(pf) * pt_jet, mult.astype(float)], axis=1)
    return JetData(pf, jf, jt)
