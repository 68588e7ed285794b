"""A per-event response factor for the refiner: the energy scale apart from the shower shape.

Why (issue #17, docs/refine.md "Why the pure scale fails"): the residual refiner corrects
``x = log(1 + E/1 MeV)`` voxel by voxel, standardised per voxel, where a common energy scale
(data = sim × 1.065) is 0.024 σ per voxel; pushed by a critic that mostly fits the finite
training samples, the free per-voxel correction moved each event on its own and *broadened*
the response E_tot/E_inc (GFlash vs GFlash × 1.065 and GFlash vs Geant4).  So the response gets
its own, restricted correction.  For every group ``l`` of features (``"total"``: the whole event,
``"layers"``: the adapter's ``sum_groups`` without the total row) the refined event is

    E'_v = E^shape_v · (S_l / S^shape_l) · exp(a_l),   v ∈ l,
    a_l = a_max · tanh(h_l / a_max),   h_l = b_l(ŷ) − c_l(ŷ) · (u_l − ū_l),

with ``E^shape`` the residual refiner's output (its shape correction; the factor ``S_l/S^shape_l``
gives each group back its input energy ``S_l``, so the shape part cannot change it),
``u_l = log(1 + S_l) − y_0`` the event's log response (``y_0`` the first label, showers
ln E_inc), ``ū_l`` its pooled sim + data mean, ``b`` an MLP of the standardised labels (last layer
zero) and ``c ∈ [0, c_max]`` (linear in the labels, zero at the start).  At fixed labels the
group energy goes as ``S_l^(1−c) · e^b``: the response can move (``b``) and its spread can shrink
(``c``), never grow or flip — a free per-event factor broadened it (the runs of docs/refine.md).
With ``depth_groups`` (``RefinerConfig.response_depth``) ``h_l`` also gets a term in the input
event's depth, which can broaden the response (:class:`LayerResponse`); with ``fraction_groups``
(``RefinerConfig.response_fractions``) a small network of the labels and the *shaped* event's
layer fractions, so that energy the shape part (or the refiner's noise per layer) moves into the
early layers can raise the response.  All heads start at zero:
**the identity at the start**.  ``a_max`` (default 0.5) bounds the
factor to ×0.61 … ×1.65.  ``E' ≥ 0`` since every factor is positive.

Features must be ``log(1 + E/scale)`` of non-negative energies (the shower adapter's; the same
assumption as :mod:`hepgen.refine.critic_sums`).

Example:
    >>> import math, torch
    >>> groups = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])   # two layers of 2 voxels
    >>> r = LayerResponse(groups, n_labels=1)
    >>> x = torch.log1p(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> y = torch.tensor([[2.0]])
    >>> bool(torch.equal(r(x, (y - 0.0) / 1.0, y), x))       # identity at the start
    True
    >>> with torch.no_grad():                                   # a_2 = ln 1.1: layer 2 × 1.1
    ...     _ = r.head[-1].bias.copy_(torch.tensor([0.0, 0.5 * math.atanh(math.log(1.1) / 0.5)]))
    >>> [round(v, 4) for v in torch.expm1(r(x, y, y)).flatten().tolist()]
    [1.0, 2.0, 3.3, 4.4]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hepgen.refine.critic_sums import group_sums, layer_rows, log_sums

__all__ = ["LayerResponse", "response_groups", "scale_log1p"]


def scale_log1p(x: torch.Tensor, f_minus_1: torch.Tensor) -> torch.Tensor:
    """Features ``x = log(1 + E)`` ``(N, D)`` of energies scaled by ``f`` per feature, given
    ``f − 1`` ``(N, D)``: ``log(1 + f (e^x − 1))``, written as ``x + log1p((f − 1)(1 − e^−x))`` —
    exact identity at ``f = 1``, no overflow of ``e^x``, and > −1 inside the log for ``x ≥ 0`` and
    ``f > 0``.  Shared by the response factor and the refiner's noise per layer.

    Example:
        >>> x = torch.log1p(torch.tensor([[0.0, 1.0, 3.0]]))
        >>> torch.expm1(scale_log1p(x, torch.tensor([[1.0, 1.0, -0.5]])))   # × 2, × 2, × 0.5
        tensor([[0.0000, 2.0000, 1.5000]])
    """
    return x + torch.log1p(f_minus_1 * -torch.expm1(-x.clamp(min=0.0)))


def response_groups(sum_groups: np.ndarray | None, n_features: int, mode: str = "total") -> np.ndarray:
    """The ``(G, D)`` 0/1 groups of the response factor from the adapter's ``sum_groups``.

    ``mode="total"``: one group, every feature (one factor on the whole event; the shape part
    may then move energy between layers).  ``mode="layers"``: the rows of ``sum_groups`` that do
    not cover every feature (showers: the layers; the total row is dropped; only a total → one
    group); a feature in two groups is refused (its factor would be ambiguous).
    """
    if sum_groups is None:
        raise ValueError("refiner config key 'response': the adapter of this kind names no sum_groups "
                         "(layers) to scale; expected showers-like data")
    if mode not in ("total", "layers"):
        raise ValueError(f"refiner config key 'response': expected 'off', 'total' or 'layers', found {mode!r}")
    g = np.asarray(sum_groups, np.float32)
    if g.ndim != 2 or g.shape[1] != n_features or not np.isin(g, (0.0, 1.0)).all():
        raise ValueError(f"sum_groups: expected a (G, {n_features}) matrix of 0/1, found shape {g.shape}")
    part = layer_rows(g)
    if mode == "total" or len(part) == 0:
        return np.ones((1, n_features), np.float32)
    if (part.sum(axis=0) > 1).any():
        raise ValueError(f"sum_groups: expected layers that do not overlap for the response factor, found "
                         f"{int((part.sum(axis=0) > 1).sum())} features in more than one group")
    return part


class LayerResponse(nn.Module):
    """``E'_v = E_v · exp(a_l)``, ``a_l = b_l(ŷ) − c_l(ŷ) · (u_l − ū_l)`` (module docstring).

    Arguments:
        groups: ``(G, D)`` 0/1, non-overlapping groups (e.g. :func:`response_groups`).
        n_labels: L.  hidden: width of the label network ``b``.  a_max: bound of |a| (ln of the
        largest factor).  c_max: bound of the shrink coefficient ``c`` (< 1).

    ``b`` (an MLP of the standardised labels, last layer zero) shifts the layer's response; ``c``
    (linear in the labels, zero at the start, clamped to [0, c_max]) pulls each event's log
    response ``u_l = log(1 + Σ_{v∈l} E_v) − y_0`` towards the pooled mean ``ū_l``: the refined
    layer energy goes as ``S_l^(1−c)`` at fixed labels, so the spread of the response can shrink
    by up to a factor ``1 − c_max`` but never grow or flip (a free per-event factor broadened it,
    docs/refine.md).

    depth_groups: optional ``(K, D)`` 0/1 layers in their order along the shower (the adapter's
        ``sum_groups`` without the total): then ``h`` also gets ``+ d(ŷ) · (t − t̄) / σ_t`` with
        ``t = Σ_k k S_k / Σ_k S_k`` the input event's energy-weighted mean layer index (its depth;
        0 for an empty event), ``t̄``, ``σ_t`` its pooled mean and spread and ``d`` linear in the
        labels (zero at the start; any sign).  Why: above 30 GeV Geant4's response falls with the
        shower's depth (late showers leak out of the back; correlation −0.555 against GFlash's
        −0.224, docs/refine.md, twelfth round), a tail the factor above cannot make.  Unlike the
        shrink term this one can broaden the response.
    fraction_groups: optional ``(K, D)`` 0/1 layers: then ``h`` also gets ``+ F(ŷ, φ̂)``, ``F`` a
        small MLP (width ``fraction_hidden``, last layer zero) of the standardised labels and the
        standardised layer fractions ``φ̂_k = (φ_k − φ̄_k) / σ_k``, ``φ_k = S_k / Σ_j S_j`` of the
        event *after* the shape correction (``shaped``; 0 for an empty event; ``φ̄``, ``σ`` pooled
        over the input events).  Why: with the refiner's noise per layer the shape part moves
        energy between layers at random, but the factor above saw only the input event, so the
        refined response did not follow the energy in the early layers as Geant4's does (layer 1
        with the total above 10 GeV: +0.187 refined, +0.387 Geant4; docs/refine.md, thirteenth
        round).  With ``response="layers"`` the fractions are those before each layer's energy
        is set back.

    ``forward(x: (N, D), y_norm: (N, L), y: (N, L), shaped: (N, D) | None) -> (N, D)``: ``y_norm``
    the standardised labels, ``y`` the raw ones (``y[:, 0]`` is subtracted from the log sums);
    ``shaped`` the event after a shape correction, whose group sums are set back to ``x``'s
    before the factor is applied.  :meth:`set_normalisation` sets ``ū`` (pooled sim + data).
    """

    def __init__(self, groups, n_labels: int, hidden: int = 64, a_max: float = 0.5, c_max: float = 0.9,
                 depth_groups=None, fraction_groups=None, fraction_hidden: int = 32) -> None:
        super().__init__()
        g = torch.as_tensor(np.asarray(groups, np.float32))
        if g.ndim != 2 or g.shape[0] < 1:
            raise ValueError(f"groups: expected a (G, D) matrix with G >= 1, found shape {tuple(g.shape)}")
        if not 0 <= c_max < 1:
            raise ValueError(f"c_max: expected a number in [0, 1), found {c_max!r}")
        self.n_groups, self.n_labels = int(g.shape[0]), int(n_labels)
        self.a_max, self.c_max = float(a_max), float(c_max)
        self.register_buffer("groups", g)
        self.register_buffer("u_mean", torch.zeros(self.n_groups))
        n_in = max(self.n_labels, 1)  # without labels: a constant input
        self.head = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, self.n_groups))
        self.shrink = nn.Linear(n_in, self.n_groups)
        self.depth = None
        if depth_groups is not None:
            self.register_buffer("depth_groups", _layer_matrix(depth_groups, g.shape[1], "depth_groups"))
            self.register_buffer("t_mean", torch.zeros(()))
            self.register_buffer("t_std", torch.ones(()))
            self.depth = nn.Linear(n_in, self.n_groups)
        self.fractions = None
        if fraction_groups is not None:
            fg = _layer_matrix(fraction_groups, g.shape[1], "fraction_groups")
            self.register_buffer("fraction_groups", fg)
            self.register_buffer("f_mean", torch.zeros(fg.shape[0]))
            self.register_buffer("f_std", torch.ones(fg.shape[0]))
            self.fractions = nn.Sequential(nn.Linear(n_in + fg.shape[0], fraction_hidden), nn.SiLU(),
                                           nn.Linear(fraction_hidden, self.n_groups))
        for layer in (self.head[-1], self.shrink, self.depth, None if self.fractions is None else self.fractions[-1]):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def log_response(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N, G)``: ``log(1 + Σ_l E) − y_0`` per group."""
        u = log_sums(x, self.groups)
        return u - y[:, :1] if self.n_labels else u

    def shower_depth(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)``: the energy-weighted mean index of the ``depth_groups`` (0 … K − 1; 0 if empty)."""
        f = _fractions(x, self.depth_groups)                                           # (N, K)
        return f @ torch.arange(f.shape[1], dtype=f.dtype, device=f.device)

    def layer_fractions(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)``: each of the ``fraction_groups``' share of their summed energy (0 if empty)."""
        return _fractions(x, self.fraction_groups)

    def set_normalisation(self, x: np.ndarray, y: np.ndarray) -> None:
        with torch.no_grad():
            xt = torch.as_tensor(np.asarray(x, np.float32))
            u = self.log_response(xt, torch.as_tensor(np.asarray(y, np.float32)))
            self.u_mean.copy_(u.mean(0))
            if self.depth is not None:
                t = self.shower_depth(xt)
                self.t_mean.copy_(t.mean())
                self.t_std.copy_(t.std().clamp(min=1e-3))
            if self.fractions is not None:
                f = self.layer_fractions(xt)
                self.f_mean.copy_(f.mean(0))
                self.f_std.copy_(f.std(0).clamp(min=1e-3))

    def log_factor(self, x: torch.Tensor, y_norm: torch.Tensor, y: torch.Tensor,
                   shaped: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, G)``: ``a``, the log of each group's factor (``shaped``: the event whose layer
        fractions the fraction term reads; ``x`` if ``None``)."""
        z = y_norm if self.n_labels else torch.ones(len(x), 1)
        c = torch.clamp(self.shrink(z), 0.0, self.c_max)
        h = self.head(z) - c * (self.log_response(x, y) - self.u_mean)
        if self.depth is not None:
            h = h + self.depth(z) * ((self.shower_depth(x) - self.t_mean) / self.t_std)[:, None]
        if self.fractions is not None:
            phi = (self.layer_fractions(x if shaped is None else shaped) - self.f_mean) / self.f_std
            h = h + self.fractions(torch.cat([z, phi], dim=1))
        return self.a_max * torch.tanh(h / self.a_max)

    def forward(self, x: torch.Tensor, y_norm: torch.Tensor, y: torch.Tensor,
                shaped: torch.Tensor | None = None) -> torch.Tensor:
        f = torch.exp(self.log_factor(x, y_norm, y, shaped))             # (N, G)
        if shaped is None:
            shaped = x
        else:  # the shape correction may redistribute energy within a group, not change its sum
            s0, s1 = group_sums(x, self.groups), group_sums(shaped, self.groups)
            f = f * torch.where(s1 > 0, s0 / torch.where(s1 > 0, s1, 1.0), 1.0)
        return scale_log1p(shaped, (f - 1.0) @ self.groups)             # f − 1 is 0 outside every group


def _layer_matrix(groups, n_features: int, name: str) -> torch.Tensor:
    """``groups`` as a ``(K, n_features)`` float tensor with K ≥ 2, or a ``ValueError`` naming ``name``."""
    t = torch.as_tensor(np.asarray(groups, np.float32))
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] != n_features:
        raise ValueError(f"{name}: expected a (K, {n_features}) matrix with K >= 2 layers, found shape "
                         f"{tuple(t.shape)}")
    return t


def _fractions(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``(N, K)``: each group's share of the groups' summed energy (0 for an empty event)."""
    s = group_sums(x, groups)
    total = s.sum(dim=1, keepdim=True)
    return torch.where(total > 0, s / torch.where(total > 0, total, 1.0), 0.0)
