"""Regression of the conditions from showers: does a conditional model respect its labels?

A regressor is trained on *real* showers to predict each condition (log of the incident
energy, incident angles …) from high-level observables, then applied to held-out real
showers and to generated ones.  For a model that respects its labels, the residuals
``pred − true`` of the generated showers have the same bias and spread as those of the
real ones; a model that ignores or mixes up its conditions shows a bias or a wider spread.

References:
    E. Buhmann et al. (HGCAL/ILD), "Getting High: High Fidelity Simulation of High
    Granularity Calorimeters with High Speed", arXiv:2005.05334, and the regression
    checks of conditional generators in "Hadrons, better, faster, stronger",
    arXiv:2112.09709 (energy regressed from generated showers).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from hepgen.metrics.observables import feature_matrix

__all__ = ["condition_regression", "condition_targets", "regression_inputs"]


def regression_inputs(features: dict[str, np.ndarray]) -> np.ndarray:
    """(N, d) float64 regressor inputs: :func:`hepgen.metrics.observables.feature_matrix` without E_inc.

    Every feature in sorted key order except ``E_tot_over_E_inc`` (it contains the incident
    energy: the label must not leak into the inputs, or the test could not fail); energies
    as log10(E/MeV + 10⁻³), plus log10 of the total energy.
    """
    return feature_matrix(features, None)[0]


def condition_targets(incident_energies: np.ndarray, conditions: dict | None = None) -> dict[str, np.ndarray]:
    """Regression targets, each (N,): ``log_E_inc`` = ln(E_inc / MeV), then every condition column.

    A condition of width 1 keeps its name (``incident_theta``); wider ones get one target per
    column, ``{name}_{j}`` (``impact_position_0``, ``impact_position_1``).
    """
    e = np.asarray(incident_energies, dtype=np.float64).ravel()
    if np.any(~(e > 0)):
        raise ValueError("incident_energies must be positive (MeV)")
    out = {"log_E_inc": np.log(e)}
    for name, value in sorted((conditions or {}).items()):
        v = np.asarray(value, dtype=np.float64).reshape(e.size, -1)
        if v.shape[1] == 1:
            out[name] = v[:, 0]
        else:
            out.update({f"{name}_{j}": v[:, j] for j in range(v.shape[1])})
    return out


def _make_regressor(model: str, seed: int):
    if model == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, early_stopping=True,
                                             validation_fraction=0.15, n_iter_no_change=10,
                                             random_state=seed)
    if model == "mlp":
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64, 64), early_stopping=True,
                                                            max_iter=200, random_state=seed))
    raise ValueError(f"model must be 'hgb' or 'mlp', found {model!r}")


def condition_regression(x_real: np.ndarray, targets_real: dict[str, np.ndarray], x_gen: np.ndarray,
                         targets_gen: dict[str, np.ndarray], seed: int = 0, train_fraction: float = 0.5,
                         model: str = "hgb", max_train: int | None = 20_000,
                         n_threads: int | None = 1) -> dict[str, dict]:
    """Train on real showers to predict each condition; compare residuals of real and generated.

    The real sample is split at random (seeded) into a training part (``train_fraction``)
    and a held-out test part.  For each target a fresh regressor (default
    ``HistGradientBoostingRegressor`` with early stopping, ``model="mlp"``: a standardised
    2×64 ``MLPRegressor``) is fitted on the training part; residuals ``d = pred − true`` are
    then computed on the real test part and on all generated showers.

    Arguments:
        x_real: (N_real, d) inputs of the real showers (e.g. :func:`regression_inputs`).
        targets_real: name → (N_real,) true values (e.g. :func:`condition_targets`).
        x_gen: (N_gen, d) inputs of the generated showers.
        targets_gen: name → (N_gen,) the labels the generated showers were sampled with;
            targets missing here are skipped.
        seed: seeds the split and the regressors.
        train_fraction: fraction of the real sample used for training.
        model: ``"hgb"`` or ``"mlp"``.
        max_train: at most this many training showers (subsampled, seeded); None: all.
        n_threads: BLAS/OpenMP threads during the fits (None: library default); with one
            thread the numbers are reproducible across machines.

    Returns:
        name → ``{"bias_real", "bias_gen", "bias_real_err", "bias_gen_err", "res_real",
        "res_gen", "n_train", "n_real", "n_gen"}``: bias = mean(d) (error std/√n), res =
        std(d); in the target's units (``log_E_inc``: a bias b means the showers look like
        E·exp(b), so ln 2 ≈ 0.693 for showers of twice their label's energy).
    """
    x_real, x_gen = np.asarray(x_real, dtype=np.float64), np.asarray(x_gen, dtype=np.float64)
    if x_real.ndim != 2 or x_gen.ndim != 2 or x_real.shape[1] != x_gen.shape[1]:
        raise ValueError(f"condition_regression: x_real and x_gen must be (N, d) with the same d, "
                         f"found {x_real.shape} and {x_gen.shape}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), found {train_fraction}")
    for name, arr in (("x_real", x_real), ("x_gen", x_gen)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"condition_regression: {name} holds NaN or inf")
    n = x_real.shape[0]
    n_train = round(train_fraction * n)
    if n_train < 10 or n - n_train < 2 or x_gen.shape[0] < 2:
        raise ValueError(f"condition_regression: too few showers (real {n}, generated {x_gen.shape[0]}); "
                         "need at least 10 to train and 2 to test")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    train, test = perm[:n_train], perm[n_train:]
    if max_train is not None and train.size > int(max_train):
        train = train[: int(max_train)]
    out: dict[str, dict] = {}
    for name, values in targets_real.items():
        if name not in targets_gen:
            continue
        y_real = np.asarray(values, dtype=np.float64).ravel()
        y_gen = np.asarray(targets_gen[name], dtype=np.float64).ravel()
        if y_real.size != n or y_gen.size != x_gen.shape[0]:
            raise ValueError(f"condition_regression: target {name!r} has {y_real.size} / {y_gen.size} values "
                             f"for {n} / {x_gen.shape[0]} showers")
        reg = _make_regressor(model, seed)
        with threadpool_limits(limits=n_threads), warnings.catch_warnings():
            # an MLP stopped by max_iter is still a usable regressor; the residuals tell
            warnings.simplefilter("ignore", ConvergenceWarning)
            reg.fit(x_real[train], y_real[train])
            d_real = reg.predict(x_real[test]) - y_real[test]
            d_gen = reg.predict(x_gen) - y_gen
        out[name] = {
            "bias_real": float(d_real.mean()), "bias_gen": float(d_gen.mean()),
            "bias_real_err": float(d_real.std(ddof=1) / np.sqrt(d_real.size)),
            "bias_gen_err": float(d_gen.std(ddof=1) / np.sqrt(d_gen.size)),
            "res_real": float(d_real.std(ddof=1)), "res_gen": float(d_gen.std(ddof=1)),
            "n_train": int(train.size), "n_real": int(test.size), "n_gen": int(d_gen.size),
        }
    return out
