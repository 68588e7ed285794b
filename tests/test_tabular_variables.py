"""The ttH high-level and low-level variables on hand-worked events (hepgen.simulate.tth_variables)."""

import math

import numpy as np
import pytest

from hepgen.simulate.tth_variables import (
    HIGH_LEVEL,
    LOW_LEVEL,
    boost_to_rest_frame,
    chi2_assignment,
    event_shapes,
    high_level_variables,
    invariant_mass,
    low_level_variables,
    neutrino_pz,
    pair_variables,
    w_helicity,
)

PI = math.pi


def _event_a():
    """Four massless jets of 100 GeV in the transverse plane at φ = 0, π/2, π, −π/2 (η = 0), all
    b-tagged, and a 30 GeV lepton at η = 1, φ = 0."""
    jets = np.array([[[100.0, 100, 0, 0], [100, 0, 100, 0], [100, -100, 0, 0], [100, 0, -100, 0]]])
    lep = np.array([[30 * math.cosh(1.0), 30.0, 0.0, 30 * math.sinh(1.0)]])
    return jets, np.ones((1, 4), bool), np.ones((1, 4), bool), lep


def test_names_and_counts():
    assert len(HIGH_LEVEL) == 26 and len(set(HIGH_LEVEL)) == 26
    assert len(LOW_LEVEL) == 32 and len(set(LOW_LEVEL)) == 32


def test_event_shapes_hand_worked():
    jets, mask, _, _ = _event_a()
    v = event_shapes(jets, mask)
    # S^ab = diag(½, ½, 0): S = 3/2(½ + 0) = 0.75, A = 0; transverse tensor ∝ diag(1, 1): S_T = 1
    assert v["sphericity"][0] == pytest.approx(0.75, abs=1e-12)
    assert v["aplanarity"][0] == pytest.approx(0.0, abs=1e-12)
    assert v["transverse_sphericity"][0] == pytest.approx(1.0, abs=1e-12)
    assert v["centrality"][0] == pytest.approx(1.0, abs=1e-12)  # Σ pT = Σ E = 400
    # H_l = ¼ [P_l(1) + P_l(−1) + 2 P_l(0)]: 1, 0, ¼, 0, 11/16
    for ell, expected in enumerate([1.0, 0.0, 0.25, 0.0, 11 / 16]):
        assert v[f"fox_wolfram_{ell}"][0] == pytest.approx(expected, abs=1e-12)


def test_event_shapes_back_to_back_and_massive():
    # two back-to-back jets along x: S = A = S_T = 0, H_2 = 1
    jets = np.array([[[100.0, 100, 0, 0], [100, -100, 0, 0]]])
    v = event_shapes(jets, np.ones((1, 2), bool))
    assert v["sphericity"][0] == pytest.approx(0.0, abs=1e-12)
    assert v["transverse_sphericity"][0] == pytest.approx(0.0, abs=1e-12)
    assert v["fox_wolfram_2"][0] == pytest.approx(1.0, abs=1e-12)
    # massive jets at rest-mass 60 (E = 100, |p| = 80): H_0 = (Σ|p|)² / (ΣE)² = 0.64, centrality 0.8
    jets = np.array([[[100.0, 80, 0, 0], [100, -80, 0, 0], [0, 0, 0, 0]]])
    v = event_shapes(jets, np.array([[True, True, False]]))
    assert v["fox_wolfram_0"][0] == pytest.approx(0.64, abs=1e-12)
    assert v["centrality"][0] == pytest.approx(0.8, abs=1e-12)


def test_pair_variables_hand_worked():
    jets, mask, btag, lep = _event_a()
    v = pair_variables(jets, mask, btag, lep)
    assert v["jet_deta_min"][0] == v["jet_deta_max"][0] == v["jet_deta_avg"][0] == 0.0
    # 4 perpendicular pairs (ΔR = π/2) and 2 opposite ones (ΔR = π)
    assert v["jet_dr_min"][0] == pytest.approx(PI / 2)
    assert v["jet_dr_max"][0] == pytest.approx(PI)
    assert v["jet_dr_avg"][0] == pytest.approx((4 * PI / 2 + 2 * PI) / 6)
    # perpendicular pair: E = 200, |p| = 100√2 → m = 100√2 = 141.4 (closer to 125 than 200)
    assert v["m_bb_closest_125"][0] == pytest.approx(100 * math.sqrt(2))
    assert v["pt_bb_closest_125"][0] == pytest.approx(100 * math.sqrt(2))
    assert v["m_bb_min_dr"][0] == pytest.approx(100 * math.sqrt(2))
    assert v["pt_bb_min_dr"][0] == pytest.approx(100 * math.sqrt(2))
    # lepton at η = 1, φ = 0: |Δη| = 1 to every jet; ΔR = 1, √(1 + π²/4) (twice), √(1 + π²)
    assert v["jet_lep_deta_min"][0] == pytest.approx(1.0)
    assert v["jet_lep_deta_max"][0] == pytest.approx(1.0)
    assert v["jet_lep_dr_min"][0] == pytest.approx(1.0)
    assert v["jet_lep_dr_max"][0] == pytest.approx(math.sqrt(1 + PI**2))
    assert v["jet_sum_pt"][0] == pytest.approx(400.0)


def test_b_pairs_use_tagged_jets_only():
    jets, mask, btag, lep = _event_a()
    btag = np.array([[True, False, True, False]])  # only the opposite pair (m = 200, pT = 0) is tagged
    v = pair_variables(jets, mask, btag, lep)
    assert v["m_bb_closest_125"][0] == pytest.approx(200.0)
    assert v["pt_bb_closest_125"][0] == pytest.approx(0.0, abs=1e-9)


def _boost(p, beta):
    """Boost four-vectors by velocity vector ``beta`` (the frame moving with −beta)."""
    gamma = 1 / math.sqrt(1 - np.dot(beta, beta))
    frame = np.array([gamma, *(-gamma * np.asarray(beta))]) * 1.0
    return boost_to_rest_frame(np.atleast_2d(p), np.broadcast_to(frame, (len(np.atleast_2d(p)), 4)))


def _two_body(m, e1_dir, mass=None):
    """Massless back-to-back pair of total mass m along unit vector e1_dir, at rest."""
    d = np.asarray(e1_dir, float) / np.linalg.norm(e1_dir)
    return np.array([m / 2, *(m / 2 * d)]), np.array([m / 2, *(-m / 2 * d)])


def _top(cos_theta, mt=172.5, mw=80.4):
    """A top at rest decaying to b (along −z) and W (along +z); the W's fermion at angle θ* to +z."""
    p = (mt**2 - mw**2) / (2 * mt)
    b = np.array([p, 0, 0, -p])
    s = math.sqrt(1 - cos_theta**2)
    f, fbar = _two_body(mw, [s, 0, cos_theta])
    beta_w = p / math.sqrt(mw**2 + p**2)
    f, fbar = _boost(f, [0, 0, beta_w])[0], _boost(fbar, [0, 0, beta_w])[0]
    return b, f, fbar


def _ttH_event():
    # hadronic top: d-type (fermion) at cos θ* = −0.6 → the softer light jet in the top frame
    b_had, q_d, q_u = _top(-0.6)
    b_had, q_d, q_u = (_boost(x, [0.5, 0.0, 0.0])[0] for x in (b_had, q_d, q_u))
    # leptonic top: lepton at cos θ* = 0.3, moving along −x
    b_lep, lep, nu = _top(0.3)
    b_lep, lep, nu = (_boost(x, [-0.5, 0.2, 0.0])[0] for x in (b_lep, lep, nu))
    # Higgs → bb at rest, then boosted along y
    h1, h2 = _two_body(125.0, [0.3, 0.2, 0.9])
    h1, h2 = (_boost(x, [0.0, 0.6, 0.1])[0] for x in (h1, h2))
    order = [b_had, q_d, q_u, b_lep, h1, h2]
    jets = np.array([order])
    btag = np.array([[True, False, False, True, True, True]])
    return jets, np.ones((1, 6), bool), btag, lep[None], nu[None, 1:3], nu, (b_had, q_d, q_u, b_lep, h1, h2)


def test_neutrino_pz_recovers_the_w_mass():
    _, _, _, lep, met, nu, _ = _ttH_event()
    pz = neutrino_pz(lep, met)
    assert min(abs(pz[0] - nu[3])) < 1e-6  # one of the two solutions is the true p_z
    for s in pz[0]:
        n4 = np.array([math.sqrt(met[0] @ met[0] + s**2), *met[0], s])
        assert invariant_mass(lep[0] + n4) == pytest.approx(80.4, abs=1e-6)


def test_chi2_assignment_and_low_level_on_a_constructed_event():
    jets, mask, btag, lep, met, nu, truth = _ttH_event()
    a = chi2_assignment(jets, mask, btag, lep, met)
    assert a["chi2"][0] == pytest.approx(0.0, abs=1e-8)
    assert a["index"][0].tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(a["neutrino"][0], nu, atol=1e-6)
    low = low_level_variables(jets, mask, btag, lep, met, assignment=a)
    b_had, _, _, b_lep, h1, h2 = truth
    np.testing.assert_allclose([low[f"b_had_{c}"][0] for c in ("E", "px", "py", "pz")], b_had, atol=1e-9)
    np.testing.assert_allclose([low[f"b_lep_{c}"][0] for c in ("E", "px", "py", "pz")], b_lep, atol=1e-9)
    np.testing.assert_allclose([low[f"neutrino_{c}"][0] for c in ("E", "px", "py", "pz")], nu, atol=1e-6)
    lead, sub = (h1, h2) if math.hypot(*h1[1:3]) > math.hypot(*h2[1:3]) else (h2, h1)
    np.testing.assert_allclose([low[f"b_h1_{c}"][0] for c in ("E", "px", "py", "pz")], lead, atol=1e-9)
    np.testing.assert_allclose([low[f"b_h2_{c}"][0] for c in ("E", "px", "py", "pz")], sub, atol=1e-9)


def test_helicity_angles_on_a_constructed_event():
    jets, mask, btag, lep, met, _, _ = _ttH_event()
    v = high_level_variables(jets, mask, btag, lep, met)
    assert v["w_had_helicity"][0] == pytest.approx(-0.6, abs=1e-9)
    assert v["w_lep_helicity"][0] == pytest.approx(0.3, abs=1e-6)
    assert list(v) == HIGH_LEVEL and all(np.isfinite(v[k][0]) for k in HIGH_LEVEL)


def test_w_helicity_at_rest():
    f, fbar = _two_body(80.4, [0.0, 0.8, 0.6])
    b = np.array([[50.0, 0, 0, -50.0]])  # −b along +z: cos θ* = f_z / |f| = 0.6
    assert w_helicity(f[None], fbar[None], b)[0] == pytest.approx(0.6)


def test_fewer_than_six_jets_give_nan_assignment():
    jets, mask, btag, lep = _event_a()
    a = chi2_assignment(jets, mask, btag, lep, np.zeros((1, 2)))
    assert a["index"][0].tolist() == [-1] * 6 and math.isnan(a["chi2"][0])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"^jets: expected shape \(N, J, 4\) \[E, px, py, pz\], found \(2, 4\)$"):
        event_shapes(np.zeros((2, 4)), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match=r"^mask: expected shape \(1, 4\), found \(1, 3\)$"):
        event_shapes(np.zeros((1, 4, 4)), np.zeros((1, 3), bool))
