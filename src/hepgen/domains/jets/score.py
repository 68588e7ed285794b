"""The checkpoint-selection score of jet generators."""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from hepgen.data.jets import JetData
from hepgen.metrics.jets import jet_mass

__all__ = ["jet_w1_score"]


def jet_w1_score(generator, real: JetData, seed: int = 0) -> float:
    """Checkpoint-selection metric for jets (lower is better, 0 = identical samples).

    Jets are generated at ``real``'s types, kinematics and multiplicities; the score is the
    mean of the 1-Wasserstein distances of the relative jet mass and of the three particle
    features (over real particles), each divided by the reference's standard deviation so
    the four terms weigh alike.  Cheap (no EFPs, no N-subjettiness): it runs every
    ``eval_every`` epochs.  The full JetNet metrics are :func:`hepgen.domains.jets.evaluate.evaluate_jets`.

    Arguments:
        generator: a :class:`~hepgen.domains.jets.generator.JetGenerator`.
        real: reference jets.
        seed: seeds the generated sample.
    """
    fake = generator.sample_like(real, seed=seed)
    terms = []
    a, b = jet_mass(real.particle_features), jet_mass(fake.particle_features)
    terms.append(wasserstein_distance(a, b) / (a.std() or 1.0))
    ma, mb = real.mask, fake.mask
    for k in range(3):
        a, b = real.particles[..., k][ma], fake.particles[..., k][mb]
        terms.append(wasserstein_distance(a, b) / (a.std() or 1.0))
    return float(np.mean(terms))
