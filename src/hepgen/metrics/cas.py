"""Classification accuracy score (CAS): does a classifier trained on generated data work on real data?

A classifier that separates class A from class B (e.g. photon vs pion showers, or two
incident-energy ranges) is trained on *generated* A against real B and tested on real A
against real B.  If the generated A carries the features that distinguish real A from B,
its test accuracy matches a baseline trained on real A; if the generator misses or distorts
them, the accuracy drops (possibly below ½).

Protocol (:func:`classification_accuracy_score`):

1. ``real_a_test`` is split (seeded) into a part that trains the baseline and an evaluation
   part; ``real_b_test`` is used for evaluation only;
2. both classifiers see the same real-B training rows; the A training rows are generated
   (CAS) or real (baseline); classes are balanced by seeded subsampling to equal sizes;
3. both are evaluated on the same balanced test set (evaluation part of real A vs real B),
   accuracy at a 0.5 probability cut, binomial standard error ``sqrt(acc (1 − acc) / n_test)``.

References:
    S. Ravuri and O. Vinyals, "Classification Accuracy Score for Conditional Generative
    Models", NeurIPS 2019, arXiv:1905.10887.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["classification_accuracy_score"]

MIN_PER_CLASS = 20


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, d), found shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf in {int((~np.isfinite(x)).any(axis=1).sum())} rows")
    return x


def _model(model: str, seed: int):
    if model == "hgb":
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, early_stopping=False,
                                              random_state=seed)
    if model == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    raise ValueError(f"classification_accuracy_score: model must be 'hgb' or 'logistic', found {model!r}")


def _take(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    return x[np.sort(rng.choice(len(x), n, replace=False))]


def classification_accuracy_score(gen_a: np.ndarray, real_b: np.ndarray, real_a_test: np.ndarray,
                                  real_b_test: np.ndarray, seed: int = 0, baseline_fraction: float = 0.5,
                                  model: str = "hgb", n_threads: int | None = 1) -> dict:
    """Accuracy on real data of a classifier trained on generated A vs real B, and its real-trained baseline.

    Arguments:
        gen_a: (N_ga, d) generated samples of class A (training only).
        real_b: (N_b, d) real samples of class B (training, shared by both classifiers).
        real_a_test: (N_at, d) real samples of class A: a ``baseline_fraction`` share trains the
            baseline, the rest is test data.
        real_b_test: (N_bt, d) real samples of class B, test only (independent of ``real_b``).
        seed: seeds the split, the subsampling and the classifiers.
        baseline_fraction: share of ``real_a_test`` used to train the baseline.
        model: ``"hgb"`` (``HistGradientBoostingClassifier``, 100 rounds) or ``"logistic"``
            (standardised logistic regression).
        n_threads: BLAS/OpenMP threads during the fits (None: library default).

    Returns:
        dict with ``cas`` (test accuracy of the generated-trained classifier), ``cas_err``,
        ``baseline`` (test accuracy of the real-trained classifier), ``baseline_err``,
        ``ratio`` = cas / baseline, ``n_train`` and ``n_test`` (rows per class).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(1, 1, (2000, 2)), rng.normal(-1, 1, (2000, 2))
        >>> res = classification_accuracy_score(a[:1000], b[:1000], a[1000:], b[1000:], model="logistic")
        >>> abs(res["cas"] - res["baseline"]) < 0.05
        True
    """
    gen_a, real_b = _rows(gen_a, "gen_a"), _rows(real_b, "real_b")
    real_a_test, real_b_test = _rows(real_a_test, "real_a_test"), _rows(real_b_test, "real_b_test")
    widths = {n: x.shape[1] for n, x in (("gen_a", gen_a), ("real_b", real_b), ("real_a_test", real_a_test),
                                        ("real_b_test", real_b_test))}
    if len(set(widths.values())) != 1:
        raise ValueError(f"classification_accuracy_score: all inputs need the same number of features, found {widths}")
    if not 0 < baseline_fraction < 1:
        raise ValueError(f"baseline_fraction must be in (0, 1), found {baseline_fraction}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(real_a_test))
    n_base = round(baseline_fraction * len(real_a_test))
    a_base, a_eval = real_a_test[perm[:n_base]], real_a_test[perm[n_base:]]
    n_train = min(len(gen_a), len(a_base), len(real_b))
    n_test = min(len(a_eval), len(real_b_test))
    if n_train < MIN_PER_CLASS or n_test < MIN_PER_CLASS:
        raise ValueError(f"classification_accuracy_score needs at least {MIN_PER_CLASS} training and test rows "
                         f"per class, found {n_train} training (min of gen_a {len(gen_a)}, baseline part of "
                         f"real_a_test {len(a_base)}, real_b {len(real_b)}) and {n_test} test rows")
    b_train = _take(rng, real_b, n_train)
    ga_train = _take(rng, gen_a, n_train)
    ra_train = _take(rng, a_base, n_train)
    x_test = np.concatenate([_take(rng, a_eval, n_test), _take(rng, real_b_test, n_test)])
    y_train = np.concatenate([np.ones(n_train), np.zeros(n_train)])
    y_test = np.concatenate([np.ones(n_test), np.zeros(n_test)])
    acc = {}
    with threadpool_limits(limits=n_threads):
        for name, a_train in (("cas", ga_train), ("baseline", ra_train)):
            clf = _model(model, seed).fit(np.concatenate([a_train, b_train]), y_train)
            acc[name] = float(np.mean(clf.predict(x_test) == y_test))
    n_eval = 2 * n_test
    return {
        "cas": acc["cas"],
        "cas_err": float(np.sqrt(acc["cas"] * (1 - acc["cas"]) / n_eval)),
        "baseline": acc["baseline"],
        "baseline_err": float(np.sqrt(acc["baseline"] * (1 - acc["baseline"]) / n_eval)),
        "ratio": acc["cas"] / acc["baseline"] if acc["baseline"] > 0 else float("nan"),
        "n_train": n_train,
        "n_test": n_test,
    }
