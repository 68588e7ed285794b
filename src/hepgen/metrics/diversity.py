"""Image similarity and diversity checks: SSIM, memorisation, birthday-paradox support, mode collapse.

* :func:`ssim_matrix`, :func:`mean_pairwise_ssim` — structural similarity of shower images
  (``skimage.metrics.structural_similarity``) at several intensity scales.  The mean SSIM of
  random pairs *within* one set measures its diversity: a generator whose pairs are more
  alike than the reference's pairs (GAN-vs-GAN above Geant4-vs-Geant4) has collapsed.  Raising
  the intensities to powers < 1 brings out the low-energy deposits that barely register at
  linear scale (in the spirit of the 3DGAN validation, Khattak et al.);
* :func:`ssim_by_scale` — the 3DGAN definition: mean SSIM of G4-vs-G4, GAN-vs-GAN and
  G4-vs-GAN pairs at the intensity scales L = 1, 1e-2, 1e-4, 1e-6 (the SSIM ``data_range``);
* :func:`nearest_neighbour_memorisation` — are generated samples closer to the training
  set than independent real samples are?
* :func:`birthday_support_size` — birthday-paradox estimate of the support size
  (Arora & Zhang);
* :func:`mode_collapse_indicators` — spread ratios and duplicate fractions.

References:
    Z. Wang et al., "Image quality assessment: from error visibility to structural
    similarity", IEEE Trans. Image Process. 13 (2004) 600 (SSIM);
    G. R. Khattak et al., "Fast simulation of a high granularity calorimeter by generative
    adversarial networks", Eur. Phys. J. C 82 (2022) 386, arXiv:2109.07388 (3DGAN);
    S. Arora and Y. Zhang, "Do GANs actually learn the distribution? An empirical study",
    arXiv:1706.08224 (birthday paradox test).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist
from skimage.metrics import structural_similarity
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "birthday_support_size",
    "mean_pairwise_ssim",
    "mode_collapse_indicators",
    "nearest_neighbour_memorisation",
    "ssim_by_scale",
    "ssim_matrix",
]

#: 3DGAN's SSIM scales: the ``data_range`` L of the SSIM constants C1 = (0.01 L)², C2 = (0.03 L)²
THREEDGAN_SCALES = (1.0, 1e-2, 1e-4, 1e-6)


# ----------------------------------------------------------------------------------------------
# SSIM

def _images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3:
        raise ValueError(f"{name} must be (n, H, W) or (n, D, H, W) images, found shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _win_size(shape: tuple[int, ...], win_size: int | None) -> int:
    """skimage's default window (7), shrunk to the largest odd size that fits the image."""
    side = min(shape)
    if win_size is None:
        win_size = min(7, side if side % 2 else side - 1)
    if win_size < 3 or win_size % 2 == 0 or win_size > side:
        raise ValueError(f"SSIM window must be odd, >= 3 and <= the smallest image side {side}, "
                         f"found {win_size} (image shape {shape})")
    return int(win_size)


def _transform(x: np.ndarray, power: float) -> np.ndarray:
    if power == 1.0:
        return x
    if np.any(x < 0):
        raise ValueError(f"intensity power {power} needs non-negative images, found min {x.min()}")
    return x ** power


def _range_for(data_range: float | None, power: float, *arrays: np.ndarray) -> float:
    """``data_range ** power``, or the max − min of the transformed images when None."""
    if data_range is not None:
        if not float(data_range) > 0:
            raise ValueError(f"data_range must be positive, found {data_range}")
        return float(data_range) ** power
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    return hi - lo if hi > lo else 1.0


def ssim_matrix(images: np.ndarray, others: np.ndarray | None = None, data_range: float | None = None,
                power: float = 1.0, win_size: int | None = None) -> np.ndarray:
    """SSIM between every image of ``images`` and every image of ``others`` (or of ``images``).

    Arguments:
        images: (n, H, W) or (n, D, H, W) images, e.g. showers reshaped to (layers, r, α).
        others: (m, ...) images of the same shape; None compares ``images`` with itself
            (symmetric matrix, diagonal 1).
        data_range: max − min possible intensity of the *linear* images; with ``power`` p the
            range used is ``data_range ** p``.  None: max − min of the transformed images.
            Pass the same value for every set that is to be compared.
        power: intensities are raised to this power first (needs non-negative images if ≠ 1).
        win_size: odd sliding-window side; None: 7, or the largest odd size that fits.

    Returns:
        (n, m) matrix of ``skimage.metrics.structural_similarity`` values (≤ 1).
    """
    a = _transform(_images(images, "images"), float(power))
    b = a if others is None else _transform(_images(others, "others"), float(power))
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images and others must have the same image shape, found {a.shape[1:]} and {b.shape[1:]}")
    rng_ = _range_for(data_range, float(power), a, b)
    win = _win_size(a.shape[1:], win_size)
    out = np.empty((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            if others is None and j < i:
                out[i, j] = out[j, i]
            elif others is None and i == j:
                out[i, j] = 1.0
            else:
                out[i, j] = structural_similarity(a[i], b[j], data_range=rng_, win_size=win)
    return out


def mean_pairwise_ssim(images: np.ndarray, data_range: float | None = None, n_pairs: int = 500,
                       seed: int = 0, powers: Sequence[float] = (1.0, 0.5, 0.25),
                       others: np.ndarray | None = None, win_size: int | None = None) -> dict:
    """Mean SSIM of random image pairs at several intensity scales.

    Draws ``n_pairs`` pairs (i, j), i ≠ j, of ``images`` (or i from ``images`` and j from
    ``others``) with ``numpy.random.default_rng(seed)``; the same pairs are used for every
    power.  Compare ``mean_pairwise_ssim(geant4)`` with ``mean_pairwise_ssim(generated)`` at the
    same ``data_range``: a generated set whose pairs are clearly more similar than the
    reference's lacks diversity.

    Arguments:
        images: (n, H, W) or (n, D, H, W) images (n ≥ 2).
        data_range: max − min intensity of the linear images, shared by the sets to compare
            (see :func:`ssim_matrix`); None: taken from the transformed images themselves.
        n_pairs: number of random pairs.
        seed: seeds the choice of pairs.
        powers: intensity powers; 1 is linear, 0.5 and 0.25 emphasise low-energy deposits.
        others: optional second set (cross-set similarity).
        win_size: SSIM window (see :func:`ssim_matrix`).

    Returns:
        ``{f"pow{p:g}": {"mean": float, "error": float}}`` — mean SSIM and its standard error
        (std / sqrt(n_pairs)) per power, plus ``"n_pairs"``.
    """
    a = _images(images, "images")
    b = a if others is None else _images(others, "others")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images and others must have the same image shape, found {a.shape[1:]} and {b.shape[1:]}")
    if int(n_pairs) < 1:
        raise ValueError(f"n_pairs must be >= 1, found {n_pairs}")
    if others is None and len(a) < 2:
        raise ValueError(f"mean_pairwise_ssim needs at least 2 images, found {len(a)}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(a), int(n_pairs))
    if others is None:  # j uniform over the other n − 1 images
        j = (i + rng.integers(1, len(a), int(n_pairs))) % len(a)
    else:
        j = rng.integers(0, len(b), int(n_pairs))
    win = _win_size(a.shape[1:], win_size)
    out: dict = {}
    for p in powers:
        ta, tb = _transform(a, float(p)), _transform(b, float(p))
        rng_ = _range_for(data_range, float(p), ta, tb)
        vals = np.array([structural_similarity(ta[u], tb[v], data_range=rng_, win_size=win)
                         for u, v in zip(i, j)])
        err = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
        out[f"pow{float(p):g}"] = {"mean": float(vals.mean()), "error": err}
    out["n_pairs"] = int(n_pairs)
    return out


def _pair_ssim(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray, scale: float) -> np.ndarray:
    # 3DGAN's call (keras/misc/SSIM_Tests.py of github.com/svalleco/3Dgan, branch Anglegan):
    # compare_ssim(multichannel=True, gaussian_weights=True, use_sample_covariance=False,
    # data_range=L) on (x, y, z) images, i.e. 2D SSIM of each layer (Gaussian window σ = 1.5,
    # 11 × 11) averaged over the layers.  Here the layer axis comes first: channel_axis=0.
    return np.array([structural_similarity(a[u], b[v], data_range=scale, channel_axis=0,
                                           gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False)
                     for u, v in zip(i, j)])


def ssim_by_scale(real: np.ndarray, gen: np.ndarray, scales: Sequence[float] = THREEDGAN_SCALES,
                  n_pairs: int = 500, seed: int = 0) -> dict:
    """Mean SSIM of shower pairs at the 3DGAN intensity scales: G4×G4, GAN×GAN and G4×GAN.

    The definition of the 3DGAN validation (Khattak et al. 2022, sec. on image quality; the
    analysis script ``SSIM_Tests.py`` of the 3DGAN repository): every image is compared with a
    randomly chosen partner (a shuffled copy of a set), SSIM is computed layer by layer with a
    Gaussian window (σ = 1.5, population covariances) and averaged over the layers, and the
    *scale* L is the SSIM dynamic range, which sets the stabilising constants
    C1 = (0.01 L)², C2 = (0.03 L)² (Wang et al. 2004).  A large L (≫ the cell energies)
    makes C1, C2 dominate and SSIM → 1 for any two showers; the smaller L, the more SSIM
    compares the structure of the low-energy cells as well, and random pairs of showers
    become dissimilar (published, 3DGAN electrons in GeV/50: G4×G4 0.94 / 0.21 / 0.045 / 0.045,
    GAN×GAN 0.95 / 0.25 / 0.061 / 0.051 at L = 1 / 1e-2 / 1e-4 / 1e-6).  A GAN×GAN value well
    above G4×G4 means less diversity than Geant4 (mode collapse).  The values depend on the
    unit of the cell energies: pass both sets in the same unit and state it.

    Pairs: ``n_pairs`` pairs (i, j) per comparison with ``numpy.random.default_rng(seed)``;
    within one set j ≠ i (3DGAN's shuffle may pair an image with itself, which adds 1 / n to
    its mean); the same pairs are used at every scale.

    Arguments:
        real: (n, nz, ny, nx) reference (e.g. Geant4) showers, layers first (a
            :class:`~hepgen.data.geometry.CartesianGrid` shower reshaped to ``grid.shape``);
            ny, nx >= 11 (the Gaussian window), n >= 2.
        gen: (m, nz, ny, nx) generated showers, same shape and unit, m >= 2.
        scales: the dynamic ranges L (> 0), in the unit of the images.
        n_pairs: pairs per comparison.
        seed: seeds the pairs.

    Returns:
        ``{"scales": [...], "g4_g4": [...], "gan_gan": [...], "g4_gan": [...],
        "g4_g4_error": [...], …, "n_pairs": n}`` — mean SSIM per scale and its standard error
        (std / sqrt(n_pairs)).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.exponential(1e-3, (6, 2, 11, 11))  # noise images, 2 layers of 11 x 11
        >>> out = ssim_by_scale(a, 2 * a, scales=(1.0, 1e-6), n_pairs=20)
        >>> [round(v, 2) for v in out["g4_g4"]]  # random pairs: alike at L = 1, unrelated at L = 1e-6
        [1.0, -0.07]

    References:
        G. R. Khattak et al., Eur. Phys. J. C 82 (2022) 386, arXiv:2109.07388;
        Z. Wang et al., IEEE Trans. Image Process. 13 (2004) 600.
    """
    a, b = _images(real, "real"), _images(gen, "gen")
    for name, x in (("real", a), ("gen", b)):
        if x.ndim != 4:
            raise ValueError(f"ssim_by_scale: {name} must be (n, nz, ny, nx) showers, found shape {x.shape}")
        if len(x) < 2:
            raise ValueError(f"ssim_by_scale: {name} needs at least 2 showers, found {len(x)}")
        if min(x.shape[2:]) < 11:
            raise ValueError(f"ssim_by_scale: {name} layers must be at least 11 x 11 cells (the Gaussian "
                             f"window), found {x.shape[2:]}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"ssim_by_scale: real and gen must have the same shower shape, found {a.shape[1:]} "
                         f"and {b.shape[1:]}")
    scales = [float(s) for s in scales]
    if not scales or not all(np.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"ssim_by_scale: scales must be positive numbers, found {scales}")
    if int(n_pairs) < 2:
        raise ValueError(f"ssim_by_scale: n_pairs must be >= 2, found {n_pairs}")
    n = int(n_pairs)
    rng = np.random.default_rng(seed)

    def within(m: int) -> tuple[np.ndarray, np.ndarray]:
        i = rng.integers(0, m, n)
        return i, (i + rng.integers(1, m, n)) % m

    pairs = {"g4_g4": (a, a, *within(len(a))), "gan_gan": (b, b, *within(len(b))),
             "g4_gan": (a, b, rng.integers(0, len(a), n), rng.integers(0, len(b), n))}
    out: dict = {"scales": scales}
    for key, (x, y, i, j) in pairs.items():
        vals = [_pair_ssim(x, y, i, j, s) for s in scales]
        out[key] = [float(v.mean()) for v in vals]
        out[f"{key}_error"] = [float(v.std(ddof=1) / np.sqrt(n)) for v in vals]
    out["n_pairs"] = n
    return out


# ----------------------------------------------------------------------------------------------
# memorisation, support size, mode collapse

def _rows(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if len(x) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, found {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf in {int((~np.isfinite(x)).any(axis=1).sum())} rows")
    return x


def _same_width(**arrays: np.ndarray) -> None:
    widths = {k: v.shape[1] for k, v in arrays.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"all samples must have the same number of features, found {widths}")


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x.mean(axis=0), x.std(axis=0)
    return mu, np.where(sd > 0, sd, 1.0)


def _capped(x: np.ndarray, cap: int | None, seed: int, stream: int) -> np.ndarray:
    """At most ``cap`` rows of ``x``, drawn without replacement (order kept) from ``SeedSequence([seed, stream])``."""
    if cap is None or len(x) <= cap:
        return x
    rows = np.sort(np.random.default_rng([int(seed), int(stream)]).choice(len(x), int(cap), replace=False))
    return x[rows]


def _check_cap(name: str, cap: int | None) -> None:
    if cap is not None and int(cap) < 1:
        raise ValueError(f"{name}: expected None or an integer >= 1, found {cap}")


def nearest_neighbour_memorisation(train: np.ndarray, generated: np.ndarray, reference: np.ndarray,
                                   quantile: float = 0.01, standardise: bool = True,
                                   alpha: float = 1e-3, max_samples: int | None = 10_000,
                                   max_train: int | None = 50_000, seed: int = 0) -> dict:
    """Has the generator memorised its training set?  Nearest-neighbour distances to ``train``.

    For every generated sample, ``d_gen`` is the Euclidean distance to its nearest training
    sample; ``d_ref`` is the same for an independent real ``reference`` sample (not used in
    training).  A generator that samples the distribution rather than its training points gives
    ``d_gen`` distributed like ``d_ref``; one that copies training points gives ``d_gen ≈ 0``.

    * ``ratio`` = median(d_gen) / median(d_ref)  (≈ 1 honest, ≪ 1 memorising);
    * ``threshold`` = the j-th smallest of the n_ref reference distances, j = ⌈``quantile`` · n_ref⌉
      (an order statistic: the 1st percentile by default);
    * ``fraction_below`` = fraction of generated samples with d_gen < threshold
      (≈ ``expected_fraction`` = j / (n_ref + 1) honest, → 1 memorising);
    * ``p_value`` = P(K ≥ observed count) for K ~ BetaBinomial(n_gen, j, n_ref + 1 − j), one-sided
      (``scipy.stats.betabinom``);
    * ``flagged`` = ``p_value < alpha``.

    Statistics.  Under the null hypothesis (the generated samples are independent of the
    training set and drawn from the reference's distribution), the n_gen + n_ref distances are
    i.i.d. given the training set.  The threshold is estimated, so the chance U = F(threshold)
    that a generated distance falls below it is itself random: for the j-th order statistic of
    n_ref i.i.d. continuous values, U ~ Beta(j, n_ref + 1 − j), and the count below it, binomial
    given U, is beta-binomial — the distribution of exceedances of Gumbel and von Schelling.  This
    p-value is exact under the null (super-uniform: P(p < α) ≤ α), whatever n_ref.  The binomial
    test with the estimated threshold taken as exact (``p_value_fixed_threshold``, kept for
    comparison) ignores the spread of U (relative width ≈ 1/√j) and gives too small p-values when
    n_gen ≫ n_ref · quantile: two independent samples reached p = 0.0019 with it.

    Costs: the neighbour search is O(n_train · (n_gen + n_ref) · d) for many features; the
    samples are therefore capped, at random without replacement and seeded: ``generated`` and
    ``reference`` at ``max_samples`` rows each, ``train`` at ``max_train`` (copies of training
    rows left out of the cap are found only as near neighbours, so keep ``max_train`` large).
    The sizes used and the caps are returned.

    Arguments:
        train: (N_t, d) the generator's training sample (images are flattened).
        generated: (N_g, d) generated samples.
        reference: (N_r, d) independent real samples, ideally N_r ≳ 100 / quantile.
        quantile: reference quantile defining "suspiciously close".
        standardise: scale every feature by the (capped) training sample's mean and std first.
        alpha: significance level of the flag.
        max_samples: cap on the rows of ``generated`` and of ``reference`` (None: no cap).
        max_train: cap on the rows of ``train`` (None: no cap).
        seed: seeds the subsampling (independent streams per sample).

    Returns:
        dict with ``ratio``, ``threshold``, ``threshold_rank`` (j), ``fraction_below``,
        ``expected_fraction``, ``p_value``, ``p_value_fixed_threshold``, ``flagged``, ``alpha``,
        ``median_gen``, ``median_ref``, ``n_train``, ``n_generated``, ``n_reference``,
        ``max_samples``, ``max_train``, ``seed``.

    References:
        E. J. Gumbel and H. von Schelling, "The distribution of the number of exceedances",
        Ann. Math. Statist. 21 (1950) 247; H. A. David and H. N. Nagaraja, "Order Statistics",
        3rd ed., Wiley (2003), sec. 2.2 (F(X_(j)) ~ Beta(j, n − j + 1)).

    Example (copies of training rows are flagged; an independent sample is not):

    >>> rng = np.random.default_rng(0)
    >>> train, ref = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    >>> nearest_neighbour_memorisation(train, train[:200], ref)["flagged"]
    True
    >>> r = nearest_neighbour_memorisation(train, rng.normal(size=(200, 3)), ref)
    >>> r["flagged"], r["threshold_rank"], r["p_value"] > 0.01
    (False, 5, True)
    """
    train, gen, ref = _rows(train, "train"), _rows(generated, "generated"), _rows(reference, "reference")
    _same_width(train=train, generated=gen, reference=ref)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), found {quantile}")
    _check_cap("max_samples", max_samples)
    _check_cap("max_train", max_train)
    train, gen, ref = _capped(train, max_train, seed, 0), _capped(gen, max_samples, seed, 1), \
        _capped(ref, max_samples, seed, 2)
    if standardise:
        mu, sd = _standardiser(train)
        train, gen, ref = (train - mu) / sd, (gen - mu) / sd, (ref - mu) / sd
    nn = NearestNeighbors(n_neighbors=1).fit(train)
    d_gen = nn.kneighbors(gen)[0][:, 0]
    d_ref = nn.kneighbors(ref)[0][:, 0]
    n_gen, n_ref = len(d_gen), len(d_ref)
    j = min(n_ref, max(1, int(np.ceil(quantile * n_ref))))
    threshold = float(np.partition(d_ref, j - 1)[j - 1])
    below = int(np.sum(d_gen < threshold))
    p_value = float(stats.betabinom.sf(below - 1, n_gen, j, n_ref + 1 - j))
    p_fixed = float(stats.binomtest(below, n_gen, j / (n_ref + 1), alternative="greater").pvalue)
    med_gen, med_ref = float(np.median(d_gen)), float(np.median(d_ref))
    return {
        "ratio": med_gen / med_ref if med_ref > 0 else float("nan"),
        "threshold": threshold,
        "threshold_rank": int(j),
        "fraction_below": below / n_gen,
        "expected_fraction": j / (n_ref + 1),
        "p_value": min(1.0, p_value),
        "p_value_fixed_threshold": p_fixed,
        "flagged": bool(p_value < alpha),
        "alpha": float(alpha),
        "median_gen": med_gen,
        "median_ref": med_ref,
        "n_train": int(len(train)),
        "n_generated": int(n_gen),
        "n_reference": int(n_ref),
        "max_samples": None if max_samples is None else int(max_samples),
        "max_train": None if max_train is None else int(max_train),
        "seed": int(seed),
    }


def birthday_support_size(samples: np.ndarray, threshold: float | None = None, *,
                          quantile: float | None = None, reference: np.ndarray | None = None,
                          batch_sizes: Sequence[int] | None = None, n_trials: int = 50,
                          seed: int = 0) -> dict:
    """Birthday-paradox estimate of the number of distinct samples a generator can produce.

    If a distribution has support of size K (uniform), a batch of s draws contains a
    duplicate pair with probability ≈ 1 − exp(−s² / 2K), i.e. > ½ for s ≳ sqrt(2 ln2 · K).
    Following Arora & Zhang, the smallest batch size ``s`` at which a near-duplicate pair
    (Euclidean distance ≤ ``threshold``) appears with probability > ½ gives a support of
    about ``s²`` (for a uniform K-point distribution ``s² ≈ 1.39 K``; non-uniform
    distributions collide earlier, so s² is rather a lower bound).

    The collision probability is estimated at each batch size from ``n_trials`` batches drawn
    without replacement from ``samples``; the batch size where it crosses ½ is interpolated
    linearly between the two neighbouring batch sizes.

    Arguments:
        samples: (N, d) generated samples (images are flattened); N should be ≫ the batch sizes.
        threshold: distance at or below which two samples are near-duplicates (0: exact
            duplicates only).  Give either this or ``quantile``.
        quantile: take the threshold as this quantile of the distances between random pairs
            of ``reference`` (required with ``quantile``: the threshold must not come from the
            samples under test, or the estimate is circular).
        reference: (N_r, d) real samples defining the distance scale.
        batch_sizes: increasing batch sizes to try; default: about 60 sizes spaced
            geometrically from 2 to min(N, 4096).
        n_trials: batches per batch size.
        seed: seeds the batch draws (and the reference pairs).

    Returns:
        dict with ``support`` (s², NaN if no batch size reached probability ½), ``batch_size``
        (s), ``resolved`` (bool), ``threshold``, ``batch_sizes`` and ``collision_probability``
        (lists, up to the first size past ½).

    References:
        S. Arora and Y. Zhang, arXiv:1706.08224, sec. 2.
    """
    x = _rows(samples, "samples", min_rows=2)
    if (threshold is None) == (quantile is None):
        raise ValueError("birthday_support_size: give exactly one of threshold and quantile, "
                         f"found threshold={threshold}, quantile={quantile}")
    rng = np.random.default_rng(seed)
    if quantile is not None:
        if reference is None:
            raise ValueError("birthday_support_size: quantile needs a reference sample to define the "
                             "distance scale, found reference=None")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), found {quantile}")
        ref = _rows(reference, "reference", min_rows=2)
        _same_width(samples=x, reference=ref)
        n_pairs = 200_000
        i = rng.integers(0, len(ref), n_pairs)
        j = (i + rng.integers(1, len(ref), n_pairs)) % len(ref)
        threshold = float(np.quantile(np.linalg.norm(ref[i] - ref[j], axis=1), quantile))
    threshold = float(threshold)
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, found {threshold}")
    if batch_sizes is None:
        top = min(len(x), 4096)
        sizes = np.unique(np.round(np.geomspace(2, max(top, 2), 60)).astype(int))
    else:
        sizes = np.asarray(batch_sizes, dtype=int)
        if sizes.ndim != 1 or sizes.size == 0 or np.any(np.diff(sizes) <= 0) or sizes[0] < 2 or sizes[-1] > len(x):
            raise ValueError(f"batch_sizes must be increasing integers in [2, {len(x)}], found {sizes.tolist()}")
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be >= 1, found {n_trials}")
    probs: list[float] = []
    used: list[int] = []
    for s in sizes:
        hits = 0
        for _ in range(int(n_trials)):
            batch = x[rng.choice(len(x), int(s), replace=False)]
            hits += bool(pdist(batch).min() <= threshold)
        used.append(int(s))
        probs.append(hits / int(n_trials))
        if probs[-1] > 0.5:
            break
    resolved = probs[-1] > 0.5
    if not resolved:
        s_half = float("nan")
    elif len(probs) == 1:
        s_half = float(used[0])
    else:  # linear interpolation to probability ½ between the last two sizes
        s0, s1, p0, p1 = used[-2], used[-1], probs[-2], probs[-1]
        s_half = s0 + (0.5 - p0) * (s1 - s0) / (p1 - p0)
    return {
        "support": s_half**2,
        "batch_size": s_half,
        "resolved": bool(resolved),
        "threshold": threshold,
        "batch_sizes": used,
        "collision_probability": probs,
    }


def mode_collapse_indicators(real: np.ndarray, gen: np.ndarray, seed: int = 0,
                             max_samples: int = 2000) -> dict:
    """Simple signs of mode collapse: shrunken spread and duplicated samples.

    Features are standardised with the real sample's mean and std (constant features: std 1).

    * ``std_ratio`` = mean over features of std(gen) / mean over features of std(real)
      (≈ 1 healthy, < 1 collapsed);
    * ``pairwise_distance_ratio`` = mean Euclidean distance between distinct generated pairs /
      the same for real pairs, each on at most ``max_samples`` rows chosen with ``seed``
      (≈ 1 healthy, < 1 collapsed);
    * ``duplicate_fraction_real``, ``duplicate_fraction_gen`` = 1 − (distinct rows / rows),
      exact duplicates on the raw inputs (0 for continuous data).

    Arguments:
        real: (N_r, d) real samples; gen: (N_g, d) generated samples (images are flattened).
        seed: seeds the subsampling for the pairwise distances.
        max_samples: rows used for the pairwise distances (cost ∝ max_samples²).

    Returns:
        dict with the four numbers above.
    """
    real, gen = _rows(real, "real", 2), _rows(gen, "gen", 2)
    _same_width(real=real, gen=gen)
    if int(max_samples) < 2:
        raise ValueError(f"max_samples must be >= 2, found {max_samples}")
    mu, sd = _standardiser(real)
    zr, zg = (real - mu) / sd, (gen - mu) / sd
    rng = np.random.default_rng(seed)

    def mean_dist(z: np.ndarray) -> float:
        if len(z) > max_samples:
            z = z[rng.choice(len(z), int(max_samples), replace=False)]
        return float(pdist(z).mean())

    dr = mean_dist(zr)
    dg = mean_dist(zg)
    sr = float(zr.std(axis=0).mean())
    return {
        "std_ratio": float(zg.std(axis=0).mean()) / sr if sr > 0 else float("nan"),
        "pairwise_distance_ratio": dg / dr if dr > 0 else float("nan"),
        "duplicate_fraction_real": 1.0 - len(np.unique(real, axis=0)) / len(real),
        "duplicate_fraction_gen": 1.0 - len(np.unique(gen, axis=0)) / len(gen),
    }
