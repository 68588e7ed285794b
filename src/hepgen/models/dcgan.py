"""The conditional DCGAN of the whole-event studies, and its WGAN-GP variant, on calorimeter images.

Generator (Radford et al., arXiv:1511.06434, as used for 64 × 64 event images by Farrell et
al., EPJ Web Conf. 214 (2019) 09005): the noise ``z`` and the conditions ``c`` (e.g. the
scaled gluino and neutralino masses) form a ``(noise_dim + C) × 1 × 1`` input; five
transposed convolutions (kernel 4; the first 1 → 4, then four × 2: 4 → 64) with batch norm and
ReLU after each but the last; the output is a sigmoid with values below ``threshold`` set to
0 (sparse images, as the paper's thresholded output).  Images of side ``2^k`` (k ≥ 3) use
``k − 1`` layers; 64 × 64 gives the paper's five.

Discriminator: the image with the conditions appended as constant channels, five
convolutions (kernel 4, stride 2, then a last 4 × 4 → 1 × 1 convolution) with leaky ReLU
(slope 0.2) and batch norm on the inner layers; one logit.

Training: non-saturating BCE with random label flipping (a fraction ``flip_rate`` of the
discriminator's labels is swapped at every step) and Adam (β₁ = 0.5), as the paper.  The
``dcgan_wgan_gp`` family is the same pair trained as a Wasserstein GAN with gradient penalty
(Gulrajani et al., arXiv:1704.00028): no batch norm in the critic, ``n_critic`` critic steps
per generator step, penalty weight ``gp_lambda``.

Models see flat ``(B, D)`` features, ``D = C·H·W`` (``image_shape``), in [0, 1] (the event
domain's log scaling), and ``(B, n_conditions)`` conditions.

Example:
    >>> m = EventDCGAN(n_features=16 * 16, n_conditions=2, image_shape=[1, 16, 16], noise_dim=8, filters=4)
    >>> x = m.sample(torch.zeros(3, 2), torch.Generator().manual_seed(0))
    >>> tuple(x.shape), bool(((x == 0) | (x >= m.threshold)).all())
    ((3, 256), True)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hepgen.models.base import GenerativeModel, register

__all__ = ["EventDCGAN", "EventWGANGP", "lead_window_feature", "symmetry_augment", "symmetry_from_noise",
           "total_energy_feature", "transverse_energy_feature"]


def _n_layers(side: int) -> int:
    k = round(math.log2(side)) if side > 0 else 0
    if side < 8 or 2**k != side:
        raise ValueError(f"image_shape: expected square images of side 2^k >= 8 (64 for the paper), found {side}")
    return k - 1


class _Generator(nn.Module):
    def __init__(self, noise_dim: int, n_cond: int, channels: int, side: int, filters: int, threshold: float):
        super().__init__()
        n = _n_layers(side)
        widths = [filters * 2 ** (n - 2 - i) for i in range(n - 1)]  # 64×64: 8F, 4F, 2F, F
        layers: list[nn.Module] = []
        cin = noise_dim + n_cond
        for i, w in enumerate(widths):
            layers += [nn.ConvTranspose2d(cin, w, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(True)]
            cin = w
        layers.append(nn.ConvTranspose2d(cin, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        self.noise_dim = int(noise_dim)
        self.threshold = float(threshold)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # .float(): under bf16 autocast the sigmoid and the threshold still run in float32
        # (a no-op in float32), so the output is not rounded to bf16's 8-bit mantissa
        y = torch.sigmoid(self.net(torch.cat([z, c], 1)[:, :, None, None]).float())
        return y * (y >= self.threshold)  # thresholded sigmoid: exact zeros, gradient where kept


class _Critic(nn.Module):
    def __init__(self, n_cond: int, channels: int, side: int, filters: int, batch_norm: bool,
                 energy_range: float = 0.0, eta_max: float = 0.0, lead_window: int = 0):
        super().__init__()
        n = _n_layers(side)
        layers: list[nn.Module] = []
        self.energy_range = float(energy_range)
        self.eta_max = float(eta_max)
        self.lead_window = int(lead_window)
        cin = (channels + n_cond + (1 if self.energy_range > 0 else 0) + (1 if self.eta_max > 0 else 0)
               + (1 if self.lead_window > 0 else 0))
        for i in range(n - 1):
            w = filters * 2**i
            layers.append(nn.Conv2d(cin, w, 4, 2, 1, bias=not (batch_norm and i > 0)))
            if batch_norm and i > 0:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = w
        layers.append(nn.Conv2d(cin, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.energy_range > 0:  # the total energy, log-scaled like one pixel, as one more condition
            c = torch.cat([c, total_energy_feature(x, self.energy_range)[:, None]], 1)
        if self.eta_max > 0:  # and the total transverse energy (needs the same log range)
            c = torch.cat([c, transverse_energy_feature(x, self.energy_range, self.eta_max)[:, None]], 1)
        if self.lead_window > 0:  # and the energy of the hardest window (needs the same log range)
            c = torch.cat([c, lead_window_feature(x, self.energy_range, self.lead_window)[:, None]], 1)
        cc = c[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])  # masses as constant channels
        return self.net(torch.cat([x, cc], 1)).reshape(-1)


def total_energy_feature(x: torch.Tensor, log_range: float) -> torch.Tensor:
    """The total energy of each image ``x: (B, C, H, W)`` of log-scaled features
    ``f = log(1 + E/s) / L`` (:mod:`hepgen.domains.events.preprocessing`, ``L = log(1 + e_max/s)``),
    scaled the same way: ``log(1 + Σ E/s) / L``, shape ``(B,)``.  A pixel's feature and the sum's
    agree for an image with one lit pixel; the sum is linear in the energies, which the
    log-scaled pixels hide from a convolutional critic (a few GeV more in each of many pixels).

    >>> x = torch.zeros(1, 1, 2, 2); x[0, 0, 0, 0] = 0.5
    >>> round(float(total_energy_feature(x, 2.0)[0]), 6)  # one lit pixel: its own feature
    0.5
    >>> x[0, 0, 1, 1] = 0.5  # two pixels of e - 1 each (s = 1): log(1 + 2(e - 1)) / 2
    >>> round(float(total_energy_feature(x, 2.0)[0]), 6), round(math.log(1 + 2 * (math.e - 1)) / 2, 6)
    (0.74494, 0.74494)
    """
    return torch.log1p(torch.expm1(x.float() * log_range).sum((1, 2, 3))) / log_range


def lead_window_feature(x: torch.Tensor, log_range: float, window: int) -> torch.Tensor:
    """The largest energy in any ``window × window`` square of pixels of each image ``x: (B, C, H, W)``
    of log-scaled features (as :func:`total_energy_feature`; channels summed), scaled the same way,
    shape ``(B,)``.  The squares wrap around in φ (the last axis, periodic) and stay inside the
    η rows.  A square of 16 pixels of 0.1 × 0.1 holds the core of an R = 1.0 fat jet, so this is a
    differentiable stand-in for the leading jet's energy: beside the total energy it tells a
    critic how the event's energy is shared between its hardest region and the rest (a generator
    with the right total but too hard a leading jet; docs/events.md).

    >>> x = torch.zeros(1, 1, 3, 4); L = 1.0
    >>> x[0, 0, 0, 0] = x[0, 0, 0, 3] = x[0, 0, 2, 1] = math.log(2.0)  # E/s = 1 in three pixels
    >>> round(float(lead_window_feature(x, L, 2)[0]), 6), round(math.log(3.0), 6)  # (0,3)+(0,0) across φ = 2π
    (1.098612, 1.098612)
    >>> round(float(lead_window_feature(x, L, 1)[0]), 6), round(math.log(2.0), 6)  # one pixel
    (0.693147, 0.693147)
    """
    if not 1 <= window <= min(x.shape[2], x.shape[3]):
        raise ValueError(f"lead_window_feature: expected a window of 1 ... {min(x.shape[2], x.shape[3])} pixels, "
                         f"found {window}")
    e = torch.expm1(x.float() * log_range).sum(1, keepdim=True)  # (B, 1, H, W), E / s
    e = torch.cat([e, e[..., :window - 1]], -1)  # periodic in φ
    sums = F.avg_pool2d(e, window, stride=1) * window**2  # (B, 1, H - w + 1, W)
    return torch.log1p(sums.flatten(1).amax(1)) / log_range


def transverse_energy_feature(x: torch.Tensor, log_range: float, eta_max: float) -> torch.Tensor:
    """The total transverse energy ``Σ E / cosh η`` of each image ``x: (B, C, H, W)`` of
    log-scaled features (as :func:`total_energy_feature`), scaled the same way, shape ``(B,)``.
    The rows span η over ``±eta_max`` (H equal bins, each pixel at its row's centre, as
    :func:`hepgen.metrics.event_jets.pixel_centers`); a massless deposit's pT is ``E / cosh η``,
    so beside the total energy this tells a critic how central the energy is (a generator
    that puts the right energy too close to η = 0 makes jets of too high pT).

    >>> x = torch.zeros(1, 1, 2, 2); x[0, 0, 0, 0] = 0.5  # row centre η = -1 for eta_max = 2
    >>> e = math.expm1(0.5 * 2.0)  # the pixel's E/s for L = 2
    >>> round(float(transverse_energy_feature(x, 2.0, 2.0)[0]), 6), round(math.log1p(e / math.cosh(1.0)) / 2, 6)
    (0.374182, 0.374182)
    """
    h = x.shape[2]
    edges = torch.linspace(-eta_max, eta_max, h + 1, dtype=torch.float32, device=x.device)
    w = 1.0 / torch.cosh(0.5 * (edges[1:] + edges[:-1]))  # (H,)
    return torch.log1p((torch.expm1(x.float() * log_range) * w[:, None]).sum((1, 2, 3))) / log_range


def symmetry_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x: (B, C, H, W)`` (H along η, W along φ) rolled along φ by a random whole
    number of pixels (0 … W−1) and mirrored in η with probability ½: the two exact symmetries of
    the event grid (φ periodic and the physics φ-invariant; η edges symmetric about 0 and pp
    collisions symmetric under η → −η).  Differentiable in ``x`` (a gather and a flip), so it can
    sit between a generator and its critic: differentiable augmentation (DiffAugment; Zhao et al.,
    "Differentiable Augmentation for Data-Efficient GAN Training", arXiv:2006.10738), here with
    transformations that leave the data distribution unchanged, so nothing leaks into the samples.

    >>> x = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> y = symmetry_augment(x, torch.Generator().manual_seed(0))
    >>> sorted(y.flatten().tolist()) == sorted(x.flatten().tolist()), tuple(y.shape)
    (True, (1, 1, 2, 4))
    """
    b, _, _, w = x.shape
    shifts = torch.randint(0, w, (b,), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    return _roll_mirror(x, shifts, flip)


def symmetry_from_noise(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The symmetry of :func:`symmetry_augment` chosen by two standard-normal numbers per image,
    ``u: (B, 2)``: a φ roll by ``⌊Φ(u₀) W⌋`` pixels (Φ the normal CDF, so every roll has
    probability 1/W) and an η mirror where ``u₁ > 0``.  A sampler that is a function of its noise
    (``sample_from_noise``) can so draw the symmetry that a ``critic_augment`` critic saw.

    >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
    >>> symmetry_from_noise(x, torch.tensor([[0.0, -1.0]])).flatten().tolist()  # Φ(0) = ½: a roll by 2
    [2.0, 3.0, 0.0, 1.0]
    """
    w = x.shape[3]
    cdf = 0.5 * (1.0 + torch.erf(u[:, 0].float() / math.sqrt(2.0)))
    shifts = torch.clamp((cdf * w).long(), 0, w - 1)
    return _roll_mirror(x, shifts, u[:, 1] > 0)


def _roll_mirror(x: torch.Tensor, shifts: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    w = x.shape[3]
    idx = (torch.arange(w, device=x.device)[None, :] - shifts[:, None]) % w  # out[..., j] = in[..., j − shift]
    x = torch.gather(x, 3, idx[:, None, None, :].expand_as(x))
    return torch.where(flip[:, None, None, None], x.flip(2), x)


@register
class EventDCGAN(GenerativeModel):
    """Conditional DCGAN on event images (see the module docstring).

    Arguments:
        n_features: ``C·H·W``.  n_conditions: condition columns.
        image_shape: ``[C, H, W]`` with H = W = 2^k (default ``[1, 64, 64]``).
        noise_dim: length of the noise vector.  filters: base filter count F.
        threshold: output values below it become exactly 0.
        flip_rate: fraction of discriminator labels swapped at random each step.
        n_critic, gp_lambda: WGAN-GP only (critic steps per generator step; penalty weight).
        beta1: Adam β₁ (0.5, the DCGAN choice).
        critic_energy: ``L = log(1 + e_max/scale)`` of the domain's log scaling; > 0 gives the
            critic each image's total energy (:func:`total_energy_feature`) as one more constant
            channel beside the masses, so that it can see an excess spread over many pixels
            (docs/events.md); 0 (default): off, the paper's critic.  ``"auto"`` in a config: the
            events domain fills in its preprocessor's ``L``.
        critic_et: ``eta_max`` of the images' rows; > 0 (needs ``critic_energy``) gives the critic
            each image's total transverse energy (:func:`transverse_energy_feature`) as one more
            constant channel, so that it sees how central the energy is; 0 (default): off.
            ``"auto"``: the events domain fills in the data's ``eta_max``.
        critic_lead: a window side in pixels; > 0 (needs ``critic_energy``) gives the critic the
            energy of each image's hardest ``critic_lead × critic_lead`` square
            (:func:`lead_window_feature`) as one more constant channel; 0 (default): off.
        critic_augment: every image the critic sees, real or generated, first goes through
            :func:`symmetry_augment` (a random φ roll and η mirror; DiffAugment with the grid's
            exact symmetries).  The sampler then applies such a symmetry too, drawn from two more
            noise components (:func:`symmetry_from_noise`; ``noise_dim`` is the network's + 2), so
            that samples follow the distribution the critic compared with the data.  False
            (default): the paper's training.
    """

    family = "dcgan"
    data_kind = "events"
    loss_type = "bce"
    ddp_find_unused_parameters = True

    def __init__(self, n_features: int, n_conditions: int, image_shape=(1, 64, 64), noise_dim: int = 64,
                 filters: int = 32, threshold: float = 0.05, flip_rate: float = 0.05, n_critic: int = 5,
                 gp_lambda: float = 10.0, beta1: float = 0.5, critic_energy: float = 0.0,
                 critic_et: float = 0.0, critic_augment: bool = False, critic_lead: int = 0) -> None:
        super().__init__(n_features, n_conditions)
        image_shape = [int(s) for s in image_shape]
        if len(image_shape) != 3 or image_shape[1] != image_shape[2] or math.prod(image_shape) != self.n_features:
            raise ValueError(f"{self.family}: key 'image_shape': expected [C, H, W] with H = W and C·H·W = "
                             f"n_features={self.n_features}, found {image_shape}")
        if not 0.0 <= float(flip_rate) < 0.5:
            raise ValueError(f"{self.family}: key 'flip_rate': expected a fraction in [0, 0.5), found {flip_rate}")
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"{self.family}: key 'threshold': expected a value in [0, 1), found {threshold}")
        if not (isinstance(critic_energy, (int, float)) and float(critic_energy) >= 0.0):
            raise ValueError(f"{self.family}: key 'critic_energy': expected a log range >= 0 (0: off), found "
                             f"{critic_energy!r}")
        if not (isinstance(critic_et, (int, float)) and float(critic_et) >= 0.0):
            raise ValueError(f"{self.family}: key 'critic_et': expected the images' eta_max > 0 (0: off), found "
                             f"{critic_et!r}")
        if float(critic_et) > 0 and float(critic_energy) <= 0:
            raise ValueError(f"{self.family}: key 'critic_et': needs 'critic_energy' (its log range), found "
                             f"critic_energy={critic_energy!r}")
        if not (isinstance(critic_lead, int) and not isinstance(critic_lead, bool)
                and 0 <= critic_lead <= int(image_shape[1])):
            raise ValueError(f"{self.family}: key 'critic_lead': expected a window of 0 (off) ... {image_shape[1]} "
                             f"pixels, found {critic_lead!r}")
        if critic_lead > 0 and float(critic_energy) <= 0:
            raise ValueError(f"{self.family}: key 'critic_lead': needs 'critic_energy' (its log range), found "
                             f"critic_energy={critic_energy!r}")
        if not isinstance(critic_augment, bool):
            raise ValueError(f"{self.family}: key 'critic_augment': expected true or false, found {critic_augment!r}")
        if int(noise_dim) < 1 or int(filters) < 1 or int(n_critic) < 1:
            raise ValueError(f"{self.family}: noise_dim, filters and n_critic must be >= 1, found "
                             f"{noise_dim}, {filters}, {n_critic}")
        self.image_shape = image_shape
        self._noise_dim = int(noise_dim)
        self.threshold = float(threshold)
        self.flip_rate = float(flip_rate)
        self.n_critic = int(n_critic)
        self.gp_lambda = float(gp_lambda)
        self.beta1 = float(beta1)
        self.critic_energy = float(critic_energy)
        self.critic_et = float(critic_et)
        self.critic_augment = critic_augment
        self.critic_lead = int(critic_lead)
        c, side = image_shape[0], image_shape[1]
        self.generator = _Generator(self._noise_dim, self.n_conditions, c, side, int(filters), self.threshold)
        self.critic = _Critic(self.n_conditions, c, side, int(filters), batch_norm=self.loss_type == "bce",
                              energy_range=self.critic_energy, eta_max=self.critic_et, lead_window=self.critic_lead)
        self.hparams.update(image_shape=image_shape, noise_dim=self._noise_dim, filters=int(filters),
                            threshold=self.threshold, flip_rate=self.flip_rate, n_critic=self.n_critic,
                            gp_lambda=self.gp_lambda, beta1=self.beta1, critic_energy=self.critic_energy,
                            critic_et=self.critic_et, critic_augment=self.critic_augment, critic_lead=self.critic_lead)

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"image_shape": [1, 16, 16], "noise_dim": 8, "filters": 4}

    # --- sampling -------------------------------------------------------------------------
    @property
    def noise_dim(self) -> int:
        """The sampler's noise: the generator network's, and with ``critic_augment`` two more
        numbers that draw each image's φ roll and η mirror."""
        return self._noise_dim + (2 if self.critic_augment else 0)

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.noise_dim:
            raise ValueError(f"{self.family}: noise: expected (B, {self.noise_dim}) "
                             f"({self._noise_dim} for the network" + (", 2 for the symmetry)" if self.critic_augment
                                                                      else ")") + f", found {tuple(z.shape)}")
        was = self.generator.training
        self.generator.eval()
        try:
            img = self.generator(z[:, :self._noise_dim], c)
            if self.critic_augment:
                img = symmetry_from_noise(img, z[:, self._noise_dim:])
            return img.reshape(len(c), -1)
        finally:
            self.generator.train(was)

    @torch.no_grad()
    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(len(c), self.noise_dim, generator=generator, device=c.device) if generator is not None \
            else torch.randn(len(c), self.noise_dim, device=c.device)
        return self.sample_from_noise(c, z)

    # --- training -------------------------------------------------------------------------
    def ddp_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "critic": self.critic}

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        betas = (self.beta1, 0.999)
        return {"generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas, weight_decay=weight_decay),
                "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)}

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.image_shape)

    def _seen(self, img: torch.Tensor) -> torch.Tensor:
        """What the critic sees of images ``(B, C, H, W)``: themselves, or with ``critic_augment``
        a random symmetry of each (:func:`symmetry_augment`)."""
        return symmetry_augment(img) if self.critic_augment else img

    def _fake(self, c: torch.Tensor) -> torch.Tensor:
        z = torch.randn(len(c), self._noise_dim, device=c.device)
        return self.wrapped("generator")(z, c)

    def critic_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Discriminator BCE on real ``x`` and generated images, a ``flip_rate`` of labels swapped."""
        real = self._images(x)
        with torch.no_grad():
            fake = self._fake(c)
        d_real = self.wrapped("critic")(self._seen(real), c)
        d_fake = self.wrapped("critic")(self._seen(fake), c)
        y_real, y_fake = torch.ones_like(d_real), torch.zeros_like(d_fake)
        if self.flip_rate > 0:
            flip_r = torch.rand_like(y_real) < self.flip_rate
            flip_f = torch.rand_like(y_fake) < self.flip_rate
            y_real, y_fake = torch.where(flip_r, 1 - y_real, y_real), torch.where(flip_f, 1 - y_fake, y_fake)
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(d_real, y_real) + bce(d_fake, y_fake)

    def generator_loss(self, c: torch.Tensor) -> torch.Tensor:
        d = self.wrapped("critic")(self._seen(self._fake(c)), c)
        return nn.functional.binary_cross_entropy_with_logits(d, torch.ones_like(d))

    def training_step(self, x, c, optimizers, step, grad_clip, scaler=None) -> dict[str, float]:
        """One critic step, and one generator step (every ``n_critic``-th step for WGAN-GP)."""
        if scaler is not None:
            raise ValueError(f"{self.family}: fp16 mixed precision (a GradScaler) is not supported; use bf16 or fp32")
        opt_d, opt_g = optimizers["critic"], optimizers["generator"]
        loss_d = self.critic_loss(x, c)
        if not torch.isfinite(loss_d):
            raise FloatingPointError(f"step {step}: critic loss became {loss_d.item()}; lower the lr")
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), grad_clip)
        opt_d.step()
        out = {"loss": float(loss_d.detach()), "loss_critic": float(loss_d.detach())}
        if self.loss_type == "bce" or step % self.n_critic == 0:
            loss_g = self.generator_loss(c)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(self.generator.parameters(), grad_clip)
            opt_g.step()
            out["loss_generator"] = float(loss_g.detach())
        return out

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.critic_loss(x, c)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.critic_loss(x, c)

    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """NaN: adversarial losses do not track sample quality; the event domain selects
        checkpoints with its KS jet score."""
        return torch.tensor(float("nan"), device=x.device)


@register
class EventWGANGP(EventDCGAN):
    """:class:`EventDCGAN` trained as a WGAN-GP (critic without batch norm; ``flip_rate`` is not
    used: a Wasserstein critic has no labels to flip)."""

    family = "dcgan_wgan_gp"
    loss_type = "wgan_gp"

    def __init__(self, n_features: int, n_conditions: int, image_shape=(1, 64, 64), noise_dim: int = 64,
                 filters: int = 32, threshold: float = 0.05, flip_rate: float = 0.0, n_critic: int = 5,
                 gp_lambda: float = 10.0, beta1: float = 0.0, critic_energy: float = 0.0,
                 critic_et: float = 0.0, critic_augment: bool = False, critic_lead: int = 0) -> None:
        # explicit signature (hepgen tune reads the constructor's parameters); no label flips by default
        super().__init__(n_features, n_conditions, image_shape=image_shape, noise_dim=noise_dim, filters=filters,
                         threshold=threshold, flip_rate=flip_rate, n_critic=n_critic, gp_lambda=gp_lambda,
                         beta1=beta1, critic_energy=critic_energy, critic_et=critic_et,
                         critic_augment=critic_augment, critic_lead=critic_lead)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        betas = (self.beta1, 0.9)  # Gulrajani et al.
        return {"generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas, weight_decay=weight_decay),
                "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)}

    def critic_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``E[D(fake)] − E[D(real)] + λ E[(‖∇D(x̂)‖ − 1)²]`` on random interpolates x̂."""
        real = self._seen(self._images(x))
        with torch.no_grad():
            fake = self._seen(self._fake(c))
        critic = self.wrapped("critic")
        eps = torch.rand(len(real), 1, 1, 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mix, c).sum(), mix, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - 1).square().mean()
        return critic(fake, c).mean() - critic(real, c).mean() + self.gp_lambda * gp

    def generator_loss(self, c: torch.Tensor) -> torch.Tensor:
        return -self.wrapped("critic")(self._seen(self._fake(c)), c).mean()
