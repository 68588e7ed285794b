"""Dynamic int8 quantisation of a model's linear layers, for CPU inference of any kind.

Used by the shower sampling path ``int8`` (:mod:`hepgen.domains.showers.inference`) and by
the jet benchmark's ``int8`` path (:mod:`hepgen.bench_jets`).

>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> q = quantize_int8(net)
>>> type(q[0]).__name__, type(net[0]).__name__          # a quantised copy; the input is untouched
('Linear', 'Linear')
>>> q[0].__module__.startswith("torch.ao.nn.quantized")
True
>>> tuple(q(torch.zeros(3, 4)).shape)
(3, 2)
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from zuko.nn import MaskedLinear

__all__ = ["fold_masked_linear", "quantize_int8"]


def fold_masked_linear(module: nn.Module) -> nn.Module:
    """Replace every ``zuko.nn.MaskedLinear`` in ``module`` (in place) by an ``nn.Linear``
    with the mask multiplied into the weight; returns ``module``.

    Needed before dynamic quantisation: ``quantize_dynamic`` matches modules by exact type,
    and a swapped ``MaskedLinear`` would lose its mask (its ``weight`` is the unmasked one).
    """
    for name, child in list(module.named_children()):
        if isinstance(child, MaskedLinear):
            lin = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(child.mask * child.weight)
                if child.bias is not None:
                    lin.bias.copy_(child.bias)
            setattr(module, name, lin)
        else:
            fold_masked_linear(child)
    return module


def quantize_int8(sampler: nn.Module) -> nn.Module:
    """A copy of ``sampler`` with its ``nn.Linear`` layers dynamically quantised to int8 (CPU).

    Weights are int8 per tensor; activations are quantised per batch on the fly
    (``torch.ao.quantization.quantize_dynamic``).  Masked zuko layers are folded first
    (:func:`fold_masked_linear`).  The input and output stay float32.
    """
    model = fold_masked_linear(copy.deepcopy(sampler).cpu().float())
    with warnings.catch_warnings():
        # torch announces the move of eager quantisation to torchao; the API still works in
        # the pinned torch and torchao is not a dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
