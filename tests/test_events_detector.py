"""The parametrised calorimeter against hand-worked cases (Delphes ATLAS card numbers)."""

import numpy as np
import pytest

from hepgen.simulate.detector import (
    Calorimeter,
    DetectorConfig,
    ecal_resolution,
    hcal_resolution,
    overlay,
)


def _one(pid, e, eta, phi, n=1, config=None, seed=0, charged=None):
    """n events with one massless particle each."""
    config = DetectorConfig() if config is None else config
    pt = e / np.cosh(eta)
    k = np.arange(n)
    arr = lambda v: np.full(n, v, dtype=float)
    return Calorimeter(config).images(np.full(n, pid), arr(pt * np.cos(phi)), arr(pt * np.sin(phi)),
                                      arr(pt * np.sinh(eta)), arr(e), k, n, np.random.default_rng(seed),
                                      charged=None if charged is None else np.full(n, charged))


def test_single_pion_lands_in_its_pixel_with_its_energy():
    img = _one(211, 100.0, 0.3, 1.0, config=DetectorConfig(smear=False))
    # η: (0.3 + 2.5) / 5 · 64 = 35.84 → row 35; φ: (1 + π) / 2π · 64 = 42.19 → column 42
    assert img.shape == (1, 1, 64, 64)
    assert img[0, 0, 35, 42] == pytest.approx(100.0, rel=1e-6)
    assert img.sum() == pytest.approx(100.0, rel=1e-6)


def test_phi_wraps_and_edges():
    cal = Calorimeter()
    i, j = cal.pixel_of(np.array([-2.49, 2.49, 0.0]), np.array([np.pi - 1e-6, -np.pi, 3 * np.pi / 2]))
    assert i.tolist() == [0, 63, 32]
    assert j.tolist() == [63, 0, 16]  # 3π/2 ≡ −π/2 → (π/2)/(2π)·64 = 16


def test_hadron_resolution_matches_card_formula():
    n = 4000
    img = _one(211, 100.0, 0.3, 1.0, n=n, seed=1)[:, 0, 35, 42]
    sigma = float(hcal_resolution(np.array(100.0), np.array(0.3)))
    assert sigma == pytest.approx(np.sqrt(100**2 * 0.0302**2 + 100 * 0.5205**2 + 1.59**2))
    assert img.mean() == pytest.approx(100.0, abs=4 * sigma / np.sqrt(n))
    assert img.std() == pytest.approx(sigma, rel=0.06)


def test_photon_goes_to_ecal_with_ecal_resolution():
    n = 4000
    img = _one(22, 50.0, -1.2, -2.0, n=n, config=DetectorConfig(channels="ecal_hcal"), seed=2)
    i, j = Calorimeter().pixel_of(np.array([-1.2]), np.array([-2.0]))
    ecal, hcal = img[:, 0, i[0], j[0]], img[:, 1]
    sigma = np.sqrt(50**2 * 0.0017**2 + 50 * 0.101**2)  # 0.7192 GeV
    assert float(ecal_resolution(np.array(50.0), np.array(-1.2))) == pytest.approx(sigma)
    assert hcal.sum() == 0.0
    assert ecal.mean() == pytest.approx(50.0, abs=4 * sigma / np.sqrt(n))
    assert ecal.std() == pytest.approx(sigma, rel=0.06)


def test_kshort_shares_energy_and_invisibles_leave_nothing():
    cfg = DetectorConfig(smear=False, channels="ecal_hcal")
    k0 = _one(310, 10.0, 0.0, 0.0, config=cfg)
    assert k0[0, 0].sum() == pytest.approx(3.0) and k0[0, 1].sum() == pytest.approx(7.0)
    for pid in (13, -13, 12, -14, 16, 1000022):
        assert _one(pid, 80.0, 0.5, 0.5, config=cfg).sum() == 0.0


def test_acceptance_thresholds_and_loopers():
    assert _one(211, 100.0, 2.7, 0.0, config=DetectorConfig(smear=False)).sum() == 0.0  # |η| > 2.5
    # a 0.3 GeV photon: σ ≈ 0.055 GeV, never above the 0.5 GeV ECAL threshold after smearing
    assert _one(22, 0.3, 0.0, 0.0, n=200).sum() == 0.0
    assert _one(22, 0.3, 0.0, 0.0, config=DetectorConfig(smear=False, ecal_energy_min=0)).sum() == pytest.approx(0.3)
    # a 0.2 GeV charged pion curls up in the 2 T field (pT < 0.345 GeV): no deposit
    cfg = DetectorConfig(smear=False)
    assert _one(211, 0.2, 0.0, 0.0, config=cfg, charged=True).sum() == 0.0
    assert _one(211, 0.2, 0.0, 0.0, config=cfg, charged=False).sum() == pytest.approx(0.2)


def test_deposits_are_additive_and_overlay_sums():
    rng = np.random.default_rng(3)
    n = 50
    pid = rng.choice([211, 22, 2112, 13], n)
    px, py, pz = rng.normal(0, 20, (3, n))
    e = np.sqrt(px**2 + py**2 + pz**2)
    cal = Calorimeter(DetectorConfig(smear=False))
    a, b = np.arange(n) < 30, np.arange(n) >= 30
    both = cal.images(pid, px, py, pz, e, np.zeros(n, int), 1, rng)
    ia = cal.images(pid[a], px[a], py[a], pz[a], e[a], np.zeros(a.sum(), int), 1, rng)
    ib = cal.images(pid[b], px[b], py[b], pz[b], e[b], np.zeros(b.sum(), int), 1, rng)
    np.testing.assert_allclose(both, ia + ib, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(overlay(ia, ib[0]), both, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match=r"overlay: pile-up images of shape \(1, 2, 2\) do not fit"):
        overlay(ia, np.zeros((1, 2, 2)))


def test_seeded():
    a = _one(211, 100.0, 0.0, 0.0, n=10, seed=5)
    np.testing.assert_array_equal(a, _one(211, 100.0, 0.0, 0.0, n=10, seed=5))
    assert not np.array_equal(a, _one(211, 100.0, 0.0, 0.0, n=10, seed=6))


def test_bad_inputs():
    with pytest.raises(ValueError, match="DetectorConfig: key 'channels': expected 'total' or 'ecal_hcal', found 'x'"):
        DetectorConfig(channels="x")
    with pytest.raises(ValueError, match="DetectorConfig: eta_max must be > 0, found -1"):
        DetectorConfig(eta_max=-1)
    cal = Calorimeter()
    z = np.zeros(2)
    with pytest.raises(ValueError, match=r"event indices must lie in 0 … 0, found 0 … 1"):
        cal.images(np.ones(2, int), z + 1, z, z, z + 1, np.array([0, 1]), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected 1-d arrays of one length"):
        cal.images(np.ones(2, int), z, z, z, np.zeros(3), np.zeros(2, int), 1, np.random.default_rng(0))
