"""Classifier two-sample test (CaloChallenge protocol) on low- or high-level inputs.

A classifier learns to tell real (label 1) from generated (label 0) showers.  If it cannot
(test AUC ≈ 0.5) the generator is indistinguishable at the level of its inputs.

Protocol (:func:`classifier_two_sample_test`):

1. balanced classes: the larger sample is subsampled (seeded) to the size of the smaller;
2. one seeded, stratified split into train / calibration / test parts
   (default 55 / 15 / 30 %);
3. a classifier is fitted on the train part with early stopping on an internal 15 %
   validation split: by default a multi-layer perceptron (two hidden layers of 128, ReLU,
   Adam) on standardised inputs, as the CaloChallenge DNN; ``model="hgb"`` picks
   scikit-learn's ``HistGradientBoostingClassifier`` instead;
4. its probabilities are calibrated with isotonic regression on the calibration part;
5. on the test part only: ROC AUC of the raw scores, its Hanley–McNeil standard error,
   and the JSD estimate from the calibrated probabilities p:

       JSD = max(0, ln 2 + mean_test[ y ln p + (1 − y) ln(1 − p) ]) / ln 2   ∈ [0, 1]

   i.e. (ln 2 − BCE) / ln 2: for balanced classes the cross-entropy of the optimal
   classifier is ln 2 − JSD(p_real, p_gen), so this estimates the Jensen–Shannon
   divergence in bits (CaloChallenge evaluation code).

Everything runs with BLAS/OpenMP limited to ``n_threads`` (default 1): the numbers are
then reproducible bit for bit, and the fit does not stall when other processes share the
CPU cores (OpenMP spinning made a 2-core fit 20× slower under load).

References:
    CaloChallenge 2022, Krause et al., arXiv:2410.21611, sec. 4.2;
    J. A. Hanley and B. J. McNeil, Radiology 143 (1982) 29 (AUC standard error).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = [
    "classifier_two_sample_test",
    "hanley_mcneil_error",
    "high_level_inputs",
    "jsd_from_probabilities",
    "low_level_inputs",
]

MIN_PER_CLASS = 50


def low_level_inputs(showers: np.ndarray, incident_energies: np.ndarray) -> np.ndarray:
    """(N, n_voxels + 1) CaloChallenge low-level inputs: voxels / E_inc, and log10(E_inc / MeV)."""
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    showers = np.asarray(showers, dtype=np.float64)
    if showers.ndim != 2 or len(e) != len(showers):
        raise ValueError(f"low_level_inputs: expected showers (N, n_voxels) and N incident energies, "
                         f"found {showers.shape} and {len(e)}")
    if np.any(~(e > 0)):
        raise ValueError("low_level_inputs: incident energies must be positive (MeV)")
    return np.concatenate([showers / e, np.log10(e)], axis=1)


def high_level_inputs(features: dict[str, np.ndarray], incident_energies: np.ndarray | None = None) -> np.ndarray:
    """(N, n_features [+ 1]) high-level inputs.

    Every feature of :func:`hepgen.metrics.observables.high_level_features`, in sorted key
    order, with layer energies as log10(E_layer / MeV + 1e-8); then log10(E_inc / MeV)
    when ``incident_energies`` is given.
    """
    cols = []
    for name in sorted(features):
        v = np.asarray(features[name], dtype=np.float64).reshape(-1)
        cols.append(np.log10(v + 1e-8) if name.startswith("E_layer_") else v)
    if incident_energies is not None:
        cols.append(np.log10(np.asarray(incident_energies, dtype=np.float64).reshape(-1)))
    return np.stack(cols, axis=1)


def hanley_mcneil_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC estimate with ``n_pos`` positives and ``n_neg`` negatives (Hanley & McNeil 1982).

    ``σ² = [A(1−A) + (n_pos−1)(Q1−A²) + (n_neg−1)(Q2−A²)] / (n_pos n_neg)``,
    ``Q1 = A/(2−A)``, ``Q2 = 2A²/(1+A)``.
    """
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def jsd_from_probabilities(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """JSD estimate in bits, ``max(0, ln 2 + mean[y ln p + (1−y) ln(1−p)]) / ln 2``, from calibrated p = P(real)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    loglik = np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    return float(max(0.0, np.log(2.0) + loglik) / np.log(2.0))


def _make_model(model: str, seed: int, max_iter: int | None, n_train: int):
    if model == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(128, 128), alpha=1e-4, batch_size=min(256, int(0.85 * n_train)), learning_rate_init=1e-3,
                          max_iter=max_iter or 60, early_stopping=True, validation_fraction=0.15,
                          n_iter_no_change=5, random_state=seed),
        )
    if model == "hgb":
        return HistGradientBoostingClassifier(max_iter=max_iter or 150, learning_rate=0.2, max_bins=63,
                                              early_stopping=True, validation_fraction=0.15,
                                              n_iter_no_change=10, random_state=seed)
    raise ValueError(f"classifier model must be 'mlp' or 'hgb', found {model!r}")


def classifier_two_sample_test(real: np.ndarray, generated: np.ndarray, seed: int = 0, test_fraction: float = 0.3,
                               calibration_fraction: float = 0.15, model: str = "mlp",
                               max_iter: int | None = None, n_threads: int | None = 1) -> dict:
    """Train a classifier real vs generated; return the test AUC, its error, the JSD and the ROC curve.

    Arguments:
        real: (N_r, D) inputs of real showers (label 1), e.g. :func:`low_level_inputs`.
        generated: (N_g, D) inputs of generated showers (label 0).
        seed: seeds the subsampling, the split and the classifier.
        test_fraction: share of the balanced sample held out for the test.
        calibration_fraction: share used to calibrate the probabilities (isotonic).
        model: ``"mlp"`` (default) or ``"hgb"`` (histogram gradient boosting).
        max_iter: epochs (mlp, default 60) or boosting rounds (hgb, default 150), before early stopping.
        n_threads: BLAS/OpenMP threads during the fit (None: library default).

    Returns:
        dict with ``auc``, ``auc_err`` (Hanley–McNeil), ``jsd`` (bits, see module docs),
        ``n_train``, ``n_test`` and ``roc`` = ``{"fpr": array, "tpr": array}`` (not JSON;
        :func:`hepgen.domains.showers.evaluate.evaluate` keeps it out of metrics.json).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> res = classifier_two_sample_test(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) + 3)
        >>> res["auc"] > 0.95
        True
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError("classifier inputs must be 2-d with equal widths, "
                         f"found {real.shape} and {generated.shape}")
    for name, arr in (("real", real), ("generated", generated)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"classifier inputs ({name}) contain NaN or inf in "
                             f"{int((~np.isfinite(arr)).any(axis=1).sum())} rows")
    if not (0 < test_fraction < 1 and 0 < calibration_fraction < 1 and test_fraction + calibration_fraction < 0.9):
        raise ValueError("need 0 < test_fraction, calibration_fraction and test + calibration < 0.9, found "
                         f"{test_fraction} and {calibration_fraction}")
    n = min(len(real), len(generated))
    if n < MIN_PER_CLASS:
        raise ValueError(f"classifier test needs at least {MIN_PER_CLASS} showers per sample, found {n}")
    rng = np.random.default_rng(seed)
    real = real[np.sort(rng.choice(len(real), n, replace=False))]
    generated = generated[np.sort(rng.choice(len(generated), n, replace=False))]
    x = np.concatenate([real, generated])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    x_rest, x_te, y_rest, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    cal_share = calibration_fraction / (1 - test_fraction)
    x_tr, x_cal, y_tr, y_cal = train_test_split(x_rest, y_rest, test_size=cal_share, stratify=y_rest,
                                                random_state=seed)
    clf = _make_model(model, seed, max_iter, len(y_tr))
    with threadpool_limits(limits=n_threads), warnings.catch_warnings():
        # hitting max_iter is expected and harmless here: the test AUC is what we report
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
        p_cal = clf.predict_proba(x_cal)[:, 1]
        raw = clf.predict_proba(x_te)[:, 1]
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_cal, y_cal)
    auc = float(roc_auc_score(y_te, raw))
    fpr, tpr, _ = roc_curve(y_te, raw)
    n_pos = int(y_te.sum())
    return {
        "auc": auc,
        "auc_err": hanley_mcneil_error(auc, n_pos, len(y_te) - n_pos),
        "jsd": jsd_from_probabilities(y_te, iso.predict(raw)),
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "roc": {"fpr": fpr, "tpr": tpr},
    }
