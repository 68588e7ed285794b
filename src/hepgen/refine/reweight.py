"""Classifier-based reweighting of simulation to data (DCTR, arXiv:1907.08209).

A classifier trained to tell simulation (label 0) from data (label 1) estimates
``p(x) = P(data | x)``; for balanced classes the likelihood ratio is
``p_data(x)/p_sim(x) = p/(1 − p)`` (the "likelihood-ratio trick"), corrected by
``N_sim/N_data`` for unbalanced samples.  Weighting each simulated event by it makes the
weighted simulation look like data *without changing any event* — the alternative to the
refiner of :mod:`hepgen.refine.refiner`, which changes events and keeps unit weights.

Weights are computed with ``n_folds``-fold cross-fitting (each simulated event gets its
weight from a classifier that did not see it), normalised to mean 1, clipped at
``cap`` (default 20, in units of the mean weight: a handful of events in regions data
populate and simulation barely does would otherwise dominate), and renormalised.  The
price of reweighting is statistical: the effective sample size
``ESS = (Σ w)² / Σ w²`` (Kish) says how many unweighted events the weighted sample is worth.

References:
    A. Andreassen, B. Nachman, "Neural Networks for Full Phase-space Reweighting and
    Parameter Tuning", arXiv:1907.08209 (DCTR); L. Kish, Survey Sampling (1965) (ESS).

Example:
    >>> effective_sample_size([1.0, 1.0, 1.0, 1.0])
    4.0
    >>> effective_sample_size([2.0, 0.0, 0.0, 0.0])
    1.0
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["DEFAULT_CAP", "dctr_weights", "effective_sample_size"]

#: largest weight kept, in units of the mean weight
DEFAULT_CAP = 20.0


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of non-negative weights (0 for all-zero)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights: expected a 1-d array of finite values >= 0, found shape {w.shape}")
    s2 = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def _classifier(model: str, seed: int, n: int, max_iter: int):
    if model == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(64, 64), alpha=1e-4, batch_size=min(256, max(16, n // 10)), max_iter=max_iter,
            # no early stopping: sklearn stops on validation *accuracy*, which plateaus long before
            # the probabilities (the likelihood ratio) are learned; stop on the training log-loss
            early_stopping=False, tol=1e-5, n_iter_no_change=10, random_state=seed))
    if model == "hgb":
        return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, early_stopping=True,
                                              validation_fraction=0.15, n_iter_no_change=10, random_state=seed)
    raise ValueError(f"model: expected 'mlp' or 'hgb', found {model!r}")


def dctr_weights(x_sim, x_data, seed: int = 0, n_folds: int = 5, cap: float = DEFAULT_CAP, model: str = "mlp",
                 n_threads: int | None = 1, max_iter: int = 200) -> dict:
    """Per-event weights that make ``x_sim`` look like ``x_data`` (DCTR).

    Arguments:
        x_sim: ``(N_s, D)`` simulation inputs (features, with labels appended if they should
            be reweighted too).
        x_data: ``(N_d, D)`` data inputs.
        seed: seeds the folds and the classifiers.
        n_folds: cross-fitting folds (>= 2).
        cap: largest weight after normalisation to mean 1 (> 1).
        model: ``"mlp"`` (sklearn MLPClassifier, 64-64) or ``"hgb"`` (gradient boosting).
        n_threads: BLAS/OpenMP threads during the fits.
        max_iter: epochs (mlp; stops earlier when the training log-loss stalls) or boosting rounds (hgb).

    Returns:
        dict with ``weights`` ``(N_s,)`` (mean 1), ``ess`` and ``ess_fraction`` (ESS / N_s),
        ``n_clipped`` (events at the cap) and ``cap``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = dctr_weights(rng.normal(size=(400, 1)), rng.normal(size=(400, 1)) + 0.5, model="hgb")
        >>> round(float(r["weights"].mean()), 6), bool(r["ess_fraction"] < 1)
        (1.0, True)
    """
    xs, xd = np.asarray(x_sim, np.float64), np.asarray(x_data, np.float64)
    if xs.ndim != 2 or xd.ndim != 2 or xs.shape[1] != xd.shape[1]:
        raise ValueError(f"dctr inputs: expected 2-d arrays of equal width, found {xs.shape} and {xd.shape}")
    if len(xs) < n_folds or len(xd) < n_folds:
        raise ValueError(f"dctr inputs: expected at least n_folds={n_folds} events per sample, found {len(xs)} and {len(xd)}")
    if not (np.isfinite(xs).all() and np.isfinite(xd).all()):
        raise ValueError("dctr inputs: expected finite values, found NaN/Inf")
    if int(n_folds) < 2:
        raise ValueError(f"n_folds: expected an integer >= 2, found {n_folds!r}")
    if not cap > 1:
        raise ValueError(f"cap: expected a number > 1 (units of the mean weight), found {cap!r}")
    x = np.concatenate([xs, xd])
    y = np.concatenate([np.zeros(len(xs)), np.ones(len(xd))])
    p = np.empty(len(xs))
    folds = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
    with threadpool_limits(limits=n_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, (tr, te) in enumerate(folds.split(x, y)):
            clf = _classifier(model, seed + k, len(tr), max_iter).fit(x[tr], y[tr])
            sim_te = te[te < len(xs)]
            p[sim_te] = clf.predict_proba(x[sim_te])[:, 1]
    p = np.clip(p, 1e-6, 1 - 1e-6)
    w = p / (1 - p) * (len(xs) / len(xd))
    w = w / w.mean()
    n_clipped = int(np.sum(w > cap))
    w = np.minimum(w, cap)
    w = w / w.mean()
    ess = effective_sample_size(w)
    return {"weights": w, "ess": ess, "ess_fraction": ess / len(xs), "n_clipped": n_clipped, "cap": float(cap)}
