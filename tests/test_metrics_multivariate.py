"""Multivariate metrics (FPD, KPD, MMD, PRDC) against closed forms, brute force, scipy and JetNet numbers."""

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist, pdist

from hepgen.metrics import fpd, frechet_distance, kpd, mmd_gaussian, prdc


def _jetnet_data():
    """Data on which the JetNet reference numbers below were computed (see test_matches_jetnet)."""
    rng = np.random.default_rng(2024)
    real = rng.normal(size=(3000, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]
    gen = rng.normal(size=(2500, 4)) * [1.1, 1.8, 0.5, 3.3] + [0.2, 1.0, -1.9, 5.5]
    return real, gen


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(5, 5))
    a = rng.normal(size=(800, 5)) @ mix
    b = rng.normal(size=(600, 5)) @ (mix + 0.3 * rng.normal(size=(5, 5))) + 0.5
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real  # independent route: sqrtm of the non-symmetric product
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # hand-worked 1-d case: means 1 and 4, equal variances → (4 − 1)² = 9
    assert frechet_distance(np.array([0.0, 2.0]), np.array([3.0, 5.0])) == pytest.approx(9.0)


def test_fpd_closed_form_for_gaussians():
    rng = np.random.default_rng(1)
    # identity covariances: FPD = ||Δμ||² = 0.5² + 1² + 0 = 1.25
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) + [0.5, 1.0, 0.0]
    val, err = fpd(a, b, min_samples=2000, max_samples=10000, num_batches=5, num_points=5, normalise=False, seed=0)
    assert val == pytest.approx(1.25, abs=3 * err + 0.03)
    # diagonal covariances diag(1, 4) vs diag(4, 1), equal means: Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) = 1 + 1 = 2
    c = rng.normal(size=(20000, 2)) * [1.0, 2.0]
    d = rng.normal(size=(20000, 2)) * [2.0, 1.0]
    val, err = fpd(c, d, min_samples=2000, max_samples=10000, num_batches=5, num_points=5, normalise=False, seed=0)
    assert val == pytest.approx(2.0, abs=3 * err + 0.05)


def test_fpd_kpd_jetnet_hand_cases():
    # the cases of JetNet's own tests: constant samples of 2s and 0s in 2-d
    zeros, twos = np.zeros((3000, 2)), np.full((3000, 2), 2.0)
    kw = {"min_samples": 500, "max_samples": 2000, "num_batches": 2, "num_points": 3}
    val, err = fpd(twos, zeros, normalise=False, **kw)
    assert val == pytest.approx(8.0, rel=1e-6) and err < 1e-3  # 2² + 2²
    val, err = fpd(twos, zeros, **kw)  # normalised by max |real| = 2 → 1² + 1²
    assert val == pytest.approx(2.0, rel=1e-6) and err < 1e-3
    # kernel (x·y/d + 1)^4: (2·2·2/2 + 1)^4 + 1 − 2 = 624; normalised: (1 + 1)^4 + 1 − 2 = 15
    assert kpd(twos, zeros, normalise=False, num_batches=3, batch_size=100) == pytest.approx((624.0, 0.0))
    assert kpd(twos, zeros, num_batches=3, batch_size=100) == pytest.approx((15.0, 0.0))
    assert kpd(zeros, zeros, num_batches=3, batch_size=100) == pytest.approx((0.0, 0.0))


def test_matches_jetnet():
    # Reference numbers from jetnet 0.2.5 (jetnet.evaluation.fpd / kpd) run once in a throw-away
    # venv with numpy 1.26.4 and scipy 1.17.1 on _jetnet_data() with the same arguments
    # (jetnet needs numpy < 2 and is not a test dependency).  Same seed → same batches, so KPD
    # agrees up to rounding; FPD up to the matrix square root (scipy sqrtm there, eigh here,
    # ~1e-8) and the stopping tolerance of jetnet's iterative curve_fit (exact fit here, ~1e-5).
    real, gen = _jetnet_data()
    assert real.sum() == pytest.approx(12230.716070931896, rel=1e-12)  # same data as there
    kw = {"min_samples": 500, "max_samples": 2000, "num_batches": 5, "num_points": 5, "seed": 7}
    assert fpd(real, gen, **kw) == pytest.approx((0.00609937191849835, 0.0013330820468125538), rel=5e-5)
    assert fpd(real, gen, normalise=False, **kw) == pytest.approx((0.4320489532184316, 0.02683876041093974),
                                                                  rel=5e-5)
    kw = {"num_batches": 5, "batch_size": 500, "seed": 7}
    assert kpd(real, gen, **kw) == pytest.approx((0.009050413922410794, 0.0022685152040621184), rel=1e-8)
    assert kpd(real, gen, normalise=False, **kw) == pytest.approx((5250.617781815949, 2663.416681893192), rel=1e-8)


def test_kpd_null_and_sensitivity():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 3))
    val, err = kpd(x, x, num_batches=8, batch_size=400)
    assert abs(val) <= 3 * err + 1e-4
    val_shift, err_shift = kpd(x, x + 0.5, num_batches=8, batch_size=400)
    assert val_shift > 3 * err_shift and val_shift > val + 20 * err


def test_seeded_and_chunk_independent():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(700, 3)), rng.normal(0.2, 1.0, size=(600, 3))
    kw = {"min_samples": 100, "max_samples": 400, "num_batches": 3, "num_points": 3}
    assert fpd(a, b, seed=5, **kw) == fpd(a, b, seed=5, **kw)
    assert fpd(a, b, seed=5, **kw) != fpd(a, b, seed=6, **kw)
    assert kpd(a, b, num_batches=3, batch_size=200, seed=5) == kpd(a, b, num_batches=3, batch_size=200, seed=5)
    ref = kpd(a, b, num_batches=3, batch_size=200, seed=5)
    assert kpd(a, b, num_batches=3, batch_size=200, seed=5, chunk_size=7) == pytest.approx(ref, rel=1e-10)
    m = mmd_gaussian(a, b, seed=1, max_samples=500)
    assert mmd_gaussian(a, b, seed=1, max_samples=500) == m
    assert mmd_gaussian(a, b, seed=2, max_samples=500) != m  # other subsample
    for chunk in (1, 13, 4096):
        assert mmd_gaussian(a, b, seed=1, max_samples=500, chunk_size=chunk) == pytest.approx(m, rel=1e-10)


def test_mmd_gaussian_brute_force_three_points():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.5]])
    sigma = 1.3

    def k(x, y):
        return np.exp(-np.sum((x - y) ** 2) / (2 * sigma**2))

    xx = sum(k(a[i], a[j]) for i in range(3) for j in range(3) if i != j) / 6
    yy = sum(k(b[i], b[j]) for i in range(3) for j in range(3) if i != j) / 6
    xy = sum(k(a[i], b[j]) for i in range(3) for j in range(3)) / 9
    assert mmd_gaussian(a, b, bandwidth=sigma) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    # median heuristic: σ = median distance between distinct pooled points (6 points < 1000: no subsample)
    med = np.median(pdist(np.concatenate([a, b])))
    assert mmd_gaussian(a, b) == pytest.approx(mmd_gaussian(a, b, bandwidth=med), rel=1e-12)


def test_mmd_gaussian_null_and_shift():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    null = mmd_gaussian(a, b)
    assert abs(null) < 0.005
    assert mmd_gaussian(a, b + 1.0) > 20 * abs(null) + 0.05
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_gaussian(a, b, bandwidth=0.0)


def test_prdc_hand_worked():
    # k = 1, 1-d.  Real X = 0, 1, 3 → radii 1, 1, 2; generated Y = 0.5, 0.6, 10 → radii 0.1, 0.1, 9.4.
    # precision: 0.5 and 0.6 lie in the ball of 0 (and 1), 10 in none → 2/3
    # recall: X=0 is in no Y ball (0.5 ≥ 0.1, 0.6 ≥ 0.1, 10 ≥ 9.4), X=1 and X=3 are in 10's ball → 2/3
    # density: 0.5 in balls of 0 and 1, 0.6 in balls of 0 and 1, 10 in none → 4 / (1·3) = 4/3
    # coverage: nearest Y to 0, 1, 3 at 0.5, 0.4, 2.4 vs radii 1, 1, 2 → 2/3
    res = prdc(np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [0.6], [10.0]]), k=1)
    assert res == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "density": 4 / 3, "coverage": 2 / 3,
                                 "n_real": 3, "n_gen": 3, "max_samples": 10_000, "seed": 0})


def test_prdc_limits_and_brute_force():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 4)), rng.normal(0.3, 1.2, size=(250, 4))
    same = prdc(x, x, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.15)  # boundary ties are decided by rounding
    far = prdc(x, y + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0, "n_real": 300, "n_gen": 250,
                   "max_samples": 10_000, "seed": 0}
    # independent brute force with scipy cdist, k = 3
    k = 3
    dxx, dyy, dyx = cdist(x, x), cdist(y, y), cdist(y, x)
    rx = np.sort(dxx, axis=1)[:, k]
    ry = np.sort(dyy, axis=1)[:, k]
    inside = dyx < rx[None, :]
    ref = {
        "precision": inside.any(1).mean(),
        "recall": (dyx < ry[:, None]).any(0).mean(),
        "density": inside.sum() / (k * len(y)),
        "coverage": (dyx.min(0) < rx).mean(),
    }
    got = prdc(x, y, k=k)
    assert {key: got[key] for key in ref} == pytest.approx(ref, abs=1e-12)


def test_input_errors():
    a = np.zeros((10, 3))
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(a, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        kpd(a, np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="min_samples < max_samples"):
        fpd(a, a, min_samples=100, max_samples=100)
    with pytest.raises(ValueError, match="more than k rows"):
        prdc(a, a[:3], k=5)
