"""Diversity checks (SSIM, memorisation, birthday support, mode collapse) and the classification accuracy score."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from hepgen.metrics import (
    birthday_support_size,
    classification_accuracy_score,
    mean_pairwise_ssim,
    mode_collapse_indicators,
    nearest_neighbour_memorisation,
    ssim_matrix,
)


def _showers(rng, n, shape=(8, 8), spread=1.0):
    """Blob images (n, *shape) with random centre and width: a stand-in for shower layers."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy = shape[0] / 2 + spread * rng.normal(size=(n, 1, 1))
    cx = shape[1] / 2 + spread * rng.normal(size=(n, 1, 1))
    w = 1.0 + 0.5 * spread * rng.random((n, 1, 1))
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w**2)) * rng.exponential(10, (n, 1, 1))


def test_ssim_hand_worked_3x3():
    # one 3×3 window: SSIM = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),
    # sample (ddof = 1) statistics, C1 = (0.01 L)², C2 = (0.03 L)²  (Wang et al. 2004, skimage defaults)
    x = np.array([[1.0, 2.0, 0.0], [3.0, 5.0, 1.0], [0.0, 1.0, 2.0]])
    y = np.array([[0.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 1.0, 0.0]])
    L = 6.0
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(ddof=1), y.var(ddof=1)
    cxy = np.sum((x - mx) * (y - my)) / 8
    ref = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    m = ssim_matrix(x[None], y[None], data_range=L)
    assert m.shape == (1, 1) and m[0, 0] == pytest.approx(ref, rel=1e-10)
    # power p: images x^p compared with data range L^p, as skimage does on transformed images
    m = ssim_matrix(x[None], y[None], data_range=L, power=0.5)
    assert m[0, 0] == pytest.approx(structural_similarity(x**0.5, y**0.5, data_range=L**0.5, win_size=3))


def test_ssim_identical_and_matrix():
    rng = np.random.default_rng(0)
    imgs = _showers(rng, 4)
    m = ssim_matrix(imgs, data_range=50.0)
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T)
    assert m[0, 1] == pytest.approx(structural_similarity(imgs[0], imgs[1], data_range=50.0, win_size=7))
    same = mean_pairwise_ssim(np.repeat(imgs[:1], 5, axis=0), data_range=50.0, n_pairs=20)
    for key in ("pow1", "pow0.5", "pow0.25"):
        assert same[key]["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        ssim_matrix(-imgs, power=0.5)
    with pytest.raises(ValueError, match="window"):
        ssim_matrix(np.zeros((2, 2, 2)))


def test_mean_pairwise_ssim_sees_collapse_and_is_seeded():
    rng = np.random.default_rng(1)
    diverse = _showers(rng, 60, spread=1.5)
    collapsed = _showers(rng, 60, spread=0.1)  # nearly the same blob every time
    kw = {"data_range": 60.0, "n_pairs": 100, "seed": 3}
    d, c = mean_pairwise_ssim(diverse, **kw), mean_pairwise_ssim(collapsed, **kw)
    for key in ("pow1", "pow0.5", "pow0.25"):
        assert c[key]["mean"] > d[key]["mean"] + 5 * np.hypot(c[key]["error"], d[key]["error"])
    assert mean_pairwise_ssim(diverse, **kw) == d
    assert mean_pairwise_ssim(diverse, data_range=60.0, n_pairs=100, seed=4) != d
    cross = mean_pairwise_ssim(diverse, others=collapsed, **kw)
    assert cross["n_pairs"] == 100 and np.isfinite(cross["pow1"]["mean"])


def test_memorisation_flags_copies_not_independent_samples():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(2000, 5))
    reference = rng.normal(size=(2000, 5))
    copied = train[rng.choice(2000, 1000, replace=False)]
    res = nearest_neighbour_memorisation(train, copied, reference)
    assert res["flagged"] and res["fraction_below"] == 1.0 and res["ratio"] == 0.0
    honest = nearest_neighbour_memorisation(train, rng.normal(size=(1000, 5)), reference)
    assert not honest["flagged"]
    assert honest["ratio"] == pytest.approx(1.0, abs=0.1)
    assert honest["fraction_below"] < 0.03
    # 10 % copied, 90 % new: still flagged
    mixed = np.concatenate([copied[:100], rng.normal(size=(900, 5))])
    assert nearest_neighbour_memorisation(train, mixed, reference)["flagged"]


@pytest.mark.parametrize("k", [100, 400])
def test_birthday_support_of_discrete_distribution(k):
    rng = np.random.default_rng(k)
    points = rng.normal(size=(k, 6))
    samples = points[rng.integers(0, k, 20000)]
    res = birthday_support_size(samples, threshold=0.0, n_trials=100, seed=0)
    assert res["resolved"]
    assert k / 2 <= res["support"] <= 2 * k  # uniform: s² ≈ 2 ln2 · K ≈ 1.39 K
    again = birthday_support_size(samples, threshold=0.0, n_trials=100, seed=0)
    assert again == res
    # continuous samples: no exact duplicates, so no batch size reaches ½
    cont = birthday_support_size(rng.normal(size=(3000, 6)), threshold=0.0, n_trials=5,
                                 batch_sizes=[10, 100, 1000])
    assert not cont["resolved"] and np.isnan(cont["support"]) and cont["collision_probability"] == [0, 0, 0]


def test_birthday_threshold_from_reference():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(2000, 4))
    res = birthday_support_size(rng.normal(size=(5000, 4)), quantile=1e-4, reference=ref, n_trials=30)
    # per pair P(d ≤ t) = 1e-4 for an honest generator → "support" ~ 2 ln2 / 1e-4 ≈ 1.4e4
    assert res["resolved"] and 3e3 < res["support"] < 5e4
    with pytest.raises(ValueError, match="reference"):
        birthday_support_size(ref, quantile=0.01)
    with pytest.raises(ValueError, match="exactly one"):
        birthday_support_size(ref)


def test_mode_collapse_indicators():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(1500, 4)) * [1, 5, 0.1, 2]
    res = mode_collapse_indicators(real, real)
    assert res == pytest.approx({"std_ratio": 1.0, "pairwise_distance_ratio": 1.0,
                                 "duplicate_fraction_real": 0.0, "duplicate_fraction_gen": 0.0})
    modes = real[:5]
    collapsed = modes[rng.integers(0, 5, 1000)] + 0.01 * rng.normal(size=(1000, 4)) * [1, 5, 0.1, 2]
    res = mode_collapse_indicators(real, collapsed)
    assert res["std_ratio"] < 1.0 and res["pairwise_distance_ratio"] < 1.0
    sub = mode_collapse_indicators(real, collapsed, seed=1, max_samples=500)
    assert sub == mode_collapse_indicators(real, collapsed, seed=1, max_samples=500)
    assert sub != mode_collapse_indicators(real, collapsed, seed=2, max_samples=500)
    dup = mode_collapse_indicators(real, modes[rng.integers(0, 5, 1000)])
    assert dup["duplicate_fraction_gen"] == pytest.approx(1 - 5 / 1000)


def test_classification_accuracy_score_gaussians():
    rng = np.random.default_rng(7)

    def a(n):
        return rng.normal(1.0, 1.0, (n, 3))

    def b(n):
        return rng.normal(-1.0, 1.0, (n, 3))

    real_b, real_a_test, real_b_test = b(1000), a(2000), b(1000)
    good = classification_accuracy_score(a(1000), real_b, real_a_test, real_b_test, seed=0)
    # both ≈ Φ(√3) ≈ 0.96; they differ only by training noise
    assert good["baseline"] > 0.9 and abs(good["cas"] - good["baseline"]) < 0.03
    bad = classification_accuracy_score(rng.normal(-3.0, 1.0, (1000, 3)), real_b, real_a_test, real_b_test, seed=0)
    assert bad["cas"] < good["baseline"] - 0.3 and bad["ratio"] < 0.7
    assert bad["baseline"] == good["baseline"]  # same seed → same baseline split and classifier
    assert classification_accuracy_score(a(500), real_b, real_a_test, real_b_test, seed=1, model="logistic")["cas"] > 0.9
    with pytest.raises(ValueError, match="same number of features"):
        classification_accuracy_score(a(100)[:, :2], real_b, real_a_test, real_b_test)
