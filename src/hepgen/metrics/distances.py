"""One-dimensional distances between two samples of an observable.

* :func:`separation_power` — the CaloChallenge separation power (triangular discrimination
  of normalised histograms with shared bins from :func:`binning_for`);
* :func:`ks_statistic` — two-sample Kolmogorov–Smirnov statistic and p-value (scipy);
* :func:`wasserstein_1d` — 1-Wasserstein distance (scipy);
* :func:`jensen_shannon` — Jensen–Shannon divergence (bits) of histograms with shared bins.

References:
    CaloChallenge 2022, Krause et al., arXiv:2410.21611 (separation power, sec. 4.1);
    J. Lin, IEEE Trans. Inf. Theory 37 (1991) 145 (Jensen–Shannon divergence).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["binning_for", "histogram", "jensen_shannon", "ks_statistic", "ks_test", "separation_power",
           "wasserstein_1d"]

_MAX_LATTICE = 1000  # at most this many distinct values for a sample to count as discrete


def _lattice_edges(pooled: np.ndarray, n_bins: int) -> np.ndarray | None:
    """Bin edges centred on a regular lattice when ``pooled`` only takes values on one.

    Discrete features (sparsity = k / n_voxels, counts) histogrammed with arbitrary
    equal-width bins show empty bins and spikes (some bins catch two lattice points, some
    none).  Edges at half-steps, with a width that is a whole number of steps, avoid that.
    """
    values = np.unique(pooled)
    if values.size < 2 or values.size > _MAX_LATTICE:
        return None
    steps = np.diff(values)
    step = steps.min()
    span = values[-1] - values[0]
    if not step > 1e-12 * max(1.0, abs(values[-1])):
        return None
    k = steps / step
    if np.any(np.abs(k - np.round(k)) > 1e-6 * np.maximum(k, 1.0)):
        return None
    n_points = int(round(span / step)) + 1
    width = int(np.ceil(n_points / n_bins))
    n = int(np.ceil(n_points / width))
    return values[0] - 0.5 * step + np.arange(n + 1) * width * step


def binning_for(a: np.ndarray, b: np.ndarray, n_bins: int = 30, log: bool = False) -> np.ndarray:
    """Shared bin edges for two samples of one observable.

    Equal-width bins over the 0.5–99.5 % quantile range of the pooled sample (so that a few
    outliers do not squeeze the bulk into one bin); values outside are folded into the first
    / last bin by :func:`histogram`.  Special cases:

    * a discrete sample (at most 1000 distinct values on a regular lattice, e.g. the
      sparsity k / n_voxels) gets edges half-way between lattice points, each bin spanning
      a whole number of points, over the full range;
    * a constant sample gets a window of width 1 around the value;
    * ``log=True`` gives log-spaced bins over the positive part (energies spanning decades);
      zeros and negative values fall into the first bin.
    * NaN and ±inf are ignored; an empty pooled sample gives ``[0, 1]`` in ``n_bins`` bins.

    Arguments:
        a, b: the two samples (any shape; flattened).
        n_bins: number of bins (at most; a discrete sample may get fewer).
        log: log-spaced bins.

    Returns:
        (n_edges,) increasing bin edges.
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    n_bins = int(n_bins)
    pooled = np.concatenate([np.ravel(a), np.ravel(b)]).astype(np.float64)
    pooled = pooled[np.isfinite(pooled)]
    if log:
        pooled = pooled[pooled > 0]
    if pooled.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    if not log:
        lattice = _lattice_edges(pooled, n_bins)
        if lattice is not None:
            return lattice
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if not hi > lo:  # (nearly) constant inside the quantile range: take the full range
        lo, hi = pooled.min(), pooled.max()
    if not hi > lo:  # constant sample: a unit-wide window around it
        lo, hi = (lo / 2, lo * 2) if log else (lo - 0.5, hi + 0.5)
    if log:
        return np.geomspace(lo, hi, n_bins + 1)
    return np.linspace(lo, hi, n_bins + 1)


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the finite values of ``x`` in ``edges``, under- and overflow folded into the edge bins."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    x = np.clip(x[~np.isnan(x)], edges[0], edges[-1])
    return np.histogram(x, bins=edges)[0].astype(np.float64)


def _normalised_histograms(a: np.ndarray, b: np.ndarray, bins: np.ndarray | int,
                           name: str) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of ``a`` and ``b`` in shared bins (edges or a count for :func:`binning_for`), unit sum."""
    if np.ndim(bins) == 0:
        edges = binning_for(a, b, int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"bins must be increasing edges (at least 2), found {edges.tolist()}")
    p, q = histogram(a, edges), histogram(b, edges)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError(f"{name}: both samples must be non-empty "
                         f"(found {int(p.sum())} and {int(q.sum())} values)")
    return p / p.sum(), q / q.sum()


def separation_power(a: np.ndarray, b: np.ndarray, bins: np.ndarray | int = 30) -> float:
    """CaloChallenge separation power: triangular discrimination of normalised histograms.

    ``S = ½ Σ_i (p_i − q_i)² / (p_i + q_i)`` with ``p``, ``q`` the histograms of ``a`` and
    ``b`` in shared bins, each normalised to unit sum (bins empty in both are skipped).
    S = 0 for identical histograms and 1 for disjoint ones.

    Arguments:
        a, b: the two samples.
        bins: an array of bin edges, or a number of bins for :func:`binning_for`.

    Example:
        >>> separation_power([0.5, 1.5], [0.5, 0.5], bins=[0.0, 1.0, 2.0])  # p=(½,½), q=(1,0)
        0.3333333333333333
    """
    p, q = _normalised_histograms(a, b, bins, "separation_power")
    den = p + q
    return float(0.5 * np.sum(np.divide((p - q) ** 2, den, out=np.zeros_like(den), where=den > 0)))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and p-value (``scipy.stats.ks_2samp``)."""
    a, b = np.ravel(a), np.ravel(b)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"ks_statistic: both samples must be non-empty, found {a.size} and {b.size}")
    with warnings.catch_warnings():
        # scipy falls back from the exact to the asymptotic p-value (with a RuntimeWarning)
        # when the exact computation fails on tied samples; the fallback is what we want
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
        res = stats.ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


ks_test = ks_statistic  # older name, kept as an alias


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein (earth mover's) distance between two 1-d samples (``scipy.stats.wasserstein_distance``)."""
    return float(stats.wasserstein_distance(np.ravel(a), np.ravel(b)))


def jensen_shannon(a: np.ndarray, b: np.ndarray, bins: np.ndarray | int = 30) -> float:
    """Jensen–Shannon divergence, in bits, of the normalised histograms of two samples.

    ``JSD = ½ Σ_i p_i log2(p_i / m_i) + ½ Σ_i q_i log2(q_i / m_i)`` with ``m = (p + q) / 2``
    and ``p``, ``q`` the histograms of ``a`` and ``b`` in shared bins (as for
    :func:`separation_power`), each normalised to unit sum; terms with ``p_i = 0`` (``q_i = 0``)
    are 0.  JSD = 0 for identical histograms and 1 for disjoint ones.  This is the square of
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (the JS *distance*).

    Arguments:
        a, b: the two samples (any shape; flattened, NaN ignored).
        bins: an array of bin edges, or a number of bins for :func:`binning_for`.

    References:
        J. Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37
        (1991) 145.

    Example:
        >>> jensen_shannon([0.5, 1.5], [0.5, 0.5], bins=[0.0, 1.0, 2.0])  # p=(½,½), q=(1,0)
        0.31127812445913283
    """
    p, q = _normalised_histograms(a, b, bins, "jensen_shannon")
    m = 0.5 * (p + q)
    # hand-written rather than scipy.spatial.distance.jensenshannon so the test can use scipy
    # as an independent oracle; xlogy-style masking gives 0·log 0 = 0
    kl_p = np.sum(p[p > 0] * np.log2(p[p > 0] / m[p > 0]))
    kl_q = np.sum(q[q > 0] * np.log2(q[q > 0] / m[q > 0]))
    return float(max(0.0, 0.5 * (kl_p + kl_q)))
