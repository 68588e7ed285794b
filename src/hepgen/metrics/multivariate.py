"""Multivariate two-sample distances: Fréchet distance, FPD, KPD, Gaussian MMD and PRDC.

* :func:`frechet_distance` — Fréchet (2-Wasserstein) distance between Gaussians fitted to two
  samples;
* :func:`fpd` — Fréchet physics distance: the Fréchet distance measured at several batch
  sizes N and extrapolated linearly in 1/N to N → ∞ (JetNet definition);
* :func:`kpd` — kernel physics distance: unbiased MMD² with the polynomial kernel
  ``(x·y / d + 1)^4``, median and half 16–84 % inter-quantile range over batches (JetNet);
* :func:`mmd_gaussian` — unbiased MMD² with a Gaussian kernel (median-heuristic bandwidth);
* :func:`prdc` — precision, recall, density and coverage from k-nearest-neighbour balls
  (each sample capped at a seeded random subsample, ``max_samples``, against the O(N·M) cost).

All take samples as ``(N, d)`` arrays, rows are events.  FPD and KPD follow
``jetnet.evaluation.fpd`` / ``kpd`` (JetNet 0.2.5) step by step, including the feature
normalisation and the order of the random draws, so that the same seed gives the same
batches as JetNet (see ``tests/test_metrics_multivariate.py``).

References:
    R. Kansal et al., "Evaluating generative models in high energy physics", Phys. Rev. D 107
    (2023) 076017, arXiv:2211.10295 (FPD, KPD);
    M. J. Chong and D. Forsyth, "Effectively unbiased FID and Inception Score and where to find
    them", arXiv:1911.07023 (extrapolation in 1/N);
    M. Bińkowski et al., "Demystifying MMD GANs", arXiv:1801.01401 (KID, unbiased MMD²);
    A. Gretton et al., "A kernel two-sample test", JMLR 13 (2012) 723 (MMD, median heuristic);
    M. F. Naeem et al., "Reliable fidelity and diversity metrics for generative models",
    arXiv:2002.09797 (PRDC).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.optimize import lsq_linear
from scipy.spatial.distance import pdist
from sklearn.metrics import pairwise_distances_chunked
from sklearn.neighbors import NearestNeighbors

__all__ = ["fpd", "frechet_distance", "kpd", "mmd_gaussian", "prdc"]

_CHUNK = 1024  # rows per block of kernel matrices: bounds memory at _CHUNK × N × 8 bytes


def _as_2d(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, d), found shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, found {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf in {int((~np.isfinite(x)).any(axis=1).sum())} rows")
    return x


def _pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str], min_rows: int = 2):
    a, b = _as_2d(a, names[0], min_rows), _as_2d(b, names[1], min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of features, "
                         f"found {a.shape[1]} and {b.shape[1]}")
    return a, b


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _frechet_from_moments(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)`` for symmetric PSD Σ1, Σ2.

    ``Tr (Σ1 Σ2)^½ = Tr (Σ1^½ Σ2 Σ1^½)^½``: the right-hand side only needs symmetric
    eigendecompositions, so it is real and stable even for singular covariances (the usual
    ``scipy.linalg.sqrtm(Σ1 Σ2)`` of the non-symmetric product can turn complex).
    """
    r1 = _psd_sqrt(s1)
    inner = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sum(np.sqrt(np.clip(ev, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians with the means and covariances of two samples.

    ``FD = ||μ_a − μ_b||² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)`` (the squared 2-Wasserstein distance
    of the two Gaussians), with sample means and unbiased covariances (``numpy.cov``).

    Arguments:
        a: (N_a, d) first sample; b: (N_b, d) second sample (1-d arrays are one feature).

    Returns:
        FD ≥ 0 (up to rounding); 0 for samples with equal mean and covariance.

    Example:
        >>> frechet_distance(np.array([[0.0], [2.0]]), np.array([[3.0], [5.0]]))  # Δμ = 3, Σ equal
        9.0
    """
    a, b = _pair(a, b, ("a", "b"))
    return _frechet_from_moments(*_moments(a), *_moments(b))


def _normalise(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide every feature by its maximum |value| in the *real* sample ``x`` (JetNet's rule)."""
    maxes = np.max(np.abs(x), axis=0)
    maxes[maxes == 0] = 1.0
    return x / maxes, y / maxes


def fpd(real: np.ndarray, gen: np.ndarray, min_samples: int = 20_000, max_samples: int = 50_000,
        num_batches: int = 20, num_points: int = 10, normalise: bool = True,
        seed: int = 42) -> tuple[float, float]:
    """Fréchet physics distance extrapolated to infinite sample size, with its error.

    Protocol (JetNet ``fpd``): optionally divide every feature by its max |value| in ``real``;
    take ``num_points`` batch sizes ``N`` equally spaced in 1/N between ``1/min_samples`` and
    ``1/max_samples`` (truncated to integers); at each, average :func:`frechet_distance` over
    ``num_batches`` pairs of batches drawn *with replacement* from ``real`` and ``gen``; fit
    ``FD(N) = FPD + slope / N`` by least squares with ``FPD, slope ≥ 0`` (JetNet uses
    ``scipy.optimize.curve_fit``; here the same bounded linear fit is solved exactly).  FD is
    biased upwards by O(1/N), so the intercept is the unbiased value.

    Arguments:
        real: (N_r, d) reference features; gen: (N_g, d) generated features.
        min_samples, max_samples: smallest and largest batch size (JetNet defaults 20 000 and
            50 000; JetNet recommends samples of at least 50 000).
        num_batches: batches averaged per batch size.
        num_points: number of batch sizes (≥ 3).
        normalise: scale features by the real sample's max |value| first (JetNet default).
        seed: seeds ``numpy.random.default_rng``; draws happen in JetNet's order.

    Returns:
        ``(value, error)``: the intercept and its standard error from the fit covariance.

    References:
        Kansal et al., arXiv:2211.10295; Chong and Forsyth, arXiv:1911.07023.
    """
    real, gen = _pair(real, gen, ("real", "gen"))
    min_samples, max_samples = int(min_samples), int(max_samples)
    if not 2 <= min_samples < max_samples:
        raise ValueError(f"fpd: need 2 <= min_samples < max_samples, found {min_samples} and {max_samples}")
    if int(num_points) < 3 or int(num_batches) < 1:
        raise ValueError(f"fpd: need num_points >= 3 and num_batches >= 1, found {num_points} and {num_batches}")
    x, y = _normalise(real, gen) if normalise else (real, gen)
    batches = (1 / np.linspace(1.0 / min_samples, 1.0 / max_samples, int(num_points))).astype("int32")
    rng = np.random.default_rng(seed)
    vals = []
    for batch_size in batches:
        points = []
        for _ in range(int(num_batches)):
            i1 = rng.choice(len(x), size=batch_size)
            i2 = rng.choice(len(y), size=batch_size)
            points.append(_frechet_from_moments(*_moments(x[i1]), *_moments(y[i2])))
        vals.append(np.mean(points))
    return _fit_intercept(1.0 / batches, np.asarray(vals))


def _fit_intercept(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = c + s x`` with ``c, s >= 0``; ``c`` and its standard error.

    JetNet calls ``curve_fit(..., bounds=([0, 0], [inf, inf]))``, an iterative solver that
    stops at a tolerance (e.g. 7.99996 instead of 8 for an exact line).  The same bounded
    linear problem is solved exactly here (``scipy.optimize.lsq_linear``, BVLS), and the error
    is the one ``curve_fit`` reports: ``pcov = (JᵀJ)⁻¹ · SSR / (n − 2)`` with ``J = [1, x]``.
    """
    jac = np.stack([np.ones_like(x), x], axis=1)
    res = lsq_linear(jac, y, bounds=([0.0, 0.0], [np.inf, np.inf]), method="bvls")
    ssr = float(np.sum((jac @ res.x - y) ** 2))
    pcov = np.linalg.inv(jac.T @ jac) * ssr / (len(y) - 2)
    return float(res.x[0]), float(np.sqrt(pcov[0, 0]))


def _int_power(base: np.ndarray, degree: int) -> np.ndarray:
    """``base ** degree`` for an integer degree ≥ 1 by repeated squaring, overwriting ``base``.

    Hand-written because ``numpy.power`` with a float array is ~8× slower than a few
    in-place multiplications, and the kernel power dominates the cost of :func:`kpd`.
    """
    result = None
    while degree:
        if degree & 1:
            if result is None:
                result = base if degree == 1 else base.copy()  # no copy when base is not needed again
            else:
                np.multiply(result, base, out=result)
        degree >>= 1
        if degree:
            np.multiply(base, base, out=base)
    return result


def _poly_kernel_sum(x: np.ndarray, y: np.ndarray, degree: int, chunk: int) -> float:
    """``Σ_ij (x_i·y_j / d + 1)^degree``, computed in row blocks of ``chunk``."""
    xs = x / x.shape[1]
    total = 0.0
    for start in range(0, len(x), chunk):
        k = xs[start:start + chunk] @ y.T
        k += 1.0
        total += float(np.sum(_int_power(k, degree)))
    return total


def _mmd2_poly_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 4, chunk: int = _CHUNK) -> float:
    """Unbiased MMD² with kernel ``(x·y/d + 1)^degree`` (diagonal terms of XX and YY removed)."""
    m, n, d = len(x), len(y), x.shape[1]
    xx = _poly_kernel_sum(x, x, degree, chunk) - float(np.sum((np.sum(x * x, 1) / d + 1.0) ** degree))
    yy = _poly_kernel_sum(y, y, degree, chunk) - float(np.sum((np.sum(y * y, 1) / d + 1.0) ** degree))
    xy = _poly_kernel_sum(x, y, degree, chunk)
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)


def kpd(real: np.ndarray, gen: np.ndarray, num_batches: int = 10, batch_size: int = 5_000,
        normalise: bool = True, seed: int = 42, degree: int = 4,
        chunk_size: int = _CHUNK) -> tuple[float, float]:
    """Kernel physics distance: unbiased MMD² with a polynomial kernel, median ± error over batches.

    Protocol (JetNet ``kpd``): optionally divide every feature by its max |value| in ``real``;
    for batch ``i`` of ``num_batches`` draw ``batch_size`` rows of ``real`` and of ``gen`` with
    replacement from ``numpy.random.default_rng(seed + 1000 i)``; compute the unbiased MMD²

        MMD² = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1)) − 2 Σ_ij k(x_i, y_j) / (mn)

    with ``k(x, y) = (x·y / d + 1)^degree``; return the median over batches and half the
    16.275–83.725 % inter-quantile range (``scipy.stats.iqr``) as its error.

    JetNet (0.2.5, the version matched here) uses ``degree = 4``; KID (Bińkowski et al.) uses 3.

    Arguments:
        real: (N_r, d) reference features; gen: (N_g, d) generated features.
        num_batches: number of batches (JetNet default 10).
        batch_size: rows per batch and sample (JetNet default 5000).
        normalise: scale features by the real sample's max |value| first (JetNet default).
        seed: base seed; batch ``i`` uses ``seed + 1000 i`` (JetNet's scheme).
        degree: polynomial degree of the kernel.
        chunk_size: rows per block when summing kernel matrices (memory only; the value does
            not depend on it beyond rounding).

    Returns:
        ``(median, error)``.  Unbiased, so it can be slightly negative for equal distributions.

    References:
        Kansal et al., arXiv:2211.10295; Bińkowski et al., arXiv:1801.01401.
    """
    real, gen = _pair(real, gen, ("real", "gen"))
    if int(batch_size) < 2 or int(num_batches) < 1 or int(chunk_size) < 1 or int(degree) < 1:
        raise ValueError("kpd: need batch_size >= 2, num_batches >= 1, degree >= 1 and chunk_size >= 1, "
                         f"found {batch_size}, {num_batches}, {degree} and {chunk_size}")
    x, y = _normalise(real, gen) if normalise else (real, gen)
    vals = np.empty(int(num_batches))
    for i in range(int(num_batches)):
        rng = np.random.default_rng(seed + i * 1000)
        i1 = rng.choice(len(x), size=int(batch_size))
        i2 = rng.choice(len(y), size=int(batch_size))
        vals[i] = _mmd2_poly_unbiased(x[i1], y[i2], int(degree), int(chunk_size))
    return float(np.median(vals)), float(stats.iqr(vals, rng=(16.275, 83.725)) / 2)


def _sq_dist_block(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``||x_i − y_j||²`` (clipped at 0 against rounding)."""
    d2 = np.sum(x * x, 1)[:, None] + np.sum(y * y, 1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def _gauss_kernel_sum(x: np.ndarray, y: np.ndarray, gamma: float, chunk: int, same: bool) -> float:
    """``Σ_ij exp(−γ ||x_i − y_j||²)``, without the i = j terms when ``same``."""
    total = 0.0
    for start in range(0, len(x), chunk):
        d2 = _sq_dist_block(x[start:start + chunk], y)
        if same:  # the diagonal is exactly exp(0) = 1; remove it rather than trust rounding
            rows = np.arange(d2.shape[0])
            d2[rows, start + rows] = np.inf
        total += float(np.sum(np.exp(-gamma * d2)))
    return total


def mmd_gaussian(a: np.ndarray, b: np.ndarray, bandwidth: float | None = None, seed: int = 0,
                 max_samples: int | None = 10_000, chunk_size: int = _CHUNK) -> float:
    """Unbiased MMD² between two samples with a Gaussian kernel.

    ``k(x, y) = exp(−||x − y||² / (2 σ²))`` and

        MMD² = Σ_{i≠j} k(a_i, a_j) / (m(m−1)) + Σ_{i≠j} k(b_i, b_j) / (n(n−1)) − 2 Σ_ij k(a_i, b_j) / (mn).

    ``bandwidth=None`` takes σ = median of the Euclidean distances between distinct points of
    the pooled sample (the median heuristic), computed on at most 1000 pooled points chosen
    with ``seed``.

    Arguments:
        a: (m, d) first sample; b: (n, d) second sample.
        bandwidth: σ (> 0), or None for the median heuristic.
        seed: seeds the subsampling (median heuristic and ``max_samples``).
        max_samples: each sample is subsampled without replacement to at most this many rows
            (cost grows as (m + n)²); None uses everything.
        chunk_size: rows per block of the kernel matrices (memory only).

    Returns:
        MMD² (unbiased: can be slightly negative for equal distributions).

    References:
        Gretton et al., JMLR 13 (2012) 723, eq. (3) and sec. 8 (median heuristic).
    """
    a, b = _pair(a, b, ("a", "b"))
    if int(chunk_size) < 1:
        raise ValueError(f"mmd_gaussian: chunk_size must be >= 1, found {chunk_size}")
    rng = np.random.default_rng(seed)
    if max_samples is not None:
        if int(max_samples) < 2:
            raise ValueError(f"mmd_gaussian: max_samples must be >= 2 or None, found {max_samples}")
        if len(a) > max_samples:
            a = a[np.sort(rng.choice(len(a), int(max_samples), replace=False))]
        if len(b) > max_samples:
            b = b[np.sort(rng.choice(len(b), int(max_samples), replace=False))]
    if bandwidth is None:
        pooled = np.concatenate([a, b])
        if len(pooled) > 1000:
            pooled = pooled[rng.choice(len(pooled), 1000, replace=False)]
        sigma = float(np.median(pdist(pooled)))
        if not sigma > 0:
            sigma = 1.0  # more than half the pairs coincide: any scale separates nothing better
    else:
        sigma = float(bandwidth)
        if not sigma > 0 or not np.isfinite(sigma):
            raise ValueError(f"mmd_gaussian: bandwidth must be a positive number or None, found {bandwidth}")
    gamma = 1.0 / (2.0 * sigma**2)
    m, n, c = len(a), len(b), int(chunk_size)
    xx = _gauss_kernel_sum(a, a, gamma, c, same=True)
    yy = _gauss_kernel_sum(b, b, gamma, c, same=True)
    xy = _gauss_kernel_sum(a, b, gamma, c, same=False)
    return float(xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row of ``x`` to its k-th nearest neighbour in ``x`` (itself excluded)."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    dist, _ = nn.kneighbors(x)  # column 0 is the point itself (or a duplicate at distance 0)
    return dist[:, k]


def prdc(real: np.ndarray, gen: np.ndarray, k: int = 5, max_samples: int | None = 10_000, seed: int = 0) -> dict:
    """Precision, recall, density and coverage of a generated sample (Naeem et al. 2020).

    With ``B(x, r)`` the open ball of radius ``r`` around ``x`` and ``NND_k(x)`` the distance
    of ``x`` to its k-th nearest neighbour in its own sample (itself excluded):

    * precision = (1/M) Σ_j 1[∃ i: ||Y_j − X_i|| < NND_k(X_i)]   (gen inside the real manifold)
    * recall    = (1/N) Σ_i 1[∃ j: ||X_i − Y_j|| < NND_k(Y_j)]   (real inside the gen manifold)
    * density   = 1/(kM) Σ_j Σ_i 1[||Y_j − X_i|| < NND_k(X_i)]
    * coverage  = (1/N) Σ_i 1[min_j ||X_i − Y_j|| < NND_k(X_i)]

    for real ``X`` (N rows) and generated ``Y`` (M rows), Euclidean distances.  Identical
    samples give precision = recall = coverage = 1 and density ≈ 1; the expected density of a
    perfect generator is 1, values above 1 mean generated points crowd dense real regions.
    Features should be on comparable scales (standardise first).

    The cost is O(N · M · d) (all real-generated distances, in row blocks of bounded memory), so
    each sample is first capped at ``max_samples`` rows, drawn at random without replacement from
    ``SeedSequence([seed, 0])`` (real) and ``[seed, 1]`` (generated); below the cap the samples are
    used whole.  The radii then refer to the subsample (a k-NN radius grows as the sample
    shrinks): compare values at equal sample sizes.

    Arguments:
        real: (N, d) real sample; gen: (M, d) generated sample.
        k: neighbours defining the radii (Naeem et al. use k = 5); needs N, M > k (after the cap).
        max_samples: cap on the rows of each sample (None: no cap; default 10,000).
        seed: seeds the subsampling.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats, and the bookkeeping
        ``n_real``, ``n_gen`` (rows used), ``max_samples``, ``seed``.

    >>> x = np.random.default_rng(0).normal(size=(50, 2))
    >>> r = prdc(x, x + 100.0, k=3, max_samples=20)
    >>> r["precision"], r["coverage"], r["n_real"], r["n_gen"]
    (0.0, 0.0, 20, 20)

    References:
        M. F. Naeem et al., arXiv:2002.09797, eqs. (1)–(4) and sec. 3.
    """
    real, gen = _pair(real, gen, ("real", "gen"))
    if max_samples is not None and int(max_samples) < 1:
        raise ValueError(f"prdc: max_samples: expected None or an integer >= 1, found {max_samples}")
    real, gen = _capped(real, max_samples, seed, 0), _capped(gen, max_samples, seed, 1)
    k = int(k)
    if k < 1 or len(real) <= k or len(gen) <= k:
        raise ValueError(f"prdc: need k >= 1 and more than k rows in each sample, "
                         f"found k={k}, {len(real)} real and {len(gen)} generated")
    r_real = _knn_radii(real, k)
    r_gen = _knn_radii(gen, k)
    n_prec = 0
    n_dens = 0
    recall_hit = np.zeros(len(real), dtype=bool)
    min_dist = np.full(len(real), np.inf)

    def reduce(chunk: np.ndarray, start: int):  # chunk: (rows of gen, N) distances to real
        nonlocal n_prec, n_dens
        inside = chunk < r_real[None, :]
        n_prec += int(inside.any(axis=1).sum())
        n_dens += int(inside.sum())
        recall_hit[:] |= (chunk < r_gen[start:start + len(chunk), None]).any(axis=0)
        np.minimum(min_dist, chunk.min(axis=0), out=min_dist)
        # everything is accumulated above; sklearn then yields None per chunk

    for _ in pairwise_distances_chunked(gen, real, reduce_func=reduce, metric="euclidean"):
        pass
    m = len(gen)
    return {
        "precision": n_prec / m,
        "recall": float(recall_hit.mean()),
        "density": n_dens / (k * m),
        "coverage": float(np.mean(min_dist < r_real)),
        "n_real": int(len(real)),
        "n_gen": int(m),
        "max_samples": None if max_samples is None else int(max_samples),
        "seed": int(seed),
    }


def _capped(x: np.ndarray, cap: int | None, seed: int, stream: int) -> np.ndarray:
    """At most ``cap`` rows of ``x``, drawn without replacement (order kept) from ``SeedSequence([seed, stream])``."""
    if cap is None or len(x) <= int(cap):
        return x
    rows = np.sort(np.random.default_rng([int(seed), int(stream)]).choice(len(x), int(cap), replace=False))
    return x[rows]
