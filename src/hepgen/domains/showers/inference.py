"""Fast, exportable inference: a trained shower generator as one torch module.

:class:`ShowerSampler` maps *physical* inputs to showers with no numpy or Python state
in between, so the same module is benchmarked (:mod:`hepgen.bench`), exported to ONNX
(:mod:`hepgen.export`) and used for streamed sampling (``hepgen sample``)::

    incident_energy (B, 1) MeV ─► ConditionEncoder ─► c (B, C) ─┐
    [conditions (B, K) raw]  ──┘                                 ├► sampler(c, z) ─► features (B, D)
    noise (B, noise_dim) ~ N(0, 1) ─────────────────────────────┘           │
                                                      FeatureDecoder ◄───────┘
                                                            └─► showers (B, n_voxels) MeV

With a preprocessor's ``orientations`` (a symmetry of the showers' distribution), ``noise`` has one
more column than the network takes: its normal CDF picks the orientation each generated shower is
turned to (:func:`orient`), independently of the shower.

* :class:`ConditionEncoder` and :class:`FeatureDecoder` re-implement
  :class:`~hepgen.domains.showers.preprocessing.ShowerPreprocessor`'s condition transform and inverse in
  float32 torch ops (tested against the numpy originals).
* The sampler is the model's deterministic ``sample_from_noise(c, z)``.  For the ``flow``
  family with affine transforms, :class:`PrunedAffineFlow` computes the same function
  faster: the masks of zuko's MADE conditioners are folded into plain ``nn.Linear``
  weights, and each of the ``passes`` sequential inverse passes only evaluates the hidden
  units and outputs that the features solved in that pass depend on.  For a coupling flow
  (``passes=2``) with two hidden layers of 256 on 392 features this removes ~60 % of the
  multiply-adds, exactly (same function up to float rounding; see ``tests/test_inference.py``).
  For spline coupling flows (both stages of the ``caloflow`` preset),
  :class:`~hepgen.domains.showers.spline_sampler.SplineCouplingSampler` computes the inverse
  with fewer passes over the spline parameters (same function; ``tests/test_spline_sampler.py``).

Sampling paths (:func:`prepare_path`): ``fp32``; ``bf16`` / ``fp16`` (autocast around the
network, the decoder stays float32); ``int8`` (dynamic int8 quantisation of the
network's ``nn.Linear`` layers, CPU only); ``compile`` (``torch.compile``); ``compile-bf16`` (both:
bf16 autocast of the network's matrix products, compiled).
:func:`sample_through_path` samples a whole set of showers through one path (``hepgen demo``).
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hepgen.domains.showers.preprocessing import LIFT_STEP, LONE_CELL_SCRAMBLE, ShowerPreprocessor, incident_energy_array
from hepgen.domains.showers.spline_sampler import SplineCouplingSampler
from hepgen.models import GenerativeModel
from hepgen.models.flow import require_standard_normal_base
from hepgen.models.made_sampler import pruned_dense
from hepgen.models.quantize import fold_masked_linear, quantize_int8

__all__ = [
    "SAMPLING_PATHS",
    "auto_sampling_path",
    "call_padded",
    "compiles",
    "native_bf16",
    "normal_cdf",
    "orient",
    "ConditionEncoder",
    "FeatureDecoder",
    "ModelSampler",
    "NoiseSampler",
    "PrunedAffineFlow",
    "ShowerSampler",
    "build_sampler",
    "fold_masked_linear",
    "kept_largest",
    "prepare_path",
    "quantize_int8",
    "sample_through_path",
    "spline_network",
]

SAMPLING_PATHS = ("fp32", "bf16", "fp16", "int8", "compile", "compile-bf16")


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """Φ(z) = (1 + erf(z / √2)) / 2: a standard normal noise column → uniform in [0, 1] (``erf``
    exports to ONNX, ``torch.special.ndtr`` does not)."""
    return 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))


def orient(showers: torch.Tensor, u: torch.Tensor, orientations: torch.Tensor) -> torch.Tensor:
    """Each shower turned by permutation ``floor(u G)`` of ``orientations``, as
    :meth:`~hepgen.domains.showers.preprocessing.ShowerPreprocessor.orient` (torch: compiled and ONNX paths).

    ``showers (B, V)``, ``u (B,)`` in [0, 1], ``orientations (G, V)`` int64 → ``(B, V)``.

    >>> orient(torch.tensor([[1., 2., 3.], [1., 2., 3.]]), torch.tensor([0.2, 1.0]),
    ...        torch.tensor([[0, 1, 2], [2, 0, 1]])).tolist()
    [[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]
    """
    n = orientations.shape[0]
    g = torch.clamp((u * n).long(), 0, n - 1)
    return torch.gather(showers, 1, orientations.index_select(0, g))


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX), as
    oneDNN reports it; without them bf16 is emulated and slower than fp32."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def call_padded(module: nn.Module, e: torch.Tensor, z: torch.Tensor | None, extra: torch.Tensor | None,
                batch_size: int, pad: bool) -> torch.Tensor:
    """``module(e, z, extra)`` on one batch; with ``pad``, a batch shorter than ``batch_size`` is
    called with its rows repeated up to ``batch_size`` and the result cut back to its rows, so
    that a compiled module sees one shape and compiles once (rows are independent).

    >>> rows = lambda e, z, x: e * 10
    >>> call_padded(rows, torch.tensor([[1.0], [2.0]]), None, None, 3, pad=True).flatten().tolist()
    [10.0, 20.0]
    """
    k = len(e)
    if not pad or k >= batch_size:
        return module(e, z, extra)
    idx = torch.arange(batch_size) % k
    return module(e[idx], None if z is None else z[idx], None if extra is None else extra[idx])[:k]


def compiles(path: str) -> bool:
    """Whether sampling path ``path`` runs under ``torch.compile`` (its first call compiles, and a
    new batch size compiles again), i.e. ``compile`` and ``compile-bf16``.

    >>> [p for p in SAMPLING_PATHS if compiles(p)]
    ['compile', 'compile-bf16']
    """
    return path.startswith("compile")


def auto_sampling_path() -> str:
    """The fastest CPU path measured for spline flows on this CPU (docs/inference.md):
    ``compile-bf16`` where bf16 is native (:func:`native_bf16`), else ``compile`` (exact).

    >>> auto_sampling_path() in ("compile", "compile-bf16")
    True
    """
    return "compile-bf16" if native_bf16() else "compile"


# --- pre- and post-processing in torch ---------------------------------------------------------
class ConditionEncoder(nn.Module):
    """Physical conditions → standardised model conditions (as ``ShowerPreprocessor.transform_conditions``).

    Arguments:
        preprocessor: the fitted preprocessor of the checkpoint.

    Shapes: ``incident_energy (B, 1)`` MeV and ``conditions (B, K)`` (the extra conditions
    in ``preprocessor.condition_names`` order, concatenated) → ``(B, 1 + K)`` float32.
    """

    def __init__(self, preprocessor: ShowerPreprocessor) -> None:
        super().__init__()
        self.n_extra = len(preprocessor.cond_mean) - 1
        self.register_buffer("mean", torch.as_tensor(preprocessor.cond_mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(preprocessor.cond_std, dtype=torch.float32))

    def forward(self, incident_energy: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        cols = torch.log(incident_energy)
        if self.n_extra:
            cols = torch.cat([cols, conditions], dim=1)
        return (cols - self.mean) / self.std


class FeatureDecoder(nn.Module):
    """Standardised logit features → showers in MeV (as ``ShowerPreprocessor.inverse``, float32).

    The layer energies ``E_l = u_{l+1} R_l`` with the remaining energy
    ``R_l = u_0 · scale · E_inc · Π_{j=1..l} (1 − u_j)`` are computed with a cumulative sum
    of ``log(1 − u_j)`` instead of numpy's sequential subtraction (one vectorised op instead
    of a loop over layers; ``u_j = 1`` gives ``log 0 = −inf`` and ``exp(−inf) = 0`` as it
    should).

    Arguments:
        preprocessor: the fitted preprocessor of the checkpoint.

    Shapes: ``features (B, n_energy_features + n_voxels)``, ``incident_energy (B, 1)`` MeV →
    ``(B, n_voxels)`` float32 MeV.
    """

    def __init__(self, preprocessor: ShowerPreprocessor) -> None:
        super().__init__()
        pre = preprocessor
        self.n_layers = pre.n_layers
        self.n_energy = pre.n_energy_features  # 2 n_layers with occupancy (the lit-cell counts)
        self.occupancy = bool(pre.occupancy)
        self.layer_sizes = list(pre.layer_sizes)
        self.equal_layers = len(set(self.layer_sizes)) == 1
        self.alpha = float(pre.alpha)
        self.scale = float(pre.scale)
        self.threshold = float(pre.threshold)
        self.register_buffer("feat_mean", torch.as_tensor(pre.feat_mean, dtype=torch.float32))
        self.register_buffer("feat_std", torch.as_tensor(pre.feat_std, dtype=torch.float32))
        # occupancy: the faintest-lit-cell spectrum the raised cells take their energies from
        self.lift = self.occupancy and pre.lift_quantiles is not None
        if self.lift:
            self.register_buffer("lift_quantiles", torch.as_tensor(pre.lift_quantiles, dtype=torch.float32))
        # occupancy: the lone-cell law (a layer with one lit cell takes its place from it)
        self.lone = self.occupancy and pre.lone_cells is not None
        if self.lone:
            self.register_buffer("lone_edges", torch.as_tensor(pre.lone_edges, dtype=torch.float32))
            self.register_buffer("lone_cdf", torch.as_tensor(pre.lone_cdf, dtype=torch.float32))
            self.lone_layers = pre.lone_layers
            self.register_buffer("lone_drawn", torch.as_tensor(self.lone_layers).reshape(1, -1, 1))
        layer_of_voxel = np.repeat(np.arange(self.n_layers), self.layer_sizes)
        self.register_buffer("layer_of_voxel", torch.as_tensor(layer_of_voxel, dtype=torch.long))
        one_hot = np.zeros((pre.n_voxels, self.n_layers), dtype=np.float32)
        one_hot[np.arange(pre.n_voxels), layer_of_voxel] = 1.0
        self.register_buffer("one_hot", torch.as_tensor(one_hot))

    def forward(self, features: torch.Tensor, incident_energy: torch.Tensor) -> torch.Tensor:
        z = features * self.feat_std + self.feat_mean
        x = ((torch.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)).clamp(0.0, 1.0)
        u, shapes = x[:, : self.n_layers], x[:, self.n_energy :]
        total = u[:, :1] * (self.scale * incident_energy)  # (B, 1)
        if self.n_layers > 1:
            log_keep = torch.log1p(-u[:, 1:])
            cum = torch.cumsum(torch.cat([torch.zeros_like(total), log_keep], dim=1), dim=1)
            share = torch.cat([u[:, 1:], torch.ones_like(total)], dim=1)
            e_layer = total * torch.exp(cum) * share  # (B, L)
        else:
            e_layer = total
        if self.occupancy:
            return self._lit_showers(shapes, x[:, self.n_layers : self.n_energy], e_layer, incident_energy)
        if self.equal_layers:
            s = shapes.reshape(shapes.shape[0], self.n_layers, self.layer_sizes[0])
            norm = s.sum(dim=2, keepdim=True)
            showers = s / torch.where(norm > 0, norm, torch.ones_like(norm)) * e_layer.unsqueeze(2)
            showers = showers.reshape(shapes.shape[0], -1)
        else:
            norm = (shapes @ self.one_hot).index_select(1, self.layer_of_voxel)
            showers = shapes / torch.where(norm > 0, norm, torch.ones_like(norm))
            showers = showers * e_layer.index_select(1, self.layer_of_voxel)
        return torch.where(showers < self.threshold, torch.zeros_like(showers), showers)


    def _lit_showers(self, shapes: torch.Tensor, occupancy: torch.Tensor, e_layer: torch.Tensor,
                     incident_energy: torch.Tensor) -> torch.Tensor:
        """With occupancy: per layer the k largest shares, k = floor(o (n_cells + 1)) clipped to
        [0, n_cells] and to floor(E_layer / threshold) (k = 1: the cell drawn from the lone-cell law
        when the preprocessor has one), scaled to the layer energy, and the kept cells
        below the threshold raised from the larger ones, to energies from the faintest-lit-cell
        spectrum when the preprocessor has one (``ShowerPreprocessor.inverse``: :func:`keep_largest`,
        :func:`fill_to_threshold`).  Layers of equal size are done at once as ``(B, L, n_cells)``."""
        n_q = self.lift_quantiles.shape[1] if self.lift else 0
        cdf = None
        if self.lone:  # (B, n_voxels): the cumulative lone-cell law of each shower's bin of E_inc
            cdf = self.lone_cdf[torch.bucketize(torch.log(incident_energy.reshape(-1)), self.lone_edges)]
        if self.equal_layers:
            size, b = self.layer_sizes[0], shapes.shape[0]
            offset = torch.arange(self.n_layers, device=shapes.device).reshape(1, -1, 1) * n_q
            cells = self._lit_cells(shapes.reshape(b, self.n_layers, size), (occupancy * (size + 1)).unsqueeze(2),
                                    e_layer.unsqueeze(2), offset,
                                    None if cdf is None else (cdf.reshape(b, self.n_layers, size), self.lone_drawn))
            return cells.reshape(b, -1)
        out, start = [], 0
        for layer, size in enumerate(self.layer_sizes):
            lone = cdf is not None and self.lone_layers[layer]
            out.append(self._lit_cells(shapes[:, start : start + size], occupancy[:, layer : layer + 1] * (size + 1),
                                       e_layer[:, layer : layer + 1], layer * n_q,
                                       (cdf[:, start : start + size], True) if lone else None))
            start += size
        return torch.cat(out, dim=1)

    def _lit_cells(self, s: torch.Tensor, count: torch.Tensor, e: torch.Tensor, offset, lone=None) -> torch.Tensor:
        """One layer (``s (B, n)``) or equal layers at once (``s (B, L, n)``): shares, dequantised counts
        ``(..., 1)`` (times n_cells + 1), layer energies ``(..., 1)`` MeV → cells ``(..., n)`` MeV; ``offset``:
        the layer's first row in the flattened ``lift_quantiles``; ``lone``: None or (the cumulative
        lone-cell law ``(..., n)``, where to use it: a bool or a ``(1, L, 1)`` mask)."""
        size, thr = s.shape[-1], self.threshold
        k = torch.clamp(torch.floor(count), 0, size)
        k = torch.minimum(k, torch.floor(e / thr + 1e-9)).long()
        if lone is not None:  # one lit cell: its place by the inverse CDF at the count's fractional part
            cdf, drawn = lone
            v = torch.remainder((count - torch.floor(count)) * LONE_CELL_SCRAMBLE, 1.0)
            cell = torch.clamp((cdf <= v).sum(dim=-1, keepdim=True), max=size - 1)
            one_hot = (torch.arange(size, device=s.device) == cell).to(s.dtype)
            s = torch.where((k == 1) & drawn, one_hot, s)
        s = torch.where(kept_largest(s, k), s, torch.zeros_like(s))
        norm = s.sum(dim=-1, keepdim=True)
        cells = s / torch.where(norm > 0, norm, torch.ones_like(norm)) * e
        low = (cells > 0) & (cells < thr)
        high = cells >= thr
        zero = torch.zeros_like(cells)
        deficit = torch.where(low, thr - cells, zero).sum(dim=-1, keepdim=True)
        excess = torch.where(high, cells - thr, zero)
        total = excess.sum(dim=-1, keepdim=True)
        target = torch.full_like(cells, thr)
        if self.lift:
            q = self.lift_quantiles.reshape(-1)
            n_q = self.lift_quantiles.shape[1]
            level = torch.remainder(count - torch.floor(count)
                                    + (torch.cumsum(low.to(cells.dtype), dim=-1) - 1.0) * LIFT_STEP, 1.0)
            pos = level * (n_q - 1)
            i0 = torch.clamp(torch.floor(pos), 0, n_q - 2)
            index = i0.long() + offset
            q0 = q[index]
            target = thr * (q0 + (pos - i0) * (q[index + 1] - q0))
            faintest = torch.where(high, cells, torch.full_like(cells, float("inf"))).amin(dim=-1, keepdim=True)
            cap = torch.where(torch.isinf(faintest), torch.full_like(faintest, thr), faintest)
            target = torch.minimum(torch.clamp(target, min=thr), cap)
        extra = torch.where(low, target - thr, zero).sum(dim=-1, keepdim=True)
        share = torch.where(extra > 0, (total - deficit) / torch.where(extra > 0, extra, torch.ones_like(extra)),
                            torch.ones_like(extra)).clamp(0.0, 1.0)
        keep = (1.0 - (deficit + share * extra) / torch.where(total > 0, total, torch.ones_like(total))).clamp(0.0, 1.0)
        lifted = thr + share * (target - thr)
        cells = torch.where(low, lifted, torch.where(high, thr + excess * keep, zero))
        return torch.where(cells < thr, zero, cells)


#: rows of at most this many cells select their k largest by counting ranks inside torch.compile
#: (:func:`kept_largest`); longer rows, and eager code, sort.
RANK_MAX_CELLS = 64


def kept_largest(s: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The mask of the ``k`` largest entries of each row, as numpy's
    :func:`~hepgen.domains.showers.preprocessing.keep_largest`: ties at the k-th value are all kept,
    ``k = 0`` keeps none.  ``s (..., n)``, ``k (..., 1)`` integer → bool ``(..., n)``.

    Two ways to one mask.  Eagerly, or for rows longer than :data:`RANK_MAX_CELLS`: sort each row
    and compare with its k-th value.  Inside ``torch.compile`` (the ``compile`` sampling paths),
    rows of at most ``RANK_MAX_CELLS``: count for each entry the entries strictly larger than it
    (``s_i`` ≥ the k-th largest ⟺ fewer than k entries exceed it), ``n²`` comparisons written as
    ``n`` broadcast terms that inductor fuses into one vectorised loop.  Why not the sort: torch's
    CPU sort is slow on short rows (8,000 rows of 48, one thread: 13 ms eager, 18 ms compiled,
    against 6 ms for the fused count and 2 ms for numpy's sort, measured 2026-12-02 on the 2-core
    development machine), and it was most of what the lit-cell counts cost the demo's sampler.

    >>> s = torch.tensor([[0.1, 0.5, 0.2, 0.2], [0.3, 0.3, 0.4, 0.0]])
    >>> kept_largest(s, torch.tensor([[2], [0]])).int().tolist()
    [[0, 1, 1, 1], [0, 0, 0, 0]]
    """
    if torch.compiler.is_compiling() and s.shape[-1] <= RANK_MAX_CELLS:
        larger = torch.zeros_like(s)
        for j in range(s.shape[-1]):
            larger = larger + torch.where(s[..., j : j + 1] > s, 1.0, 0.0)
        return (larger < k) & (k > 0)
    ordered = torch.sort(s, dim=-1, descending=True).values
    kth = torch.gather(ordered, -1, torch.clamp(k - 1, min=0))
    return (s >= kth) & (k > 0)


# --- the network part -----------------------------------------------------------------------
class NoiseSampler(nn.Module):
    """``(c, z) → model.sample_from_noise(c, z)``: any family with a noise → sample map.

    Arguments:
        model: a :class:`~hepgen.models.GenerativeModel` whose ``noise_dim`` is not None.
    """

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        if model.noise_dim is None:
            raise ValueError(f"model family {model.family!r} has no noise → sample map (noise_dim is None); "
                             "it cannot be exported or sampled through hepgen.domains.showers.inference")
        self.model = model
        self.noise_dim = int(model.noise_dim)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model.sample_from_noise(c, z)


class ModelSampler(nn.Module):
    """``(c, generator) → model.sample(c, generator)``: families without a noise → sample map.

    Such a sampler cannot be exported; it serves benchmarks and streamed sampling only.

    Arguments:
        model: any :class:`~hepgen.models.GenerativeModel`.
    """

    noise_dim = None

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model.sample(c, generator=generator)


class _Pass(nn.Module):
    """One inverse pass of a MADE transform: solves the features of one order group."""

    def __init__(self, net: nn.Sequential, x_inputs: torch.Tensor, start: int, stop: int) -> None:
        super().__init__()
        self.net = net
        # positions of the needed inputs in the solved-so-far vector; a prefix 0..m-1 is a slice
        self.prefix = int(x_inputs.numel()) if torch.equal(x_inputs, torch.arange(x_inputs.numel())) else -1
        self.register_buffer("x_inputs", x_inputs)
        self.start, self.stop = int(start), int(stop)  # this pass's features in the block order
        self.n = self.stop - self.start


class _PrunedMADE(nn.Module):
    """Inverse of one zuko ``MaskedAutoregressiveTransform`` with affine univariate maps.

    Works in *block order*: the features sorted by the pass that solves them, so that each
    pass reads its part of the input and writes its output as contiguous slices.
    """

    def __init__(self, transform, n_features: int, n_conditions: int, slope: float) -> None:
        super().__init__()
        from zuko.nn import MaskedLinear

        hyper = list(transform.hyper)
        linears, acts = hyper[0::2], hyper[1::2]
        if not all(isinstance(m, MaskedLinear) for m in linears) or any(isinstance(m, MaskedLinear) for m in acts):
            raise TypeError("expected a MaskedMLP of alternating MaskedLinear and activation layers")
        total = int(transform.total)
        weights = [(m.mask * m.weight).detach() for m in linears]
        biases = [m.bias.detach() for m in linears]
        masks = [m.mask.bool() for m in linears]
        order = transform.order
        self.inv_log_slope = 1.0 / abs(float(np.log(slope)))
        passes, solved = [], []  # solved: the block order
        for k in range(int(order.max()) + 1):
            feats = torch.nonzero(order == k).squeeze(1)
            if feats.numel() == 0:
                continue
            rows = torch.cat([feats * total, feats * total + 1])  # shift block, then log-scale block
            keep = [None] * len(linears)
            keep[-1] = rows
            for l in range(len(linears) - 1, 0, -1):
                keep[l - 1] = torch.nonzero(masks[l][keep[l]].any(dim=0)).squeeze(1)
            in_cols = torch.nonzero(masks[0][keep[0]].any(dim=0)).squeeze(1)
            x_cols = in_cols[in_cols < n_features]
            if x_cols.numel() and int(order[x_cols].max()) >= k:
                raise RuntimeError("MADE masks let a pass depend on unsolved features")
            position = {int(d): i for i, d in enumerate(solved)}
            x_cols = x_cols[torch.argsort(torch.tensor([position[int(d)] for d in x_cols], dtype=torch.long))]
            x_inputs = torch.tensor([position[int(d)] for d in x_cols], dtype=torch.long)
            ctx_cols = torch.arange(n_features, n_features + n_conditions)
            net = pruned_dense(weights, biases, acts, keep, torch.cat([x_cols, ctx_cols]))
            passes.append(_Pass(net, x_inputs, len(solved), len(solved) + len(feats)))
            solved.extend(int(d) for d in feats)
        self.passes = nn.ModuleList(passes)
        self.order_list = solved  # block position -> feature index

    def forward(self, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``c (B, C)``, ``y (B, D)`` in block order → ``x (B, D)`` in block order."""
        solved = None
        for p in self.passes:
            if p.prefix == 0:
                inp = c
            elif p.prefix > 0:
                inp = torch.cat([solved[:, : p.prefix], c], dim=1)
            else:
                inp = torch.cat([solved.index_select(1, p.x_inputs), c], dim=1)
            phi = p.net(inp)
            shift, a = phi[:, : p.n], phi[:, p.n :]
            log_scale = a / (1.0 + a.abs() * self.inv_log_slope)
            x = (y[:, p.start : p.stop] - shift) * torch.exp(-log_scale)
            solved = x if solved is None else torch.cat([solved, x], dim=1)
        return solved


class PrunedAffineFlow(nn.Module):
    """The inverse (sampling direction) of a zuko affine MAF, with pruned dense layers.

    Equal to ``flow.transform(c).inv(z)`` up to float rounding.  A pass that solves the
    features of order group ``k`` only needs (by the MADE construction) the hidden units
    connected to those features' outputs and the inputs of groups ``< k``; all others are
    dropped from the weight matrices once, at construction.  The masks are multiplied into
    the weights, so every layer is a plain ``nn.Linear`` (quantisable, exportable).

    Arguments:
        flow: a ``zuko.flows.MAF`` whose transforms use ``MonotonicAffineTransform``.
        n_features: D.
        n_conditions: C (>= 1).

    Shapes: ``c (B, C)``, ``z (B, D)`` standard normal → ``(B, D)``.
    """

    def __init__(self, flow, n_features: int, n_conditions: int) -> None:
        super().__init__()
        from zuko.transforms import MonotonicAffineTransform

        if n_conditions < 1:
            raise TypeError("PrunedAffineFlow needs at least one condition")
        slope = inspect.signature(MonotonicAffineTransform.__init__).parameters["slope"].default
        blocks = []
        for t in flow.transform.transforms:
            if getattr(t, "univariate", None) is not MonotonicAffineTransform or getattr(t, "order", None) is None:
                raise TypeError("PrunedAffineFlow supports MAF transforms with affine univariate maps only")
            blocks.append(_PrunedMADE(t, n_features, n_conditions, slope))
        require_standard_normal_base(flow, "PrunedAffineFlow")
        # zuko's ComposedTransform inverts the last transform first
        blocks = blocks[::-1]
        self.blocks = nn.ModuleList(blocks)
        self.noise_dim = int(n_features)
        # one gather per block takes the previous block's order to this block's order
        prev = list(range(n_features))
        for i, block in enumerate(blocks):
            where = {d: j for j, d in enumerate(prev)}
            self.register_buffer(f"gather_{i}", torch.tensor([where[d] for d in block.order_list], dtype=torch.long))
            prev = block.order_list
        final = torch.empty(n_features, dtype=torch.long)
        final[torch.tensor(prev)] = torch.arange(n_features)
        self.register_buffer("gather_out", final)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = z
        for i, block in enumerate(self.blocks):
            y = block(c, y.index_select(1, getattr(self, f"gather_{i}")))
        return y.index_select(1, self.gather_out)


def build_sampler(model: GenerativeModel, fast: bool = True) -> nn.Module:
    """The fastest ``(c, z) → features`` module available for ``model``.

    Arguments:
        model: a trained model (the fast path copies its weights, the others share them).
        fast: allow :class:`PrunedAffineFlow` for affine ``flow`` models and the affine
            stages of ``caloflow`` models.

    Returns:
        :class:`PrunedAffineFlow` or :class:`~hepgen.domains.showers.spline_sampler.SplineCouplingSampler`
        (or a two-stage module of such for ``caloflow``), else
        :class:`NoiseSampler` (families with
        ``sample_from_noise``), else :class:`ModelSampler` (``noise_dim = None``: takes a
        generator instead of noise; not exportable).
    """
    if model.noise_dim is None:
        return ModelSampler(model).eval()
    if fast and model.family == "flow":
        stage = _flow_stage(model)
        if isinstance(stage, (PrunedAffineFlow, SplineCouplingSampler)):
            return stage
    if fast and model.family == "caloflow":
        return _TwoStageFlow(model).eval()
    return NoiseSampler(model).eval()


def spline_network(model: GenerativeModel) -> nn.Module | None:
    """:func:`build_sampler`'s module for a spline coupling model, else None.

    A ``flow`` with ``coupling`` and ``spline_bins``, or a ``caloflow`` whose stages are all
    such flows (the ``caloflow`` preset), gets :class:`SplineCouplingSampler` stages: the same
    function as ``model.sample_from_noise`` to float rounding (``tests/test_spline_sampler.py``).
    :meth:`~hepgen.domains.showers.generator.ShowerGenerator.sample` uses it; other models keep
    their own ``sample``.  The module is built from the model's current weights (a copy).
    """
    if model.family == "flow":
        stages = [model]
    elif model.family == "caloflow":
        stages = [model.energy_flow, model.shape_flow]
    else:
        return None
    if not all(st.hparams.get("coupling") and st.hparams.get("spline_bins") for st in stages):
        return None
    network = build_sampler(model)
    parts = [network] if model.family == "flow" else [network.energy, network.shape]
    return network if all(isinstance(p, SplineCouplingSampler) for p in parts) else None


def _flow_stage(flow_model) -> nn.Module:
    """PrunedAffineFlow for an affine MADE ConditionalFlow, SplineCouplingSampler for a spline
    coupling one, else ``(c, z) → sample_from_noise``."""
    try:
        if not flow_model.hparams.get("spline_bins") and not flow_model.hparams.get("coupling"):
            return PrunedAffineFlow(flow_model.flow, flow_model.n_features, flow_model.n_conditions).eval()
        if flow_model.hparams.get("spline_bins") and flow_model.hparams.get("coupling"):
            return SplineCouplingSampler(flow_model.flow, flow_model.n_features).eval()
    except TypeError:  # an unusual structure: the generic path is always correct
        pass
    return NoiseSampler(flow_model).eval()


class _TwoStageFlow(nn.Module):
    """``caloflow``'s two stages, each through :func:`_flow_stage` (the shape flow, the big
    one, is an affine coupling flow by default and gets pruned)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.n_layers = int(model.n_layers)
        self.energy = _flow_stage(model.energy_flow)
        self.shape = _flow_stage(model.shape_flow)
        self.noise_dim = int(model.noise_dim)

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        e = self.energy(c, z[:, : self.n_layers])
        s = self.shape(torch.cat([c, e], dim=1), z[:, self.n_layers :])
        return torch.cat([e, s], dim=1)


class ShowerSampler(nn.Module):
    """A whole shower generator as one module: physical inputs + noise → showers in MeV.

    Arguments:
        sampler: ``(c, z) → features`` or, if its ``noise_dim`` is None, ``(c, generator) →
            features`` (see :func:`build_sampler`).
        preprocessor: the fitted preprocessor of the checkpoint.

    Shapes: ``incident_energy (B, 1)`` MeV, ``noise (B, noise_dim)`` standard normal,
    ``conditions (B, K)`` raw extra conditions (only for models trained with some, in
    ``condition_names`` order) → ``(B, n_voxels)`` float32 MeV.  With the preprocessor's
    ``orientations``, ``noise_dim`` is the network's plus one: the last column picks each
    shower's orientation (:func:`orient`; a generator-driven sampler draws it from ``generator``).

    Example:
        A generator with an untrained 2-transform flow on 6 voxels (a checkpoint's
        ``ShowerGenerator.load("best.pt")`` goes the same way):

        >>> from hepgen.models import build_model
        >>> rng = np.random.default_rng(0)
        >>> e_inc = rng.uniform(1e3, 1e4, (20, 1))
        >>> pre = ShowerPreprocessor([3, 3]).fit(rng.exponential(1.0, (20, 6)) * e_inc / 12, e_inc)
        >>> model = build_model("flow", n_features=pre.n_features, n_conditions=1, transforms=2,
        ...                     hidden_features=8, n_hidden=1)
        >>> s = ShowerSampler(build_sampler(model), pre)
        >>> showers = s(torch.full((4, 1), 1e4), torch.randn(4, s.noise_dim))
        >>> tuple(showers.shape), bool((showers >= 0).all())
        ((4, 6), True)
    """

    def __init__(self, sampler: nn.Module, preprocessor: ShowerPreprocessor) -> None:
        super().__init__()
        self.encoder = ConditionEncoder(preprocessor)
        self.sampler = sampler
        self.decoder = FeatureDecoder(preprocessor)
        self.oriented = preprocessor.orientations is not None
        if self.oriented:
            self.register_buffer("orientations", torch.as_tensor(preprocessor.orientations, dtype=torch.long))
        self.noise_dim = None if sampler.noise_dim is None else int(sampler.noise_dim) + int(self.oriented)
        self.n_extra_conditions = self.encoder.n_extra
        self.condition_names = list(preprocessor.condition_names)
        self.n_voxels = int(preprocessor.n_voxels)

    @classmethod
    def from_generator(cls, generator, fast: bool = True) -> ShowerSampler:
        """Build from a :class:`~hepgen.domains.showers.generator.ShowerGenerator` (see :func:`build_sampler`)."""
        return cls(build_sampler(generator.model, fast=fast), generator.preprocessor).eval()

    def forward(self, incident_energy: torch.Tensor, noise: torch.Tensor | None,
                conditions: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """See the class docstring; ``noise`` is None (and ``generator`` used) iff ``noise_dim`` is None."""
        c = self.encoder(incident_energy, conditions)
        if not self.oriented:
            x = self.sampler(c, generator) if self.noise_dim is None else self.sampler(c, noise)
            return self.decoder(x.float(), incident_energy)
        if self.noise_dim is None:
            x = self.sampler(c, generator)
            u = torch.rand(c.shape[0], generator=generator, device=c.device)
        else:
            x, u = self.sampler(c, noise[:, :-1]), normal_cdf(noise[:, -1])
        return orient(self.decoder(x.float(), incident_energy), u, self.orientations)

    def condition_matrix(self, conditions: dict | None, n: int) -> np.ndarray | None:
        """Extra conditions dict → ``(n, K)`` float32 in ``condition_names`` order (None if K = 0)."""
        if not self.condition_names:
            return None
        conditions = conditions or {}
        missing = [k for k in self.condition_names if k not in conditions]
        if missing:
            raise ValueError(f"conditions {missing} are required by this model, found {sorted(conditions)}")
        cols = [np.asarray(conditions[k], dtype=np.float32).reshape(n, -1) for k in self.condition_names]
        return np.concatenate(cols, axis=1)


# --- sampling paths -------------------------------------------------------------------------
class _Autocast(nn.Module):
    """Runs the wrapped ``(c, z)`` sampler under ``torch.autocast``; returns float32."""

    def __init__(self, sampler: nn.Module, dtype: torch.dtype, device_type: str) -> None:
        super().__init__()
        self.inner = sampler
        self.dtype = dtype
        self.device_type = device_type
        self.noise_dim = sampler.noise_dim

    def forward(self, c: torch.Tensor, z) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.inner(c, z).float()


def prepare_path(sampler: ShowerSampler, path: str, device: str | torch.device = "cpu") -> nn.Module:
    """``sampler`` set up for one sampling path (a new module; ``sampler`` is not modified).

    Arguments:
        sampler: the float32 :class:`ShowerSampler`.
        path: one of ``SAMPLING_PATHS``: ``fp32``, ``bf16``, ``fp16`` (autocast of the
            network part), ``int8`` (dynamic quantisation, CPU only), ``compile``
            (``torch.compile`` with inductor; the first call compiles, and so does the first
            call with a second batch size, which makes the batch dimension dynamic) or
            ``compile-bf16`` (the ``bf16`` module compiled: matrix products in bfloat16, fast
            with AMX / AVX512-BF16; the splines stay float32 and fused).
        device: where the module runs.

    Raises:
        ValueError: unknown path, or int8 requested on a non-CPU device.
    """
    device = torch.device(device)
    if path not in SAMPLING_PATHS:
        raise ValueError(f"sampling path: expected one of {SAMPLING_PATHS}, found {path!r}")
    s = copy.deepcopy(sampler).to(device).eval()
    if path in ("bf16", "fp16", "compile-bf16"):
        s.sampler = _Autocast(s.sampler, torch.float16 if path == "fp16" else torch.bfloat16, device.type)
    elif path == "int8":
        if device.type != "cpu":
            raise ValueError(f"sampling path 'int8' (dynamic quantisation) runs on the CPU only, found device {device}")
        s.sampler = quantize_int8(s.sampler)
    if compiles(path):
        # default dynamic-shape policy: the first new batch size recompiles with a dynamic batch
        return torch.compile(s)
    return s


@torch.no_grad()
def sample_through_path(generator, incident_energies, conditions: dict | None = None, path: str = "fp32", seed: int = 0,
                   batch_size: int = 1_000, progress: bool = False, module: nn.Module | None = None) -> np.ndarray:
    """Showers from ``generator`` through one sampling path of :func:`prepare_path` (CPU).

    The noise stream is :meth:`ShowerGenerator.sample`'s (one ``torch.Generator`` seeded with
    ``seed``, ``(batch, noise_dim)`` standard normals per batch), so ``path="fp32"`` gives its
    showers up to float rounding, through :func:`build_sampler`'s fast modules.

    Arguments:
        generator: a :class:`~hepgen.domains.showers.generator.ShowerGenerator`.
        incident_energies: ``(N,)`` or ``(N, 1)`` MeV; conditions: the extra conditions, if any.
        path: one of :data:`SAMPLING_PATHS`; seed: seeds the noise; batch_size: showers per call
            (with ``compile`` a short last batch is padded to ``batch_size``, so that it does not
            trigger a second compilation).
        progress: a tqdm bar over the batches.
        module: ``prepare_path(ShowerSampler.from_generator(generator), path)`` built (and, for
            ``compile``, already called once) by the caller, e.g. to time the compilation apart.

    Returns:
        ``(N, n_voxels)`` float32 MeV.

    Raises:
        ValueError: unknown ``path``, or energies not finite and > 0.
    """
    if path not in SAMPLING_PATHS:
        raise ValueError(f"sampling path: expected one of {SAMPLING_PATHS}, found {path!r}")
    e = incident_energy_array(incident_energies)
    base = ShowerSampler.from_generator(generator)
    module = prepare_path(base, path, "cpu") if module is None else module
    et = torch.as_tensor(e, dtype=torch.float32).reshape(-1, 1)
    extra = base.condition_matrix(conditions, len(e))
    extra = None if extra is None else torch.as_tensor(extra)
    gen = torch.Generator().manual_seed(int(seed))
    out = np.empty((len(e), base.n_voxels), dtype=np.float32)
    for s in tqdm(range(0, len(e), batch_size), desc="sampling", unit="batch", disable=not progress):
        sl = slice(s, s + batch_size)
        xs = None if extra is None else extra[sl]
        if base.noise_dim is None:
            out[sl] = module(et[sl], None, xs, generator=gen).numpy()
        else:
            z = torch.randn(len(et[sl]), base.noise_dim, generator=gen)
            out[sl] = call_padded(module, et[sl], z, xs, batch_size, compiles(path) and len(e) > batch_size).numpy()
    return out
