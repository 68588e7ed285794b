"""D2 (energy-correlation ratio) and the deep-sets classifier AUC of the jet evaluation."""

import json
from itertools import combinations

import numpy as np
import pytest
import torch

from hepgen.cli import main
from hepgen.data.jets import JetData, write_jets
from hepgen.domains.jets.classifier import ParticleFlowNetwork, jet_classifier_auc
from hepgen.domains.jets.evaluate import evaluate_jets
from hepgen.metrics.jets import energy_correlation_d2, jet_observables


def _cloud(n=400, p=12, seed=0, spread=0.15):
    """Zero-padded clouds (N, P, 4) with 2…P constituents sorted by pT_rel (sum 1), mask last."""
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, p, 4))
    k = rng.integers(2, p + 1, n)
    for i in range(n):
        pt = np.sort(rng.exponential(1.0, k[i]))[::-1]
        pf[i, :k[i], 0] = rng.normal(0, spread, k[i])
        pf[i, :k[i], 1] = rng.normal(0, spread, k[i])
        pf[i, :k[i], 2] = pt / pt.sum()
        pf[i, :k[i], 3] = 1
    return pf


def _d2_brute(parts):
    """D2 by the defining sums over pairs and triples (independent of energyflow)."""
    z = parts[:, 2] / parts[:, 2].sum()
    def theta(i, j):
        return np.hypot(parts[i, 0] - parts[j, 0], parts[i, 1] - parts[j, 1])
    e2 = sum(z[i] * z[j] * theta(i, j) for i, j in combinations(range(len(z)), 2))
    e3 = sum(z[i] * z[j] * z[k] * theta(i, j) * theta(i, k) * theta(j, k)
             for i, j, k in combinations(range(len(z)), 3))
    return e3 / e2**3


def test_d2_hand_worked():
    # z = (1/2, 1/4, 1/4) at (0,0), (0.3,0), (0,0.4): θ12 = 0.3, θ13 = 0.4, θ23 = 0.5
    # e2 = 1/8·0.3 + 1/8·0.4 + 1/16·0.5 = 0.11875; e3 = 1/32 · 0.06 = 0.001875
    j = np.zeros((4, 4, 4))
    j[0, :3] = [[0, 0, 0.5, 1], [0.3, 0, 0.25, 1], [0, 0.4, 0.25, 1]]
    j[1, :3] = [[0, 0, 2.0, 1], [0.3, 0, 1.0, 1], [0, 0.4, 1.0, 1]]  # ×4 in pT: D2 is scale-free
    j[2, :2] = [[0, 0, 0.5, 1], [0.3, 0, 0.5, 1]]  # two particles: e3 = 0
    j[3, :1] = [[0.1, 0.1, 1.0, 1]]  # one particle: e2 = 0, undefined
    d2 = energy_correlation_d2(j)
    expected = 0.001875 / 0.11875**3
    np.testing.assert_allclose(d2[:3], [expected, expected, 0.0], rtol=1e-10, atol=1e-14)
    assert np.isnan(d2[3])
    # equilateral triangle, equal pT: D2 = 1 for any side
    tri = np.array([[[0.0, 0.0, 1.0], [0.5, 0.0, 1.0], [0.25, 0.5 * np.sqrt(0.75), 1.0]]])
    np.testing.assert_allclose(energy_correlation_d2(tri), [1.0], rtol=1e-12)


def test_d2_against_brute_force_and_invariances():
    pf = _cloud(n=30, seed=3)
    d2 = energy_correlation_d2(pf)
    for i in range(len(pf)):
        m = pf[i, :, 3] > 0
        assert d2[i] == pytest.approx(_d2_brute(pf[i, m, :3]), rel=1e-9)
    # permuting the constituents and junk values in padding slots change nothing
    perm = pf[:, ::-1].copy()
    perm[:, :, :3] = np.where(perm[:, :, 3:] > 0, perm[:, :, :3], 0.7)
    np.testing.assert_allclose(energy_correlation_d2(perm), d2, rtol=1e-12)
    obs = jet_observables(pf)
    np.testing.assert_array_equal(obs["d2"], d2)


def test_d2_against_fastjet_contrib():
    """FastJet contrib EnergyCorrelator (D2, β = 1, normalised) through the fastjet package."""
    ak = pytest.importorskip("awkward")
    fastjet = pytest.importorskip("fastjet")
    from hepgen._fastjet import quiet_fastjet

    quiet_fastjet()
    pf = _cloud(n=40, seed=8)
    parts = pf[..., :3]
    mask = pf[..., 3] > 0
    pt, eta, phi = parts[..., 2][mask], parts[..., 0][mask], parts[..., 1][mask]
    vec = ak.unflatten(ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta),
                               "E": pt * np.cosh(eta)}, with_name="Momentum4D"), mask.sum(axis=1))
    # kt with a huge radius: one exclusive jet holds every constituent
    seq = fastjet.ClusterSequence(vec, fastjet.JetDefinition(fastjet.kt_algorithm, 10.0))
    d2 = ak.to_numpy(seq.exclusive_jets_energy_correlator(njets=1, beta=1, npoint=2, func="d2")).ravel()
    np.testing.assert_allclose(energy_correlation_d2(pf), d2, rtol=1e-8)


def test_classifier_identical_and_shifted():
    pf = _cloud(n=600, seed=1)
    same = jet_classifier_auc(pf, pf, seed=0)
    assert same["auc"] == pytest.approx(0.5, abs=0.08)
    indep = jet_classifier_auc(pf, _cloud(n=600, seed=2), seed=0)
    assert indep["auc"] == pytest.approx(0.5, abs=0.1)
    assert 0.01 < indep["auc_error"] < 0.05 and indep["n_test"] == 360
    shifted = pf.copy()
    shifted[..., 2] *= 1.5  # every constituent pT × 1.5
    res = jet_classifier_auc(pf, shifted, seed=0)
    assert res["auc"] > 0.9
    # deterministic by seed, and the global torch random state is untouched
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = jet_classifier_auc(pf, shifted, seed=0)
    assert torch.rand(1) == before
    assert again == res
    with pytest.raises(ValueError, match="at least 50 jets per class"):
        jet_classifier_auc(pf[:20], shifted[:20])
    with pytest.raises(ValueError, match="same particles per jet"):
        jet_classifier_auc(pf, shifted[:, :5])


def test_particle_flow_network_invariant():
    torch.manual_seed(0)
    net = ParticleFlowNetwork(3, 6, width=8, latent=8)
    x = torch.randn(4, 6, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]] * 4, dtype=torch.bool)
    y = net(x, mask)
    x2 = x[:, [2, 0, 1, 3, 4, 5]].clone()
    x2[:, 3:] = 99.0  # padding values have no effect
    torch.testing.assert_close(net(x2, mask), y)


def _data(pf, t=2):
    return JetData(pf.astype(np.float32), None, np.full(len(pf), t))


def test_evaluate_reports_d2_and_classifier(tmp_path, capsys):
    real, floor = _data(_cloud(n=300, seed=5)), _data(_cloud(n=300, seed=6))
    gen_pf = _cloud(n=300, seed=7)
    gen_pf[..., 2] = gen_pf[..., 2] ** 2  # harder leading constituents: D2 and the classifier see it
    kw = dict(num_eval_samples=300, num_batches=2, efps=False)
    m = evaluate_jets(real, _data(gen_pf), real_reference=floor, **kw)["types"]["t"]
    auc = m["classifier_auc"]
    assert auc["value"] > 0.75 and abs(auc["floor"] - 0.5) < 0.12
    d2 = m["observables"]["d2"]
    assert d2["w1"]["value"] > 3 * d2["w1"]["floor"]
    assert "classifier_auc" not in evaluate_jets(real, _data(gen_pf), classifier=False, **kw)["types"]["t"]
    small = evaluate_jets(real.subset(slice(0, 60)), _data(gen_pf[:30]), **kw)["types"]["t"]["classifier_auc"]
    assert small["value"] is None and "fewer than 50" in small["skipped"]
    # command line: report rows and --no-classifier
    write_jets(tmp_path / "real.h5", real)
    write_jets(tmp_path / "gen.h5", _data(gen_pf))
    write_jets(tmp_path / "ref.h5", floor)
    args = ["evaluate-jets", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "--real-reference",
            str(tmp_path / "ref.h5"), "--no-efp", "--num-eval-samples", "300", "--num-batches", "2"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    head = json.loads(capsys.readouterr().out.split("\nmetrics:")[0])
    assert head["t"]["classifier_auc"]["value"] == pytest.approx(auc["value"])
    assert set(head["t"]) >= {"w1_tau21", "w1_tau32", "w1_d2"}
    html = (tmp_path / "a" / "report.html").read_text()
    assert "classifier AUC" in html and "D_2" in html
    assert main(args + ["-o", str(tmp_path / "b"), "--no-classifier"]) == 0
    stored = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "classifier_auc" not in stored["types"]["t"] and "d2" in stored["types"]["t"]["observables"]


def test_classifier_seeds_average_independent_trainings(tmp_path, capsys):
    real, floor = _data(_cloud(n=200, seed=5)), _data(_cloud(n=200, seed=6))
    gen_pf = _cloud(n=200, seed=7)
    gen_pf[..., 2] = gen_pf[..., 2] ** 1.5
    kw = dict(num_eval_samples=200, num_batches=2, efps=False, seed=3)
    auc = evaluate_jets(real, _data(gen_pf), real_reference=floor, classifier_kwargs={"seeds": 3, "epochs": 4},
                        **kw)["types"]["t"]["classifier_auc"]
    # the same three trainings, one by one (group 0 uses the seed itself), and their mean
    ones = [jet_classifier_auc(real.particle_features, gen_pf, seed=3 + k, epochs=4)["auc"] for k in range(3)]
    floors = [jet_classifier_auc(real.particle_features, floor.particle_features, seed=3 + k, epochs=4)["auc"]
              for k in range(3)]
    assert auc["seeds"] == 3 and auc["values"] == pytest.approx(ones) and auc["floor_values"] == pytest.approx(floors)
    assert auc["value"] == pytest.approx(np.mean(ones)) and auc["floor"] == pytest.approx(np.mean(floors))
    assert auc["error"] == pytest.approx(np.std(ones, ddof=1) / np.sqrt(3))
    assert len(set(ones)) == 3                                          # the seeds do differ
    with pytest.raises(ValueError, match="classifier seeds: expected at least 1, found 0"):
        evaluate_jets(real, _data(gen_pf), real_reference=floor, classifier_kwargs={"seeds": 0}, **kw)
    # command line: --classifier-seeds reaches metrics.json
    for name, d in (("real", real), ("gen", _data(gen_pf)), ("ref", floor)):
        write_jets(tmp_path / f"{name}.h5", d)
    assert main(["evaluate-jets", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "--real-reference",
                 str(tmp_path / "ref.h5"), "--no-efp", "--n-eval-samples", "200", "--n-batches", "2",
                 "--classifier-seeds", "2", "-o", str(tmp_path / "a")]) == 0
    stored = json.loads((tmp_path / "a" / "metrics.json").read_text())["types"]["t"]["classifier_auc"]
    assert stored["seeds"] == 2 and len(stored["values"]) == 2
    assert stored["value"] == pytest.approx(np.mean(stored["values"]))
