"""The critic-only Wasserstein estimate ("only train critic" of the RWTH ttH study).

It trains a small network, so it lives with the tabular kind rather than in
:mod:`hepgen.metrics` (pure numpy/scipy/sklearn functions).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hepgen.metrics.tabular import finite_rows

__all__ = ["critic_wasserstein"]


def critic_wasserstein(a: np.ndarray, b: np.ndarray, steps: int = 1500, hidden: int = 64, n_hidden: int = 3,
                       gp_weight: float = 10.0, lr: float = 1e-3, batch_size: int = 256,
                       test_fraction: float = 0.5, seed: int = 0) -> dict:
    """Wasserstein-1 estimate from a WGAN-GP critic trained alone on two fixed samples.

    Arguments:
        a: ``(N_A, D)`` e.g. real events (standardise the columns beforehand so that the
            distance does not depend on units); b: ``(N_B, D)`` e.g. generated events.
        steps: Adam steps of the critic; hidden, n_hidden: its ReLU MLP.
        gp_weight: λ of the two-sided gradient penalty (keeps the critic ≈ 1-Lipschitz).
        lr, batch_size: optimiser settings.
        test_fraction: share of each sample held out; the estimate is E D(a) − E D(b) there.
        seed: seeds the split, the initialisation and the batches (no global RNG).

    Returns:
        dict ``w`` (held-out estimate, ≥ 0 up to noise), ``w_train`` (on the training part),
        ``n_train``, ``n_test``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = critic_wasserstein(rng.normal(size=(1000, 1)), rng.normal(2.0, 1.0, size=(1000, 1)), steps=200)
        >>> bool(abs(r["w"] - 2.0) < 0.3)
        True
    """
    a, b = finite_rows(a, "a", "critic_wasserstein"), finite_rows(b, "b", "critic_wasserstein")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"critic_wasserstein: a and b must have the same width, found {a.shape[1]} and {b.shape[1]}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"critic_wasserstein: test_fraction must be in (0, 1), found {test_fraction}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(rng.integers(2**62).item())

    def split(x):
        idx = rng.permutation(len(x))
        k = max(1, round(len(x) * test_fraction))
        return torch.as_tensor(x[idx[k:]], dtype=torch.float32), torch.as_tensor(x[idx[:k]], dtype=torch.float32)

    a_tr, a_te = split(a)
    b_tr, b_te = split(b)
    d = a.shape[1]
    sizes = [d] + [hidden] * n_hidden + [1]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        bound = 1.0 / np.sqrt(sizes[i])  # default-like init, drawn from our generator
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    critic = nn.Sequential(*layers)
    opt = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(int(steps)):
        ia = torch.randint(len(a_tr), (batch_size,), generator=gen)
        ib = torch.randint(len(b_tr), (batch_size,), generator=gen)
        xa, xb = a_tr[ia], b_tr[ib]
        eps = torch.rand(batch_size, 1, generator=gen)
        xi = (eps * xa + (1 - eps) * xb).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(xi).sum(), xi, create_graph=True)
        gp = ((grad.norm(dim=1) - 1.0) ** 2).mean()
        loss = critic(xb).mean() - critic(xa).mean() + gp_weight * gp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = float(critic(a_te).mean() - critic(b_te).mean())
        w_train = float(critic(a_tr).mean() - critic(b_tr).mean())
    return {"w": w, "w_train": w_train, "n_train": int(len(a_tr) + len(b_tr)), "n_test": int(len(a_te) + len(b_te))}
