"""Metrics against hand-worked cases and independent libraries (scipy, scikit-learn)."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from hepgen.data.geometry import CartesianGrid, CylindricalBinning
from hepgen.metrics import (
    binning_for,
    classifier_two_sample_test,
    hanley_mcneil_error,
    high_level_features,
    high_level_inputs,
    jsd_from_probabilities,
    ks_statistic,
    ks_test,
    layer_energies,
    longitudinal_profile,
    low_level_inputs,
    radial_profile,
    separation_power,
    wasserstein_1d,
)


def test_features_hand_worked_cylindrical():
    # 2 layers × 4 angular × 2 radial bins; r centres 0.5 and 2.0, α centres -3π/4, -π/4, π/4, 3π/4
    geo = CylindricalBinning.regular(n_layers=2, r_edges=[0, 1, 3], n_alpha=4)
    s = np.zeros((1, 16))
    # layer 0: 3 MeV at (α=π/4, r=2) [index 2*2+1=5], 1 MeV at (α=-π/4, r=2) [index 1*2+1=3]
    s[0, 5], s[0, 3] = 3.0, 1.0
    # layer 1: 2 MeV at (α=3π/4, r=0.5) [index 8 + 3*2 + 0 = 14]
    s[0, 14] = 2.0
    f = high_level_features(s, np.array([[12.0]]), geo)
    c = np.sqrt(2.0)  # 2 cos(π/4) = 2 sin(π/4) = √2
    assert f["E_tot_over_E_inc"][0] == pytest.approx(6 / 12)
    assert f["E_layer_0"][0] == pytest.approx(4.0) and f["E_layer_1"][0] == pytest.approx(2.0)
    # x: both at +√2 → mean √2, width 0; y: (3·√2 − 1·√2)/4 = √2/2, width² = 2 − 1/2
    assert f["EC_eta_0"][0] == pytest.approx(c)
    assert f["width_eta_0"][0] == pytest.approx(0.0, abs=1e-7)
    assert f["EC_phi_0"][0] == pytest.approx(c / 2)
    assert f["width_phi_0"][0] == pytest.approx(np.sqrt(2 - 0.5))
    assert f["EC_r_0"][0] == pytest.approx(2.0) and f["width_r_0"][0] == pytest.approx(0.0, abs=1e-7)
    # layer 1: single voxel at r=0.5, α=3π/4 → x = -0.5/√2, y = +0.5/√2
    assert f["EC_eta_1"][0] == pytest.approx(-0.5 / c) and f["EC_phi_1"][0] == pytest.approx(0.5 / c)
    assert f["sparsity_0"][0] == pytest.approx(2 / 8) and f["sparsity_1"][0] == pytest.approx(1 / 8)


def test_features_hand_worked_cartesian_and_empty_layer():
    geo = CartesianGrid(nx=3, ny=3, nz=2, cell_size=10.0)  # centres -10, 0, 10 mm
    s = np.zeros((1, 18))
    s[0, 0] = 1.0  # layer 0, (x, y) = (-10, -10)
    s[0, 2] = 1.0  # layer 0, (x, y) = (+10, -10)
    f = high_level_features(s, np.array([[4.0]]), geo)
    assert f["EC_eta_0"][0] == pytest.approx(0.0) and f["width_eta_0"][0] == pytest.approx(10.0)
    assert f["EC_phi_0"][0] == pytest.approx(-10.0) and f["width_phi_0"][0] == pytest.approx(0.0, abs=1e-7)
    assert f["EC_r_0"][0] == pytest.approx(np.sqrt(200))
    # an empty layer has centre and width 0, not NaN
    assert f["E_layer_1"][0] == 0 and f["EC_eta_1"][0] == 0 and f["width_r_1"][0] == 0


def test_profiles_sum_to_total():
    rng = np.random.default_rng(0)
    geo = CylindricalBinning.regular(n_layers=3, r_edges=[0, 1, 2, 4], n_alpha=2)
    s = rng.exponential(size=(20, geo.n_voxels))
    np.testing.assert_allclose(layer_energies(s, geo).sum(1), s.sum(1))
    np.testing.assert_allclose(longitudinal_profile(s, geo).sum(1), 1.0)
    centres, rad = radial_profile(s, geo)
    np.testing.assert_allclose(centres, [0.5, 1.5, 3.0])
    np.testing.assert_allclose(rad.sum(1), s.sum(1))
    # layer 0, r bin 1 (centre 1.5), both angular bins: voxels 1 and 4
    np.testing.assert_allclose(rad[:, 1], s[:, [1, 4, 7, 10, 13, 16]].sum(1))


def test_radial_profile_cartesian_rings():
    geo = CartesianGrid(nx=3, ny=3, nz=1, cell_size=10.0)  # voxel radii 0, 10 (×4), √200 (×4)
    s = np.arange(9, dtype=float)[None, :] + 1
    centres, rad = radial_profile(s, geo)
    np.testing.assert_allclose(centres, [5.0, 15.0])  # rings [0, 10) and [10, 20)
    np.testing.assert_allclose(rad[0], [s[0, 4], s.sum() - s[0, 4]])


def test_feature_input_errors():
    geo = CylindricalBinning.regular(n_layers=2, r_edges=[0, 1, 3], n_alpha=4)
    with pytest.raises(ValueError, match=r"expected shape \(N, 16\)"):
        high_level_features(np.zeros((2, 15)), np.ones((2, 1)), geo)
    with pytest.raises(ValueError, match="one per shower"):
        high_level_features(np.zeros((2, 16)), np.ones((3, 1)), geo)
    with pytest.raises(ValueError, match="positive"):
        high_level_features(np.zeros((2, 16)), np.zeros((2, 1)), geo)


def test_classifier_inputs():
    s = np.array([[1.0, 3.0], [2.0, 0.0]])
    e = np.array([[10.0], [100.0]])
    np.testing.assert_allclose(low_level_inputs(s, e), [[0.1, 0.3, 1.0], [0.02, 0.0, 2.0]])
    x = high_level_inputs({"E_layer_0": np.array([100.0, 0.0]), "a": np.array([5.0, 6.0])}, e)
    np.testing.assert_allclose(x, [[np.log10(100 + 1e-8), 5.0, 1.0], [-8.0, 6.0, 2.0]])
    assert high_level_inputs({"a": np.array([5.0, 6.0])}).shape == (2, 1)


def test_separation_power_null_disjoint_and_hand_worked():
    a = np.random.default_rng(0).normal(size=1000)
    assert separation_power(a, a, 30) == pytest.approx(0.0, abs=1e-12)
    edges = np.array([0.0, 1.0, 2.0])
    assert separation_power(np.full(10, 0.5), np.full(10, 1.5), edges) == pytest.approx(1.0)
    # p = (0.5, 0.5), q = (1, 0): ½[(−0.5)²/1.5 + 0.5²/0.5] = 1/3
    p_sample = np.array([0.5, 1.5])
    q_sample = np.array([0.5, 0.5])
    assert separation_power(p_sample, q_sample, edges) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="non-empty"):
        separation_power(np.array([]), a, edges)


def test_binning_handles_constant_log_nan_and_discrete():
    e = binning_for(np.full(5, 3.0), np.full(5, 3.0), 10)
    assert e[0] < 3.0 < e[-1] and np.all(np.diff(e) > 0)
    assert separation_power(np.full(5, 3.0), np.full(7, 3.0), 10) == pytest.approx(0.0, abs=1e-12)
    e = binning_for(np.array([1.0, 10.0, 1000.0]), np.array([0.0, 100.0]), 4, log=True)
    np.testing.assert_allclose(np.diff(np.log(e)), np.diff(np.log(e))[0])
    e = binning_for(np.array([np.nan, 1.0, np.inf]), np.array([2.0]), 5)
    assert np.all(np.isfinite(e)) and len(e) >= 2
    assert len(binning_for(np.array([]), np.array([]), 7)) == 8
    # discrete values k/48 (a sparsity): edges half-way between lattice points, every bin
    # (but the last, which may run past the end) holds the same number of lattice points
    rng = np.random.default_rng(0)
    k = rng.integers(0, 49, 2000) / 48
    e = binning_for(k, k[::-1], 30)
    assert len(e) - 1 <= 30
    points = np.arange(49) / 48
    counts = np.histogram(points, e)[0]
    assert np.all(counts[:-1] == counts[0]) and 1 <= counts[-1] <= counts[0]
    assert np.all(np.abs(np.subtract.outer(e, points)) > 1e-3)  # no point sits on an edge
    with pytest.raises(ValueError, match="n_bins"):
        binning_for(k, k, 0)


def test_ks_and_w1_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(0.3, 1.0, size=400)
    ref = stats.ks_2samp(a, b)
    assert ks_statistic(a, b) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert ks_test(a, b) == ks_statistic(a, b)
    assert wasserstein_1d(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
    # W1 of two point masses = their distance
    assert wasserstein_1d(np.zeros(3), np.full(3, 2.5)) == pytest.approx(2.5)


def test_hanley_mcneil_matches_bootstrap():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(400), np.zeros(400)]
    s = np.r_[rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400)]
    auc = roc_auc_score(y, s)
    boots = []
    for _ in range(300):
        i = rng.integers(0, 800, 800)
        boots.append(roc_auc_score(y[i], s[i]))
    assert hanley_mcneil_error(auc, 400, 400) == pytest.approx(np.std(boots), rel=0.2)


def test_jsd_from_probabilities_limits():
    y = np.r_[np.ones(50), np.zeros(50)]
    assert jsd_from_probabilities(y, np.full(100, 0.5)) == pytest.approx(0.0, abs=1e-12)
    assert jsd_from_probabilities(y, y) == pytest.approx(1.0, abs=1e-5)  # perfect separation: 1 bit
    # p = 0.75 right, 0.25 wrong on every event: 1 + log2(0.75) (BCE in bits subtracted from 1)
    assert jsd_from_probabilities(y, np.where(y == 1, 0.75, 0.25)) == pytest.approx(1 + np.log2(0.75))


def test_classifier_null_separated_and_seeded():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4000, 20)), rng.normal(size=(4000, 20))
    res = classifier_two_sample_test(a, b, seed=0)
    assert res["auc"] == pytest.approx(0.5, abs=0.05)
    assert res["jsd"] < 0.05
    assert res["n_test"] == pytest.approx(0.3 * 8000, abs=2)
    assert set(res) == {"auc", "auc_err", "jsd", "n_train", "n_test", "roc"}
    assert res["roc"]["fpr"][0] == 0 and res["roc"]["tpr"][-1] == 1
    again = classifier_two_sample_test(a, b, seed=0)
    assert again["auc"] == res["auc"] and again["jsd"] == res["jsd"]
    shifted = b.copy()
    shifted[:, 0] += 4.0
    sep = classifier_two_sample_test(a, shifted, seed=0)
    assert sep["auc"] > 0.95 and sep["jsd"] > 0.7
    hgb = classifier_two_sample_test(a[:2000], shifted[:2000], seed=0, model="hgb")
    assert hgb["auc"] > 0.95


def test_classifier_balances_classes_and_rejects_bad_input():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(600, 3)), rng.normal(size=(200, 3))
    res = classifier_two_sample_test(a, b, seed=1)
    assert res["n_train"] + res["n_test"] < 400  # 200 + 200, minus the calibration part
    with pytest.raises(ValueError, match="equal widths"):
        classifier_two_sample_test(a, b[:, :2])
    with pytest.raises(ValueError, match="at least 50"):
        classifier_two_sample_test(a, b[:10])
    bad = b.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        classifier_two_sample_test(a, bad)
    with pytest.raises(ValueError, match="'mlp' or 'hgb'"):
        classifier_two_sample_test(a, b, model="svm")
