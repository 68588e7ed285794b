"""Anomaly scores of a (variational) auto-encoder, per event, on numpy arrays.

All functions take the model outputs of :meth:`hepgen.models.anomaly.DenseVAE.anomaly_outputs`
(or the auto-encoder's) as numpy arrays and return ``(N,)`` float64 scores; larger means
more anomalous.

* :func:`mse_score` — mean squared reconstruction error ``(1/D) Σ_d (x_d − x′_d)²``, the
  classic auto-encoder score (and the one of the talk hepgen follows).
* :func:`kl_score` — ``KL(N(μ, diag σ²) || N(0, 1)) = ½ Σ_k (μ_k² + σ_k² − 1 − log σ_k²)``,
  the VAE latent score of Govorkova et al. (arXiv:2108.03986, "KL" score).
* :func:`latent_norm_score` — ``Σ_k μ_k²``, the squared norm of the latent mean that the CMS
  AXOL1TL Level-1 trigger uses (CMS-DP-2023-079): no exponential, cheap on an FPGA.
* :func:`combined_score` — a weighted mean of scores each divided by a reference value
  (e.g. its median on the training background), so that the terms are comparable.

Example (worked by hand):
    >>> x = np.array([[1.0, 2.0], [0.0, 0.0]]); rec = np.array([[0.0, 2.0], [0.0, 0.0]])
    >>> mse_score(x, rec).tolist()              # (1² + 0²) / 2, 0
    [0.5, 0.0]
    >>> kl_score(np.array([[1.0, 0.0]]), np.array([[0.0, np.log(2.0)]])).round(6).tolist()  # ½(1 + 2−1−ln2)
    [0.653426]
    >>> latent_norm_score(np.array([[3.0, 4.0]])).tolist()
    [25.0]
    >>> combined_score({"mse": np.array([1.0]), "kl": np.array([4.0])}, {"mse": 2.0, "kl": 2.0}).tolist()
    [1.25]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["SCORE_NAMES", "combined_score", "kl_score", "latent_norm_score", "mse_score"]

SCORE_NAMES = ("mse", "kl", "mu2", "combined")


def _as2d(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (N, D) array, found shape {a.shape}")
    return a


def mse_score(x, recon, mask=None) -> np.ndarray:
    """Per-event mean squared error ``(N,)`` between ``x`` and ``recon`` (both ``(N, D)``).

    ``mask`` (``(N, D)`` bool/0-1, optional) restricts the mean to the selected features
    (e.g. to leave zero-padded slots out); an event with no selected feature scores 0.
    """
    x, recon = _as2d("x", x), _as2d("recon", recon)
    if x.shape != recon.shape:
        raise ValueError(f"mse_score: x and recon must have the same shape, found {x.shape} and {recon.shape}")
    sq = (x - recon) ** 2
    if mask is None:
        return sq.mean(axis=1)
    m = np.asarray(mask, dtype=np.float64)
    if m.shape != x.shape:
        raise ValueError(f"mse_score: mask: expected shape {x.shape}, found {m.shape}")
    n = m.sum(axis=1)
    return np.divide((sq * m).sum(axis=1), n, out=np.zeros(len(x)), where=n > 0)


def kl_score(mu, logvar) -> np.ndarray:
    """``(N,)`` KL divergence of ``N(mu, diag exp(logvar))`` from ``N(0, 1)``, nats (closed form)."""
    mu, logvar = _as2d("mu", mu), _as2d("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"kl_score: mu and logvar must have the same shape, found {mu.shape} and {logvar.shape}")
    return 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(axis=1)


def latent_norm_score(mu) -> np.ndarray:
    """``(N,)`` squared Euclidean norm of the latent mean, ``Σ_k μ_k²`` (AXOL1TL)."""
    return (_as2d("mu", mu) ** 2).sum(axis=1)


def combined_score(scores: Mapping[str, np.ndarray], references: Mapping[str, float],
                   weights: Mapping[str, float] | None = None) -> np.ndarray:
    """``Σ_k w_k s_k / r_k / Σ_k w_k`` over the names in ``references`` (equal weights by default).

    Arguments:
        scores: name → ``(N,)`` score.
        references: name → positive reference value (e.g. the median background score).
        weights: name → weight (default 1 for each name in ``references``).
    """
    if not references:
        raise ValueError("combined_score: expected at least one reference score, found none")
    weights = dict(weights) if weights is not None else {k: 1.0 for k in references}
    total, wsum = 0.0, 0.0
    for name, ref in references.items():
        if name not in scores:
            raise ValueError(f"combined_score: key {name!r}: no such score; found {sorted(scores)}")
        if not float(ref) > 0:
            raise ValueError(f"combined_score: reference of {name!r}: expected > 0, found {ref!r}")
        w = float(weights.get(name, 0.0))
        total = total + w * np.asarray(scores[name], dtype=np.float64) / float(ref)
        wsum += w
    if wsum <= 0:
        raise ValueError(f"combined_score: weights: expected a positive sum, found {dict(weights)}")
    return total / wsum
