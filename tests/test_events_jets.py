"""Jets on event images: hand-worked cases, FastJet on the particles, the KS selection score."""

import fastjet
import numpy as np
import pytest
from scipy import stats

from hepgen.metrics.event_jets import (
    event_observables,
    image_jets,
    ks_selection_score,
    pixel_centers,
)
from hepgen.simulate.detector import Calorimeter, DetectorConfig


def test_two_pixels_hand_worked_mass():
    img = np.zeros((1, 1, 64, 64))
    img[0, 0, 32, 10] = 400.0
    img[0, 0, 34, 12] = 300.0
    eta_c, phi_c = pixel_centers(64, 64)
    pt1, pt2 = 400 / np.cosh(eta_c[32]), 300 / np.cosh(eta_c[34])
    m = np.sqrt(2 * pt1 * pt2 * (np.cosh(eta_c[32] - eta_c[34]) - np.cos(phi_c[10] - phi_c[12])))
    jets = image_jets(img)
    assert jets.n.tolist() == [1]
    assert jets.mass[0, 0] == pytest.approx(m, rel=1e-9)
    o = event_observables(img)
    assert o["summed_mass"][0] == pytest.approx(m, rel=1e-9)
    assert o["sparsity"][0] == pytest.approx(1 - 2 / 4096)
    assert sorted(o["pixel_energy"].tolist()) == [300.0, 400.0]
    # far apart pixels: two jets; a 150 GeV pixel alone is below the 200 GeV cut
    img[0, 0, 34, 12] = 0.0
    img[0, 0, 32, 42] = 250.0
    img[0, 0, 10, 26] = 150.0
    jets = image_jets(img)
    assert jets.n.tolist() == [2] and jets.pt[0, 0] > jets.pt[0, 1] > 200
    assert np.isnan(event_observables(np.zeros((1, 1, 64, 64)))["leading_pt"][0])


def _sprays(rng, n_events):
    rows = []
    for ev in range(n_events):
        base = rng.uniform(-np.pi, np.pi)
        for s in range(rng.integers(2, 4)):  # sprays 120° apart in φ: no particle near another jet
            eta0, phi0, pt0 = rng.uniform(-1.5, 1.5), base + s * 2 * np.pi / 3, rng.uniform(300, 900)
            k = 30
            pt = pt0 * rng.dirichlet(np.ones(k))
            eta, phi = eta0 + rng.normal(0, 0.15, k), phi0 + rng.normal(0, 0.15, k)
            rows.append(np.stack([np.full(k, ev), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                                  pt * np.cosh(eta)], 1))
    return np.concatenate(rows)


def test_image_jets_agree_with_fastjet_on_the_particles():
    rng = np.random.default_rng(0)
    n_ev = 20
    p = _sprays(rng, n_ev)
    ev = p[:, 0].astype(int)
    img = Calorimeter(DetectorConfig(smear=False)).images(np.full(len(p), 211), p[:, 1], p[:, 2], p[:, 3], p[:, 4],
                                                         ev, n_ev, rng)
    jets = image_jets(img)
    jdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0)
    n_match = 0
    for k in range(n_ev):
        sel = p[ev == k]
        ref = sorted((j for j in jdef([fastjet.PseudoJet(*map(float, r[1:])) for r in sel]) if j.pt() > 200),
                     key=lambda j: -j.pt())
        assert jets.n[k] == len(ref)
        for j in ref:  # match by ΔR: two jets of almost equal pT may swap places
            dphi = (jets.phi[k, :jets.n[k]] - j.phi_std() + np.pi) % (2 * np.pi) - np.pi
            dr = np.hypot(jets.eta[k, :jets.n[k]] - j.eta(), dphi)
            a = int(np.argmin(dr))
            n_match += 1
            assert dr[a] < 0.05  # well inside one pixel (0.078 × 0.098)
            assert jets.pt[k, a] == pytest.approx(j.pt(), rel=0.02)
            assert jets.mass[k, a] == pytest.approx(j.m(), rel=0.1)
    assert n_match >= 40


def test_ks_selection_score():
    rng = np.random.default_rng(1)
    a = {"n_jets": rng.integers(0, 5, 300).astype(float), "jet_pt": rng.exponential(100, 500) + 200,
         "summed_mass": rng.normal(500, 100, 300)}
    b = {k: v + (0.0 if k == "n_jets" else 30.0) for k, v in a.items()}
    want = -np.log(stats.ks_2samp(a["jet_pt"], b["jet_pt"]).pvalue) \
        - np.log(stats.ks_2samp(a["summed_mass"], b["summed_mass"]).pvalue)
    assert ks_selection_score(a, b) == pytest.approx(want, rel=1e-12)
    assert ks_selection_score(a, a) == 0.0
    assert ks_selection_score(a, b) > 0
    empty = dict(a, jet_pt=np.array([]))
    assert ks_selection_score(a, empty) == pytest.approx(-np.log(1e-300) + 0.0 - np.log(
        stats.ks_2samp(a["summed_mass"], a["summed_mass"]).pvalue))


def test_bad_image_shape():
    with pytest.raises(ValueError, match=r"image_jets: expected images of shape \(N, C, H, W\) or \(N, H, W\), found \(4, 4\)"):
        image_jets(np.zeros((4, 4)))
