"""Fisher-z correlation test and the Jensen–Shannon divergence against hand-worked cases and scipy."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from hepgen.metrics import fisher_z_test, jensen_shannon


def test_fisher_z_hand_worked_two_variables():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    # a: y = 1, 3, 2, 4 → Σdxdy = 4, Σdx² = Σdy² = 5 → r = 0.8, artanh 0.8 = ln 3
    # b: y = 2, 1, 4, 3 → Σdxdy = 3 → r = 0.6, artanh 0.6 = ln 2
    a = np.stack([x, [1.0, 3.0, 2.0, 4.0]], axis=1)
    b = np.stack([x, [2.0, 1.0, 4.0, 3.0]], axis=1)
    res = fisher_z_test(a, b)
    z = np.log(1.5) / np.sqrt(1 / (4 - 3) + 1 / (4 - 3))
    np.testing.assert_allclose(res["corr_a"], [[1, 0.8], [0.8, 1]], atol=1e-12)
    np.testing.assert_allclose(res["corr_b"], [[1, 0.6], [0.6, 1]], atol=1e-12)
    np.testing.assert_allclose(res["z"], [[0, z], [z, 0]], atol=1e-12)
    assert res["ndof"] == 1
    assert res["chi2"] == pytest.approx(z**2, rel=1e-12)
    # one pair: the χ²₁ p-value is the two-sided normal p-value of z
    assert res["p_value"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-10)


def test_fisher_z_matches_independent_computation():
    rng = np.random.default_rng(0)
    cov_a = np.array([[1.0, 0.5, 0.2, 0.0], [0.5, 1.0, 0.3, 0.1], [0.2, 0.3, 1.0, -0.4], [0.0, 0.1, -0.4, 1.0]])
    cov_b = cov_a.copy()
    cov_b[0, 1] = cov_b[1, 0] = 0.3
    a = rng.multivariate_normal(np.zeros(4), cov_a, size=1500) * [1, 10, 0.1, 3]
    b = rng.multivariate_normal(np.ones(4), cov_b, size=900)
    res = fisher_z_test(a, b)
    ra, rb = np.corrcoef(a, rowvar=False), np.corrcoef(b, rowvar=False)
    iu = np.triu_indices(4, 1)  # off-diagonal only: artanh(1) on the diagonal is infinite
    z = np.full((4, 4), np.nan)
    z[iu] = (np.arctanh(ra[iu]) - np.arctanh(rb[iu])) / np.sqrt(1 / 1497 + 1 / 897)
    np.testing.assert_allclose(res["corr_a"], ra, atol=1e-12)
    np.testing.assert_allclose(res["z"][iu], z[iu], rtol=1e-9)
    assert res["ndof"] == 6
    assert res["chi2"] == pytest.approx(np.sum(z[iu] ** 2), rel=1e-9)
    assert res["p_value"] == pytest.approx(stats.chi2.sf(np.sum(z[iu] ** 2), 6), rel=1e-8)
    assert res["p_value"] < 1e-6  # 0.5 vs 0.3 with ~1000 events is a >5σ difference
    assert abs(res["z"][0, 1]) > 5 and np.max(np.abs(np.delete(res["z"][iu], 0))) < 4


def test_fisher_z_identical_samples_and_null():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 3))
    res = fisher_z_test(a, a)
    np.testing.assert_array_equal(res["z"], np.zeros((3, 3)))
    assert res["chi2"] == 0.0 and res["ndof"] == 3 and res["p_value"] == 1.0
    # perfectly correlated columns in both samples: clipped, finite, z = 0
    d = np.stack([a[:, 0], 2 * a[:, 0]], axis=1)
    assert fisher_z_test(d, d)["z"][0, 1] == 0.0
    # null: p-values of independent equal-distribution samples are not small
    p = [fisher_z_test(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)))["p_value"] for _ in range(200)]
    assert 0.03 < np.mean(np.array(p) < 0.1) < 0.18  # ≈ 0.1 (exact for k = 2): 200 trials, ±0.021 std


def test_fisher_z_constant_column_rule():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(80, 3))
    b[:, 2] = 5.0
    res = fisher_z_test(a, b)
    assert res["constant_columns"] == [2]
    assert res["ndof"] == 1  # only the pair (0, 1) is left
    assert np.all(np.isnan(res["z"][2])) and np.all(np.isnan(res["z"][:, 2]))
    assert res["z"][0, 0] == 0.0 and np.isfinite(res["z"][0, 1])
    assert np.all(np.isnan(res["corr_b"][2])) and np.isfinite(res["corr_a"][2, 0])
    assert res["chi2"] == pytest.approx(res["z"][0, 1] ** 2)
    one = fisher_z_test(a[:, :1], b[:, :1])
    assert one["ndof"] == 0 and one["chi2"] == 0.0 and one["p_value"] == 1.0


def test_fisher_z_errors():
    a = np.zeros((10, 2))
    with pytest.raises(ValueError, match="same number of columns"):
        fisher_z_test(a, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="at least 4 rows"):
        fisher_z_test(a[:3], a)
    with pytest.raises(ValueError, match=r"2-d \(N, k\)"):
        fisher_z_test(np.zeros(10), a)
    bad = np.ones((10, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 rows"):
        fisher_z_test(a, bad)


def test_jensen_shannon_hand_worked_and_limits():
    edges = np.array([0.0, 1.0, 2.0])
    # p = (½, ½), q = (1, 0), m = (¾, ¼): KL(p‖m) = 1 − ½ log2 3, KL(q‖m) = 2 − log2 3
    # JSD = ½ (3 − 1.5 log2 3) = 1.5 − 0.75 log2 3
    val = jensen_shannon(np.array([0.5, 1.5]), np.array([0.5, 0.5]), edges)
    assert val == pytest.approx(1.5 - 0.75 * np.log2(3), rel=1e-12)
    assert jensen_shannon(np.full(10, 0.5), np.full(7, 1.5), edges) == pytest.approx(1.0)
    a = np.random.default_rng(0).normal(size=1000)
    assert jensen_shannon(a, a, 30) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="non-empty"):
        jensen_shannon(np.array([]), a, edges)


def test_jensen_shannon_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=2000), rng.normal(0.4, 1.3, size=1500)
    edges = np.linspace(-4, 4, 41)
    p = np.histogram(np.clip(a, -4, 4), edges)[0]
    q = np.histogram(np.clip(b, -4, 4), edges)[0]
    ref = jensenshannon(p, q, base=2) ** 2  # scipy returns the distance, the sqrt of the divergence
    assert jensen_shannon(a, b, edges) == pytest.approx(ref, rel=1e-10)
    assert 0 < jensen_shannon(a, b, 30) < 1
