"""O(n²) metrics under a seeded cap (PRDC, nearest-neighbour memorisation) and the memorisation p-value that
accounts for the noise of its estimated threshold (beta-binomial, exact under the null)."""

import numpy as np
import pytest
from scipy import stats

from hepgen.metrics.diversity import nearest_neighbour_memorisation
from hepgen.metrics.multivariate import prdc


def test_memorisation_p_value_hand_worked():
    # 1-d, one training point at 0: distances are |x|.  Reference distances 1, 2, 3; quantile 0.2 -> j = ceil(0.6)
    # = 1, threshold = the smallest, 1.  Both generated distances (0.5, 0.7) lie below it.  Under the null the
    # 5 distances are exchangeable: P(the 2 generated are the 2 smallest of 5) = 1 / C(5, 2) = 0.1.
    res = nearest_neighbour_memorisation(np.array([[0.0]]), np.array([[0.5], [-0.7]]), np.array([[1.0], [2.0], [3.0]]),
                                         quantile=0.2, standardise=False)
    assert res["threshold_rank"] == 1 and res["threshold"] == 1.0 and res["fraction_below"] == 1.0
    assert res["p_value"] == pytest.approx(0.1, abs=1e-12)
    assert res["expected_fraction"] == pytest.approx(1 / 4)
    # the fixed-threshold binomial with p = 1/4: 1/16 — smaller, it ignores the threshold's spread
    assert res["p_value_fixed_threshold"] == pytest.approx(1 / 16, abs=1e-12)
    # one of two below: K = 0 exactly when the smallest of the 5 distances is a reference one (probability 3/5),
    # so p = P(K >= 1) = 2/5
    one = nearest_neighbour_memorisation(np.array([[0.0]]), np.array([[0.5], [7.0]]), np.array([[1.0], [2.0], [3.0]]),
                                         quantile=0.2, standardise=False)
    assert one["p_value"] == pytest.approx(2 / 5, abs=1e-12)
    assert one["p_value"] == pytest.approx(stats.betabinom.sf(0, 2, 1, 3), abs=1e-12)


def _null_p_values(n_repeats, n_train, n_gen, n_ref, key):
    out = []
    for s in range(n_repeats):
        rng = np.random.default_rng([22, s])
        res = nearest_neighbour_memorisation(rng.normal(size=(n_train, 4)), rng.normal(size=(n_gen, 4)),
                                             rng.normal(size=(n_ref, 4)))
        out.append(res[key])
    return np.array(out)


def test_memorisation_p_value_is_calibrated_under_the_null():
    """200 repeats, two independent samples of one distribution, n_gen = 4 n_ref (the threshold is the 2nd smallest
    of 200 reference distances: very noisy).  The fraction with p < 0.05 stays below 0.05 + 3 sigma = 0.096
    (measured 0.05); the binomial test that takes the threshold as exact exceeds it (measured 0.155)."""
    p = _null_p_values(200, 400, 800, 200, "p_value")
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)
    assert np.mean(p < 0.05) <= bound
    assert np.mean(p < 0.01) <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / 200)
    fixed = _null_p_values(200, 400, 800, 200, "p_value_fixed_threshold")
    assert np.mean(fixed < 0.05) > bound  # what the estimated threshold's noise does to a naive p-value


def test_twenty_independent_pairs_are_never_flagged_and_copies_always_are():
    """The test is exact, so P(false flag) <= alpha = 1e-3 per repeat: over 20 repeats the expected number of
    false flags is <= 0.02; with these seeds there is none (smallest p measured 0.065)."""
    flags, smallest = 0, 1.0
    for s in range(20):
        rng = np.random.default_rng([23, s])
        train, ref = rng.normal(size=(2000, 5)), rng.normal(size=(1000, 5))
        honest = nearest_neighbour_memorisation(train, rng.normal(size=(2000, 5)), ref)
        flags += honest["flagged"]
        smallest = min(smallest, honest["p_value"])
        copies = train[rng.choice(2000, 500, replace=False)]
        assert nearest_neighbour_memorisation(train, copies, ref)["flagged"]
        # 10 % copies among new samples: still flagged
        mixed = np.concatenate([copies[:200], rng.normal(size=(1800, 5))])
        assert nearest_neighbour_memorisation(train, mixed, ref)["flagged"]
    assert flags == 0 and smallest > 0.01


def test_memorisation_caps_are_seeded_recorded_and_keep_copies_detectable():
    rng = np.random.default_rng(5)
    train, ref = rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3))
    gen = rng.normal(size=(3000, 3))
    a = nearest_neighbour_memorisation(train, gen, ref, max_samples=500, max_train=1000, seed=1)
    assert (a["n_train"], a["n_generated"], a["n_reference"]) == (1000, 500, 500)
    assert (a["max_samples"], a["max_train"], a["seed"]) == (500, 1000, 1)
    assert nearest_neighbour_memorisation(train, gen, ref, max_samples=500, max_train=1000, seed=1) == a
    other = nearest_neighbour_memorisation(train, gen, ref, max_samples=500, max_train=1000, seed=2)
    assert other["ratio"] != a["ratio"]
    uncapped = nearest_neighbour_memorisation(train, gen, ref, max_samples=None, max_train=None)
    assert uncapped["n_generated"] == 3000 and uncapped["max_samples"] is None
    # copies of training rows, with every training row kept (max_train above N_t): all at distance 0
    copied = nearest_neighbour_memorisation(train, train[:2000], ref, max_samples=500)
    assert copied["flagged"] and copied["fraction_below"] == 1.0 and copied["n_train"] == 3000
    with pytest.raises(ValueError, match="max_samples: expected None or an integer >= 1, found 0"):
        nearest_neighbour_memorisation(train, gen, ref, max_samples=0)


def test_prdc_cap_is_seeded_recorded_and_inactive_below_it():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(1500, 3)), rng.normal(size=(1200, 3))
    whole = prdc(x, y, max_samples=None)
    assert prdc(x, y, max_samples=1500) == {**whole, "max_samples": 1500}  # at or above N: the samples are used whole
    capped = prdc(x, y, max_samples=400, seed=3)
    assert (capped["n_real"], capped["n_gen"], capped["max_samples"], capped["seed"]) == (400, 400, 400, 3)
    assert prdc(x, y, max_samples=400, seed=3) == capped
    assert prdc(x, y, max_samples=400, seed=4) != capped
    # the capped values estimate the same quantities: same distribution -> precision, recall, coverage near
    # their whole-sample values (binomial spread at n = 400 is ~0.02; tolerance 0.08), density near 1
    for key in ("precision", "recall", "coverage"):
        assert capped[key] == pytest.approx(whole[key], abs=0.08), key
    assert capped["density"] == pytest.approx(1.0, abs=0.2)
    with pytest.raises(ValueError, match="max_samples: expected None or an integer >= 1, found 0"):
        prdc(x, y, max_samples=0)
