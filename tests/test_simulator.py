"""Physics and interface checks of the GFlash-based reference shower simulator.

Containment-sensitive checks run on a deep, wide calorimeter (30 layers of 1 X0, radial
bins of 5 mm up to 300 mm ≈ 8.4 R_M) so that leakage stays well below the tolerances.
"""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from hepgen.data.geometry import CartesianGrid, CylindricalBinning, default_binning
from hepgen.simulate.calorimeter import (
    LEAD,
    POLYSTYRENE,
    SamplingCalorimeter,
    ShowerSimulator,
    default_calorimeter,
    simulate_dataset,
)

DEEP = SamplingCalorimeter(total_depth_x0=30.0)
RM = DEEP.moliere_radius_mm
# 5 mm radial bins to 300 mm, plus an edge exactly at one Molière radius
BIG = CylindricalBinning.regular(n_layers=30, r_edges=np.unique(np.r_[np.linspace(0, 300, 61), RM]), n_alpha=1)
ENERGIES_GEV = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
N_PER_ENERGY = 600


@pytest.fixture(scope="module")
def big_showers():
    """{E_GeV: (N, n_voxels) float64} on the deep, wide calorimeter."""
    sim = ShowerSimulator(BIG, DEEP)
    return {e: sim.simulate(np.full(N_PER_ENERGY, e * 1e3), seed=int(e)).astype(float) for e in ENERGIES_GEV}


# --- calorimeter description ---------------------------------------------------------------------
def test_effective_material_lies_between_its_components():
    cal = default_calorimeter()
    assert LEAD.X0_mm < cal.X0_mm < POLYSTYRENE.X0_mm
    assert LEAD.moliere_radius_mm < cal.moliere_radius_mm < POLYSTYRENE.moliere_radius_mm
    assert LEAD.critical_energy_MeV < cal.critical_energy_MeV < POLYSTYRENE.critical_energy_MeV
    assert POLYSTYRENE.Z < cal.Z_eff < LEAD.Z
    # R_M = E_s X0 / E_c holds for the mixture as for its components (E_s = 21.2 MeV)
    assert cal.moliere_radius_mm == pytest.approx(21.2 * cal.X0_mm / cal.critical_energy_MeV, rel=0.01)
    assert 0.1 < cal.sampling_fraction < 0.3 and 0 < cal.e_hat < 1
    assert SamplingCalorimeter(sampling_fraction=0.2).sampling_fraction == 0.2


def test_layer_thicknesses_must_match_the_geometry():
    cal = SamplingCalorimeter(total_depth_x0=10.0, layer_thickness_x0=(2.0, 3.0, 5.0))
    np.testing.assert_allclose(cal.layer_boundaries_x0(3), [0, 2, 5, 10])
    with pytest.raises(ValueError, match="3 entries but the geometry has 8"):
        ShowerSimulator(default_binning(), cal)
    with pytest.raises(ValueError, match="more than total_depth_x0"):
        SamplingCalorimeter(total_depth_x0=5.0, layer_thickness_x0=(2.0, 3.0, 5.0))


# --- physics ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("e_gev", [5.0, 20.0, 50.0])
def test_response_is_linear_with_the_sampling_fraction(big_showers, e_gev):
    tot = big_showers[e_gev].sum(axis=1)
    ratio = tot.mean() / (e_gev * 1e3)
    err = tot.std() / np.sqrt(tot.size) / (e_gev * 1e3)
    assert err < 0.002 * DEEP.sampling_fraction  # the test can resolve 1 %
    assert ratio == pytest.approx(DEEP.sampling_fraction, rel=0.01)


def test_fitted_stochastic_term_matches_the_configured_one():
    # one radial bin to 1 m and 3 × 10 X0: leakage < 1e-3, so σ/E is the sampling term alone.
    # max_spots=300: the total-energy resolution must not depend on the spot cap.
    cal = SamplingCalorimeter(sampling_term=0.12, total_depth_x0=30.0)
    geo = CylindricalBinning.regular(n_layers=3, r_edges=[0.0, 1000.0])
    sim = ShowerSimulator(geo, cal, max_spots=300)
    energies = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
    rel = []
    for i, e in enumerate(energies):
        tot = sim.simulate(np.full(2000, e * 1e3), seed=100 + i).sum(axis=1, dtype=float)
        rel.append(tot.std() / tot.mean())
    rel = np.array(rel)
    (a, b), _ = curve_fit(lambda e, a, b: np.sqrt(a**2 / e + b**2), energies, rel, p0=(0.1, 0.001),
                          sigma=rel / np.sqrt(2 * 2000))
    assert a == pytest.approx(0.12, rel=0.10)
    assert abs(b) < 0.005


def test_mean_depth_grows_by_one_radiation_length_per_e_fold(big_showers):
    # For a Gamma profile ⟨t⟩ = α/β = T α/(α−1); with GFlash's T ≈ ln y + c and slowly
    # rising α, d⟨t⟩/d ln y ≈ 0.9–1.0 between 2 and 100 GeV (checked numerically), so we
    # require a slope of 1 ± 15 %.  Measured from the layer profile (1 X0 layers).
    depth = np.arange(30) + 0.5
    ln_y, mean_t = [], []
    for e, x in big_showers.items():
        prof = x.reshape(len(x), 30, -1).sum(axis=(0, 2))
        mean_t.append(np.sum(prof * depth) / prof.sum())
        ln_y.append(np.log(e * 1e3 / DEEP.critical_energy_MeV))
    slope = np.polyfit(ln_y, mean_t, 1)[0]
    assert slope == pytest.approx(1.0, rel=0.15)
    assert 4.0 < mean_t[0] < mean_t[-1] < 14.0


def test_drawn_shower_maximum_follows_ln_y():
    sim = ShowerSimulator(BIG, DEEP)
    e = np.array([2e3, 1e4, 1e5])
    t_med = [np.median(sim.shower_profile_params(np.full(4000, ei), seed=1)["T_max"]) for ei in e]
    slope = np.polyfit(np.log(e), t_med, 1)[0]
    assert slope == pytest.approx(1.0, rel=0.05)  # T_max = ln y + const in the median
    p = sim.shower_profile_params(np.full(4000, 1e4), seed=2)
    np.testing.assert_allclose(p["beta"], (p["alpha"] - 1) / p["T_max"])
    assert np.all(p["T_max"] >= 1.0) and np.all(p["alpha"] >= 1.1)


def test_about_ninety_percent_within_one_moliere_radius(big_showers):
    inner = BIG.voxel_r() < RM
    for e, x in big_showers.items():
        frac = x[:, inner].sum() / x.sum()
        assert 0.85 < frac < 0.95, (e, frac)


def test_radial_parameters_are_physical():
    sim = ShowerSimulator(BIG, DEEP)
    tau = np.linspace(0.0, 4.0, 41)
    for e in (1e3, 1e4, 1e5):
        r = sim.radial_profile_params(e, tau)
        assert np.all(r["R_C"] > 0) and np.all(r["R_T"] > r["R_C"])
        assert np.all((r["p"] >= 0) & (r["p"] <= 1))
        assert np.all(np.diff(r["R_C"]) > 0)  # the core widens with depth


# --- geometry, conditions, seeding --------------------------------------------------------------------
def test_cartesian_grid_conserves_energy_relative_to_cylindrical():
    cart = CartesianGrid(nx=40, ny=40, nz=30, cell_size=10.0)  # ±200 mm, 30 X0
    e = np.full(300, 2e4)
    cyl_tot = ShowerSimulator(BIG, DEEP).simulate(e, seed=5).sum(axis=1, dtype=float)
    x = ShowerSimulator(cart, DEEP).simulate(e, seed=5)
    assert x.shape == (300, cart.n_voxels) and x.dtype == np.float32
    assert x.sum(axis=1, dtype=float).mean() == pytest.approx(cyl_tot.mean(), rel=0.01)


def test_tilt_moves_the_x_centroid_as_depth_tan_theta():
    cal = SamplingCalorimeter(total_depth_x0=24.0)
    grid = CartesianGrid(nx=80, ny=40, nz=24, cell_size=5.0)
    theta = 0.25
    x = ShowerSimulator(grid, cal).simulate(np.full(400, 2e4), theta=np.full(400, theta), seed=6)
    xs, _ = grid.voxel_xy()
    per_layer = x.sum(axis=0, dtype=float).reshape(24, -1)
    cx = (per_layer * xs.reshape(24, -1)).sum(axis=1) / per_layer.sum(axis=1)
    z = (np.arange(24) + 0.5) * cal.X0_mm
    # The axis moves as z tanθ.  The energy in a z-slab is not centred exactly on the axis:
    # the shower is rotated, so a slab cuts it obliquely and, behind the maximum, picks up
    # more of the transverse spread from shallower (brighter) depths: the centroid lags by a
    # few % (about −2 % before the maximum, −6 % over layers 2–16 at 20 GeV).  Hence ±10 %.
    sel = slice(2, 16)  # layers with most of the energy
    slope = np.polyfit(z[sel], cx[sel], 1)[0]
    assert slope == pytest.approx(np.tan(theta), rel=0.10)
    # an upright shower stays centred
    x0 = ShowerSimulator(grid, cal).simulate(np.full(200, 2e4), seed=6)
    c0 = (x0.sum(axis=0, dtype=float) * xs).sum() / x0.sum(dtype=float)
    assert abs(c0) < 1.0


def test_impact_position_shifts_the_centroid():
    grid = CartesianGrid(nx=60, ny=60, nz=8, cell_size=5.0)
    sim = ShowerSimulator(grid)
    xy = np.tile([20.0, -12.5], (300, 1))
    x = sim.simulate(np.full(300, 1e4), impact_position=xy, seed=7).sum(axis=0, dtype=float)
    vx, vy = grid.voxel_xy()
    assert (x * vx).sum() / x.sum() == pytest.approx(20.0, abs=1.0)
    assert (x * vy).sum() / x.sum() == pytest.approx(-12.5, abs=1.0)


def test_seeding_and_empty_input():
    sim = ShowerSimulator(default_binning())
    e = np.array([1e3, 1e4, 5e4])
    a = sim.simulate(e, seed=11)
    np.testing.assert_array_equal(a, sim.simulate(e, seed=11))
    np.testing.assert_array_equal(a, sim.simulate(e, seed=np.random.default_rng(11)))
    np.testing.assert_array_equal(a, sim.simulate(e, seed=11, progress=True))
    assert not np.array_equal(a, sim.simulate(e, seed=12))
    assert a.shape == (3, 384) and a.dtype == np.float32 and np.all(a >= 0)
    assert sim.simulate(np.zeros(0)).shape == (0, 384)
    assert sim.simulate(e[:, None], seed=11).shape == (3, 384)  # (N, 1) accepted


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"energies_mev": np.array([1e3, -5.0])}, "> 0 MeV"),
        ({"energies_mev": np.array([1e3, np.nan])}, "finite"),
        ({"energies_mev": np.ones((2, 2))}, r"shape \(N,\)"),
        ({"energies_mev": np.array([1e3, 2e3]), "theta": np.zeros(3)}, r"theta must have shape \(2,\)"),
        ({"energies_mev": np.array([1e3, 2e3]), "theta": np.full(2, 2.0)}, "pi/2"),
        ({"energies_mev": np.array([1e3, 2e3]), "impact_position": np.zeros(2)}, r"impact_position must have shape \(2, 2\)"),
        ({"energies_mev": np.array([1e3]), "seed": "x"}, "seed must be"),
    ],
)
def test_bad_input_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShowerSimulator(default_binning()).simulate(**kwargs)


def test_simulate_dataset_returns_shower_data():
    d = simulate_dataset(50, seed=3)
    assert d.showers.shape == (50, 384) and d.showers.dtype == np.float32
    assert d.incident_energies.shape == (50, 1)
    assert np.all((d.incident_energies >= 1e3) & (d.incident_energies <= 1e5))
    assert d.conditions == {}
    assert d.attrs["generator"] == "hepgen.simulate.calorimeter" and d.attrs["seed"] == 3
    np.testing.assert_array_equal(d.showers, simulate_dataset(50, seed=3).showers)

    d = simulate_dataset(40, energies=[1e3, 1e4], theta_range=(-0.1, 0.1), position_range=(-5, 5), seed=4)
    assert set(np.unique(d.incident_energies)) <= {1e3, 1e4}
    assert d.conditions["incident_theta"].shape == (40, 1)
    assert np.all(np.abs(d.conditions["incident_theta"]) <= 0.1)
    assert d.conditions["impact_position"].shape == (40, 2)
    assert simulate_dataset(0).showers.shape == (0, 384)
    with pytest.raises(ValueError, match="energy_range"):
        simulate_dataset(5, energy_range=(0.0, 10.0))


def test_readout_threshold_zero_suppresses_cells():
    geometry = default_binning()
    e = np.full(20, 5e3)
    raw = ShowerSimulator(geometry, SamplingCalorimeter(readout_threshold_mev=0.0)).simulate(e, seed=4)
    cut = ShowerSimulator(geometry, SamplingCalorimeter()).simulate(e, seed=4)  # default 0.01 MeV
    # the same random numbers: the threshold only zeroes the cells below 0.01 MeV
    assert SamplingCalorimeter().readout_threshold_mev == 0.01
    assert np.any((raw > 0) & (raw < 0.01))
    np.testing.assert_array_equal(cut, np.where(raw < 0.01, 0.0, raw))
    assert simulate_dataset(2, seed=0).attrs["readout_threshold_MeV"] == 0.01
    with pytest.raises(ValueError, match="readout_threshold_mev"):
        SamplingCalorimeter(readout_threshold_mev=-1.0)
