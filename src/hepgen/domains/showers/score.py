"""Physics scores of shower generators: checkpoint selection and ``hepgen tune`` objectives.

:data:`TUNE_OBJECTIVES` are the objectives a shower study can minimise besides the kind's
selection score, on the CaloChallenge high-level features of held-out showers and of
showers generated at their incident energies:

* ``sep_power`` — mean separation power over the features (0 = identical histograms, 1 =
  disjoint; the number ``hepgen evaluate`` reports as ``separation_power_mean``);
* ``ks_nll`` — ``Σ −log p`` of two-sample Kolmogorov–Smirnov tests over the features, the
  figure of merit used to tune whole-event GANs at NERSC (0 for identical samples).

References:
    CaloChallenge 2022, Krause et al., arXiv:2410.21611 (separation power).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hepgen.data.formats import ShowerData
from hepgen.domains.showers.evaluate import evaluate, feature_edges
from hepgen.metrics.distances import ks_statistic, separation_power
from hepgen.metrics.observables import high_level_features

__all__ = ["TUNE_OBJECTIVES", "holdout_score", "ks_nll_score", "sep_power_score", "separation_score"]

TUNE_OBJECTIVES = ("sep_power", "ks_nll")  # the first is `hepgen tune --objective auto` for showers

# −log of the smallest positive double: the most a single KS test adds to ks_nll.  scipy
# returns p = 0 exactly for very different large samples; an infinite objective would make
# every bad trial tie and break TPE's density estimates.
_P_FLOOR = float(np.finfo(np.float64).tiny)


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


def _check_features(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray]) -> list[str]:
    if set(real) != set(generated):
        raise ValueError(f"feature keys differ: only real {sorted(set(real) - set(generated))}, "
                         f"only generated {sorted(set(generated) - set(real))}")
    if not real:
        raise ValueError("no features to compare")
    return list(real)


def sep_power_score(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray], n_bins: int = 30) -> float:
    """Mean separation power over features, binned as ``hepgen evaluate`` bins them (lower is better).

    Arguments:
        real, generated: ``{feature: (N,) values}`` with the same keys (e.g. from
            :func:`hepgen.metrics.high_level_features`).
        n_bins: bins per histogram (:func:`hepgen.domains.showers.evaluate.feature_edges`).

    Returns:
        ``mean_f S_f`` in [0, 1]; equals ``evaluate(...)["separation_power_mean"]``.
    """
    names = _check_features(real, generated)
    return float(np.mean([separation_power(real[k], generated[k], feature_edges(k, real[k], generated[k], n_bins))
                          for k in names]))


def ks_nll_score(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray]) -> float:
    """``Σ_f −log p_f`` of two-sample KS tests over features (lower is better; 0 for identical samples).

    p-values below the smallest positive double (scipy returns exactly 0 for very
    different large samples) are floored there, so one feature adds at most ≈ 708.4.

    Arguments:
        real, generated: ``{feature: (N,) values}`` with the same keys.
    """
    names = _check_features(real, generated)
    total = 0.0
    for k in names:
        _, p = ks_statistic(real[k], generated[k])  # handles scipy's exact → asymptotic fallback
        total -= math.log(max(p, _P_FLOOR))
    return float(total)


def holdout_score(real: ShowerData, generated_showers: np.ndarray, objective: str = "sep_power",
                  geometry=None, n_bins: int = 30) -> float:
    """Score generated showers against real ones on the CaloChallenge high-level features.

    Arguments:
        real: the held-out showers; ``generated_showers`` were sampled at its incident energies.
        generated_showers: (N_gen, n_voxels) MeV.
        objective: ``sep_power`` or ``ks_nll`` (:data:`TUNE_OBJECTIVES`); both minimised.
        geometry: default ``real.geometry``.
        n_bins: histogram bins for ``sep_power``.
    """
    if objective not in TUNE_OBJECTIVES:
        raise ValueError(f"objective: expected one of {list(TUNE_OBJECTIVES)}, found {objective!r}")
    geometry = geometry or real.geometry
    if geometry is None:
        raise ValueError("holdout_score: the held-out sample has no geometry")
    generated_showers = np.asarray(generated_showers)
    if len(generated_showers) != len(real):
        raise ValueError(f"holdout_score: expected {len(real)} generated showers (one per held-out "
                         f"shower), found {len(generated_showers)}")
    fr = high_level_features(real.showers, real.incident_energies, geometry)
    fg = high_level_features(generated_showers, real.incident_energies, geometry)
    if objective == "sep_power":
        return sep_power_score(fr, fg, n_bins)
    return ks_nll_score(fr, fg)
