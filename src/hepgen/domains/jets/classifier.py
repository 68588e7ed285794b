"""Jet-level classifier two-sample test: a deep-sets (particle-flow network) real vs generated.

A permutation-invariant classifier learns to tell reference jets (label 1) from generated
jets (label 0) from their constituents alone; its ROC AUC on held-out jets is 0.5 when it
cannot (the generated jets are indistinguishable at the level a simple tagger sees) and 1
when it always can.  The same test between two independent reference samples is the
*floor* (:mod:`hepgen.domains.jets.evaluate` reports both): with finite samples and a
finite training, even identical distributions give an AUC a little above or below 0.5.

Protocol (:func:`jet_classifier_auc`):

1. balanced classes: the larger sample is subsampled (seeded) to the size of the smaller;
2. one seeded, stratified split into train / validation / test (default 50 / 20 / 30 %);
3. inputs per particle: ``η_rel``, ``φ_rel``, ``log pT_rel`` standardised over the real
   particles of the training part, and the mask; padding is zeroed and excluded from pooling;
4. network: the particle-flow network of Komiske, Metodiev and Thaler (deep sets,
   Zaheer et al.): ``F(Σ_i Φ(p_i))`` with Φ a per-particle MLP (3 → width → width → latent,
   ReLU) and F an MLP on the pooled sum (latent → width → width → 1); the sum is divided by
   ``P`` to keep it of order one (the multiplicity stays visible to F);
5. training: Adam, binary cross-entropy, mini-batches, at most ``epochs`` epochs, the
   epoch with the lowest validation loss kept (early stopping after ``patience`` epochs
   without improvement);
6. test part only: ROC AUC (``sklearn.metrics.roc_auc_score``) and its Hanley–McNeil
   standard error.

Deterministic: a fixed ``seed`` gives the same AUC bit for bit on the same machine and
thread count (the split, the subsampling, the initialisation and the batches are seeded;
the global torch random state is left untouched).  Written in torch rather than taken from
``energyflow.archs.PFN`` because that needs TensorFlow/Keras, which hepgen does not depend on.

References:
    P. T. Komiske, E. M. Metodiev, J. Thaler, "Energy Flow Networks: Deep Sets for Particle
    Jets", JHEP 01 (2019) 121, arXiv:1810.05165;
    M. Zaheer et al., "Deep Sets", arXiv:1703.06114;
    J. A. Hanley and B. J. McNeil, Radiology 143 (1982) 29 (AUC standard error).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

from hepgen.metrics.classifier import hanley_mcneil_error
from hepgen.metrics.jets import split_particles

__all__ = ["MIN_JETS_PER_CLASS", "ParticleFlowNetwork", "jet_classifier_auc"]

MIN_JETS_PER_CLASS = 50
_PT_FLOOR = 1e-8


class ParticleFlowNetwork(nn.Module):
    """Deep-sets classifier ``F(Σ_i Φ(p_i) / P)`` on ``(B, P, F)`` particles with a ``(B, P)`` mask.

    Arguments:
        n_features: features per particle.
        n_particles: slots ``P`` (scales the pooled sum).
        width: hidden width of Φ and F.
        latent: width of the per-particle latent space (the pooled vector).

    ``forward(x, mask)`` returns ``(B,)`` logits; permuting the particles of a jet, or
    changing values in its padding slots, leaves its logit unchanged.
    """

    def __init__(self, n_features: int, n_particles: int, width: int = 64, latent: int = 64) -> None:
        super().__init__()
        self.scale = 1.0 / float(n_particles)
        self.phi = nn.Sequential(nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, latent), nn.ReLU())
        self.f = nn.Sequential(nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                               nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        pooled = (self.phi(x * m) * m).sum(dim=1) * self.scale
        return self.f(pooled)[:, 0]


def _inputs(particles: np.ndarray, mask: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    f = particles.copy()
    f[..., 2] = np.log(np.maximum(f[..., 2], _PT_FLOOR))
    f = (f - mean) / std
    f[~mask] = 0.0
    return f.astype(np.float32)


@contextlib.contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _bce_eval(net, x, m, y, batch: int) -> tuple[float, np.ndarray]:
    net.eval()
    logits = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            logits.append(net(x[s:s + batch], m[s:s + batch]))
    z = torch.cat(logits) if logits else torch.zeros(0)
    loss = float(nn.functional.binary_cross_entropy_with_logits(z, y)) if len(z) else float("nan")
    return loss, z.numpy().astype(np.float64)


def jet_classifier_auc(real: np.ndarray, generated: np.ndarray, seed: int = 0, fractions=(0.5, 0.2, 0.3),
                       epochs: int = 50, patience: int = 5, batch_size: int = 256, lr: float = 1e-3,
                       width: int = 64, latent: int = 64, max_jets: int | None = 20_000,
                       n_threads: int = 1, on_epoch=None) -> dict:
    """Train a particle-flow network to separate ``real`` from ``generated`` jets; AUC on held-out jets.

    Arguments:
        real, generated: jets ``(N, P, 3 or 4)`` ``[eta_rel, phi_rel, pt_rel(, mask)]``, the
            same ``P`` (:func:`hepgen.metrics.jets.split_particles`).
        seed: seeds the subsampling, the split, the initialisation and the batches.
        fractions: train / validation / test fractions (sum 1).
        epochs: at most this many passes over the training part.
        patience: stop after this many epochs without a lower validation loss.
        batch_size, lr: Adam mini-batches and learning rate.
        width, latent: network sizes (:class:`ParticleFlowNetwork`).
        max_jets: at most this many jets per class (seeded subsample; None = all).
        n_threads: torch threads during the fit (restored afterwards).
        on_epoch: called as ``on_epoch(epoch, epochs)`` (1-based) before every epoch (progress).

    Returns:
        ``{"auc", "auc_error", "n_train", "n_test", "epochs", "best_epoch"}``; ``auc_error``
        is the Hanley–McNeil standard error.

    Raises:
        ValueError: different ``P``, or fewer than :data:`MIN_JETS_PER_CLASS` jets in a class.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> jets = np.concatenate([rng.normal(0, 0.1, (400, 8, 2)), rng.uniform(0.01, 0.2, (400, 8, 1))], axis=2)
        >>> shifted = jets.copy(); shifted[..., 2] *= 3.0
        >>> jet_classifier_auc(jets, shifted, epochs=15)["auc"] > 0.9
        True
    """
    pr, mr = split_particles(real)
    pg, mg = split_particles(generated)
    if pr.shape[1] != pg.shape[1]:
        raise ValueError(f"jet classifier: expected the same particles per jet, found {pr.shape[1]} (real) and "
                         f"{pg.shape[1]} (generated)")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-9:
        raise ValueError(f"jet classifier: fractions: expected 3 positive numbers summing to 1, found {list(fractions)}")
    rng = np.random.default_rng(seed)
    n = min(len(pr), len(pg), max_jets or len(pr) + len(pg))
    if n < MIN_JETS_PER_CLASS:
        raise ValueError(f"jet classifier: expected at least {MIN_JETS_PER_CLASS} jets per class, found "
                         f"{len(pr)} real and {len(pg)} generated")
    ir = np.sort(rng.permutation(len(pr))[:n])
    ig = np.sort(rng.permutation(len(pg))[:n])
    parts = np.concatenate([pr[ir], pg[ig]])
    mask = np.concatenate([mr[ir], mg[ig]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    idx = np.arange(2 * n)
    rs = int(rng.integers(2**31))
    i_train, i_rest = train_test_split(idx, train_size=fr[0], stratify=y, random_state=rs)
    i_val, i_test = train_test_split(i_rest, train_size=fr[1] / (fr[1] + fr[2]), stratify=y[i_rest], random_state=rs)
    f_train = parts[i_train][mask[i_train]]
    f_train = np.column_stack([f_train[:, 0], f_train[:, 1], np.log(np.maximum(f_train[:, 2], _PT_FLOOR))])
    mean, std = f_train.mean(axis=0), f_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_all = torch.from_numpy(_inputs(parts, mask, mean, std))
    m_all = torch.from_numpy(mask)
    y_all = torch.from_numpy(y.astype(np.float32))
    xt, mt, yt = x_all[i_train], m_all[i_train], y_all[i_train]
    xv, mv, yv = x_all[i_val], m_all[i_val], y_all[i_val]

    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    with _torch_threads(n_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**62)))
        net = ParticleFlowNetwork(parts.shape[2], parts.shape[1], width=width, latent=latent)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        best, best_state, best_epoch, stale, done = float("inf"), None, 0, 0, 0
        for epoch in range(int(epochs)):
            if on_epoch is not None:
                on_epoch(epoch + 1, int(epochs))
            net.train()
            order = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(order), batch_size):
                b = order[s:s + batch_size]
                loss = nn.functional.binary_cross_entropy_with_logits(net(xt[b], mt[b]), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            done = epoch + 1
            val, _ = _bce_eval(net, xv, mv, yv, 4096)
            if val < best - 1e-6:
                best, best_epoch, stale = val, done, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        _, score = _bce_eval(net, x_all[i_test], m_all[i_test], y_all[i_test], 4096)
    y_test = y[i_test]
    auc = float(roc_auc_score(y_test, score))
    n_pos, n_neg = int(y_test.sum()), int(len(y_test) - y_test.sum())
    return {"auc": auc, "auc_error": float(hanley_mcneil_error(auc, n_pos, n_neg)), "n_train": int(len(i_train)),
            "n_test": int(len(i_test)), "epochs": int(done), "best_epoch": int(best_epoch)}
