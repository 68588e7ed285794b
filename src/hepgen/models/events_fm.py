"""Conditional flow matching with a small U-Net velocity field on calorimeter event images.

The modern counterpart of the paper's conditional DCGAN (:mod:`hepgen.models.dcgan`): the
conditional optimal-transport flow matching of
:class:`~hepgen.models.flow_matching.ConditionalFlowMatching` (its loss with ``t ~ U[0, 1]``,
:func:`~hepgen.models.flow_matching.ot_path` and the fixed-step solvers of
:func:`~hepgen.models.flow_matching.integrate` are reused as they are), with a convolutional
velocity field ``v_θ(y, t, c)`` on ``C × H × W`` images (64 × 64 for the paper's events).

Velocity field (:class:`EventUNet`), sized for one CPU thread:

* the image is folded into ``patch × patch`` blocks (``PixelUnshuffle``; lossless,
  ``C·patch²`` channels at ``H/patch``), so the convolutions run at 16 × 16 for 64 × 64
  images with the default ``patch = 4``: a training step of batch 32 took ~0.12 s on one
  thread (``patch = 2``: ~0.3 s, and worse at equal wall-clock time in the interpolation
  benchmark, docs/events.md);
* a U-Net (Ronneberger et al.) of residual blocks, one per resolution (``mults`` sets the widths
  ``filters·m``; default 16, 32, 32 at 16 × 16 → 8 × 8 → 4 × 4), with stride-2 down- and
  nearest-neighbour up-sampling and skip connections;
* time and conditions (the scaled masses, μ for pile-up models) enter every residual block by
  adaptive group normalisation, ``GN(h)·(1 + s) + b`` with ``(s, b)`` a linear map of an
  embedding of ``[t, sin(ω t), cos(ω t), c]`` (the "AdaGN" of Dhariwal & Nichol);
* the φ axis (the last image axis) is periodic, so every convolution pads it circularly
  (η is zero-padded): a jet at φ = π continues at −π;
* the last convolution starts at zero (the initial velocity field is 0).

Sparsity (Pythia images here are ~96 % empty; the smallest non-empty tower, 0.5 GeV, sits at
≈ 0.05 after the domain's log scaling): the flow does not run on the [0, 1] features
``x`` themselves but on ``y = x`` for non-empty pixels and ``y = empty_value`` (−1) for empty
ones, so that "empty" is a separate mode, a unit away from every real energy, instead of the
bottom edge of the energy range.  The occupancy is thus learnt jointly with the energies, in
the same channel.  Samples are mapped back with ``x = 0`` where ``y < cut``, else
``x = clip(y, floor, 1)``; ``floor`` is the smallest non-empty value seen in training batches
(the buffer ``occupied_floor``: the detector threshold in feature units) and the default
``cut`` is half of it — the DCGAN's thresholded output, with the threshold taken from the data.
A cut in the middle of the gap, ``(empty_value + floor) / 2``, was tried (``cut`` sets any
value): a flow that is not yet sharp leaves the pixels it is unsure of between the two modes,
and that cut keeps them at the floor energy.  At the benchmark's selected checkpoint (1200, 400)
it made 703 pixels per image against Pythia's 186 (half the floor: 119) and raised the summed
jet mass from 837 to 922 GeV (Pythia 683) at the same KS score; docs/events.md has the scan.
``empty_value = 0`` switches the encoding off.

Weights: an exponential moving average of the velocity network (``ema`` decay, with the
warm-up ``min(ema, (1 + n)/(10 + n))`` after ``n`` updates) is updated after every training
step and kept in the checkpoint; in ``eval()`` mode (sampling, validation, the domain's
selection score) the averaged network is used, in ``train()`` mode the raw one — as batch norm
switches to its running statistics.  ``ema = 0`` turns it off.

Sampling: ``steps`` (default 8) midpoint steps, i.e. 16 network evaluations per image;
``sample(..., steps=, method=)`` or :attr:`sample_method` / :attr:`sample_steps` change
this after training.

Models see flat ``(B, D)`` features, ``D = C·H·W``, in [0, 1] and ``(B, n_conditions)``
conditions, as the DCGAN families.

References:
    Y. Lipman et al., "Flow Matching for Generative Modeling", arXiv:2210.02747.
    O. Ronneberger, P. Fischer, T. Brox, "U-Net", arXiv:1505.04597.
    P. Dhariwal, A. Nichol, "Diffusion Models Beat GANs on Image Synthesis" (AdaGN), arXiv:2105.05233.
    W. Shi et al., "Real-Time Single Image and Video Super-Resolution ... Sub-Pixel Convolution"
    (pixel shuffle), arXiv:1609.05158.
    O. Amram, K. Pedro, "CaloDiffusion", arXiv:2308.03876.

Example:
    >>> m = EventFlowMatching(n_features=16 * 16, n_conditions=2, **EventFlowMatching.tiny_hparams())
    >>> x = m.eval().sample(torch.zeros(3, 2), torch.Generator().manual_seed(0))
    >>> tuple(x.shape), bool(((x == 0) | (x >= m.floor)).all())
    ((3, 256), True)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel

from hepgen.models.base import register
from hepgen.models.flow_matching import ConditionalFlowMatching

__all__ = ["EventFlowMatching", "EventUNet"]


def _groups(channels: int) -> int:
    return math.gcd(int(channels), 8)


class _Conv(nn.Module):
    """``k × k`` convolution (``k`` odd) padded circularly along φ (last axis), with zeros along η."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, circular: bool = True) -> None:
        super().__init__()
        self.p, self.circular = k // 2, bool(circular)
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p = self.p
        if p:
            if self.circular:  # by hand: Conv2d's padding_mode="circular" would wrap η as well
                h = torch.cat([h[..., -p:], h, h[..., :p]], dim=-1)
                h = F.pad(h, (0, 0, p, p))
            else:
                h = F.pad(h, (p, p, p, p))
        return self.conv(h)


class _ResBlock(nn.Module):
    """``skip(h) + conv(SiLU(AdaGN(conv(SiLU(GN(h))), e)))`` with ``AdaGN(u, e) = GN(u)·(1 + s) + b``."""

    def __init__(self, cin: int, cout: int, embed: int, circular: bool) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = _Conv(cin, cout, circular=circular)
        self.emb = nn.Linear(embed, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout, affine=False)
        self.conv2 = _Conv(cout, cout, circular=circular)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        u = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.emb(e)[:, :, None, None].chunk(2, dim=1)
        u = self.conv2(F.silu(self.norm2(u) * (1 + scale) + shift))
        return self.skip(h) + u


class EventUNet(nn.Module):
    """U-Net velocity field ``v(y, t, c)`` on flat images (see the module docstring).

    Arguments:
        image_shape: ``[C, H, W]``; H and W divisible by ``patch · 2^(len(mults) − 1)``.
        n_conditions: condition columns.
        filters: base width F.  mults: width multipliers per resolution (``F·m``).
        patch: fold factor of the pixel unshuffle.  time_freqs: sinusoidal time frequencies.
        circular: periodic padding along the last (φ) axis.

    ``forward(y: (B, C·H·W), t: (B,), c: (B, n_conditions)) → (B, C·H·W)``.
    """

    def __init__(self, image_shape, n_conditions: int, filters: int = 16, mults=(1, 2, 2), patch: int = 4,
                 time_freqs: int = 8, circular: bool = True) -> None:
        super().__init__()
        self.image_shape = [int(s) for s in image_shape]
        ch = self.image_shape[0] * patch**2
        widths = [int(filters) * int(m) for m in mults]
        embed = 4 * int(filters)
        # log-spaced angular frequencies 1 … 1000 for t in [0, 1], as flow_matching's residual MLP
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), int(time_freqs))))
        self.embed = nn.Sequential(nn.Linear(2 * int(time_freqs) + 1 + int(n_conditions), embed), nn.SiLU(),
                                   nn.Linear(embed, embed))
        self.fold, self.unfold = nn.PixelUnshuffle(patch), nn.PixelShuffle(patch)
        self.inp = _Conv(ch, widths[0], circular=circular)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(prev, w, embed, circular))
            if i + 1 < len(widths):
                self.downsample.append(_Conv(w, w, stride=2, circular=circular))
            prev = w
        self.mid = _ResBlock(prev, prev, embed, circular)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(_ResBlock(prev + widths[i], widths[i], embed, circular))
            prev = widths[i]
            if i > 0:
                self.upsample.append(_Conv(prev, widths[i - 1], circular=circular))
                prev = widths[i - 1]
        self.out_norm = nn.GroupNorm(_groups(prev), prev)
        self.out = _Conv(prev, ch, circular=circular)
        nn.init.zeros_(self.out.conv.weight)  # the velocity field starts at 0
        nn.init.zeros_(self.out.conv.bias)

    def forward(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1).to(y.dtype)
        arg = t * self.freqs
        e = self.embed(torch.cat([t, arg.sin(), arg.cos(), c.to(y.dtype)], dim=-1))
        h = self.inp(self.fold(y.reshape(len(y), *self.image_shape)))
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, e)
        for j, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), e)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.unfold(self.out(F.silu(self.out_norm(h)))).reshape(len(y), -1)


def _ema_with_warmup(decay: float):
    """``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: EMA whose decay after
    ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (short runs are not dominated by the
    initial weights)."""

    @torch.no_grad()
    def avg(ema_params, params, n_averaged):
        d = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        for pe, p in zip(ema_params, params):
            pe.lerp_(p, 1.0 - d)

    return avg


@register
class EventFlowMatching(ConditionalFlowMatching):
    """Conditional flow matching with a U-Net velocity field on event images (module docstring).

    Arguments:
        n_features: ``C·H·W``.  n_conditions: condition columns.
        image_shape: ``[C, H, W]`` (default ``[1, 64, 64]``).
        filters, mults, patch, circular: the U-Net (:class:`EventUNet`).
        time_freqs, sigma_min, sampler, steps: as for ``flow_matching`` (default: 8 midpoint steps).
        empty_value: model-space value of empty pixels (−1; 0: no separate empty mode).
        cut: model-space value below which a generated pixel is empty (None: half the smallest
            non-empty training value).
        ema: decay of the weights' moving average used in ``eval()`` mode (0: none).
    """

    family = "events_fm"
    data_kind = "events"
    has_log_prob = False

    def __init__(self, n_features: int, n_conditions: int, image_shape=(1, 64, 64), filters: int = 16,
                 mults=(1, 2, 2), patch: int = 4, circular: bool = True, time_freqs: int = 8,
                 sigma_min: float = 0.0, sampler: str = "midpoint", steps: int = 8, empty_value: float = -1.0,
                 cut: float | None = None, ema: float = 0.999) -> None:
        image_shape = [int(s) for s in image_shape]
        mults = [int(m) for m in mults]
        fam = self.family
        if len(image_shape) != 3 or math.prod(image_shape) != int(n_features):
            raise ValueError(f"{fam}: key 'image_shape': expected [C, H, W] with C·H·W = n_features={n_features}, "
                             f"found {image_shape}")
        if int(patch) < 1 or not mults or min(mults) < 1 or int(filters) < 1:
            raise ValueError(f"{fam}: patch, filters and every entry of mults must be >= 1, found patch={patch}, "
                             f"filters={filters}, mults={mults}")
        div = int(patch) * 2 ** (len(mults) - 1)
        if image_shape[1] % div or image_shape[2] % div:
            raise ValueError(f"{fam}: key 'image_shape': H and W must be divisible by patch·2^(len(mults)-1) = "
                             f"{div}, found {image_shape[1:]}")
        if cut is not None and not float(empty_value) < float(cut) < 1.0:
            raise ValueError(f"{fam}: key 'cut': expected None or a value in (empty_value={empty_value}, 1), "
                             f"found {cut}")
        if not float(empty_value) <= 0.0:
            raise ValueError(f"{fam}: key 'empty_value': expected a value <= 0, found {empty_value}")
        if not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"{fam}: key 'ema': expected a decay in [0, 1), found {ema}")
        net = EventUNet(image_shape, int(n_conditions), int(filters), mults, int(patch), int(time_freqs),
                        bool(circular))
        super().__init__(n_features, n_conditions, time_freqs=time_freqs, sigma_min=sigma_min, sampler=sampler,
                         steps=steps, net=net)
        self.image_shape = image_shape
        self.empty_value = float(empty_value)
        self.fixed_cut = None if cut is None else float(cut)
        self.ema_decay = float(ema)
        # smallest non-empty training value seen (inf until the first training step)
        self.register_buffer("occupied_floor", torch.tensor(float("inf")))
        self.averaged = None
        if self.ema_decay > 0:
            self.averaged = AveragedModel(self.net, multi_avg_fn=_ema_with_warmup(self.ema_decay))
            self.averaged.requires_grad_(False)
        self.hparams.update(image_shape=image_shape, filters=int(filters), mults=mults, patch=int(patch),
                            circular=bool(circular), empty_value=self.empty_value, cut=self.fixed_cut,
                            ema=self.ema_decay)

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"image_shape": [1, 16, 16], "filters": 8, "mults": [1, 2], "patch": 2, "time_freqs": 2, "steps": 2}

    # --- the sparse encoding ----------------------------------------------------------------
    @property
    def floor(self) -> float:
        """Smallest non-empty value in [0, 1] feature units: seen in training (0.05 before any step)."""
        floor = float(self.occupied_floor)
        return floor if math.isfinite(floor) else 0.05

    @property
    def cut(self) -> float:
        """Model-space value below which a generated pixel is empty."""
        return self.fixed_cut if self.fixed_cut is not None else 0.5 * self.floor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` features → model space: empty pixels (exactly 0) become ``empty_value``."""
        return torch.where(x > 0, x, torch.full((), self.empty_value, dtype=x.dtype, device=x.device))

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Model space → ``[0, 1]`` features: 0 below :attr:`cut`, else ``clip(y, floor, 1)``."""
        return torch.where(y >= self.cut, y.clamp(self.floor, 1.0), torch.zeros((), dtype=y.dtype, device=y.device))

    # --- flow matching on the encoded images --------------------------------------------------
    def velocity(self, x: torch.Tensor, t: torch.Tensor | float, c: torch.Tensor) -> torch.Tensor:
        """``v_θ`` of the raw network in ``train()`` mode, of the averaged one in ``eval()`` mode."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        net = self.averaged.module if (self.averaged is not None and not self.training) else self.net
        return net(x, t, c)

    def loss(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The flow-matching loss (parent class) on ``encode(x)``; ``x: (B, D)`` in [0, 1]."""
        return super().loss(self.encode(x), c, generator)

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor, steps: int | None = None,
                          method: str | None = None) -> torch.Tensor:
        """``decode`` of the ODE solution from noise ``z: (B, D)``: ``(B, D)`` in {0} ∪ [floor, 1]."""
        return self.decode(super().sample_from_noise(c, z, steps=steps, method=method))

    # --- training -----------------------------------------------------------------------------
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """AdamW over the raw network only (the averaged copy is not trained)."""
        return {"model": torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, x, c, optimizers, step, grad_clip, scaler=None) -> dict[str, float]:
        """The default step (:meth:`GenerativeModel.training_step`), then the EMA and floor updates."""
        out = super().training_step(x, c, optimizers, step, grad_clip, scaler)
        with torch.no_grad():
            occupied = x[x > 0]
            if occupied.numel():
                self.occupied_floor.copy_(torch.minimum(self.occupied_floor, occupied.min().to(self.occupied_floor)))
        if self.averaged is not None:
            self.averaged.update_parameters(self.net)
        return out
