"""Anomaly scores and figures of merit against hand-worked cases."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hepgen.domains.anomaly.evaluate import (
    auc,
    bootstrap,
    efficiency_at_fpr,
    evaluate_scores,
    ood_fraction,
    roc,
    threshold_for_rate,
    write_report,
)
from hepgen.domains.anomaly.scores import combined_score, kl_score, latent_norm_score, mse_score


def test_mse_by_hand():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    rec = np.array([[1.0, 0.0, 4.0], [0.5, -0.5, 1.0]])
    # (0 + 4 + 1) / 3 and (0.25 + 0.25 + 1) / 3
    np.testing.assert_allclose(mse_score(x, rec), [5 / 3, 0.5], rtol=1e-12)
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(mse_score(x, rec, mask), [2.0, 0.0], rtol=1e-12)


def test_kl_and_latent_norm_by_hand():
    mu = np.array([[0.0, 0.0], [1.0, -2.0], [0.0, 0.0]])
    logvar = np.array([[0.0, 0.0], [0.0, 0.0], [math.log(4.0), 0.0]])
    # 0; ½(1 + 4); ½(4 − 1 − ln 4)
    np.testing.assert_allclose(kl_score(mu, logvar), [0.0, 2.5, 0.5 * (3 - math.log(4.0))], rtol=1e-12)
    np.testing.assert_allclose(latent_norm_score(mu), [0.0, 5.0, 0.0])


def test_kl_matches_torch_distributions():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(torch.zeros(5, 3, dtype=torch.float64), torch.ones(5, 3, dtype=torch.float64))
    ref = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    np.testing.assert_allclose(kl_score(mu, logvar), ref, rtol=1e-10)


def test_combined_and_bad_inputs():
    s = {"mse": np.array([2.0, 4.0]), "kl": np.array([1.0, 0.0])}
    # equal weights: ½(2/2 + 1/0.5), ½(4/2 + 0)
    np.testing.assert_allclose(combined_score(s, {"mse": 2.0, "kl": 0.5}), [1.5, 1.0])
    np.testing.assert_allclose(combined_score(s, {"mse": 2.0, "kl": 0.5}, {"mse": 3.0, "kl": 1.0}), [1.25, 1.5])
    with pytest.raises(ValueError, match=r"combined_score: key 'mu2': no such score; found \['kl', 'mse'\]"):
        combined_score(s, {"mu2": 1.0})
    with pytest.raises(ValueError, match=r"combined_score: reference of 'mse': expected > 0, found 0.0"):
        combined_score(s, {"mse": 0.0})
    with pytest.raises(ValueError, match=r"mse_score: x and recon must have the same shape, found \(2, 3\) and \(2, 2\)"):
        mse_score(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"mu: expected a \(N, D\) array, found shape \(3,\)"):
        latent_norm_score(np.zeros(3))


BKG = np.arange(1, 21) / 10.0          # 0.1 … 2.0, 20 events
SIG = np.array([0.55, 1.05, 1.95, 2.5, 3.0])


def test_efficiency_at_fpr_hand_worked_roc():
    # FPR 0.1: k = floor(0.1 · 20) = 2 background events may pass: threshold = 3rd largest = 1.8
    r = efficiency_at_fpr(BKG, SIG, 0.1)
    assert r["threshold"] == pytest.approx(1.8)
    assert (r["n_background_pass"], r["n_signal_pass"]) == (2, 3)      # 1.9, 2.0 | 1.95, 2.5, 3.0
    assert r["efficiency"] == pytest.approx(0.6) and r["fpr_achieved"] == pytest.approx(0.1) and r["resolved"]
    # FPR 0.5: k = 10, threshold = 11th largest = 1.0; signal above: 1.05, 1.95, 2.5, 3.0
    assert efficiency_at_fpr(BKG, SIG, 0.5)["efficiency"] == pytest.approx(0.8)
    # FPR 0.01 < 1/20: unresolved; no background passes; threshold = the maximum
    r = efficiency_at_fpr(BKG, SIG, 0.01)
    assert r["resolved"] is False and r["n_background_pass"] == 0 and r["threshold"] == 2.0
    assert r["efficiency"] == pytest.approx(0.4)
    # the same point read off sklearn's ROC curve
    fpr, tpr, _ = roc(BKG, SIG)
    assert tpr[np.searchsorted(fpr, 0.1, side="right") - 1] == pytest.approx(0.6)


def test_auc_hand_and_sklearn():
    # pairs won by each signal: 0.55 → 5, 1.05 → 10, 1.95 → 19, 2.5 → 20, 3.0 → 20: 74 / 100
    assert auc(BKG, SIG) == pytest.approx(0.74)
    y = np.r_[np.zeros(20), np.ones(5)]
    assert auc(BKG, SIG) == pytest.approx(roc_auc_score(y, np.r_[BKG, SIG]), abs=1e-12)
    assert auc([1.0, 2.0], [1.0]) == pytest.approx(0.25)   # a tie counts ½


def test_bootstrap_threshold_rate_and_ood():
    v1, e1 = bootstrap(auc, BKG, SIG, n=200, seed=3)
    v2, e2 = bootstrap(auc, BKG, SIG, n=200, seed=3)
    assert (v1, e1) == (v2, e2) and v1 == pytest.approx(0.74) and 0.02 < e1 < 0.3
    r = threshold_for_rate(np.arange(1000.0), 40e3)  # 40 kHz of 40 MHz = 1e-3: one event passes
    assert r["fpr"] == pytest.approx(1e-3) and r["threshold"] == 998.0 and r["rate_achieved_hz"] == pytest.approx(40e3)
    r = threshold_for_rate(np.arange(1000.0), 4e3, preselection_fraction=0.1)  # 4 kHz of 4 MHz
    assert r["fpr"] == pytest.approx(1e-3)
    o = ood_fraction(np.arange(100.0), np.array([1.0, 99.5, 200.0, 50.0]), quantile=0.9)
    assert o["threshold"] == pytest.approx(89.1) and o["fraction"] == 0.5 and o["ratio"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"rate_hz: expected 0 < rate < 4e\+07 Hz, found -1"):
        threshold_for_rate(BKG, -1)
    with pytest.raises(ValueError, match=r"fpr: expected a number in \(0, 1\), found 0"):
        efficiency_at_fpr(BKG, SIG, 0)
    with pytest.raises(ValueError, match="signal: expected finite scores, found 1 non-finite"):
        auc(BKG, [np.nan, 1.0])
    with pytest.raises(ValueError, match="background: expected at least one score, found none"):
        auc([], SIG)


def test_evaluate_scores_and_report(tmp_path):
    rng = np.random.default_rng(0)
    bkg = {"mse": rng.normal(size=2000)}
    sigs = {"far": {"mse": rng.normal(3, 1, 300)}, "same": {"mse": rng.normal(size=300)}}
    m = evaluate_scores(bkg, sigs, fprs=(1e-3, 1e-2), n_bootstrap=20, seed=1)
    far, same = m["scores"]["mse"]["signals"]["far"], m["scores"]["mse"]["signals"]["same"]
    assert far["auc"] > 0.95 and abs(same["auc"] - 0.5) < 0.06 and far["auc_err"] > 0
    assert far["eff@0.001"]["n_background_pass"] == 2 and far["eff@0.001"]["resolved"]
    assert m["n_background"] == 2000
    out = write_report(tmp_path / "rep", {**m, "bad": float("nan")}, bkg, sigs)
    text = (tmp_path / "rep" / "metrics.json").read_text()
    assert json.loads(text)["bad"] is None and "NaN" not in text and out["bad"] is None
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in page and "far" in page and "<table>" in page
    with pytest.raises(ValueError, match=r"signal 'x': key 'mse': missing score; found \['kl'\]"):
        evaluate_scores(bkg, {"x": {"kl": np.ones(3)}}, n_bootstrap=0)
