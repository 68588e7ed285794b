"""Small deposits through the shower preprocessing, and ``deposit_bound`` (issue 14).

Hand-worked case used below: one layer of two voxels, four showers of 1 MeV in voxel 0 and, in
the fourth only, 1 MeV in voxel 1 (occupancy p = 1/4), no noise, alpha = 0.01.  Voxel 1's shape
fraction is 0, 0, 0, 1/2, so x = α + (1 - 2α)·u = 0.01, 0.01, 0.01, 0.5 and the logit features are
f0 = log(0.01/0.99) = -4.59512 (three times) and 0.  Mean -3.44634, deviations -1.14878 (×3) and
3.44634, variance (3·1.31970 + 11.87726)/4 = 3.95909, std 1.98975: the deposit is standardised to
3.44634 / 1.98975 = 1.73205 = sqrt((1-p)/p) — a two-valued feature's rare value lies at
sqrt((1-p)/p) standard units whatever the gap (p = 3 % gives 5.7, beyond the splines' ±5).
With deposit_bound B = 1.5 the scale becomes 3.44634/1.5 = 2.29756 and the deposit lies at 1.5.
Voxel 0 (fractions 1, 1, 1, 1/2) has its *largest* value 4.59512 only 1.14878 above its mean, so
its scale is not widened (only the upper side counts: that is where the deposits are).
"""

import math

import numpy as np
import pytest

from hepgen.config import TrainConfig, apply_overrides, preset
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers import ShowerDomain
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.simulate.calorimeter import simulate_dataset

SHOWERS = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
E_INC = np.full((4, 1), 10.0)
F0 = math.log(0.01 / 0.99)


def _fit(bound):
    return ShowerPreprocessor([2], noise_level=0.0, alpha=0.01, deposit_bound=bound).fit(SHOWERS, E_INC)


def test_hand_worked_standardisation_without_bound():
    pre = _fit(None)
    mean1 = 0.75 * F0
    std1 = math.sqrt(0.75 * (F0 - mean1) ** 2 + 0.25 * mean1 ** 2)
    assert pre.feat_mean[2] == pytest.approx(-3.44634, abs=1e-5) and pre.feat_mean[2] == pytest.approx(mean1, rel=1e-12)
    assert pre.feat_std[2] == pytest.approx(1.98975, abs=1e-5) and pre.feat_std[2] == pytest.approx(std1, rel=1e-12)
    x = pre.transform(SHOWERS, E_INC, np.random.default_rng(0))
    assert x[3, 2] == pytest.approx(math.sqrt(3.0), rel=1e-6)         # sqrt((1-p)/p), p = 1/4
    assert x[0, 2] == pytest.approx(-1.0 / math.sqrt(3.0), rel=1e-6)  # the empty voxels


def test_hand_worked_deposit_bound():
    plain, bounded = _fit(None), _fit(1.5)
    assert bounded.feat_std[2] == pytest.approx(3.44634 / 1.5, abs=1e-5)
    # voxel 0 (upper side only 1.14878 above the mean) and the energy feature keep their scales
    np.testing.assert_allclose(bounded.feat_std[:2], plain.feat_std[:2], rtol=1e-12)
    np.testing.assert_allclose(bounded.feat_mean, plain.feat_mean, rtol=1e-12)
    x = bounded.transform(SHOWERS, E_INC, np.random.default_rng(0))
    assert x[3, 2] == pytest.approx(1.5, rel=1e-6)
    # a bound above sqrt(3) changes nothing
    np.testing.assert_allclose(_fit(2.0).feat_std, plain.feat_std, rtol=1e-12)


@pytest.mark.parametrize("bound", [None, 1.5])
def test_small_deposits_round_trip(bound):
    """Deposits just above the 0.01 MeV threshold survive transform → inverse; below it they go."""
    pre = _fit(bound)
    small = np.array([[1.0, 0.02], [1.0, 0.011], [1.0, 0.009], [0.5, 0.0]])
    back = pre.inverse(pre.transform(small, E_INC, np.random.default_rng(0)), E_INC)
    expected = np.array([[1.0, 0.02], [1.0, 0.011], [1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_allclose(back, expected, rtol=1e-5, atol=1e-7)


def test_noisy_round_trip_of_sparse_outer_voxels():
    """With the default 1e-3 MeV noise, a sparse 'outer bin' deposit of 0.02–5 MeV comes back within
    the noise width, and empty voxels (noise only) are removed by the threshold."""
    rng = np.random.default_rng(1)
    n = 400
    core = rng.uniform(50.0, 150.0, (n, 3))
    outer = np.where(rng.uniform(size=n) < 0.03, rng.uniform(0.02, 5.0, n), 0.0)
    showers = np.concatenate([core, outer[:, None]], axis=1)
    e_inc = core.sum(axis=1, keepdims=True) * 1.1
    pre = ShowerPreprocessor([4], deposit_bound=4.5).fit(showers, e_inc)
    x = pre.transform(showers, e_inc, np.random.default_rng(2))
    assert x[:, 1 + 3].max() <= 4.5 + 0.05          # noise differs from the fit's draw
    back = pre.inverse(x, e_inc)
    np.testing.assert_allclose(back[:, 3], outer, atol=2e-3)
    assert ((back[:, 3] > 0) == (outer > 0)).all()


def test_bound_keeps_training_features_inside_and_chunked_fit_agrees():
    rng = np.random.default_rng(3)
    e = rng.uniform(1e3, 1e4, (60, 1))
    s = rng.exponential(1.0, (60, 8)) * e / 16 * (rng.uniform(size=(60, 8)) < [1, 1, 0.5, 0.05] * 2)
    a = ShowerPreprocessor([4, 4], deposit_bound=2.0).fit(s, e, seed=5)
    b = ShowerPreprocessor([4, 4], deposit_bound=2.0).fit_chunks(
        lambda: ((s[i:i + 7], e[i:i + 7], {}) for i in range(0, 60, 7)), seed=5)
    np.testing.assert_allclose(a.feat_std, b.feat_std, rtol=1e-9)
    x = a.transform(s, e, np.random.default_rng(5))   # the fit's noise: same draws
    assert x[:, 2:].max() <= 2.0 + 1e-4
    assert (a.feat_std >= ShowerPreprocessor([4, 4]).fit(s, e, seed=5).feat_std - 1e-12).all()


def test_config_field():
    assert TrainConfig().deposit_bound is None
    assert apply_overrides(TrainConfig(), ["deposit_bound=4.5"]).deposit_bound == 4.5
    assert preset("caloflow").deposit_bound == 4.5          # the preset (and the demo) switch it on


def test_training_config_reaches_the_checkpointed_preprocessor():
    """``deposit_bound`` in the training config → the fitted preprocessor → its saved state."""
    geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
    data = simulate_dataset(200, geometry=geometry, energy_range=(2e3, 2e4), seed=5, progress=False)
    stds = {}
    for bound in (None, 1.0):
        pre = ShowerDomain().fit_preprocessor(data, TrainConfig(deposit_bound=bound))
        assert ShowerPreprocessor.from_state(pre.state_dict()).deposit_bound == bound
        stds[bound] = pre.feat_std
    n_layers = 3
    np.testing.assert_array_equal(stds[1.0][:n_layers], stds[None][:n_layers])   # energy features untouched
    assert (stds[1.0][n_layers:] >= stds[None][n_layers:]).all() and (stds[1.0] > stds[None]).any()
