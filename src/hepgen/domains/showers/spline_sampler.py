"""The inverse of a rational-quadratic-spline coupling flow with fewer passes over memory.

:class:`SplineCouplingSampler` computes ``flow.transform(c).inv(z)`` for a coupling flow made
of :class:`hepgen.models.flow.SplineCoupling` layers (``ConditionalFlow(coupling=True,
spline_bins=K)``, both stages of the ``caloflow`` preset), the same function up to float
rounding (``tests/test_spline_sampler.py`` checks it against zuko's transform).

Why it is faster.  Per transformed feature the conditioner outputs ``3K - 1`` numbers (widths,
heights, derivatives) and, on the demo's shape flow at batch 1000, that block is
``1000 × 192 × 23`` floats (18 MB) per layer: the sampler is bound by passes over it, not by
the matrix products (``docs/inference.md``, "Profile of the spline sampler").  zuko (and
:class:`~hepgen.models.flow.FastRQSTransform`) build all knots — soft bounds, exponential,
normalisation and padding of widths, heights *and* derivatives — and then gather 6 values
per feature from broadcast copies.  The inverse needs much less:

* the bin ``k`` of ``y`` is found on the *unnormalised* cumulative heights ``C_j`` by comparing
  them with ``(y + B) · C_K / (2B)`` (the same test as ``C_j · 2B / C_K − B < y``), so the
  knots are never normalised or padded;
* only the two derivatives at the ends of bin ``k`` are needed: the raw values are gathered
  first and bounded / exponentiated afterwards (2 instead of ``K − 1`` per feature);
* the bin's width and height are gathered from the exponentials (``e_k``) and its lower
  knot is ``C_k − e_k``, so nothing is padded;
* the soft bound and the exponential of widths and heights run in place on one ``(·, 2K)``
  buffer, and ``y`` outside ``[−B, B]`` (the identity tails) is handled by one ``where``.

The arithmetic of the root of the quadratic is zuko's (``MonotonicRQSTransform._inverse``).
Everything is plain tensor code (exportable to ONNX, compilable, quantisable: the
conditioners are ``nn.Linear`` stacks).

Reference: C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032 (Appendix A.3, the
inverse as the root of a quadratic).
"""

from __future__ import annotations

import copy
import math

import torch
import zuko.nn
from torch import nn

from hepgen.models.flow import SPLINE_BOUND, SPLINE_MIN_SLOPE, FastRQSTransform, SplineCoupling

__all__ = ["SplineCouplingSampler", "rqs_inverse"]


def rqs_inverse(phi: torch.Tensor, y: torch.Tensor, bins: int, bound: float = SPLINE_BOUND,
                slope: float = SPLINE_MIN_SLOPE) -> torch.Tensor:
    """Inverse of zuko's ``MonotonicRQSTransform`` with unconstrained parameters ``phi``.

    Arguments:
        phi: ``(N, F, 3 bins - 1)`` = [widths (bins), heights (bins), derivatives (bins - 1)],
            as the conditioner outputs them (``unflatten(-1, (F, 3 bins - 1))``); not modified.
        y: ``(N, F)`` values to invert.
        bins: K; bound: B (identity outside ``[-B, B]``); slope: zuko's minimum slope.

    Returns:
        ``x (N, F)`` with ``MonotonicRQSTransform(w, h, d, bound, slope).inv(y) == x`` up to
        float rounding.

    Example:
        >>> from zuko.transforms import MonotonicRQSTransform
        >>> phi, y = torch.randn(4, 3, 11), 6 * torch.rand(4, 3) - 3
        >>> ref = MonotonicRQSTransform(phi[..., :4], phi[..., 4:8], phi[..., 8:]).inv(y)
        >>> torch.allclose(rqs_inverse(phi, y, 4), ref, atol=1e-5)
        True
    """
    n, f, p = phi.shape
    if p != 3 * bins - 1:
        raise ValueError(f"rqs_inverse: expected 3 * {bins} - 1 = {3 * bins - 1} parameters per feature, found {p}")
    if bins > 255:
        raise ValueError(f"rqs_inverse: at most 255 bins (the bin is counted in uint8), found {bins}")
    inv_log_slope = 1.0 / abs(math.log(slope))
    # exp of the soft-bounded widths and heights, in place on one buffer: 4 passes, no temporaries
    e = phi[..., : 2 * bins].abs()
    e.mul_(2.0 * inv_log_slope).add_(1.0)
    if phi.requires_grad or torch.compiler.is_compiling():
        e = phi[..., : 2 * bins] / e  # out= is refused by autograd and by graph capture (export, compile)
    else:
        torch.div(phi[..., : 2 * bins], e, out=e)
    e.exp_()
    e = e.view(n, f, 2, bins)  # [..., 0, :] widths, [..., 1, :] heights
    cum = e.cumsum(dim=-1)
    total = cum[..., -1]  # (N, F, 2): sum of widths, sum of heights
    scale = (2.0 * bound) / total  # knot units per unnormalised unit
    # bin of y among the K - 1 interior vertical knots, on the unnormalised cumulative heights
    t = (y + bound) * (total[..., 1] / (2.0 * bound))
    below = cum[..., 1, : bins - 1] < t.unsqueeze(-1)
    if torch.compiler.is_compiling():  # inductor fuses the comparison and the count
        k = below.sum(dim=-1)  # (N, F) in 0..K-1
    else:  # eager: count in uint8 (summing the bools converts all of them to int64 first)
        k = below.view(torch.uint8).sum(dim=-1, dtype=torch.uint8).long()
    k4 = k.view(n, f, 1, 1).expand(n, f, 2, 1)
    width_height = e.gather(-1, k4).squeeze(-1) * scale  # (N, F, 2): bin width, bin height in knot units
    upper = cum.gather(-1, k4).squeeze(-1) * scale - bound  # (N, F, 2): x1, y1
    dx, dy = width_height.unbind(-1)
    x0 = upper[..., 0] - dx
    y0 = upper[..., 1] - dy
    # the two derivatives of bin k: raw values gathered first.  The spline's end derivatives
    # are 1 = exp(0): a raw 0 there (the multiplication by the bool) gives exactly that.
    raw = phi[..., 2 * bins:]
    idx = torch.stack([(k - 1).clamp_(min=0), k.clamp(max=bins - 2)], dim=-1)
    d = raw.gather(-1, idx) * torch.stack([k > 0, k < bins - 1], dim=-1)
    d = torch.exp(d / (1.0 + d.abs() * inv_log_slope))
    d0, d1 = d.unbind(-1)
    # zuko's root of the quadratic (MonotonicRQSTransform._inverse)
    s = dy / dx
    y_ = y - y0
    dd = d0 + d1 - 2 * s
    a = dy * (s - d0) + y_ * dd
    b = dy * d0 - y_ * dd
    c = -s * y_
    z = 2 * c / (-b - (b * b - 4 * a * c).sqrt())
    x = x0 + z * dx
    inside = (y > -bound) & (y <= bound)
    return torch.where(inside, x, y)


def _plain_mlp(mlp: nn.Sequential) -> nn.Sequential:
    """A copy of a zuko ``MLP`` with ``torch.nn.Linear`` layers (zuko's ``Linear`` is its own
    ``nn.Module``, which ``quantize_dynamic`` and other tools do not recognise) and in-place ReLUs."""
    layers: list[nn.Module] = []
    for m in mlp:
        if isinstance(m, (nn.Linear, zuko.nn.Linear)):
            if m.weight.dim() != 2:
                raise TypeError("SplineCouplingSampler: stacked linear layers are not supported")
            lin = nn.Linear(m.weight.shape[1], m.weight.shape[0], bias=m.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            layers.append(lin)
        else:
            m = copy.deepcopy(m)
            if isinstance(m, nn.ReLU):
                m.inplace = True  # the pre-activations are not needed again
            layers.append(m)
    return nn.Sequential(*layers)


class _Layer(nn.Module):
    """One coupling layer's inverse: ``y_a`` passes, ``y_b`` is inverted given ``[y_a, c]``."""

    def __init__(self, layer, bound: float, slope: float) -> None:
        super().__init__()
        self.net = _plain_mlp(layer.hyper)
        mask = layer.mask
        self.register_buffer("idx_a", mask.nonzero().squeeze(-1))
        self.register_buffer("idx_b", (~mask).nonzero().squeeze(-1))
        order = torch.cat([self.idx_a, self.idx_b])
        self.register_buffer("unpermute", torch.argsort(order))
        self.bins, self.total = int(layer.bins), int(layer.total)
        self.bound, self.slope = float(bound), float(slope)

    def forward(self, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y_a = y.index_select(1, self.idx_a)
        y_b = y.index_select(1, self.idx_b)
        # under autocast (bf16 path) the matrix products run in low precision, the spline in y's
        phi = self.net(torch.cat([y_a, c], dim=1)).unflatten(-1, (-1, self.total))
        x_b = rqs_inverse(phi.to(y_b.dtype), y_b, self.bins, self.bound, self.slope)
        return torch.cat([y_a, x_b], dim=1).index_select(1, self.unpermute)


class SplineCouplingSampler(nn.Module):
    """``(c, z) → flow.transform(c).inv(z)`` for a spline coupling flow, see the module docstring.

    Arguments:
        flow: a ``zuko.flows.Flow`` whose transforms are all ``SplineCoupling`` layers
            (:func:`hepgen.models.flow.coupling_flow` with ``spline_bins > 0``) and whose base
            is a standard normal; the weights are copied.
        n_features: D.

    Raises:
        TypeError: another kind of flow (:func:`hepgen.domains.showers.inference.build_sampler`
            then falls back to the generic sampler).

    Shapes: ``c (B, C)``, ``z (B, D)`` → ``(B, D)``.
    """

    def __init__(self, flow, n_features: int) -> None:
        super().__init__()
        transforms = list(flow.transform.transforms)
        if not transforms or not all(isinstance(t, SplineCoupling) for t in transforms):
            raise TypeError("SplineCouplingSampler supports flows of spline coupling layers only")
        if any(t.univariate is not FastRQSTransform for t in transforms):
            raise TypeError("SplineCouplingSampler: unexpected univariate transform")
        base = flow.base()
        dist = getattr(base, "base_dist", base)
        if not (torch.all(dist.loc == 0) and torch.all(dist.scale == 1)):
            raise TypeError("SplineCouplingSampler expects a standard-normal base distribution")
        # the layers use FastRQSTransform.from_block's defaults; zuko's ComposedTransform
        # inverts the last transform first
        self.layers = nn.ModuleList(_Layer(t, SPLINE_BOUND, SPLINE_MIN_SLOPE) for t in transforms[::-1])
        self.noise_dim = int(n_features)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = z
        for layer in self.layers:
            y = layer(c, y)
        return y
