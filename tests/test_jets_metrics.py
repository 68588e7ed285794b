"""Jet metrics (JetNet definitions): hand-worked cases, an independent library, identities."""

import json

import numpy as np
import pytest

from hepgen.data.jets import JetData, write_jets
from hepgen.domains.jets.evaluate import evaluate_jet_files, evaluate_jets
from hepgen.metrics.jets import (
    FPD_KPD_EFPS,
    W1EFP_EFPS,
    _efp_columns,
    efp_features,
    fpd_efp,
    jet_mass,
    jet_observables,
    kpd_efp,
    nsubjettiness,
    split_particles,
    w1_batches,
    w1efp,
    w1m,
    w1p,
)


def _cloud(n=400, p=20, seed=0):
    """Random zero-padded particle clouds (N, P, 4) with 2…P constituents, sorted by pT_rel."""
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, p, 4))
    k = rng.integers(2, p + 1, n)
    for i in range(n):
        pt = np.sort(rng.exponential(1.0, k[i]))[::-1]
        pf[i, :k[i], 0] = rng.normal(0, 0.15, k[i])
        pf[i, :k[i], 1] = rng.normal(0, 0.15, k[i])
        pf[i, :k[i], 2] = pt / pt.sum()
        pf[i, :k[i], 3] = 1
    return pf


def _two(d_eta=0.0, d_phi=0.0):
    """One jet: two massless particles with pT_rel = ½ at (±d_eta/2, ±d_phi/2)."""
    j = np.zeros((1, 3, 4))
    j[0, :2] = [[-d_eta / 2, -d_phi / 2, 0.5, 1], [d_eta / 2, d_phi / 2, 0.5, 1]]
    return j


def test_jet_mass_hand_worked():
    # m² = 2 p1 p2 (cosh Δη − cos Δφ): Δφ = d → sin(d/2); Δη = a → sinh(a/2)
    np.testing.assert_allclose(jet_mass(_two(d_phi=0.4)), [np.sin(0.2)], rtol=1e-12)
    np.testing.assert_allclose(jet_mass(_two(d_eta=0.6)), [np.sinh(0.3)], rtol=1e-12)
    np.testing.assert_allclose(jet_mass(_two()), [0.0], atol=1e-12)
    # the mask, not the values, decides: a padded slot with junk values is ignored
    j = _two(d_phi=0.4)
    j[0, 2, :3] = [0.3, 0.3, 0.7]
    np.testing.assert_allclose(jet_mass(j), [np.sin(0.2)], rtol=1e-12)
    # without a mask column, zero padding is the mask (jetnet's exclude_zeros)
    np.testing.assert_allclose(jet_mass(_two(d_phi=0.4)[..., :3]), [np.sin(0.2)], rtol=1e-12)


def test_jet_mass_against_vector():
    vector = pytest.importorskip("vector")
    pf = _cloud(n=50)
    parts, mask = split_particles(pf)
    for i in range(len(pf)):
        m = mask[i]
        v = vector.array({"pt": parts[i, m, 2], "eta": parts[i, m, 0], "phi": parts[i, m, 1],
                          "mass": np.zeros(m.sum())})
        total = v.sum()
        np.testing.assert_allclose(jet_mass(pf[i:i + 1])[0], total.mass, rtol=1e-9, atol=1e-12)


def test_nsubjettiness_hand_worked():
    r0 = 0.8
    # two equal particles ΔR = d apart: the axis is their midpoint, τ1 = 2 · ½ · d/2 / R0, τ2 = 0
    tau = nsubjettiness(_two(d_phi=0.4), r0=r0)
    np.testing.assert_allclose(tau, [[0.4 / 2 / r0, 0.0, 0.0]], atol=1e-12)
    # three unit particles at φ = −0.05, +0.05, 0.6 (η = 0): the 2 kT axes are (A+B) at φ = 0 and C,
    # τ2 = (0.05 + 0.05) / (3 R0); τ1 with the kT axis = direction of the sum
    j = np.zeros((1, 3, 4))
    j[0] = [[0, -0.05, 1, 1], [0, 0.05, 1, 1], [0, 0.6, 1, 1]]
    axis = np.arctan2(np.sin([-0.05, 0.05, 0.6]).sum(), np.cos([-0.05, 0.05, 0.6]).sum())
    tau1 = np.abs(np.array([-0.05, 0.05, 0.6]) - axis).sum() / (3 * r0)
    np.testing.assert_allclose(nsubjettiness(j, axes="KT_Axes", r0=r0), [[tau1, 0.1 / (3 * r0), 0.0]], atol=1e-12)
    # one-pass minimisation can only lower τ; an empty jet gives zeros
    assert nsubjettiness(j)[0, 0] <= tau1 + 1e-12
    np.testing.assert_array_equal(nsubjettiness(np.zeros((1, 3, 4))), [[0.0, 0.0, 0.0]])
    obs = jet_observables(np.concatenate([_two(d_phi=0.4), j]))
    np.testing.assert_allclose(obs["multiplicity"], [2, 3])
    assert np.isnan(obs["tau32"][0]) and obs["tau21"][0] == 0.0  # τ2 = 0 for two particles
    np.testing.assert_allclose(obs["pt_rel"][0], np.cos(0.2), rtol=1e-12)  # |Σ pT| of the pair


def test_w1_identities_and_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=3000)
    np.testing.assert_array_equal(w1_batches(a, a, 1000, 4, seed=2), np.zeros((4, 1)))
    np.testing.assert_allclose(w1_batches(a, a + 0.3, 1000, 4, seed=2), np.full((4, 1), 0.3), atol=1e-12)
    # independent samples: mean over batches ≈ the known W1 of N(0,1) vs N(0.5,1), which is 0.5
    b = rng.normal(0.5, 1.0, size=20_000)
    w = w1_batches(rng.normal(size=20_000), b, 20_000, 5, seed=0)
    assert abs(w.mean() - 0.5) < 0.03 and w.std() < 0.03
    with pytest.raises(ValueError, match="num_eval_samples"):
        w1_batches(a, a, 0, 5)


def test_w1m_w1p_w1efp():
    pf = _cloud()
    assert w1m(pf, pf, 2000, 3) == (0.0, 0.0)
    means, stds = w1p(pf, pf, 2000, 3)
    np.testing.assert_array_equal(means, 0.0)
    shifted = pf.copy()
    shifted[..., 0] += 0.2 * shifted[..., 3]  # η_rel + 0.2 on real particles only
    means, stds = w1p(pf, shifted, 2000, 3)
    np.testing.assert_allclose(means, [0.2, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(stds, 0.0, atol=1e-12)
    # W1m of a sample and a copy with every pT doubled: masses double, W1 = mean mass of the draws
    doubled = pf.copy()
    doubled[..., 2] *= 2
    value, err = w1m(pf, doubled, 5000, 5)
    assert value == pytest.approx(jet_mass(pf).mean(), rel=0.05) and err > 0
    e_means, _ = w1efp(pf[:100], pf[:100], 2000, 2)
    assert e_means.shape == (5,) and np.all(e_means == 0)


def test_efps_hand_worked_and_jetnet_sets():
    # the d = 1 EFP is Σ_ij z_i z_j θ_ij; two particles z = ½ at ΔR = d: 2 · ¼ · d = d/2
    np.testing.assert_allclose(efp_features(_two(d_phi=0.4), efpset_args=(("d==", 1),)), [[0.2]], rtol=1e-9)
    pf = _cloud(n=40)
    e36 = efp_features(pf)
    assert e36.shape == (40, 36)  # jetnet's FPD/KPD features: all EFPs with d ≤ 4
    cols = _efp_columns(W1EFP_EFPS)
    assert len(cols) == 5
    np.testing.assert_allclose(e36[:, cols], efp_features(pf, efpset_args=W1EFP_EFPS), rtol=1e-12)
    assert FPD_KPD_EFPS == (("d<=", 4),)


def test_fpd_kpd_on_efps():
    pytest.importorskip("hepgen.metrics.multivariate")
    a, b = _cloud(n=150, p=12, seed=1), _cloud(n=150, p=12, seed=2)
    far = b.copy()
    far[..., 0] *= 3 * far[..., 3] + (1 - far[..., 3])  # three times wider in η
    kw = dict(min_samples=50, max_samples=150, num_batches=5, num_points=4)
    same, _ = fpd_efp(a, b, **kw)
    diff, _ = fpd_efp(a, far, **kw)
    assert diff > 10 * max(same, 1e-3)
    ks, _ = kpd_efp(a, b, batch_size=150, num_batches=4)
    kd, _ = kpd_efp(a, far, batch_size=150, num_batches=4)
    assert kd > 10 * max(abs(ks), 1e-4)


def _data(pf, t=2):
    k = pf[..., 3].sum(axis=1)
    jf = np.stack([np.full(len(pf), 1000.0), np.zeros(len(pf)), 1000 * jet_mass(pf), k], axis=1)
    return JetData(pf.astype(np.float32), jf, np.full(len(pf), t))


def test_evaluate_jets_floor_and_shift():
    real, other = _data(_cloud(n=200, seed=3)), _data(_cloud(n=200, seed=4))
    kw = dict(num_eval_samples=500, num_batches=3, fpd_kpd=False)
    # the generated sample *is* the second reference: every metric equals its floor
    m = evaluate_jets(real, other, real_reference=other, **kw)["types"]["t"]
    for key in ("w1m", "w1p", "w1efp"):
        assert m[key]["value"] == m[key]["floor"] and m[key]["error"] == m[key]["floor_error"]
    assert m["floor_method"] == "reference" and m["n_generated"] == m["n_floor"] == 200
    # a shifted copy of the second reference: W1p(η) = floor + ... at least the shift minus the floor
    pf = other.particle_features.copy()
    pf[..., 0] += 0.3 * pf[..., 3]
    m2 = evaluate_jets(real, JetData(pf, other.jet_features, np.full(200, -1)), real_reference=other,
                       efps=False, **kw)["types"]["t"]
    eta = m2["w1p"]["per_feature"]["eta_rel"]
    assert eta["value"] > 0.3 - eta["floor"] and eta["value"] > 5 * eta["floor"]
    assert m2["w1m"]["value"] == pytest.approx(m["w1m"]["value"], rel=1e-5)  # mass: boost invariant along z
    # split floor: halves of the reference
    m3 = evaluate_jets(real, other, efps=False, **kw)["types"]["t"]
    assert m3["floor_method"] == "split" and m3["n_real"] == 100 and m3["n_floor"] == 100
    with pytest.raises(ValueError, match="no jet type in common"):
        evaluate_jets(real, _data(_cloud(n=20), t=0), **kw)


def test_evaluate_jets_undefined_observable():
    """Two-constituent jets: τ32 is undefined everywhere; its W1 is None, everything else is computed."""
    pf = np.zeros((40, 4, 4))
    rng = np.random.default_rng(0)
    pf[:, :2, 0] = rng.normal(0, 0.1, (40, 2))
    pf[:, :2, 2] = 0.5
    pf[:, :2, 3] = 1
    m = evaluate_jets(_data(pf), _data(pf[::-1].copy()), num_eval_samples=50, num_batches=2, efps=False)["types"]["t"]
    assert m["observables"]["tau32"]["w1"]["value"] is None and m["observables"]["tau32"]["mean"]["real"] is None
    assert m["observables"]["tau32"]["n_undefined"]["real"] == 20
    assert m["w1m"]["value"] >= 0 and m["observables"]["tau21"]["w1"]["value"] >= 0


def test_evaluate_jet_files_writes_report(tmp_path):
    write_jets(tmp_path / "real.h5", _data(_cloud(n=120, seed=5)))
    write_jets(tmp_path / "gen.h5", _data(_cloud(n=120, seed=6)))
    m = evaluate_jet_files(tmp_path / "real.h5", tmp_path / "gen.h5", tmp_path / "out", num_eval_samples=300,
                           num_batches=2, fpd_kwargs=dict(min_samples=20, max_samples=60, num_batches=3, num_points=3),
                           kpd_kwargs=dict(batch_size=30, num_batches=3))
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["schema"] == "hepgen.jet_metrics/1"
    t = stored["types"]["t"]
    for key in ("w1m", "w1p", "w1efp", "fpd", "kpd"):
        assert set(t[key]) >= {"value", "error", "floor", "floor_error"}
        assert t[key]["value"] == pytest.approx(m["types"]["t"][key]["value"])
    assert set(t["observables"]) >= {"mass_rel", "multiplicity", "tau21", "tau32", "jet_pt", "jet_mass"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "real-vs-real floor" in html and "W1m" in html and "FPD" in html
    assert (tmp_path / "out" / "figures" / "t_particles.png").stat().st_size > 5000
    assert (tmp_path / "out" / "figures" / "t_jets.png").stat().st_size > 5000
