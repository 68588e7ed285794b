"""Measures for tabular samples: the critic-only Wasserstein estimate, a calibrated Fisher-z
correlation test, and the ttH-vs-ttbb benchmark classifier trained on one sample and tested on
another.

* :func:`critic_wasserstein`: the ttH study's "only train the critic" measure — a WGAN-GP critic
  trained alone to separate two fixed samples; by Kantorovich–Rubinstein duality
  W₁(P, Q) = sup_{‖f‖_L ≤ 1} E_P f − E_Q f, so its held-out value E_A D − E_B D estimates W₁
  from below (exact in 1-D for a perfectly trained critic).
* :func:`fisher_z_calibrated`: :func:`hepgen.metrics.correlation.fisher_z_test` plus a p-value
  calibrated by permutations (the 325 pairwise z-scores share variables and are not
  independent, so χ²_ndof is not the null distribution of their sum).
* :func:`benchmark_classifier`: train a signal-vs-background classifier on one labelled sample
  (e.g. generated), test it on real events: AUC and significance improvement ε_S/√ε_B at a
  fixed signal efficiency.

References:
    M. Arjovsky, S. Chintala, L. Bottou, arXiv:1701.07875; I. Gulrajani et al., arXiv:1704.00028;
    R. A. Fisher, Metron 1 (1921) 3; permutation tests: P. Good, "Permutation, Parametric and
    Bootstrap Tests of Hypotheses" (Springer 2005).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from hepgen.metrics.correlation import fisher_z_test

__all__ = ["benchmark_classifier", "finite_rows", "fisher_z_calibrated", "significance_improvement"]


def finite_rows(x: np.ndarray, name: str, fn: str, min_rows: int = 4) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{fn}: {name} must be (N >= {min_rows}, D), found shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{fn}: {name} contains NaN or inf")
    return x


def fisher_z_calibrated(a: np.ndarray, b: np.ndarray, n_permutations: int = 200, seed: int = 0) -> dict:
    """Fisher-z χ² of all pairwise correlations, with a permutation-calibrated p-value.

    The χ² is :func:`hepgen.metrics.correlation.fisher_z_test` (Σ_{i<j} z_ij²,
    z = (artanh r_A − artanh r_B)/√(1/(N_A−3) + 1/(N_B−3))).  Its null distribution is built by
    pooling the two samples and re-splitting them at random into sizes N_A, N_B
    ``n_permutations`` times; ``p_calibrated = (1 + #{χ²_perm ≥ χ²}) / (1 + n_permutations)``.

    Arguments:
        a: ``(N_A, k)``; b: ``(N_B, k)``; n_permutations: null samples; seed: their RNG.

    Returns:
        dict ``chi2``, ``ndof``, ``chi2_ndof``, ``p_value`` (χ²_ndof approximation),
        ``p_calibrated``, ``null_chi2_ndof_mean`` (mean χ²/ndof of the permutations), and the
        ``z`` (k, k), ``corr_a``, ``corr_b`` matrices of the test.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> cov = [[1, .5, 0], [.5, 1, .3], [0, .3, 1]]
        >>> r = fisher_z_calibrated(rng.multivariate_normal([0] * 3, cov, 800),
        ...                         rng.multivariate_normal([0] * 3, cov, 800), n_permutations=50)
        >>> r["ndof"], bool(r["p_calibrated"] > 0.01)
        (3, True)
    """
    a, b = finite_rows(a, "a", "fisher_z_calibrated"), finite_rows(b, "b", "fisher_z_calibrated")
    res = fisher_z_test(a, b)
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(int(n_permutations)):
        idx = rng.permutation(len(pooled))
        null.append(fisher_z_test(pooled[idx[:len(a)]], pooled[idx[len(a):]])["chi2"])
    null = np.asarray(null)
    ndof = int(res["ndof"])
    return {
        "chi2": float(res["chi2"]), "ndof": ndof, "chi2_ndof": float(res["chi2"]) / max(ndof, 1),
        "p_value": float(res["p_value"]),
        "p_calibrated": float((1 + np.sum(null >= res["chi2"])) / (1 + len(null))) if len(null) else None,
        "null_chi2_ndof_mean": float(null.mean() / max(ndof, 1)) if len(null) else None,
        "z": res["z"], "corr_a": res["corr_a"], "corr_b": res["corr_b"],
    }


def significance_improvement(y: np.ndarray, score: np.ndarray, signal_efficiency: float = 0.5) -> float:
    """ε_S / √ε_B at the threshold where the signal efficiency is ``signal_efficiency``.

    >>> round(significance_improvement(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.85, 0.1]), 0.5), 4)
    0.7071
    """
    y, score = np.asarray(y).astype(bool), np.asarray(score, np.float64)
    thr = np.quantile(score[y], 1.0 - signal_efficiency)
    eff_s = float(np.mean(score[y] >= thr))
    eff_b = float(np.mean(score[~y] >= thr))
    return float(eff_s / np.sqrt(max(eff_b, 1.0 / max(int((~y).sum()), 1))))


def benchmark_classifier(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                         model: str = "hgb", seed: int = 0, signal_efficiency: float = 0.5) -> dict:
    """Train a signal (y = 1) vs background (y = 0) classifier on one sample, test on another.

    Arguments:
        x_train, y_train: ``(N, D)`` inputs and 0/1 labels to train on (e.g. generated events).
        x_test, y_test: the test sample (real events).
        model: ``"hgb"`` (sklearn histogram gradient boosting) or ``"mlp"`` (sklearn MLP, inputs
            standardised on the training sample).
        seed: the classifier's random state.
        signal_efficiency: working point of the significance improvement.

    Returns:
        dict ``auc``, ``significance_improvement`` and ``roc`` = ``{"fpr", "tpr"}`` arrays.
    """
    x_train = finite_rows(x_train, "x_train", "benchmark_classifier")
    x_test = finite_rows(x_test, "x_test", "benchmark_classifier")
    y_train, y_test = np.asarray(y_train).astype(int), np.asarray(y_test).astype(int)
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if set(np.unique(y)) != {0, 1}:
            raise ValueError(f"benchmark_classifier: {name} must hold both labels 0 and 1, found {sorted(int(v) for v in set(y))}")
    if model == "hgb":
        clf = HistGradientBoostingClassifier(max_iter=200, early_stopping=True, random_state=seed)
        clf.fit(x_train, y_train)
        score = clf.predict_proba(x_test)[:, 1]
    elif model == "mlp":
        scaler = StandardScaler().fit(x_train)
        clf = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300, early_stopping=True, random_state=seed)
        clf.fit(scaler.transform(x_train), y_train)
        score = clf.predict_proba(scaler.transform(x_test))[:, 1]
    else:
        raise ValueError(f"benchmark_classifier: model must be 'hgb' or 'mlp', found {model!r}")
    fpr, tpr, _ = roc_curve(y_test, score)
    return {"auc": float(roc_auc_score(y_test, score)),
            "significance_improvement": float(significance_improvement(y_test, score, signal_efficiency)),
            "roc": {"fpr": fpr, "tpr": tpr}}
