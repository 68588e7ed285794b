"""Classifier two-sample test (CaloChallenge protocol) on low- or high-level inputs.

A classifier learns to tell real (label 1) from generated (label 0) showers.  If it cannot
(test AUC ≈ 0.5) the generator is indistinguishable at the level of its inputs.

Protocol: balanced classes (the larger sample is subsampled), one seeded stratified split
into train / calibration / test parts (60 / 20 / 20 %); a gradient-boosted tree ensemble
(scikit-learn's ``HistGradientBoostingClassifier``, fast and strong on tabular inputs on a
CPU; it plays the role of the CaloChallenge DNN) is fitted on the train part with early
stopping, its probabilities are calibrated (isotonic) on the calibration part, and the ROC
AUC and the JSD estimate are computed on the test part only.

JSD estimate: for calibrated, balanced classes the optimal cross-entropy is
``ln 2 − JSD(p_real, p_gen)``, so ``JSD ≈ max(0, ln 2 − BCE_test) / ln 2`` ∈ [0, 1]
(CaloChallenge, arXiv:2410.21611, sec. 4.2).

AUC uncertainty: Hanley & McNeil (Radiology 143 (1982) 29).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

__all__ = ["classifier_two_sample_test", "low_level_inputs", "high_level_inputs", "hanley_mcneil_error"]


def low_level_inputs(showers: np.ndarray, incident_energies: np.ndarray) -> np.ndarray:
    """(N, n_voxels + 1): voxels divided by E_inc, and log10(E_inc / MeV)."""
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    return np.concatenate([np.asarray(showers, dtype=np.float64) / e, np.log10(e)], axis=1)


def high_level_inputs(features: dict[str, np.ndarray], incident_energies: np.ndarray) -> np.ndarray:
    """(N, n_features + 1): high-level features (layer energies as log10(E + 1e-8 MeV)) and log10(E_inc)."""
    cols = []
    for name in sorted(features):
        v = np.asarray(features[name], dtype=np.float64)
        cols.append(np.log10(v + 1e-8) if name.startswith("E_layer_") else v)
    cols.append(np.log10(np.asarray(incident_energies, dtype=np.float64).reshape(-1)))
    return np.stack(cols, axis=1)


def hanley_mcneil_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC estimate (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def classifier_two_sample_test(real: np.ndarray, generated: np.ndarray, seed: int = 0,
                               max_iter: int = 300) -> dict:
    """Train a classifier real vs generated; return test AUC, its error, the JSD and the ROC curve.

    Arguments:
        real: (N_r, D) inputs of real showers.
        generated: (N_g, D) inputs of generated showers.
        seed: seeds the subsampling, the split and the classifier.

    Returns:
        dict with ``auc``, ``auc_err``, ``jsd``, ``n_train``, ``n_test`` and ``roc``
        (``{"fpr": array, "tpr": array}``; not JSON — :func:`hepgen.evaluate.evaluate` strips it).
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"classifier inputs must be 2-d with equal widths, found {real.shape} and {generated.shape}")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(generated))
    if n < 50:
        raise ValueError(f"classifier test needs at least 50 showers per sample, found {n}")
    real = real[rng.choice(len(real), n, replace=False)]
    generated = generated[rng.choice(len(generated), n, replace=False)]
    x = np.concatenate([real, generated])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    x_cal, x_te, y_cal, y_te = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, early_stopping=True,
                                         validation_fraction=0.15, n_iter_no_change=15, random_state=seed)
    clf.fit(x_tr, y_tr)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6)
    iso.fit(clf.predict_proba(x_cal)[:, 1], y_cal)
    raw = clf.predict_proba(x_te)[:, 1]
    auc = float(roc_auc_score(y_te, raw))
    p = iso.predict(raw)
    jsd = max(0.0, np.log(2) - log_loss(y_te, p, labels=[0, 1])) / np.log(2)
    fpr, tpr, _ = roc_curve(y_te, raw)
    n_pos = int(y_te.sum())
    return {
        "auc": auc,
        "auc_err": hanley_mcneil_error(auc, n_pos, len(y_te) - n_pos),
        "jsd": float(jsd),
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "roc": {"fpr": fpr, "tpr": tpr},
    }
