"""Momentum closure of generated jets (hepgen.domains.jets.preprocessing, issue 21): jets that kept
every constituent carry the jet's momentum, Σ pt_rel cos(phi_rel) = 1, and generated ones are put
back onto it."""

import numpy as np
import pytest

from _toy_jets import toy_jets
from hepgen.data.jets import JetData
from hepgen.domains.jets import JetPreprocessor
from hepgen.domains.jets.preprocessing import (CLOSURE_TOLERANCE, close_momentum, closure_holds,
                                               momentum_along_axis)


def _jet(eta, phi, pt, slots):
    p = np.zeros((1, slots, 4))
    k = len(pt)
    p[0, :k, 0], p[0, :k, 1], p[0, :k, 2], p[0, :k, 3] = eta, phi, pt, 1.0
    return p


def test_close_momentum_worked_by_hand():
    # two constituents at phi 0 and pi/3: 0.4 + 0.6 * cos(pi/3) = 0.7 along the axis -> scale 1/0.7
    p = _jet([0.1, -0.2], [0.0, np.pi / 3], [0.4, 0.6], slots=3)
    assert momentum_along_axis(p)[0] == pytest.approx(0.7, abs=1e-12)
    q = close_momentum(p)
    np.testing.assert_allclose(q[0, :2, 2], [0.4 / 0.7, 0.6 / 0.7], rtol=1e-12)
    np.testing.assert_array_equal(q[..., [0, 1, 3]], p[..., [0, 1, 3]])  # angles and mask untouched
    assert momentum_along_axis(q)[0] == pytest.approx(1.0, abs=1e-12)
    assert p[0, 0, 2] == 0.4                                              # a new array


def test_close_momentum_leaves_full_and_backward_jets():
    full = _jet([0, 0, 0], [0, 0, 0], [0.5, 0.2, 0.1], slots=3)           # every slot used: maybe truncated
    backward = _jet([0, 0], [np.pi, 0.0], [0.6, 0.2], slots=3)           # along = -0.4 <= 0
    both = np.concatenate([full, backward])
    np.testing.assert_array_equal(close_momentum(both), both)


def test_closure_holds_counts_the_complete_jets_only():
    # 100 complete jets, k of them off by 2 % (beyond CLOSURE_TOLERANCE), plus full jets that never close
    def sample(k_off):
        p = np.concatenate([_jet([0, 0], [0, 0], [0.7, 0.3], slots=3)] * 100
                           + [_jet([0, 0, 0], [0, 0, 0], [0.2, 0.2, 0.2], slots=3)] * 50)
        p[:k_off, :, 2] *= 1.02
        return p
    assert 0.02 > CLOSURE_TOLERANCE
    assert closure_holds(sample(1)) and not closure_holds(sample(2))      # 99 % and 98 % closed
    assert not closure_holds(sample(0)[:9])                               # fewer than 10 complete jets
    assert not closure_holds(sample(0)[100:])                             # none complete


def test_fit_learns_it_and_inverse_applies_it_to_incomplete_jets_only():
    raw = toy_jets(300, n_particles=6, seed=4)                            # constituents sum to 0.95: open
    closed = JetData(close_momentum(raw.particle_features), raw.jet_features, raw.jet_type)
    pre_open = JetPreprocessor(6).fit(raw)
    pre = JetPreprocessor(6).fit(closed)
    assert not pre_open.momentum_closure and pre.momentum_closure
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (200, 18))
    n = rng.integers(1, 7, 200)
    got = pre.inverse(x, n)
    pre.momentum_closure = False
    plain = pre.inverse(x, n)
    along = momentum_along_axis(got)
    incomplete = n < 6
    np.testing.assert_allclose(along[incomplete], 1.0, atol=1e-5)
    np.testing.assert_array_equal(got[~incomplete], plain[~incomplete])
    # per jet one common factor on pt_rel; angles and order as without the closure
    ratio = got[incomplete, :, 2].sum(axis=1) / plain[incomplete, :, 2].sum(axis=1)
    np.testing.assert_allclose(got[incomplete, :, 2], plain[incomplete, :, 2] * ratio[:, None], rtol=1e-5)
    np.testing.assert_array_equal(got[..., [0, 1, 3]], plain[..., [0, 1, 3]])


def test_the_flag_travels_with_the_checkpoint_state():
    raw = toy_jets(300, n_particles=6, seed=4)
    pre = JetPreprocessor(6).fit(JetData(close_momentum(raw.particle_features), raw.jet_features, raw.jet_type))
    state = pre.state_dict()
    assert state["momentum_closure"] is True
    assert JetPreprocessor.from_state(state).momentum_closure
    del state["momentum_closure"]                                         # a checkpoint from before
    assert JetPreprocessor.from_state(state).momentum_closure is False
