"""Tabular data: container and I/O, CDF Gaussianiser, measures, domain and an end-to-end tiny run."""

import json
import math

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from hepgen.config import TrainConfig
from hepgen.data.tabular import (
    TabularData,
    is_tabular_file,
    merge_tabular_files,
    read_tabular,
    write_tabular,
)
from hepgen.domains.base import Domain, TrainedGenerator, get_domain
from hepgen.domains.tabular import DOMAIN, CDFGaussianiser, TabularGenerator
from hepgen.domains.tabular.critic import critic_wasserstein
from hepgen.domains.tabular.evaluate import evaluate_tabular
from hepgen.metrics.correlation import fisher_z_test
from hepgen.metrics.tabular import benchmark_classifier, fisher_z_calibrated


def _toy(n=600, seed=0, shift=0.0):
    """Two processes with correlated, skewed columns (a stand-in for ttH / ttbb variables)."""
    rng = np.random.default_rng(seed)
    proc = rng.integers(0, 2, n)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.6, 0.2], [0.6, 1, -0.3], [0.2, -0.3, 1]], n)
    z[:, 0] += 0.8 * proc + shift
    values = np.column_stack([np.exp(0.5 * z[:, 0]) * 100, z[:, 1], np.tanh(z[:, 2])])
    return TabularData(values, ["m_bb", "eta", "cos"], ["GeV", "", ""], proc, ["tth", "ttbb"], {"seed": seed})


# --- container and I/O ------------------------------------------------------------------------
def test_roundtrip_subset_concatenate(tmp_path):
    d = _toy(50)
    path = tmp_path / "t.h5"
    write_tabular(path, d)
    assert is_tabular_file(path) and DOMAIN.accepts_file(path)
    back = read_tabular(path)
    np.testing.assert_array_equal(back.values, d.values)
    np.testing.assert_array_equal(back.process, d.process)
    assert (back.columns, back.units, back.process_names, back.attrs["seed"]) == (d.columns, d.units,
                                                                                 d.process_names, 0)
    only = read_tabular(path, columns=["cos", "eta"], processes=["ttbb"])
    assert only.columns == ["cos", "eta"] and len(only) == int((d.process == 1).sum())
    np.testing.assert_array_equal(only.values[:, 0], d.values[d.process == 1, 2])
    sub = d.subset(np.arange(5))
    assert isinstance(sub, TabularData) and len(sub) == 5
    other = TabularData(np.zeros((2, 3)), d.columns, d.units, [0, 0], ["ttbb"])
    both = TabularData.concatenate([sub, other])
    assert both.process_names == ["tth", "ttbb"] and both.process[-2:].tolist() == [1, 1]


def test_merge_files(tmp_path):
    a = TabularData(np.ones((2, 1)), ["x"], [""], [0, 0], ["tth", "ttbb"], {"cpu_seconds": 2.0})
    b = TabularData(np.zeros((3, 1)), ["x"], [""], [0, 0, 0], ["ttbb"], {"cpu_seconds": 1.5})
    write_tabular(tmp_path / "a.h5", a)
    write_tabular(tmp_path / "b.h5", b)
    m = merge_tabular_files([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "ab.h5")
    back = read_tabular(tmp_path / "ab.h5")
    assert back.process.tolist() == [0, 0, 1, 1, 1] and back.process_names == ["tth", "ttbb"]
    assert back.attrs["cpu_seconds"] == 3.5 and len(m) == 5


def test_non_tabular_file_is_not_accepted(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["values"] = np.zeros((2, 2))
    assert not is_tabular_file(path)
    with pytest.raises(ValueError, match=r"x.h5: attribute 'kind': expected 'tabular', found None$"):
        read_tabular(path)
    with pytest.raises(FileNotFoundError, match=r"nope.h5: file not found$"):
        read_tabular(tmp_path / "nope.h5")


def _write_raw(path, values, process, columns=("a", "b"), names=("tth", "ttbb")):
    with h5py.File(path, "w") as f:
        f["values"], f["process"] = values, process
        f.attrs.update(kind="tabular", columns=json.dumps(list(columns)), units=json.dumps(["", ""]),
                       process_names=json.dumps(list(names)))


def test_bad_input_messages(tmp_path):
    path = tmp_path / "bad.h5"
    _write_raw(path, np.array([[1.0, np.nan], [2, 3]]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^.*bad.h5: key 'values': expected finite values, found NaN/Inf in "
                                         r"column 'b' \(row 0\)$"):
        read_tabular(path)
    _write_raw(path, np.ones((2, 2)), np.array([0, 5]))
    with pytest.raises(ValueError, match=r"^.*bad.h5: key 'process': expected labels 0…1 \(\['tth', 'ttbb'\]\), "
                                         r"found unknown process 5$"):
        read_tabular(path)
    _write_raw(path, np.ones((2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^.*bad.h5: key 'columns': expected columns \['a', 'm_bb'\], missing "
                                         r"\['m_bb'\] \(found \['a', 'b'\]\)$"):
        read_tabular(path, columns=["a", "m_bb"])
    with pytest.raises(ValueError, match=r"^.*bad.h5: key 'process': expected processes among \['tth', 'ttbb'\], "
                                         r"found unknown \['tt'\]$"):
        read_tabular(path, processes=["tt"])
    with pytest.raises(ValueError, match=r"^<memory>: key 'columns': expected unique names, found duplicates \['a'\]$"):
        TabularData(np.ones((1, 2)), ["a", "a"], ["", ""], [0], ["tth"])


# --- CDF Gaussianiser -------------------------------------------------------------------------
def test_cdf_roundtrip_and_normality():
    d = _toy(4000, seed=1)
    g = CDFGaussianiser(n_quantiles=500).fit(d.values, d.columns)
    held = _toy(4000, seed=2).values
    z = g.transform(held)
    z_fit = g.transform(d.values)
    for k in range(3):
        # the fitted sample maps to N(0, 1) up to the 500-knot discreteness
        assert stats.kstest(z_fit[:, k], "norm").statistic < 0.005
        # held-out data of the same law too, up to the two samples' fluctuations
        # (two-sample KS critical value at 1 %: 1.63 √(2/4000) = 0.036)
        assert stats.kstest(z[:, k], "norm").statistic < 0.036
    # bijective: exact inverse, including far outside the fitted range (exponential tails)
    probe = np.concatenate([held, held * 5 - 3, [[1e-3, -50.0, -0.99999]]])
    np.testing.assert_allclose(g.inverse(g.transform(probe)), probe, rtol=1e-7, atol=1e-6)
    zz = np.linspace(-8, 8, 101)[:, None].repeat(3, 1)
    assert np.all(np.diff(g.inverse(zz), axis=0) > 0)  # strictly increasing
    state = json.loads(json.dumps(g.state_dict()))
    np.testing.assert_array_equal(CDFGaussianiser.from_state(state).transform(held), z)


def test_destroyed_correlation_baseline_keeps_marginals_and_kills_correlations():
    d = _toy(4000, seed=3)
    g = CDFGaussianiser().fit(d.values, d.columns)
    x = g.sample_independent(4000, seed=4)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.05 < abs(np.corrcoef(d.values[:, 0], d.values[:, 1])[0, 1])
    for k in range(3):
        assert stats.ks_2samp(x[:, k], d.values[:, k]).statistic < 0.04


# --- measures ---------------------------------------------------------------------------------
def test_fisher_z_against_hand_computation():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    b[:, 1] += 0.7 * b[:, 0]
    ra, rb = np.corrcoef(a.T)[0, 1], np.corrcoef(b.T)[0, 1]
    z = (math.atanh(ra) - math.atanh(rb)) / math.sqrt(1 / 37 + 1 / 27)
    r = fisher_z_calibrated(a, b, n_permutations=0)
    assert r["chi2"] == pytest.approx(z**2, rel=1e-10) and r["ndof"] == 1
    assert r["p_value"] == pytest.approx(stats.chi2.sf(z**2, 1), rel=1e-9)
    assert r["p_calibrated"] is None


def test_fisher_z_null_distribution_and_calibration():
    rng = np.random.default_rng(6)
    cov = [[1, 0.5], [0.5, 1]]
    # k = 2: one pair, z ~ N(0, 1) under equal correlations → χ² has mean 1
    chi2 = [fisher_z_test(rng.multivariate_normal([0, 0], cov, 200), rng.multivariate_normal([0, 0], cov, 200))["chi2"]
            for _ in range(400)]
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.15)
    # calibrated p-values: not small under the null, tiny for destroyed correlations
    cov5 = 0.4 * np.ones((5, 5)) + 0.6 * np.eye(5)
    x, y = rng.multivariate_normal(np.zeros(5), cov5, 500), rng.multivariate_normal(np.zeros(5), cov5, 500)
    assert fisher_z_calibrated(x, y, n_permutations=100, seed=1)["p_calibrated"] > 0.05
    bad = fisher_z_calibrated(x, rng.normal(size=(500, 5)), n_permutations=100, seed=1)
    assert bad["p_calibrated"] == pytest.approx(1 / 101) and bad["chi2_ndof"] > 20


def test_critic_wasserstein_matches_exact_1d_w1():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0.0, 1.0, (3000, 1)), rng.normal(1.5, 1.0, (3000, 1))
    exact = stats.wasserstein_distance(a[:, 0], b[:, 0])  # ≈ 1.5, the shift of equal-width Gaussians
    assert exact == pytest.approx(1.5, abs=0.1)
    est = critic_wasserstein(a, b, steps=300, hidden=32, seed=0)
    assert est["w"] == pytest.approx(exact, abs=0.2)
    same = critic_wasserstein(a, rng.normal(0.0, 1.0, (3000, 1)), steps=300, hidden=32, seed=0)
    assert abs(same["w"]) < 0.15


def test_benchmark_classifier_and_errors():
    d = _toy(1500, seed=8)
    y = (d.process == 0).astype(int)
    r = benchmark_classifier(d.values[:1000], y[:1000], d.values[1000:], y[1000:], model="hgb")
    assert 0.6 < r["auc"] < 0.9 and r["significance_improvement"] > 1.0
    with pytest.raises(ValueError, match=r"^benchmark_classifier: y_train must hold both labels 0 and 1, found \[0\]$"):
        benchmark_classifier(d.values[:10], np.zeros(10), d.values, y)


# --- domain -----------------------------------------------------------------------------------
def test_domain_contract_and_manual_training_steps(tmp_path):
    torch.manual_seed(0)
    data = _toy(400)
    cfg = TrainConfig(family="tabular_wgan", model={"hidden": 16, "n_hidden": 2, "latent_dim": 4}, seed=0)
    assert isinstance(DOMAIN, Domain) and get_domain("tabular") is DOMAIN
    DOMAIN.check(data, cfg)
    with pytest.raises(ValueError, match=r"^TrainConfig: key 'family': 'gan' generates showers, the data are "
                                         r"tabular; families for tabular: \['tabular_flow', 'tabular_wgan'\]$"):
        DOMAIN.check(data, TrainConfig(family="gan"))
    with pytest.raises(ValueError, match=r"^need at least 10 training events, found 3$"):
        DOMAIN.check(data.subset([0, 1, 2]), cfg)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    pre2 = DOMAIN.preprocessor_from_state(json.loads(json.dumps(pre.state_dict())))
    x, c = DOMAIN.features(pre2, data, np.random.default_rng(0)), DOMAIN.conditions(pre2, data)
    assert x.dtype == np.float32 and x.shape == (400, 3) and c.shape == (400, 2)
    np.testing.assert_array_equal(c.argmax(1), data.process)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.family == "tabular_wgan" and model.n_conditions == 2
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    xt, ct = torch.as_tensor(x), torch.as_tensor(c)
    outs = [model.training_step(xt[:64], ct[:64], opts, step, grad_clip=5.0) for step in range(5)]
    # n_critic = 5: the generator is updated on the 5th batch only
    assert ["generator_loss" in o for o in outs] == [False] * 4 + [True]
    assert math.isfinite(outs[-1]["generator_loss"])
    meta = DOMAIN.meta(data, cfg)
    json.dumps(meta)
    gen = DOMAIN.generator(model, pre, data, meta)
    assert isinstance(gen, TrainedGenerator)
    score = DOMAIN.selection_score(gen, data, seed=0)
    assert math.isfinite(score) and score > 0
    gen.meta.update(epoch=1, step=6)
    ckpt = tmp_path / "best.pt"
    gen.save(ckpt, trainer_state=None)
    from hepgen.checkpoint import load_checkpoint

    payload = load_checkpoint(ckpt)
    assert payload["kind"] == "tabular"
    back = DOMAIN.from_payload(payload, str(ckpt))
    np.testing.assert_allclose(back.sample_like(data, seed=3).values, gen.sample_like(data, seed=3).values)
    with pytest.raises(ValueError, match=r"^x.pt: key 'kind': expected 'tabular', found 'jets'$"):
        TabularGenerator.from_payload({**payload, "kind": "jets"}, "x.pt")


def test_flow_baseline_learns_and_evaluation_end_to_end(tmp_path):
    """Tiny end-to-end run: fit, train the spline flow a few hundred steps, sample, evaluate files."""
    torch.manual_seed(0)
    real = _toy(1200, seed=9)
    cfg = TrainConfig(family="tabular_flow", model={"transforms": 2, "hidden_features": 32}, seed=0)
    pre = DOMAIN.fit_preprocessor(real, cfg)
    model = DOMAIN.build_model(cfg, real, pre)
    x = torch.as_tensor(DOMAIN.features(pre, real, None))
    c = torch.as_tensor(DOMAIN.conditions(pre, real))
    opts = model.configure_optimizers(lr=3e-3, weight_decay=0.0)
    with torch.no_grad():
        before = float(model.validation_loss(x, c))
    g = torch.Generator().manual_seed(0)
    for step in range(150):
        idx = torch.randint(len(x), (128,), generator=g)
        model.training_step(x[idx], c[idx], opts, step, grad_clip=5.0)
    with torch.no_grad():
        assert float(model.validation_loss(x, c)) < before - 0.1
    gen = DOMAIN.generator(model, pre, real, DOMAIN.meta(real, cfg))
    fake = gen.sample_like(real, seed=1)
    real_path, gen_path = tmp_path / "real.h5", tmp_path / "gen.h5"
    write_tabular(real_path, real)
    write_tabular(gen_path, fake)
    m = DOMAIN.evaluate_files(real_path, gen_path, tmp_path / "eval", n_permutations=20, critic_steps=100,
                              classifiers=("hgb",))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["kind"] == "tabular" and set(saved["per_variable"]) == {"m_bb", "eta", "cos"}
    html = (tmp_path / "eval" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    fz = m["fisher_z"]
    # the flow keeps correlations far better than the destroyed baseline
    assert fz["generated"]["chi2_ndof"] < 0.5 * fz["destroyed"]["chi2_ndof"]
    b = m["benchmark"]["hgb"]
    assert abs(b["auc_generated_trained"] - b["auc_real_trained"]) < 0.1
    assert m["mean_separation"] < 0.1 and 0.4 < m["two_sample_auc"] < 0.8


def test_evaluate_refuses_other_columns():
    a, b = _toy(50), _toy(50).select_columns(["eta", "cos"])
    with pytest.raises(ValueError, match=r"^evaluate: key 'columns': expected the real columns"):
        evaluate_tabular(a, b)
