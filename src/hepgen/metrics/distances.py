"""One-dimensional distances between two samples of an observable."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["binning_for", "histogram", "separation_power", "ks_test", "wasserstein_1d"]


def binning_for(a: np.ndarray, b: np.ndarray, n_bins: int = 30, log: bool = False) -> np.ndarray:
    """Shared bin edges for two samples: equal-width over the pooled 0.5–99.5 % quantiles.

    ``log=True`` uses log-spaced bins over the positive part (for energies spanning decades).
    Values outside the edges are folded into the first/last bin by :func:`histogram`.
    """
    pooled = np.concatenate([np.ravel(a), np.ravel(b)]).astype(np.float64)
    pooled = pooled[np.isfinite(pooled)]
    if log:
        pooled = pooled[pooled > 0]
    if pooled.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if not hi > lo:  # constant (or nearly) sample: a unit-wide window around it
        lo, hi = (lo / 2, lo * 2) if log else (lo - 0.5, hi + 0.5)
    if log:
        return np.geomspace(lo, hi, n_bins + 1)
    return np.linspace(lo, hi, n_bins + 1)


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``edges`` with under- and overflow folded into the edge bins."""
    x = np.clip(np.ravel(x), edges[0], edges[-1])
    return np.histogram(x, bins=edges)[0].astype(np.float64)


def separation_power(a: np.ndarray, b: np.ndarray, edges: np.ndarray | int = 30) -> float:
    """Triangular discrimination of the normalised histograms of ``a`` and ``b``.

    ``S = ½ Σ_i (p_i − q_i)² / (p_i + q_i)``: 0 for identical histograms, 1 for disjoint
    ones (the CaloChallenge separation power).  ``edges`` is an array of bin edges or a
    number of bins for :func:`binning_for`.
    """
    if np.isscalar(edges):
        edges = binning_for(a, b, int(edges))
    p, q = histogram(a, edges), histogram(b, edges)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("separation_power: both samples must be non-empty")
    p, q = p / p.sum(), q / q.sum()
    den = p + q
    return float(0.5 * np.sum(np.divide((p - q) ** 2, den, out=np.zeros_like(den), where=den > 0)))


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and p-value (scipy)."""
    res = stats.ks_2samp(np.ravel(a), np.ravel(b))
    return float(res.statistic), float(res.pvalue)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein (earth mover's) distance between two 1-d samples (scipy)."""
    return float(stats.wasserstein_distance(np.ravel(a), np.ravel(b)))
