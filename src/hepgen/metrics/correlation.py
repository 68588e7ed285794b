"""Do two samples have the same correlations?  Fisher-z test of all pairwise correlations.

For every pair of features (i, j) the Pearson correlations ``r_A`` and ``r_B`` of the two
samples are compared with Fisher's z-transformation: ``artanh r`` is approximately normal
with variance ``1 / (N − 3)``, so under equal correlations

    z_ij = (artanh r_A − artanh r_B) / sqrt(1 / (N_A − 3) + 1 / (N_B − 3))  ~  N(0, 1).

The k(k−1)/2 squared z-scores of the upper triangle are summed into
``χ² = Σ_{i<j} z_ij²`` with ``ndof = k(k−1)/2`` (pairs with a constant column left out), and
``p = P(χ²_ndof ≥ χ²)``.  The pairwise z-scores share features and are therefore not
independent, so the χ² is a summary whose p-value is approximate (exact for k = 2).

References:
    R. A. Fisher, "On the probable error of a coefficient of correlation deduced from a small
    sample", Metron 1 (1921) 3;
    CaloChallenge-style correlation checks, e.g. Krause et al., arXiv:2410.21611.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["R_CLIP", "fisher_z_test"]

R_CLIP = 1.0 - 1e-12
"""|r| is clipped to this before ``artanh``, so perfectly (anti-)correlated pairs give a finite z."""


def _check(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"fisher_z_test: {name} must be 2-d (N, k), found shape {x.shape}")
    if x.shape[0] < 4:
        raise ValueError(f"fisher_z_test: {name} needs at least 4 rows (N − 3 > 0), found {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"fisher_z_test: {name} contains NaN or inf in "
                         f"{int((~np.isfinite(x)).any(axis=1).sum())} rows")
    return x


def _correlation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation matrix and a mask of constant columns (whose rows/columns are NaN)."""
    constant = np.ptp(x, axis=0) == 0
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc
    sd = np.sqrt(np.diag(cov))
    sd_safe = np.where(constant, 1.0, sd)
    r = cov / np.outer(sd_safe, sd_safe)
    r = np.clip(r, -1.0, 1.0)
    r[constant, :] = np.nan
    r[:, constant] = np.nan
    return r, constant


def fisher_z_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Compare the correlation matrices of two samples with Fisher's z-transformation.

    Arguments:
        a: (N_A, k) first sample, e.g. real high-level features (rows are events).
        b: (N_B, k) second sample, e.g. generated features; same k.

    Returns:
        dict with

        * ``z``: (k, k) pairwise z-scores ``(artanh r_A − artanh r_B) / sqrt(1/(N_A−3) + 1/(N_B−3))``,
          symmetric, 0 on the diagonal, NaN for pairs involving a constant column;
        * ``chi2``: ``Σ_{i<j} z_ij²`` over the valid pairs; ``ndof``: number of valid pairs;
        * ``p_value``: ``scipy.stats.chi2.sf(chi2, ndof)`` (1.0 when ``ndof == 0``);
        * ``corr_a``, ``corr_b``: (k, k) Pearson correlation matrices (NaN rows/columns for
          constant columns);
        * ``constant_columns``: sorted indices of the columns constant in either sample.

    Rules: a column that is constant (all values equal) in *either* sample has no defined
    correlation and every pair it belongs to is left out of χ² and ndof (its z is NaN).
    ``|r|`` is clipped to :data:`R_CLIP` before ``artanh`` so that perfectly correlated
    pairs give a large but finite z (and 0 when both samples have r = ±1).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(2000, 3))
        >>> res = fisher_z_test(x, rng.normal(size=(2000, 3)))
        >>> res["ndof"], bool(res["p_value"] > 0.001)
        (3, True)
    """
    a, b = _check(a, "a"), _check(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"fisher_z_test: a and b must have the same number of columns, "
                         f"found {a.shape[1]} and {b.shape[1]}")
    k = a.shape[1]
    corr_a, const_a = _correlation(a)
    corr_b, const_b = _correlation(b)
    constant = const_a | const_b
    sigma = np.sqrt(1.0 / (a.shape[0] - 3) + 1.0 / (b.shape[0] - 3))
    with np.errstate(invalid="ignore"):  # NaN rows of constant columns stay NaN
        za = np.arctanh(np.clip(corr_a, -R_CLIP, R_CLIP))
        zb = np.arctanh(np.clip(corr_b, -R_CLIP, R_CLIP))
    z = (za - zb) / sigma
    z[constant, :] = np.nan
    z[:, constant] = np.nan
    np.fill_diagonal(z, 0.0)
    z[constant, constant] = np.nan
    iu = np.triu_indices(k, 1)
    upper = z[iu]
    valid = np.isfinite(upper)
    ndof = int(valid.sum())
    chi2 = float(np.sum(upper[valid] ** 2))
    p_value = float(stats.chi2.sf(chi2, ndof)) if ndof > 0 else 1.0
    return {
        "z": z,
        "chi2": chi2,
        "ndof": ndof,
        "p_value": p_value,
        "corr_a": corr_a,
        "corr_b": corr_b,
        "constant_columns": [int(i) for i in np.flatnonzero(constant)],
    }
