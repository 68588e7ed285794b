"""The inverse of zuko's monotonic rational-quadratic spline on parameter-major planes.

Shared by every fast spline-flow sampler of hepgen (the showers' coupling sampler
:class:`hepgen.domains.showers.spline_sampler.SplineCouplingSampler`, the tabular masked
autoregressive sampler :class:`hepgen.models.made_sampler.MadeSplineSampler`): it lives with the
models so that every kind of data can use it without importing another kind's package.  Why it
is faster than zuko's ``MonotonicRQSTransform(...).inv``, and the measurements, are in
``docs/inference.md`` ("The spline coupling sampler") and in the docstrings below.

Under ``torch.compile`` the same function is computed as a chain of ``(N, F)`` element-wise
operations with no gather (:func:`_rqs_inverse_fusable`), which inductor fuses into one loop
over the parameters; under autograd and ``torch.export`` (ONNX) without in-place updates.

The arithmetic of the root of the quadratic is zuko's (``MonotonicRQSTransform._inverse``).

Reference: C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032 (Appendix A.3, the
inverse as the root of a quadratic).
"""

from __future__ import annotations

import math

import torch

from hepgen.models.flow import SPLINE_BOUND, SPLINE_MIN_SLOPE

__all__ = ["rqs_inverse", "rqs_inverse_planes"]


def rqs_inverse(phi: torch.Tensor, y: torch.Tensor, bins: int, bound: float = SPLINE_BOUND,
                slope: float = SPLINE_MIN_SLOPE) -> torch.Tensor:
    """Inverse of zuko's ``MonotonicRQSTransform`` with unconstrained parameters ``phi``.

    Arguments:
        phi: ``(N, F, 3 bins - 1)`` = [widths (bins), heights (bins), derivatives (bins - 1)],
            as zuko's conditioner outputs them (``unflatten(-1, (F, 3 bins - 1))``); not modified.
        y: ``(N, F)`` values to invert.
        bins: K; bound: B (identity outside ``[-B, B]``); slope: zuko's minimum slope.

    Returns:
        ``x (N, F)`` with ``MonotonicRQSTransform(w, h, d, bound, slope).inv(y) == x`` up to
        float rounding.  The work is done by :func:`rqs_inverse_planes` on a parameter-major
        copy of ``phi`` (:class:`SplineCouplingSampler` has its conditioners write that layout
        directly, with no copy).

    Example:
        >>> from zuko.transforms import MonotonicRQSTransform
        >>> phi, y = torch.randn(4, 3, 11), 6 * torch.rand(4, 3) - 3
        >>> ref = MonotonicRQSTransform(phi[..., :4], phi[..., 4:8], phi[..., 8:]).inv(y)
        >>> torch.allclose(rqs_inverse(phi, y, 4), ref, atol=1e-5)
        True
    """
    if phi.shape[-1] != 3 * bins - 1:
        raise ValueError(f"rqs_inverse: expected 3 * {bins} - 1 = {3 * bins - 1} parameters per feature, "
                         f"found {phi.shape[-1]}")
    return rqs_inverse_planes(phi.transpose(1, 2).contiguous(), y, bins, bound, slope)


def rqs_inverse_planes(phi: torch.Tensor, y: torch.Tensor, bins: int, bound: float = SPLINE_BOUND,
                       slope: float = SPLINE_MIN_SLOPE) -> torch.Tensor:
    """:func:`rqs_inverse` on parameter-major ("planes") parameters: ``phi (N, 3 bins - 1, F)``.

    ``phi[:, p]`` is the ``(N, F)`` plane of parameter ``p`` (widths ``0..K-1``, heights
    ``K..2K-1``, derivatives at the interior knots ``2K..3K-2``), so that every step below is
    an element-wise operation over whole planes (contiguous runs of ``F`` values) instead of
    an operation along a last dimension of ``K`` = 8 entries, which torch's CPU kernels
    vectorise poorly (cumulative sums, comparisons, gathers on ``(N, F, K)`` blocks were most
    of the sampling time, docs/inference.md).  Steps:

    1. soft bound and exponential of widths and heights (one new ``(N, 2K, F)`` buffer, the
       rest in place), then their cumulative sums over the planes, in place (``C_j``);
    2. the bin ``k`` of ``y`` from the unnormalised cumulative heights: ``C_j < (y + B) C_K / 2B``
       counted over ``j < K - 1`` (in uint8);
    3. the bin's lower and upper knots gathered from ``C`` (lower knot of bin 0: 0) and scaled
       to ``[-B, B]`` — zuko's knots ``x_j = B (2 C_j / C_K - 1)``, bin width ``x_{k+1} - x_k``;
    4. the two derivatives of the bin: raw values gathered, then bounded and exponentiated
       (the end derivatives 1 = exp(0) by masking the raw value);
    5. zuko's root of the quadratic (``MonotonicRQSTransform._inverse``); identity outside
       ``(-B, B]``.

    Arguments:
        phi: ``(N, 3 bins - 1, F)``, not modified; y: ``(N, F)``; bins, bound, slope: as
            :func:`rqs_inverse`.

    Returns:
        ``x (N, F)``, the same values as :func:`rqs_inverse` on ``phi.transpose(1, 2)``.

    Example:
        >>> phi, y = torch.randn(4, 3, 11), 6 * torch.rand(4, 3) - 3
        >>> torch.allclose(rqs_inverse_planes(phi.transpose(1, 2), y, 4), rqs_inverse(phi, y, 4))
        True
    """
    n, p, f = phi.shape
    if p != 3 * bins - 1:
        raise ValueError(f"rqs_inverse_planes: expected 3 * {bins} - 1 = {3 * bins - 1} parameter planes, found {p}")
    if bins > 255:
        raise ValueError(f"rqs_inverse: at most 255 bins (the bin is counted in uint8), found {bins}")
    exporting = torch.compiler.is_exporting()
    if torch.compiler.is_compiling() and not exporting:
        # torch.compile: the plane-wise form fuses into one loop under inductor
        return _rqs_inverse_fusable(phi, y, bins, bound, slope)
    inv_log_slope = 1.0 / abs(math.log(slope))
    wh = phi[:, : 2 * bins]
    functional = exporting or phi.requires_grad
    if functional:  # out= and in-place updates of saved tensors are refused by autograd and export
        e = torch.exp(wh / (wh.abs() * (2.0 * inv_log_slope) + 1.0))
        cum = e.reshape(n, 2, bins, f).cumsum(dim=2)
    else:  # 5 passes over one buffer, no other temporaries
        e = torch.empty((n, 2 * bins, f), dtype=phi.dtype, device=phi.device)
        torch.abs(wh, out=e)
        e.mul_(2.0 * inv_log_slope).add_(1.0)
        torch.div(wh, e, out=e)
        e.exp_()
        cum = e.view(n, 2, bins, f)  # [:, 0] widths, [:, 1] heights
        for j in range(1, bins):  # the same sequential sums as cumsum, on whole planes
            cum[:, :, j] += cum[:, :, j - 1]
    total = cum[:, :, bins - 1]  # (N, 2, F): sum of widths, sum of heights
    # bin of y among the K - 1 interior vertical knots, on the unnormalised cumulative heights
    t = (y + bound) * (total[:, 1] * (1.0 / (2.0 * bound)))
    below = cum[:, 1, : bins - 1] < t.unsqueeze(1)
    if functional:  # export has no uint8 view
        k = below.sum(dim=1)  # (N, F) in 0..K-1
    else:  # count in uint8 (summing the bools converts all of them to int64 first)
        k = below.view(torch.uint8).sum(dim=1, dtype=torch.uint8).long()
    k_lo = (k - 1).clamp(min=0)
    idx = torch.stack([k_lo, k], dim=1).unsqueeze(1).expand(n, 2, 2, f)
    knots = cum.gather(2, idx)  # (N, [x, y], [lower, upper], F), unnormalised
    first = (k > 0).to(phi.dtype)  # the lower knot of bin 0 is 0 (x_0 = y_0 = -B)
    scale = (2.0 * bound) / total  # knot units per unnormalised unit
    x0 = knots[:, 0, 0] * first * scale[:, 0] - bound
    y0 = knots[:, 1, 0] * first * scale[:, 1] - bound
    x1 = knots[:, 0, 1] * scale[:, 0] - bound
    y1 = knots[:, 1, 1] * scale[:, 1] - bound
    # the two derivatives of bin k: raw values gathered first.  The spline's end derivatives
    # are 1 = exp(0): a raw 0 there (the multiplication by the bool) gives exactly that.
    raw = phi[:, 2 * bins:]
    d = raw.gather(1, torch.stack([k_lo, k.clamp(max=bins - 2)], dim=1)) * torch.stack([k > 0, k < bins - 1], dim=1)
    d = torch.exp(d / (1.0 + d.abs() * inv_log_slope))
    d0, d1 = d.unbind(1)
    return _root(y, x0, x1, y0, y1, d0, d1, bound)


def _root(y, x0, x1, y0, y1, d0, d1, bound: float) -> torch.Tensor:
    """zuko's root of the quadratic (``MonotonicRQSTransform._inverse``) in the bin
    ``[x0, x1] × [y0, y1]`` with end derivatives ``d0, d1``; the identity outside ``(-B, B]``."""
    dx = x1 - x0
    dy = y1 - y0
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


def _rqs_inverse_fusable(phi: torch.Tensor, y: torch.Tensor, bins: int, bound: float, slope: float) -> torch.Tensor:
    """:func:`rqs_inverse_planes` as a chain of ``(N, F)`` element-wise operations only.

    No gather, no reduction along a parameter axis, no in-place update: the bin's knots and
    derivatives are selected by a chain of ``where`` over the interior knots (the comparison
    ``C_j < t`` is monotone in ``j``, so the last true one is the bin's lower knot, as the count
    of :func:`rqs_inverse_planes`).  Eagerly it is slower (about 30 ``(N, F)`` passes per bin),
    but inductor (``torch.compile``) fuses all of it into one loop that reads each parameter
    once, and autograd and ``torch.export`` accept it.  Same arithmetic, same function.
    """
    inv_log_slope = 1.0 / abs(math.log(slope))

    def bounded_exp(v: torch.Tensor, k: float) -> torch.Tensor:  # zuko's soft bound, then exp
        return torch.exp(v / (v.abs() * k + 1.0))

    cw = [bounded_exp(phi[:, 0], 2.0 * inv_log_slope)]
    ch = [bounded_exp(phi[:, bins], 2.0 * inv_log_slope)]
    for j in range(1, bins):
        cw.append(cw[-1] + bounded_exp(phi[:, j], 2.0 * inv_log_slope))
        ch.append(ch[-1] + bounded_exp(phi[:, bins + j], 2.0 * inv_log_slope))
    t = (y + bound) * (ch[-1] * (1.0 / (2.0 * bound)))
    zero = torch.zeros_like(y)
    # bin 0 unless C_j < t: lower knot 0, upper knot C_0, raw derivatives 0 (d = 1) and knot 1's
    x_lo, y_lo, x_hi, y_hi, r0, r1 = zero, zero, cw[0], ch[0], zero, phi[:, 2 * bins] if bins > 1 else zero
    for j in range(bins - 1):
        b = ch[j] < t
        x_lo = torch.where(b, cw[j], x_lo)
        y_lo = torch.where(b, ch[j], y_lo)
        x_hi = torch.where(b, cw[j + 1], x_hi)
        y_hi = torch.where(b, ch[j + 1], y_hi)
        r0 = torch.where(b, phi[:, 2 * bins + j], r0)
        r1 = torch.where(b, phi[:, 2 * bins + j + 1] if j + 1 < bins - 1 else zero, r1)
    sx = (2.0 * bound) / cw[-1]
    sy = (2.0 * bound) / ch[-1]
    d0 = bounded_exp(r0, inv_log_slope)
    d1 = bounded_exp(r1, inv_log_slope)
    return _root(y, x_lo * sx - bound, x_hi * sx - bound, y_lo * sy - bound, y_hi * sy - bound, d0, d1, bound)
