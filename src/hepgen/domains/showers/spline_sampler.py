"""The inverse of a rational-quadratic-spline coupling flow with fewer passes over memory.

(The plane-wise spline inverse :func:`rqs_inverse_planes` itself lives in
:mod:`hepgen.models.spline_inverse`, shared with the tabular flows, and is re-exported here.)

:class:`SplineCouplingSampler` computes ``flow.transform(c).inv(z)`` for a coupling flow made
of :class:`hepgen.models.flow.SplineCoupling` layers (``ConditionalFlow(coupling=True,
spline_bins=K)``, both stages of the ``caloflow`` preset), the same function up to float
rounding (``tests/test_spline_sampler.py`` checks it against zuko's transform).

Why it is faster.  Per transformed feature the conditioner outputs ``3K - 1`` numbers (widths,
heights, derivatives) and, on the demo's shape flow at batch 1000, that block is
``1000 × 192 × 23`` floats (18 MB) per layer: the sampler is bound by passes over it, not by
the matrix products (``docs/inference.md``, "The spline coupling sampler").  zuko (and
:class:`~hepgen.models.flow.FastRQSTransform`) build all knots — soft bounds, exponential,
normalisation and padding of widths, heights *and* derivatives — and then gather 6 values
per feature from broadcast copies.  The inverse needs much less (:func:`rqs_inverse_planes`):

* the conditioner's last layer writes the parameters *parameter-major*, ``(N, 3K - 1, F)``
  (its rows are reordered once): every step is then an element-wise operation on whole
  ``(N, F)`` planes, where torch's CPU kernels vectorise, instead of a cumulative sum,
  comparison or gather along a last dimension of 8 entries;
* the bin ``k`` of ``y`` is found on the *unnormalised* cumulative heights ``C_j`` by comparing
  them with ``(y + B) · C_K / (2B)`` (the same test as ``C_j · 2B / C_K − B < y``), so the
  knots are never normalised or padded;
* only the two derivatives at the ends of bin ``k`` are needed: the raw values are gathered
  first and bounded / exponentiated afterwards (2 instead of ``K − 1`` per feature);
* the soft bound, the exponential and the cumulative sums of widths and heights run in place
  on one ``(N, 2K, F)`` buffer, and ``y`` outside ``[−B, B]`` (the identity tails) is handled by
  one ``where``;
* the features are not put back into their natural order after each coupling layer: they travel
  in *working orders* (each coupling leaves ``[kept half, transformed half]``), and an inverted
  :class:`~hepgen.models.flow.LinearMix` writes its output directly in the order the next
  coupling reads, by permuting the rows and columns of its matrix once.  After a mix the two
  halves are slices, not gathers; one gather at the end restores the natural order if needed.
  Under ``torch.compile`` the gathers were fused into the spline loops as per-lane loads: on
  the demo's model (``mix: 4``, 2 threads, batch 1000) this took the compiled sampling time
  from 25.9 to 21.3 ms (docs/inference.md, "Third pass: working orders").

Under ``torch.compile`` (the ``compile`` sampling path) the same function is computed as a chain
of ``(N, F)`` element-wise operations with no gather (``hepgen.models.spline_inverse._rqs_inverse_fusable``), which
inductor fuses into one loop over the parameters; under autograd and ``torch.export`` (ONNX)
without in-place updates.

The arithmetic of the root of the quadratic is zuko's (``MonotonicRQSTransform._inverse``).
Everything is plain tensor code (exportable to ONNX, compilable, quantisable: the
conditioners are ``nn.Linear`` stacks).

Reference: C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032 (Appendix A.3, the
inverse as the root of a quadratic).
"""

from __future__ import annotations

import copy

import torch
import zuko.nn
from torch import nn

from hepgen.models.flow import (SPLINE_BOUND, SPLINE_MIN_SLOPE, FastRQSTransform, LinearMix, SplineCoupling,
                               require_standard_normal_base)
# the plane-wise spline inverse lives with the models (shared with the tabular sampler); re-exported here
from hepgen.models.spline_inverse import rqs_inverse, rqs_inverse_planes

__all__ = ["SplineCouplingSampler", "rqs_inverse", "rqs_inverse_planes"]


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


def _coupling_order(layer) -> torch.Tensor:
    """The order ``[a, b]`` a coupling layer reads its features in: its kept half ``a``, then the
    half ``b`` it transforms (each in increasing index)."""
    mask = layer.mask
    return torch.cat([mask.nonzero().squeeze(-1), (~mask).nonzero().squeeze(-1)])


class _Layer(nn.Module):
    """One coupling layer's inverse: ``y_a`` passes, ``y_b`` is inverted given ``[y_a, c]``.

    The sampler carries the features in a *working order* (:class:`SplineCouplingSampler`):
    column ``j`` of the input holds feature ``order_in[j]`` (``None``: the natural order), and
    the output is in this layer's order ``[a, b]`` (:func:`_coupling_order`), not put back.
    Where the input already arrives in that order (after a :class:`_Mix`, which can write any
    order for free), ``y_a`` and ``y_b`` are slices; otherwise they are gathered.

    The rows of the conditioner's last layer are reordered once so that it writes the spline
    parameters parameter-major, ``(N, 3K - 1, F_b)`` (zuko's order is feature-major), the
    layout of :func:`rqs_inverse_planes`; the matrix product costs the same.
    """

    def __init__(self, layer, bound: float, slope: float, order_in: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = _plain_mlp(layer.hyper)
        self.order_out = _coupling_order(layer)
        n_a = int(layer.mask.sum())
        n = self.order_out.numel()
        # position of each feature in the input
        pos = torch.arange(n) if order_in is None else torch.argsort(order_in)
        pos_a, pos_b = pos[self.order_out[:n_a]], pos[self.order_out[n_a:]]
        self.n_a = n_a
        # under torch.compile a gather fused into the spline loop about doubles its cost per
        # element (docs/inference.md, "Third pass: working orders"): slices where the order allows
        self.sliced = bool(torch.equal(pos_a, torch.arange(n_a)) and torch.equal(pos_b, torch.arange(n_a, n)))
        self.register_buffer("pos_a", pos_a)
        self.register_buffer("pos_b", pos_b)
        self.bins, self.total = int(layer.bins), int(layer.total)
        self.bound, self.slope = float(bound), float(slope)
        last = self.net[-1]
        n_b = n - n_a
        if not isinstance(last, nn.Linear) or last.out_features != n_b * self.total:
            raise TypeError("SplineCouplingSampler: the conditioner must end in a linear layer with "
                            "3 bins - 1 outputs per transformed feature")
        # new row p * F_b + f is zuko's row f * (3K - 1) + p
        rows = (torch.arange(n_b).unsqueeze(0) * self.total + torch.arange(self.total).unsqueeze(1)).reshape(-1)
        with torch.no_grad():
            last.weight.copy_(last.weight[rows])
            if last.bias is not None:
                last.bias.copy_(last.bias[rows])

    def forward(self, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.sliced:
            y_a, y_b = y[:, : self.n_a], y[:, self.n_a :]
        else:
            y_a, y_b = y.index_select(1, self.pos_a), y.index_select(1, self.pos_b)
        # under autocast (bf16 path) the matrix products run in low precision, the spline in y's
        phi = self.net(torch.cat([y_a, c], dim=1)).unflatten(-1, (self.total, -1))
        x_b = rqs_inverse_planes(phi.to(y_b.dtype), y_b, self.bins, self.bound, self.slope)
        return torch.cat([y_a, x_b], dim=1)  # in self.order_out


class _Mix(nn.Module):
    """A :class:`~hepgen.models.flow.LinearMix` inverted once: ``x = W⁻¹ y`` with ``W⁻¹`` computed in
    float64 and kept as a buffer (not an ``nn.Linear``: the int8 path leaves it in full precision,
    since it mixes every feature at once).  Compiled and ONNX paths see one more matrix product.

    Working orders (:class:`_Layer`): input column ``j`` holds feature ``order_in[j]``, output
    column ``k`` feature ``order_out[k]`` (``None``: natural), so the stored matrix is
    ``W⁻¹[order_out][:, order_in]``: reordering costs nothing here."""

    def __init__(self, mix: LinearMix, order_in: torch.Tensor | None = None,
                 order_out: torch.Tensor | None = None) -> None:
        super().__init__()
        with torch.no_grad():
            inverse = torch.linalg.inv(mix.weight().double())
        if order_out is not None:
            inverse = inverse[order_out]
        if order_in is not None:
            inverse = inverse[:, order_in]
        self.register_buffer("inverse", inverse.to(mix.log_diag.dtype))

    def forward(self, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # in y's precision also under autocast (the bf16 path)
        with torch.autocast(y.device.type, enabled=False):
            return nn.functional.linear(y, self.inverse.to(y.dtype))


class SplineCouplingSampler(nn.Module):
    """``(c, z) → flow.transform(c).inv(z)`` for a spline coupling flow, see the module docstring.

    Arguments:
        flow: a ``zuko.flows.Flow`` whose transforms are ``SplineCoupling`` layers, optionally
            with :class:`~hepgen.models.flow.LinearMix` layers between them
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
        couplings = [t for t in transforms if isinstance(t, SplineCoupling)]
        if not couplings or not all(isinstance(t, (SplineCoupling, LinearMix)) for t in transforms):
            raise TypeError("SplineCouplingSampler supports flows of spline coupling layers only (and LinearMix between them)")
        if any(t.univariate is not FastRQSTransform for t in couplings):
            raise TypeError("SplineCouplingSampler: unexpected univariate transform")
        require_standard_normal_base(flow, "SplineCouplingSampler")
        # the layers use FastRQSTransform.from_block's defaults; zuko's ComposedTransform
        # inverts the last transform first.  The features travel in working orders (_Layer): each
        # coupling leaves its output in its own order, a mix writes the next coupling's order.
        inverse = transforms[::-1]
        layers: list[nn.Module] = []
        order = None  # the working order of the features between the layers (None: natural)
        for i, t in enumerate(inverse):
            if isinstance(t, LinearMix):
                after = inverse[i + 1] if i + 1 < len(inverse) else None
                out = _coupling_order(after) if isinstance(after, SplineCoupling) else None
                layers.append(_Mix(t, order, out))
                order = out
            else:
                layers.append(_Layer(t, SPLINE_BOUND, SPLINE_MIN_SLOPE, order))
                order = layers[-1].order_out
        self.layers = nn.ModuleList(layers)
        # one gather back to the natural order at the end, if the last layer is a coupling
        self.register_buffer("unpermute", None if order is None else torch.argsort(order))
        self.noise_dim = int(n_features)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = z
        for layer in self.layers:
            y = layer(c, y)
        return y if self.unpermute is None else y.index_select(1, self.unpermute)
