"""``energy_bound`` (issue 14): the energy features' scales widened so that their 10⁻⁴ tail
quantiles lie within ±B_e standard units.

The expected scales are computed here from the preprocessor's documented energy fractions
(``u_0 = E_tot / (scale E_inc)``, ``u_l = E_{l-1} / Σ_{j ≥ l-1} E_j``, then
``logit(α + (1 - 2α) u)``) with numpy, not from the preprocessor's own code: no noise, so the
features are deterministic.
"""

import math

import numpy as np
import pytest

from hepgen.config import TrainConfig, apply_overrides
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers import ShowerDomain
from hepgen.domains.showers.preprocessing import ENERGY_BOUND_QUANTILE, ShowerPreprocessor
from hepgen.simulate.calorimeter import simulate_dataset

ALPHA = 1e-6


def _showers(n=2000, seed=0):
    """Three layers of two voxels; in 2 % of the showers the last two layers are nearly empty
    (a heavy upper tail of u_1 = layer 0's share of everything)."""
    rng = np.random.default_rng(seed)
    e_inc = rng.uniform(1e3, 1e4, (n, 1))
    layers = rng.uniform(0.2, 0.4, (n, 3))
    stop = rng.uniform(size=n) < 0.02
    layers[stop, 1:] *= 1e-4
    cells = np.repeat(layers, 2, axis=1) / 2.0 * e_inc
    return cells, e_inc


def _energy_logits(showers, e_inc, scale):
    layer = showers.reshape(len(showers), 3, 2).sum(axis=2)
    u = np.empty_like(layer)
    u[:, 0] = layer.sum(axis=1) / (scale * e_inc[:, 0])
    for l in (1, 2):
        u[:, l] = layer[:, l - 1] / layer[:, l - 1:].sum(axis=1)
    x = ALPHA + (1 - 2 * ALPHA) * u
    return np.log(x) - np.log1p(-x)


def _fit(bound, showers, e_inc):
    return ShowerPreprocessor([2, 2, 2], noise_level=0.0, threshold=0.0, alpha=ALPHA,
                              energy_bound=bound).fit(showers, e_inc)


def test_scales_against_the_quantiles_worked_out_here():
    s, e = _showers()
    plain, bounded = _fit(None, s, e), _fit(2.0, s, e)
    z = _energy_logits(s, e, plain.scale)
    np.testing.assert_allclose(plain.feat_mean[:3], z.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(plain.feat_std[:3], z.std(axis=0), rtol=1e-10)
    lo, hi = np.quantile(z, [ENERGY_BOUND_QUANTILE, 1 - ENERGY_BOUND_QUANTILE], axis=0)
    mean = z.mean(axis=0)
    expected = np.maximum(z.std(axis=0), np.maximum(hi - mean, mean - lo) / 2.0)
    np.testing.assert_allclose(bounded.feat_std[:3], expected, rtol=1e-10)
    # u_1's upper tail (the 2 % of stopped showers, logit ≈ +9) is what gets widened here
    assert bounded.feat_std[1] > 1.5 * plain.feat_std[1]
    # the shape features and every mean are untouched
    np.testing.assert_array_equal(bounded.feat_std[3:], plain.feat_std[3:])
    np.testing.assert_array_equal(bounded.feat_mean, plain.feat_mean)
    # and the training features now lie within the bound, up to the 10⁻⁴ tails
    x = bounded.transform(s, e, np.random.default_rng(0))[:, :3]
    assert np.quantile(np.abs(x), 1 - 2 * ENERGY_BOUND_QUANTILE, axis=0).max() <= 2.0 + 1e-9
    assert np.abs(_fit(None, s, e).transform(s, e, np.random.default_rng(0))[:, 1]).max() > 3.0


def test_a_loose_bound_changes_nothing_and_the_round_trip_holds():
    s, e = _showers(seed=1)
    plain = _fit(None, s, e)
    np.testing.assert_array_equal(_fit(1e6, s, e).feat_std, plain.feat_std)
    pre = _fit(1.5, s, e)
    back = pre.inverse(pre.transform(s, e, np.random.default_rng(0)), e)
    np.testing.assert_allclose(back, s, rtol=1e-4, atol=1e-6)


def test_chunked_fit_agrees():
    s, e = _showers(n=300, seed=2)
    a = ShowerPreprocessor([2, 2, 2], energy_bound=2.0).fit(s, e, seed=5)
    b = ShowerPreprocessor([2, 2, 2], energy_bound=2.0).fit_chunks(
        lambda: ((s[i:i + 37], e[i:i + 37], {}) for i in range(0, 300, 37)), seed=5)
    np.testing.assert_allclose(a.feat_std, b.feat_std, rtol=1e-9)


@pytest.mark.parametrize("field, value", [("energy_bound", 2.5), ("deposit_bound", 1.5)])
def test_state_round_trip_and_old_checkpoints(field, value):
    """Both bounds (this file's and tests/test_preprocessing_deposits.py's) travel in the state;
    a checkpoint from before a field reads it as None and keeps the other."""
    s, e = _showers(n=200)
    pre = ShowerPreprocessor([2, 2, 2], noise_level=0.0, threshold=0.0, alpha=ALPHA,
                             energy_bound=2.5, deposit_bound=1.5).fit(s, e)
    again = ShowerPreprocessor.from_state(pre.state_dict())
    assert getattr(again, field) == value
    np.testing.assert_array_equal(again.feat_std, pre.feat_std)
    old = pre.state_dict()
    del old[field]                                            # a checkpoint from before the field
    before = ShowerPreprocessor.from_state(old)
    assert getattr(before, field) is None
    other = "deposit_bound" if field == "energy_bound" else "energy_bound"
    assert getattr(before, other) == getattr(pre, other)


@pytest.mark.parametrize("field", ["deposit_bound", "energy_bound"])
@pytest.mark.parametrize("bad", [0.0, -1.0, True, "4.5"])
def test_bad_bound(field, bad):
    # one check serves both bounds (ShowerPreprocessor.__post_init__)
    with pytest.raises(ValueError, match=rf"{field}: expected None or a number > 0, found"):
        ShowerPreprocessor([2], **{field: bad})


def test_training_config_reaches_the_checkpointed_preprocessor():
    assert TrainConfig().energy_bound is None
    assert apply_overrides(TrainConfig(), ["energy_bound=4.5"]).energy_bound == 4.5
    geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
    data = simulate_dataset(200, geometry=geometry, energy_range=(2e3, 2e4), seed=5, progress=False)
    stds = {}
    for bound in (None, 1.0):
        pre = ShowerDomain().fit_preprocessor(data, TrainConfig(energy_bound=bound, occupancy=True))
        assert ShowerPreprocessor.from_state(pre.state_dict()).energy_bound == bound
        stds[bound] = pre.feat_std
    k = 6                                                     # 3 fractions + 3 lit-cell counts
    np.testing.assert_array_equal(stds[1.0][k:], stds[None][k:])   # shape features untouched
    assert (stds[1.0][:k] >= stds[None][:k]).all() and (stds[1.0][:k] > stds[None][:k]).any()
    assert math.isfinite(float(stds[1.0].sum()))
