"""Shower physics observables (depth, response/resolution, cell spectrum, layer correlations) and
the regression of conditions from showers, against hand-worked cases and the reference simulator."""

import numpy as np
import pytest

from hepgen.data.geometry import CartesianGrid, CylindricalBinning
from hepgen.metrics.observables import (
    DEPTH_OBSERVABLES,
    cell_energies,
    depth_observables,
    feature_matrix,
    fraction_above_profile,
    high_level_features,
    incident_energy_edges,
    layer_correlation,
    layer_energy_edges,
    lit_cells,
    lit_cells_profile,
    resolution_model,
    response_resolution,
)
from hepgen.metrics.regression import condition_regression, condition_targets, regression_inputs
from hepgen.simulate.calorimeter import SamplingCalorimeter, ShowerSimulator, simulate_dataset

TWO = CylindricalBinning.regular(n_layers=2, r_edges=[0, 5, 10], n_alpha=1)  # 2 voxels per layer


# --- depth observables ------------------------------------------------------------------------------
def test_depth_observables_of_a_two_layer_toy():
    # shower 0: 1 MeV in layer 0, 3 MeV in layer 1 (split over its two voxels)
    # → l_d = 0·1 + 1·3 = 3, s_d = 3/4, σ_d = √(3/4 − 9/16) = √3/4
    # shower 1: everything in layer 0 → 0, 0, 0; shower 2: empty → 0, 0, 0
    # shower 3: equal energy in both layers → l_d = E/2, s_d = 1/2, σ_d = 1/2
    showers = np.array([[0.5, 0.5, 1.0, 2.0], [7.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 2.0]])
    d = depth_observables(showers, TWO)
    assert set(d) == set(DEPTH_OBSERVABLES)
    np.testing.assert_allclose(d["depth_weighted_energy"], [3.0, 0.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(d["shower_depth"], [0.75, 0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(d["depth_width"], [np.sqrt(3) / 4, 0.0, 0.0, 0.5], atol=1e-12)


def test_depth_observables_on_a_cartesian_grid_match_a_direct_sum():
    geo = CartesianGrid(nx=2, ny=2, nz=3, cell_size=1.0)
    x = np.random.default_rng(0).gamma(1.0, size=(5, geo.n_voxels))
    e = x.reshape(5, 3, 4).sum(axis=2)  # (N, layers), C order (z, y, x)
    k = np.arange(3)
    mean = (e * k).sum(1) / e.sum(1)
    width = np.sqrt((e * k**2).sum(1) / e.sum(1) - mean**2)
    d = depth_observables(x, geo)
    np.testing.assert_allclose(d["shower_depth"], mean, rtol=1e-12)
    np.testing.assert_allclose(d["depth_width"], width, rtol=1e-10)
    np.testing.assert_allclose(d["depth_weighted_energy"], (e * k).sum(1), rtol=1e-12)


# --- cells and layer correlations ---------------------------------------------------------------------
def test_cell_energies_keep_voxels_above_threshold():
    x = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 3.0]])
    np.testing.assert_array_equal(cell_energies(x), [1.0, 2.0, 0.5, 3.0])
    np.testing.assert_array_equal(cell_energies(x, threshold=1.0), [2.0, 3.0])


def test_layer_correlation_matches_numpy_and_marks_constant_layers():
    geo = CylindricalBinning.regular(n_layers=3, r_edges=[0, 1], n_alpha=1)  # one voxel per layer
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    x = np.stack([a, 2 * a + rng.normal(size=200), np.full(200, 4.0)], axis=1)
    c = layer_correlation(x, geo)
    np.testing.assert_allclose(c[:2, :2], np.corrcoef(x[:, :2], rowvar=False), atol=1e-12)
    assert np.all(np.isnan(c[2])) and np.all(np.isnan(c[:, 2]))
    with pytest.raises(ValueError, match="at least 2 showers"):
        layer_correlation(x[:1], geo)


def test_spearman_layer_correlation_matches_scipy_and_ignores_one_outlier():
    from scipy.stats import spearmanr
    geo = CylindricalBinning.regular(n_layers=3, r_edges=[0, 1], n_alpha=1)  # one voxel per layer
    rng = np.random.default_rng(2)
    a = rng.lognormal(size=500)
    x = np.stack([a, 2 * a + rng.lognormal(size=500), rng.lognormal(size=500)], axis=1)
    x[:50, 2] = 0.0  # ties: average ranks, as scipy
    np.testing.assert_allclose(layer_correlation(x, geo, "spearman"), spearmanr(x).statistic, atol=1e-12)
    # one shower with 1000x the energy in layer 0 moves Pearson's r by a lot, Spearman's rho by < 0.01
    y = x.copy()
    y[0, 0] = 1000 * x[:, 0].max()
    dp = abs(layer_correlation(y, geo)[0, 1] - layer_correlation(x, geo)[0, 1])
    ds = abs(layer_correlation(y, geo, "spearman")[0, 1] - layer_correlation(x, geo, "spearman")[0, 1])
    assert dp > 0.3 and ds < 0.01
    with pytest.raises(ValueError, match="pearson' or 'spearman"):
        layer_correlation(x, geo, "kendall")


def test_lit_cells_profile_and_fraction_above_a_hand_worked_case():
    geo = CylindricalBinning.regular(n_layers=2, r_edges=[0, 1, 2, 3, 4], n_alpha=1)  # 4 cells per layer
    x = np.zeros((6, 8))
    # layer 0: energies 2, 2, 2 (1, 2, 4 lit cells) and 20, 20 (1 lit, 4 lit), one empty shower
    x[0, 0] = 2.0
    x[1, :2] = 1.0
    x[2, :4] = 0.5
    x[3, 0] = 20.0
    x[4, :4] = 5.0
    x[:5, 4] = 1.0  # layer 1: one lit cell of 1 MeV in the first five showers
    np.testing.assert_array_equal(lit_cells(x, geo), [[1, 1], [2, 1], [4, 1], [1, 1], [4, 1], [0, 0]])
    np.testing.assert_array_equal(lit_cells(x, geo, threshold=0.6), [[1, 1], [2, 1], [0, 1], [1, 1], [4, 1], [0, 0]])
    edges = np.array([[1.0, 10.0, 100.0], [0.5, 1.0, 2.0]])
    p = lit_cells_profile(x, geo, edges, quantiles=(0.5, 1.0))
    np.testing.assert_array_equal(p["n"], [[3, 2], [0, 5]])  # layer 1: energy 1 is in the upper bin [1, 2]
    np.testing.assert_allclose(p["mean"][0], [7 / 3, 2.5])
    np.testing.assert_allclose(p["quantiles"][:, 0], [[2, 2.5], [4, 4]])  # medians (1,2,4)→2, (1,4)→2.5
    assert np.isnan(p["mean"][1, 0]) and np.isnan(p["quantiles"][0, 1, 0])
    # limit 2 in layer 0's first bin (undefined in the second): of the 3 showers there, 1 has more
    limit = np.array([[2.0, np.nan], [0.5, 0.5]])
    np.testing.assert_allclose(fraction_above_profile(x, geo, edges, limit), [1 / 3, 1.0])
    with pytest.raises(ValueError, match="edges of 2 layers"):
        lit_cells_profile(x, geo, edges[:1])


def test_layer_energy_edges_are_log_spaced_and_nan_without_energy():
    geo = CylindricalBinning.regular(n_layers=2, r_edges=[0, 1], n_alpha=1)
    x = np.stack([np.geomspace(1.0, 1000.0, 200), np.zeros(200)], axis=1)
    e = layer_energy_edges(x, geo, n_bins=3, low_quantile=0.0)
    np.testing.assert_allclose(e[0], [1.0, 10.0, 100.0, 1000.0])
    assert np.all(np.isnan(e[1]))
    p = lit_cells_profile(x, geo, e)  # no bins in layer 1: nothing counted there
    assert p["n"][1].sum() == 0 and p["n"][0].sum() == 200


# --- response and resolution ---------------------------------------------------------------------------
def test_incident_energy_edges_discrete_and_continuous():
    e = np.repeat([1e3, 4e3, 16e3], 5)
    edges = incident_energy_edges(e, n_bins=10)
    np.testing.assert_allclose(edges, [500.0, 2e3, 8e3, 32e3])  # geometric mid-points, one bin per energy
    cont = np.geomspace(1e3, 1e5, 1000)
    edges = incident_energy_edges(cont, n_bins=4)
    np.testing.assert_allclose(edges, [1e3, 10**3.5, 1e4, 10**4.5, 1e5])
    with pytest.raises(ValueError, match="positive"):
        incident_energy_edges([1.0, -1.0])


def test_response_resolution_hand_worked_bins():
    # bin 1 (1 GeV): R = 0.9, 1.0, 1.1 → mean 1.0, std 0.1 → resolution 0.1
    # bin 2 (4 GeV): R = 0.45, 0.5, 0.55 → mean 0.5, std 0.05 → resolution 0.1
    e = np.array([1e3, 1e3, 1e3, 4e3, 4e3, 4e3])
    r = np.array([0.9, 1.0, 1.1, 0.45, 0.5, 0.55])
    showers = np.stack([r * e / 2, r * e / 2], axis=1)  # two voxels share the energy
    out = response_resolution(showers, e, n_bins=5, min_count=3)
    np.testing.assert_allclose(out["n"], [3, 3])
    np.testing.assert_allclose(out["e_mean"], [1e3, 4e3])
    np.testing.assert_allclose(out["response"], [1.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(out["response_err"], [0.1 / np.sqrt(3), 0.05 / np.sqrt(3)], rtol=1e-12)
    np.testing.assert_allclose(out["resolution"], [0.1, 0.1], rtol=1e-12)
    # delta method from the moments, bin 1: deviations (−0.1, 0, 0.1) → μ3 = 0, μ4 = 2·10⁻⁴/3,
    # s² = 0.01, var(s²) = (μ4 − s⁴·0)/3 = 2·10⁻⁴/9, var(s²)/(4 s⁴) = 1/18, r²/n = 0.01/3;
    # bin 2 is bin 1 scaled by ½: the same relative error
    np.testing.assert_allclose(out["resolution_err"], 0.1 * np.sqrt(1 / 18 + 0.01 / 3), rtol=1e-12)
    # bins below min_count are NaN and the fit needs two usable bins
    sparse = response_resolution(showers, e, n_bins=5, min_count=4)
    assert np.all(np.isnan(sparse["resolution"])) and np.isnan(sparse["fit"]["a"])


def test_resolution_error_is_gaussian_for_normal_data_and_grows_with_tails():
    rng = np.random.default_rng(2)
    e = np.full(20_000, 5e3)
    gauss = 1.0 + 0.05 * rng.normal(size=e.size)
    out = response_resolution((gauss * e)[:, None], e, n_bins=1)
    r, n = out["resolution"][0], e.size
    assert out["resolution_err"][0] == pytest.approx(r * np.sqrt(1 / (2 * (n - 1)) + r**2 / n), rel=0.05)
    # Student-t (5 dof) spread of the same std: a heavier tail, a larger error on the spread
    tails = 1.0 + 0.05 * rng.standard_t(5, size=e.size) / np.sqrt(5 / 3)
    wide = response_resolution((tails * e)[:, None], e, n_bins=1)
    assert wide["resolution_err"][0] > 1.5 * out["resolution_err"][0]
    # and the error is right: spread of the resolution over 200 independent samples of 500
    spread = np.std([response_resolution((1.0 + 0.05 * rng.standard_t(5, size=500) / np.sqrt(5 / 3))[:, None]
                                         * 5e3, np.full(500, 5e3), n_bins=1)["resolution"][0] for _ in range(200)])
    small = response_resolution((tails[:500] * 5e3)[:, None], np.full(500, 5e3), n_bins=1)
    assert small["resolution_err"][0] == pytest.approx(spread, rel=0.25)
    assert 0.05 * np.sqrt(1 / 998) < 0.7 * spread  # where the Gaussian formula would be far too small


def test_resolution_fit_recovers_exact_parameters():
    # noise-free resolutions on the model curve: the weighted fit must return a and b exactly
    e_gev = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
    from hepgen.metrics.observables import _fit_resolution

    res = resolution_model(e_gev, 0.15, 0.01)
    fit = _fit_resolution(e_gev, res, 0.02 * res)
    assert fit["a"] == pytest.approx(0.15, rel=1e-6) and fit["b"] == pytest.approx(0.01, rel=1e-5)
    assert fit["chi2"] == pytest.approx(0.0, abs=1e-8) and fit["ndof"] == 5
    assert 0 < fit["a_err"] < 0.01 and 0 < fit["b_err"] < 0.01


def test_resolution_fit_recovers_the_simulator_stochastic_term():
    # as in test_simulator: one radial bin to 1 m and 30 X0 contain the shower, so σ/E of the
    # visible energy is the configured sampling term a = 0.12 alone
    cal = SamplingCalorimeter(sampling_term=0.12, total_depth_x0=30.0)
    geo = CylindricalBinning.regular(n_layers=3, r_edges=[0.0, 1000.0])
    sim = ShowerSimulator(geo, cal, max_spots=300)
    rng = np.random.default_rng(5)
    e = rng.choice(np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]) * 1e3, size=7000)
    out = response_resolution(sim.simulate(e, seed=6), e, n_bins=10)
    assert len(out["n"]) == 7 and out["n"].min() > 900  # one bin per discrete energy
    fit = out["fit"]
    assert fit["a"] == pytest.approx(0.12, rel=0.10)
    assert fit["a_err"] < 0.01
    assert fit["b"] < 0.01
    np.testing.assert_allclose(out["response"], cal.sampling_fraction, rtol=0.01)


def test_response_resolution_rejects_bad_input():
    with pytest.raises(ValueError, match="N incident energies"):
        response_resolution(np.ones((3, 2)), np.ones(4))
    with pytest.raises(ValueError, match="edges must be increasing"):
        response_resolution(np.ones((3, 2)), np.ones(3), edges=[2.0, 1.0])


# --- feature matrix ------------------------------------------------------------------------------------------
def test_feature_matrix_logs_energies_and_leaves_out_the_response():
    feats = {"E_tot_over_E_inc": np.array([0.5, 0.5]), "E_layer_0": np.array([10.0, 0.0]),
             "E_layer_1": np.array([90.0, 100.0]), "shower_depth": np.array([0.9, 1.0])}
    x, names = feature_matrix(feats, np.array([200.0, 200.0]))
    assert names == ["log10_E_layer_0", "log10_E_layer_1", "shower_depth", "log10_E_tot", "log10_E_inc"]
    np.testing.assert_allclose(x[0], [np.log10(10.001), np.log10(90.001), 0.9, np.log10(100.001), np.log10(200)])
    assert x[1, 0] == pytest.approx(-3.0)  # an empty layer stays finite
    np.testing.assert_array_equal(regression_inputs(feats), x[:, :-1])  # no E_inc among the inputs


# --- regression of the conditions -------------------------------------------------------------------------------
SMALL = CylindricalBinning.regular(n_layers=5, r_edges=[0, 5, 10, 20, 40, 100], n_alpha=4)


@pytest.fixture(scope="module")
def angled_showers():
    """Two independent simulated samples, 1–100 GeV and θ in ±0.3 rad."""
    kw = {"geometry": SMALL, "energy_range": (1e3, 1e5), "theta_range": (-0.3, 0.3)}
    return simulate_dataset(1500, seed=21, **kw), simulate_dataset(1000, seed=22, **kw)


def _inputs(data):
    f = high_level_features(data.showers, data.incident_energies, SMALL)
    f.update(depth_observables(data.showers, SMALL))
    return regression_inputs(f)


def test_condition_targets_name_every_column():
    t = condition_targets(np.array([[1e3], [np.e * 1e3]]), {"incident_theta": np.zeros((2, 1)),
                                                           "impact_position": np.ones((2, 2))})
    assert list(t) == ["log_E_inc", "impact_position_0", "impact_position_1", "incident_theta"]
    np.testing.assert_allclose(t["log_E_inc"], np.log([1e3, np.e * 1e3]))


def test_regression_detects_energies_mislabelled_by_a_factor_two(angled_showers):
    real, gen = angled_showers
    xr, xg = _inputs(real), _inputs(gen)
    tr = condition_targets(real.incident_energies, real.conditions)
    honest = condition_regression(xr, tr, xg, condition_targets(gen.incident_energies, gen.conditions), seed=0)
    # the generated showers claim twice their energy: pred − label = ln E − ln 2E = −ln 2
    lying = condition_regression(xr, tr, xg, condition_targets(2 * gen.incident_energies, gen.conditions),
                                 seed=0)
    r = honest["log_E_inc"]
    assert abs(r["bias_real"]) < 0.03 and abs(r["bias_gen"]) < 0.03
    assert r["res_gen"] == pytest.approx(r["res_real"], rel=0.3)
    assert lying["log_E_inc"]["bias_gen"] == pytest.approx(-np.log(2), abs=0.02)
    assert lying["log_E_inc"]["bias_real"] == r["bias_real"]  # the real side does not change
    assert lying["log_E_inc"]["res_gen"] == pytest.approx(r["res_gen"], rel=1e-9)
    assert set(r) == {"bias_real", "bias_gen", "bias_real_err", "bias_gen_err", "res_real", "res_gen",
                      "n_train", "n_real", "n_gen"}


def test_regression_detects_ignored_angles(angled_showers):
    real, gen = angled_showers
    xr, xg = _inputs(real), _inputs(gen)
    tr = condition_targets(real.incident_energies, real.conditions)
    honest = condition_regression(xr, tr, xg, condition_targets(gen.incident_energies, gen.conditions), seed=1)
    shuffled = {"incident_theta": np.random.default_rng(3).permutation(gen.conditions["incident_theta"])}
    broken = condition_regression(xr, tr, xg, condition_targets(gen.incident_energies, shuffled), seed=1)
    t_ok, t_bad = honest["incident_theta"], broken["incident_theta"]
    assert t_ok["res_real"] < 0.03  # the angle is visible in the showers (θ spread is 0.17 rad)
    assert t_ok["res_gen"] == pytest.approx(t_ok["res_real"], rel=0.3)
    assert t_bad["res_gen"] > 10 * t_ok["res_real"]  # labels that do not match the showers


def test_regression_is_reproducible_and_checks_input(angled_showers):
    real, gen = angled_showers
    xr, xg = _inputs(real), _inputs(gen)
    tr = condition_targets(real.incident_energies)
    tg = condition_targets(gen.incident_energies)
    assert condition_regression(xr, tr, xg, tg, seed=4) == condition_regression(xr, tr, xg, tg, seed=4)
    with pytest.raises(ValueError, match="same d"):
        condition_regression(xr, tr, xg[:, :3], tg)
    with pytest.raises(ValueError, match="NaN or inf"):
        condition_regression(np.where(xr > 0, np.nan, xr), tr, xg, tg)
    with pytest.raises(ValueError, match="train_fraction"):
        condition_regression(xr, tr, xg, tg, train_fraction=1.0)
