"""A critic with one small network per layer beside the whole-event one.

Why: on the Geant4 demonstration (docs/refine.md, eleventh round on Geant4) a classifier given
*one* layer's 48 voxels told refined GFlash from Geant4 better than one given the whole
shower (layer 3: AUC 0.792 against 0.658 at 9000 showers per class): with 384 inputs and a
few thousand showers the whole-event network does not find what a network on 48 inputs finds.
The refiner's critic is such a whole-event network, so it is given the same help: its score
becomes

    C(x̂, ŷ) = C_event(x̂, ŷ) + Σ_l φ_l(x̂_l, ŷ)

where ``x̂_l`` are the standardised features of group ``l`` (showers: the voxels of one layer,
the adapter's ``sum_groups`` without the total) and each ``φ_l`` is its own MLP (two hidden
layers of ``hidden`` units, LeakyReLU 0.2, like the event critic) on ``x̂_l`` and the labels.
A sum of critics is a critic: the gradient penalty (arXiv:1704.00028) is applied to ``C`` as a
whole, so the Wasserstein estimate keeps its meaning, and the refiner is pushed by every
layer's network.  The ``G`` networks (one per group; ``L`` is the number of labels) are evaluated
at once as batched products over groups (``torch.einsum``): each group's inputs (its features,
then the labels) are gathered into an ``(N, G, F)`` block, padded with a zero column where groups
differ in size.  The first layer's weights are stored as one ``(D + L, G·hidden)`` matrix whose
entries outside a group's inputs are zero (``mask``) and never used.

Example:
    >>> import torch
    >>> groups = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).numpy()   # 2 groups of 3 features
    >>> class Zero(torch.nn.Module):
    ...     def forward(self, z):
    ...         return z[:, 0] * 0.0
    >>> c = LayerCritic(Zero(), groups, n_labels=1, hidden=4)
    >>> z = torch.zeros(5, 4, requires_grad=True)                          # 3 features, 1 label
    >>> c(z).shape
    torch.Size([5])
    >>> g, = torch.autograd.grad(c.layer_scores(z)[:, 1].sum(), z)        # group 2 sees feature 3
    >>> bool((g[:, :2] == 0).all()), bool((g[:, 2] != 0).all())
    (True, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hepgen.refine.critic_mlp import NEGATIVE_SLOPE
from hepgen.refine.critic_sums import layer_rows

__all__ = ["LayerCritic", "layer_groups"]


def layer_groups(sum_groups: np.ndarray | None, n_features: int, key: str = "critic_layers") -> np.ndarray:
    """The ``(L, D)`` 0/1 layer groups of the per-layer critics (or of another option, ``key``) from the
    adapter's ``(G, D)`` ``sum_groups``: the rows that do not cover every feature (showers: the
    layers, in their order; the total is dropped).

    Raises ``ValueError`` naming the config key ``key`` when the kind has no groups, when fewer
    than two layers remain, or when a feature is in no layer or in two.

    Example:
        >>> g = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)   # 2 layers + total
        >>> layer_groups(g, 4)
        array([[1., 1., 0., 0.],
               [0., 0., 1., 1.]], dtype=float32)
    """
    if sum_groups is None:
        raise ValueError(f"refiner config key {key!r}: expected layer groups (sum_groups) from the adapter "
                         "of this kind (showers), found none")
    g = np.asarray(sum_groups, np.float32)
    if g.ndim != 2 or g.shape[1] != n_features or not np.isin(g, (0.0, 1.0)).all():
        raise ValueError(f"refiner config key {key!r}: expected a (G, {n_features}) 0/1 group matrix, "
                         f"found shape {g.shape}")
    part = layer_rows(g)
    if len(part) < 2 or not (part.sum(axis=0) == 1).all():
        raise ValueError(f"refiner config key {key!r}: expected at least 2 layers that cover every feature "
                         f"once, found {len(part)} groups covering {int((part.sum(axis=0) == 1).sum())} of "
                         f"{n_features} features once")
    return part


class LayerCritic(nn.Module):
    """``C = base(z) + Σ_l φ_l(z)`` (module docstring).

    Arguments:
        base: the whole-event critic, ``(N, D + L) -> (N,)`` (:class:`hepgen.refine.refiner.Critic`
            or :class:`hepgen.refine.critic_sums.SumsCritic`).
        groups: ``(G, D)`` 0/1, each feature in exactly one group (:func:`layer_groups`).
        n_labels: L, the labels appended to the features (every ``φ_l`` sees them all).
        hidden: width of each ``φ_l``'s two hidden layers.

    ``forward(z: (N, D + L)) -> (N,)``; :meth:`layer_scores` ``-> (N, G)`` the ``φ_l`` alone.
    """

    def __init__(self, base: nn.Module, groups: np.ndarray, n_labels: int, hidden: int = 128) -> None:
        super().__init__()
        g = torch.as_tensor(np.asarray(groups, np.float32))
        n_groups, d = g.shape
        self.base, self.n_groups, self.hidden = base, int(n_groups), int(hidden)
        # (D + L, G·h) mask: block l of h outputs sees group l's features and every label
        feat = g.T.repeat_interleave(self.hidden, dim=1)                     # (D, G·h)
        mask = torch.cat([feat, torch.ones(int(n_labels), n_groups * self.hidden)], dim=0)
        self.register_buffer("mask", mask)
        # each group's input columns (features, then labels), padded with column D + L (a zero column)
        cols = [torch.cat([torch.nonzero(g[k]).flatten(), torch.arange(d, d + n_labels)]) for k in range(n_groups)]
        width = max(len(c) for c in cols)
        index = torch.full((n_groups, width), d + n_labels, dtype=torch.long)
        for k, c in enumerate(cols):
            index[k, :len(c)] = c
        self.register_buffer("index", index, persistent=False)
        fan_in = (g.sum(dim=1) + n_labels).repeat_interleave(self.hidden)    # (G·h,) inputs per unit
        bound = 1.0 / torch.sqrt(fan_in)                                      # nn.Linear's default init range
        self.w1 = nn.Parameter((torch.rand(d + n_labels, n_groups * self.hidden) * 2 - 1) * bound * mask)
        self.b1 = nn.Parameter((torch.rand(n_groups * self.hidden) * 2 - 1) * bound)
        b = 1.0 / math.sqrt(self.hidden)
        self.w2 = nn.Parameter((torch.rand(n_groups, self.hidden, self.hidden) * 2 - 1) * b)
        self.b2 = nn.Parameter((torch.rand(n_groups, self.hidden) * 2 - 1) * b)
        self.w3 = nn.Parameter((torch.rand(n_groups, self.hidden) * 2 - 1) * b)
        self.b3 = nn.Parameter((torch.rand(n_groups) * 2 - 1) * b)

    def layer_scores(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D + L)`` standardised features and labels → ``(N, G)`` each group's ``φ_l``."""
        act = nn.functional.leaky_relu
        zp = torch.cat([z, z.new_zeros(len(z), 1)], dim=1)
        w1 = torch.cat([self.w1, self.w1.new_zeros(1, self.w1.shape[1])]).view(-1, self.n_groups, self.hidden)
        w1 = w1[self.index, torch.arange(self.n_groups, device=z.device)[:, None]]     # (G, F, h)
        h = act(torch.einsum("ngf,gfh->ngh", zp[:, self.index], w1) + self.b1.view(self.n_groups, self.hidden),
                NEGATIVE_SLOPE)
        h = act(torch.einsum("ngh,ghk->ngk", h, self.w2) + self.b2, NEGATIVE_SLOPE)
        return (h * self.w3).sum(dim=2) + self.b3

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.base(z) + self.layer_scores(z).sum(dim=1)
