"""A critic that also sees energy sums: total and per-layer energies of a shower, differentiably.

Why: on showers the refiner works on ``x = log(1 + E/1 MeV)`` per voxel, standardised per
voxel.  A shift of the energy *scale* (Geant4's response is 6 % above GFlash's on the demo
geometry) is a small, coherent change of a few hundred standardised inputs that a plain MLP
critic with a gradient penalty hardly sees next to large lateral-shape differences; the
refiner then even broadened E_tot/E_inc (docs/refine.md, the Geant4 runs).  The sums are
what a calorimeter measures and what a downstream energy regression uses, so the critic is
given them explicitly: for every group ``g`` of features (the adapter's ``sum_groups``, for
showers each layer and the whole shower)

    s_g = log(1 + Σ_{v ∈ g} expm1(max(x_v, 0))) − y_0      (x in the adapter's units)

where ``y_0`` is the first label (showers: ln(E_inc/MeV), so ``s_g`` ≈ ln of the group's
response E_g/E_inc; without labels nothing is subtracted), standardised with the pooled sim +
data mean and spread, and appended to the critic's input.  Subtracting the incident energy
matters: standardised over the 1–100 GeV spectrum a 6 % scale shift is 0.05 σ of log E_tot,
which a critic held to a unit gradient norm can hardly reward; as a response it is ≈ 1.5 σ.
Everything is differentiable, so the refiner receives gradients through the sums and the
gradient penalty covers them.  Only the critic changes; the refiner and refined files do not.

Optionally (``head``) the score also adds a small network ``ψ`` on the log sums and
the labels alone, ``C = base([x̂, ŷ, ŝ]) + ψ([ŝ, ŷ])`` (a sum of critics is a critic; the gradient
penalty applies to ``C``).  Why: on the Geant4 demonstration a classifier on the ten numbers
ln(E_layer/E_inc), ln(E_tot/E_inc), ln E_inc alone told refined GFlash from Geant4 as well as one
on every voxel (docs/refine.md, twelfth round), while the whole-event critic, which sees the sums
beside hundreds of voxels, memorises the finite samples; a network on a dozen inputs has little
to memorise and all of its gradient goes to the joint distribution of the layer responses.

Optionally (``count_threshold``) the critic also sees, for every layer (the rows of
``sum_groups`` that are not the total; the total if there are none), a *soft count* of the
voxels above a threshold ``E_c`` (in the features' energy unit, MeV for showers)

    n_g = Σ_{v ∈ g} sigmoid((ln E_v − ln E_c) / w),   E_v = expm1(max(x_v, 0)),   w = count_width,

standardised with the pooled mean and spread (and, with a head, ``ψ`` sees them too).  Why: on
the Geant4 demonstration a classifier on the eight counts of voxels above 0.1 MeV and ln E_inc
alone told refined GFlash from Geant4 at AUC 0.73, more than one on every voxel (0.64); at fixed
layer energy the refined counts scatter more (the voxel noise moves small deposits across the
line independently; docs/refine.md, fourteenth round).  A count of voxels is what a voxel-by-voxel
critic sees only as a sum of many small standardised differences; the soft count is
differentiable, so the refiner receives its gradient.

Example:
    >>> import torch
    >>> groups = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])   # two groups of 3 features
    >>> x = torch.log1p(torch.tensor([[1.0, 2.0, 5.0]]))            # energies 1, 2, 5
    >>> torch.expm1(log_sums(x, groups))                            # sums 3 and 5
    tensor([[3., 5.]])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["SumsCritic", "group_sums", "layer_rows", "log_sums", "soft_counts", "sum_groups"]


def soft_counts(x: torch.Tensor, groups: torch.Tensor, threshold: float, width: float = 0.5) -> torch.Tensor:
    """``(N, D)`` features ``log(1 + E)`` → ``(N, G)`` ``Σ_g sigmoid((ln E − ln threshold) / width)``:
    per group, a differentiable count of the features whose energy is above ``threshold`` (an
    empty feature, ``E = 0``, counts 0; one at the threshold ½).

    Example:
        >>> x = torch.log1p(torch.tensor([[0.0, 0.1, 10.0, 1e4]]))
        >>> soft_counts(x, torch.ones(1, 4), threshold=0.1).round(decimals=3)   # 0 + ½ + 1 + 1
        tensor([[2.5000]])
    """
    e = torch.expm1(x.clamp(min=0.0))
    z = (torch.log(e.clamp(min=1e-30)) - float(np.log(threshold))) / width
    return torch.where(e > 0, torch.sigmoid(z), 0.0) @ groups.T


def group_sums(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` features ``log(1 + E)`` and ``(G, D)`` 0/1 group matrix → ``(N, G)`` ``Σ_g E``
    (negative features count as empty)."""
    return torch.expm1(x.clamp(min=0.0)) @ groups.T


def log_sums(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` features ``log(1 + E)`` and ``(G, D)`` 0/1 group matrix → ``(N, G)`` ``log(1 + Σ_g E)``."""
    return torch.log1p(group_sums(x, groups))


def layer_rows(groups: np.ndarray) -> np.ndarray:
    """The rows of a ``(G, D)`` 0/1 ``sum_groups`` matrix that are layers: not the total (a row of
    all ones) and not empty, in their order.  The one rule the response factor's and the
    per-layer critics' groups share.

    Example:
        >>> layer_rows(np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32))
        array([[1., 1., 0.],
               [0., 0., 1.]], dtype=float32)
    """
    part = groups[~(groups == 1).all(axis=1)]
    return part[part.any(axis=1)]


def sum_groups(adapter, data) -> np.ndarray | None:
    """The adapter's ``(G, D)`` float32 group matrix for ``data`` (``adapter.sum_groups(data)``), or
    ``None`` when the kind defines none."""
    fn = getattr(adapter, "sum_groups", None)
    groups = None if fn is None else fn(data)
    if groups is None:
        return None
    groups = np.asarray(groups, np.float32)
    if groups.ndim != 2 or groups.shape[0] < 1 or not np.isin(groups, (0.0, 1.0)).all():
        raise ValueError(f"sum_groups: expected a (G, D) matrix of 0/1 with G >= 1, found shape {groups.shape}")
    return groups


class SumsCritic(nn.Module):
    """Critic on ``[x̂, ŷ, ŝ]``: standardised features and labels (what the plain critic sees) and
    the standardised log sums ``ŝ`` (module docstring).

    Arguments:
        base: the critic network, taking ``D + L + G`` inputs.
        groups: ``(G, D)`` 0/1 group matrix.
        x_mean, x_std: ``(D,)`` the refiner's feature standardisation (to undo it).
        n_labels: L (labels appended to the critic input; 0 = none).
        x_pool: ``(N, D)`` pooled sim + data features, for the sums' mean and spread.
        y_mean, y_std: ``(L,)`` the label standardisation; y_pool: ``(N, L)`` pooled labels
            (the first label is subtracted from the log sums when ``n_labels > 0``).
        head: optional network ``ψ``, ``(N, G + C + L) -> (N,)`` on ``[ŝ, ĉ, ŷ]`` (the refiner passes a
            :class:`hepgen.refine.refiner.Critic` of width ``critic_hidden // 2``); ``None`` = no
            head (module docstring).
        count_threshold: ``E_c`` > 0 of the soft counts per layer (:func:`soft_counts`; ``None`` =
            none); ``count_width``: their ``w``.  With counts the base critic takes ``D + L + G + C``
            inputs, C = :meth:`n_counts` ``(groups)``.

    ``forward(inp: (N, D + L)) -> (N,)`` (the base critic's output, plus ``ψ`` with a head).
    """

    def __init__(self, base: nn.Module, groups: np.ndarray, x_mean, x_std, n_labels: int, x_pool: np.ndarray,
                 y_mean=None, y_std=None, y_pool: np.ndarray | None = None, head: nn.Module | None = None,
                 count_threshold: float | None = None, count_width: float = 0.5) -> None:
        super().__init__()
        if count_threshold is not None and not (np.isfinite(count_threshold) and count_threshold > 0):
            raise ValueError(f"count_threshold: expected an energy > 0, found {count_threshold!r}")
        self.base, self.n_labels, self.head = base, int(n_labels), head
        self.register_buffer("groups", torch.as_tensor(np.asarray(groups, np.float32)))
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32).clone())
        self.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32).clone())
        if self.n_labels:
            self.register_buffer("y0_mean", torch.as_tensor(y_mean, dtype=torch.float32)[:1].clone())
            self.register_buffer("y0_std", torch.as_tensor(y_std, dtype=torch.float32)[:1].clone())
        with torch.no_grad():
            s = log_sums(torch.as_tensor(np.asarray(x_pool, np.float32)), self.groups)
            if self.n_labels:
                s = s - torch.as_tensor(np.asarray(y_pool, np.float32)[:, :1])
            self.register_buffer("s_mean", s.mean(0))
            self.register_buffer("s_std", s.std(0).clamp(min=1e-3))
        self.count_threshold = None if count_threshold is None else float(count_threshold)
        self.count_width = float(count_width)
        if self.count_threshold is not None:
            self.register_buffer("count_groups", torch.as_tensor(self.layers_of(groups)))
            with torch.no_grad():
                c = self._counts(torch.as_tensor(np.asarray(x_pool, np.float32)))
            self.register_buffer("c_mean", c.mean(0))
            self.register_buffer("c_std", c.std(0).clamp(min=1e-3))

    @staticmethod
    def layers_of(groups: np.ndarray) -> np.ndarray:
        """The groups the soft counts run over: the layers of ``groups`` (:func:`layer_rows`), or
        ``groups`` itself when it has no other rows than the total."""
        g = np.asarray(groups, np.float32)
        part = layer_rows(g)
        return part if len(part) else g

    @classmethod
    def n_counts(cls, groups: np.ndarray) -> int:
        """C, the number of soft counts the critic adds with a ``count_threshold``."""
        return len(cls.layers_of(groups))

    def _counts(self, x: torch.Tensor) -> torch.Tensor:
        return soft_counts(x, self.count_groups, self.count_threshold, self.count_width)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        d = self.x_mean.shape[0]
        x = inp[:, :d] * self.x_std + self.x_mean
        s = log_sums(x, self.groups)
        if self.n_labels:
            s = s - (inp[:, d:d + 1] * self.y0_std + self.y0_mean)
        s = (s - self.s_mean) / self.s_std
        if self.count_threshold is not None:
            s = torch.cat([s, (self._counts(x) - self.c_mean) / self.c_std], dim=1)
        out = self.base(torch.cat([inp, s], dim=1))
        if self.head is not None:
            out = out + self.head(torch.cat([s, inp[:, d:d + self.n_labels]], dim=1))
        return out
