"""hepgen.quantum: circuits against hand-computed cases, loaders, metrics against scipy, training."""

import json

import numpy as np
import pytest

pytest.importorskip("pennylane")

import torch
from scipy import stats

from hepgen.quantum import circuits, table
from hepgen.quantum.circuits import (
    NoiseModel,
    born_probabilities,
    discretised_normal,
    initial_distribution,
)
from hepgen.quantum.profiles import longitudinal_profile, sample_bins
from hepgen.quantum.qgan import kl_divergence, train_qgan


def test_probabilities_sum_to_one_batched():
    w = torch.tensor(np.random.default_rng(0).uniform(-np.pi, np.pi, (4, 3, 3)))
    p0 = initial_distribution("random", 3, seed=2)
    for init in ("uniform", "normal"):
        p = born_probabilities(w, p0, init=init).numpy()
        assert p.shape == (4, 8)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
        assert (p >= -1e-15).all()


def test_one_qubit_hand_computed():
    # H then RY(a): amplitudes RY(a)|+> = [cos(a/2) - sin(a/2), sin(a/2) + cos(a/2)]/sqrt2
    # -> p(1) = (1 + sin a)/2
    a = 0.7
    p = born_probabilities(torch.tensor([[a]], dtype=torch.float64), init="uniform").numpy()
    np.testing.assert_allclose(p, [(1 - np.sin(a)) / 2, (1 + np.sin(a)) / 2], atol=1e-12)


def test_two_qubit_hand_computed():
    # uniform init, RY(a), RY(b), CZ, RY(c), RY(d), depth 1. Hand computation:
    a, b, c, d = 0.3, -1.1, 0.8, 2.0

    def ry(t):
        return np.array([[np.cos(t / 2), -np.sin(t / 2)], [np.sin(t / 2), np.cos(t / 2)]])

    plus = np.array([1.0, 1.0]) / np.sqrt(2)
    psi = np.kron(ry(a) @ plus, ry(b) @ plus)  # wire 0 is the most significant bit
    psi = psi * np.array([1, 1, 1, -1])  # CZ
    psi = np.kron(ry(c), ry(d)) @ psi
    w = torch.tensor([[a, b], [c, d]], dtype=torch.float64)
    p = born_probabilities(w, init="uniform").numpy()
    np.testing.assert_allclose(p, psi ** 2, atol=1e-12)
    # zero angles keep a loaded state exactly (CZ only flips signs)
    p0 = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(born_probabilities(torch.zeros(3, 2, dtype=torch.float64), p0).numpy(), p0, atol=1e-12)


@pytest.mark.parametrize("init", ["normal", "uniform", "random"])
def test_loaders_give_intended_distribution(init):
    q = initial_distribution(init, 3, mu=2.0, sigma=1.3, seed=5)
    if init == "uniform":
        np.testing.assert_allclose(q, np.full(8, 0.125))
    elif init == "normal":
        k = np.arange(8)
        ref = stats.norm.pdf(k, 2.0, 1.3)
        np.testing.assert_allclose(q, ref / ref.sum(), rtol=1e-12)
    else:
        assert not np.allclose(q, initial_distribution("random", 3, seed=6))
    p = born_probabilities(torch.zeros(2, 3, dtype=torch.float64), q, init=init).numpy()
    np.testing.assert_allclose(p, q, atol=1e-12)


def test_loader_bad_input():
    with pytest.raises(ValueError, match=r"init must be one of \('normal', 'uniform', 'random'\), found 'gauss'"):
        initial_distribution("gauss", 3)
    with pytest.raises(ValueError, match=r"sigma must be > 0 \(bin units\), found 0"):
        discretised_normal(8, 1.0, 0)


def test_noise_reduces_contrast_and_sums_to_one():
    q = initial_distribution("normal", 3, mu=2.0, sigma=1.0)
    w = torch.zeros(2, 3, dtype=torch.float64)
    pn = born_probabilities(w, q, noise=NoiseModel(0.01, 0.05, 0.05)).numpy()
    np.testing.assert_allclose(pn.sum(), 1.0, atol=1e-12)
    assert pn.max() < q.max()  # noise flattens the distribution
    # readout only: a bit flip with probability r on each wire of a basis state
    pr = born_probabilities(torch.zeros(1, 1, dtype=torch.float64), np.array([1.0, 0.0]),
                            noise=NoiseModel(0.0, 0.0, 0.1)).numpy()
    np.testing.assert_allclose(pr, [0.9, 0.1], atol=1e-12)


def test_kl_and_ks_against_scipy():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
    np.testing.assert_allclose(kl_divergence(p, q), stats.entropy(p, q), rtol=1e-12)
    probs = np.stack([p, q])
    ev = table.evaluate_probs(probs, q, n_samples=1000, alpha=0.10, seed=4)
    for i in range(2):
        r = np.random.default_rng([4, i])
        gen, ref = sample_bins(probs[i], 1000, r), sample_bins(q, 1000, r)
        assert ev["ks"][i] == pytest.approx(stats.ks_2samp(gen, ref).statistic, abs=1e-12)
    assert ev["ks_critical"] == pytest.approx(1.2238734 * np.sqrt(2 / 1000), rel=1e-6)
    assert table.ks_critical_value(0.05, 1000, 1000) == pytest.approx(0.0607, abs=5e-5)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), found 1.5"):
        table.ks_critical_value(1.5, 10, 10)


def test_longitudinal_profile_grouping():
    s = np.array([[1.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    sl = [slice(i, i + 1) for i in range(4)]
    np.testing.assert_allclose(longitudinal_profile(s, sl), [0.625, 0.125, 0.25, 0.0])
    np.testing.assert_allclose(longitudinal_profile(s, sl, n_bins=2), [0.75, 0.25])
    with pytest.raises(ValueError, match=r"n_bins must be in \[1, 4\] \(the number of layers\), found 5"):
        longitudinal_profile(s, sl, n_bins=5)


def test_depth1_training_converges_on_trivial_target():
    # trivial target: a product distribution reachable with depth 1 from the uniform state
    # (RY(a)RY(b)RY(c)|+++>) with the talk's discriminator; tolerance: KL < 0.01 from a start
    # at KL = 0.13 (seeds 0-3 reached 5e-4, 2.3e-3, 5e-4, 1e-4 when this test was written)
    target = np.kron(np.kron([0.8, 0.2], [0.3, 0.7]), [0.5, 0.5])
    res = train_qgan(target, init="uniform", depth=1, seeds=[0, 1], steps=300, lr_g=0.01)
    start = kl_divergence(np.full(8, 0.125), target)
    assert start > 0.1
    kl = kl_divergence(res.probs, target)
    assert (kl < 0.01).all(), kl
    assert res.history["kl"].shape == (2, 300)


def test_training_bad_input():
    with pytest.raises(ValueError, match=r"the quantum generator needs 2\*\*n bins, found 6"):
        train_qgan(np.full(6, 1 / 6), steps=1)
    with pytest.raises(ValueError, match=r"generator must be one of \('quantum', 'softmax', 'exponential'\), found 'mlp'"):
        train_qgan(np.full(8, 1 / 8), generator="mlp", steps=1)
    with pytest.raises(ValueError, match=r"noise applies to the quantum generator only, found generator='softmax'"):
        train_qgan(np.full(8, 1 / 8), generator="softmax", steps=1, noise=NoiseModel(0.0, 0.0, 0.1))


def test_missing_extra_clear_error(monkeypatch):
    monkeypatch.setattr(circuits, "HAVE_PENNYLANE", False)
    msg = r"hepgen.quantum needs the optional extra: pip install 'hepgen\[quantum\]'"
    with pytest.raises(ImportError, match=msg):
        born_probabilities(torch.zeros(2, 3), init="uniform")
    with pytest.raises(ImportError, match=msg):
        train_qgan(np.full(8, 1 / 8), steps=1)
    with pytest.raises(ImportError, match=msg):
        table.run_table("unused", seeds=1)
    # the classical baselines do not need the extra
    assert train_qgan(np.full(8, 1 / 8), generator="softmax", steps=2, n_train=50).probs.shape == (1, 8)


def test_run_table_and_merge_smoke(tmp_path):
    target = np.array([0.1, 0.3, 0.28, 0.17, 0.09, 0.04, 0.015, 0.005])
    target = target / target.sum()
    res = table.run_table(tmp_path / "a", rows=[("normal", 1)], seeds=2, steps=3, baselines=[1],
                          noise=NoiseModel(1e-3, 1e-2, 0.02), target=target)
    row = res["rows"]["normal-1"]
    assert len(row["kl"]) == 2 and "noisy" in row and row["lr_g"] == 0.002
    assert set(res["baselines"]) == {"exponential-6", "softmax-8"}
    assert res["baselines"]["exponential-6"]["n_parameters"] == 6
    text = (tmp_path / "a" / "table.md").read_text(encoding="utf-8")
    assert "KS critical value 0.0547" in text and "| normal | 1 | 0.002 | 0.031 ± 0.042 |" in text
    for name in ("profiles.png", "training_curves.png", "results.json"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    res_b = table.run_table(tmp_path / "b", rows=[("random", 2)], seeds=2, steps=3, baselines=[], noise=None,
                            target=target)
    merged = table.merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert list(merged["rows"]) == ["normal-1", "random-2"]
    assert merged["rows"]["random-2"]["kl"] == res_b["rows"]["random-2"]["kl"]
    other = dict(res_b, steps=5)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "results.json").write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ValueError, match=r"merge: .*results.json has steps=5, the first run has 3"):
        table.merge_results([tmp_path / "a", tmp_path / "d"], tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"merge: .*c_missing.results.json not found"):
        table.merge_results([tmp_path / "c_missing"], tmp_path / "m")
    with pytest.raises(ValueError, match=r"row must be one of .*, found \('normal', 4\)"):
        table.run_table(tmp_path / "x", rows=[("normal", 4)], seeds=1, target=target)
