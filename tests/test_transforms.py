import numpy as np
import pytest

from hepgen.domains.showers.preprocessing import ShowerPreprocessor


def _showers(n=400, sizes=(6, 6, 6), seed=0):
    rng = np.random.default_rng(seed)
    e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e5), n))
    x = rng.gamma(0.5, 1.0, size=(n, sum(sizes))) * (rng.uniform(size=(n, sum(sizes))) < 0.6)
    x = x / x.sum(axis=1, keepdims=True) * (0.2 * e_inc)[:, None]
    x[x < 0.05] = 0.0  # realistic: no deposits below 50 keV
    return x.astype(np.float32), e_inc[:, None]


def test_round_trip_recovers_showers_up_to_dequantisation_noise():
    x, e = _showers()
    pre = ShowerPreprocessor([6, 6, 6], noise_level=1e-3, threshold=1e-2).fit(x, e)
    z = pre.transform(x, e, np.random.default_rng(1))
    assert z.shape == (len(x), 3 + 18) and z.dtype == np.float32
    back = pre.inverse(z, e)
    # empty voxels come back exactly empty (noise < threshold); filled ones within the noise
    np.testing.assert_array_equal(back[x == 0], 0.0)
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1.1e-3)


def test_features_are_standardised_on_the_fit_sample():
    x, e = _showers()
    pre = ShowerPreprocessor([6, 6, 6]).fit(x, e, seed=3)
    z = pre.transform(x, e, np.random.default_rng(3))  # same noise as the fit
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    free = pre.feat_std > 1e-3  # dims whose spread is not clamped at the 1e-3 floor
    assert free.sum() >= 18
    np.testing.assert_allclose(z.std(axis=0)[free], 1.0, atol=1e-3)


def test_any_feature_vector_maps_to_a_valid_shower():
    x, e = _showers()
    pre = ShowerPreprocessor([6, 6, 6]).fit(x, e)
    z = np.random.default_rng(2).normal(scale=3.0, size=(500, 21))
    back = pre.inverse(z, e[:500] if len(e) >= 500 else np.resize(e, (500, 1)))
    assert np.all(back >= 0) and np.all(np.isfinite(back))
    e_used = np.resize(e, (500, 1))[:, 0]
    assert np.all(back.sum(axis=1) <= pre.scale * e_used * (1 + 1e-5))


def test_conditions_and_state_round_trip():
    x, e = _showers()
    theta = np.random.default_rng(4).uniform(0, 0.5, size=(len(x), 1))
    pre = ShowerPreprocessor([6, 6, 6], ["incident_theta"]).fit(x, e, {"incident_theta": theta})
    c = pre.transform_conditions(e, {"incident_theta": theta})
    np.testing.assert_allclose(c.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(c[:, 0], (np.log(e[:, 0]) - np.log(e).mean()) / np.log(e).std(), rtol=1e-5)
    clone = ShowerPreprocessor.from_state(pre.state_dict())
    z = pre.transform(x, e, np.random.default_rng(0))
    np.testing.assert_array_equal(clone.inverse(z, e), pre.inverse(z, e))
    with pytest.raises(ValueError, match="incident_theta"):
        pre.transform_conditions(e, {})


def test_bad_inputs():
    with pytest.raises(ValueError, match="threshold"):
        ShowerPreprocessor([2], noise_level=1.0, threshold=0.1)
    x, e = _showers()
    pre = ShowerPreprocessor([6, 6, 6]).fit(x, e)
    with pytest.raises(ValueError, match=r"expected shape \(N, 18\)"):
        pre.transform(x[:, :10], e, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        ShowerPreprocessor([6]).inverse(np.zeros((1, 7)), np.ones((1, 1)))
