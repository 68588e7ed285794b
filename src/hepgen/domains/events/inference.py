"""Fast sampling of event images: the trained generator and the inverse log scaling as one torch module.

:class:`EventSampler` maps scaled conditions and noise to images in GeV with no numpy in
between, so that one module is converted (memory format, autocast) or compiled as a whole
(the float32 torch inverse of :class:`~hepgen.domains.events.preprocessing.EventPreprocessor`
measured as fast as its float64 numpy original: ``benchmarks/bench_events.py speed``, row
``numpy-inverse``)::

    c (B, K) in [0, 1] ─┐
                        ├► model.sample_from_noise(c, z) ─► x (B, C·H·W) in [0, 1]
    z (B, noise_dim) ───┘                 └─► E = scale · expm1(x · log1p(e_max / scale)) ─► (B, C, H, W) GeV

Sampling paths (:func:`prepare_event_path`; the names follow the showers' sampling paths of
:mod:`hepgen.domains.showers.inference` where they mean the same):

* ``fp32`` — float32, the reference; the inverse in float32 differs from the numpy float64
  inverse by a relative 1e-6 at most (tested).
* ``channels_last`` — float32 with the network's weights in channels-last memory format
  (oneDNN's blocked convolution kernels); the same function up to float rounding.
* ``bf16`` — channels-last and ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the
  network (oneDNN runs the convolutions on AVX512-BF16 / AMX where the CPU has them, with
  float32 accumulation); the noise, the conditions and the inverse stay float32.  Networks
  whose output layer follows the DCGAN's pattern compute the sigmoid in float32
  (:class:`hepgen.models.dcgan.EventDCGAN`), so the bf16 rounding enters through the
  convolutions only.  Its fidelity cost is measured by ``benchmarks/bench_events.py speed``
  and stated in ``docs/events.md``.
* ``compile`` / ``bf16-compile`` — the two above through ``torch.compile`` (inductor); the
  first call per batch shape compiles (seconds to tens of seconds on a shared CPU).

Only families with a noise map (``noise_dim`` not None and ``sample_from_noise``) have these
paths; :meth:`hepgen.domains.events.generator.EventGenerator.sample` falls back to
``model.sample`` for the others (path ``fp32`` only).

Example:
    >>> import numpy as np, torch
    >>> from hepgen.models.dcgan import EventDCGAN
    >>> from hepgen.domains.events.preprocessing import EventPreprocessor
    >>> pre = EventPreprocessor(["mu"]); pre.image_shape, pre.e_max = [1, 16, 16], 100.0
    >>> model = EventDCGAN(256, 1, image_shape=[1, 16, 16], noise_dim=8, filters=4).eval()
    >>> s = EventSampler(model, pre)
    >>> c, z = torch.zeros(2, 1), torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    >>> with torch.no_grad():
    ...     e, x, b = s(c, z), model.sample_from_noise(c, z), prepare_event_path(s, "bf16")(c, z)
    >>> tuple(e.shape), e.dtype
    ((2, 1, 16, 16), torch.float32)
    >>> bool(np.allclose(e.numpy(), pre.inverse(x.numpy()), rtol=1e-5, atol=1e-6))
    True
    >>> float((b - e).abs().max() / e.max()) < 0.05
    True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EVENT_SAMPLING_PATHS", "EventSampler", "prepare_event_path"]

#: sampling paths of :func:`prepare_event_path`
EVENT_SAMPLING_PATHS = ("fp32", "channels_last", "bf16", "compile", "bf16-compile")


class EventSampler(nn.Module):
    """``(c, z)`` → images in GeV: the model's ``sample_from_noise`` and the inverse log scaling.

    Arguments:
        model: an events :class:`hepgen.models.GenerativeModel` with ``noise_dim`` and
            ``sample_from_noise`` (put in eval mode here).
        preprocessor: the fitted :class:`~hepgen.domains.events.preprocessing.EventPreprocessor`.

    ``forward(c, z)``: ``c`` ``(B, K)`` scaled conditions, ``z`` ``(B, noise_dim)``
    → ``(B, C, H, W)`` float32 GeV.
    """

    def __init__(self, model, preprocessor) -> None:
        super().__init__()
        if getattr(model, "noise_dim", None) is None:
            raise ValueError(f"family {model.family!r}: no noise map (noise_dim is None); only the fp32 path "
                             "(model.sample) samples it")
        self.model = model.eval()
        self.noise_dim = int(model.noise_dim)
        self.image_shape = [int(s) for s in preprocessor.image_shape]
        self.scale = float(preprocessor.scale)
        self.log_span = preprocessor.log_range  # the preprocessor's L = log1p(e_max / scale)
        self.autocast_dtype: torch.dtype | None = None

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is not None:
            with torch.autocast(c.device.type, dtype=self.autocast_dtype):
                x = self.model.sample_from_noise(c, z)
        else:
            x = self.model.sample_from_noise(c, z)
        x = x.float().clamp(0.0, 1.0)
        return (self.scale * torch.expm1(x * self.log_span)).reshape(len(x), *self.image_shape)


def prepare_event_path(sampler: EventSampler, path: str) -> nn.Module:
    """``sampler`` set up for one sampling path (a new module; ``sampler`` is not modified).

    Arguments:
        sampler: the float32 :class:`EventSampler`.
        path: one of :data:`EVENT_SAMPLING_PATHS` (module docstring).

    Raises:
        ValueError: unknown path.
    """
    if path not in EVENT_SAMPLING_PATHS:
        raise ValueError(f"sampling path: expected one of {EVENT_SAMPLING_PATHS}, found {path!r}")
    s = copy.deepcopy(sampler).eval()
    if path == "fp32":
        return s
    s.model.to(memory_format=torch.channels_last)  # 4-d weights only; no-op for others
    if path in ("bf16", "bf16-compile"):
        s.autocast_dtype = torch.bfloat16
    if path.endswith("compile"):
        return torch.compile(s)
    return s
