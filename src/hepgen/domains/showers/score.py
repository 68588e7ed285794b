"""The checkpoint-selection score of shower generators."""

from __future__ import annotations

from hepgen.data.formats import ShowerData
from hepgen.domains.showers.evaluate import evaluate

__all__ = ["separation_score"]


def separation_score(generator, real: ShowerData, seed: int = 0) -> float:
    """Mean separation power of the CaloChallenge high-level features: ``generator`` sampled at
    ``real``'s conditions against ``real`` (0 = identical histograms, 1 = disjoint).  Lower is better.

    Arguments:
        generator: a :class:`~hepgen.domains.showers.generator.ShowerGenerator`.
        real: reference showers ``(N, n_voxels)`` in MeV with their incident energies / conditions.
        seed: seeds the generated sample (and the metric's own randomness).
    """
    fake = generator.sample_like(real, seed=seed)
    metrics = evaluate(real, fake, real.geometry, seed=seed, classifier=False, groups="features")
    return float(metrics["separation_power_mean"])
