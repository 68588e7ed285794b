"""Conditional GANs for calorimeter showers: BCE (DCGAN-style) and WGAN-GP, with the
physics add-ons of the calorimeter GAN literature, behind hepgen's model interface.

One registered family, ``gan``; its options (all JSON-able hyper-parameters):

* ``loss="bce"``: the non-saturating GAN of Goodfellow et al. with optional one-sided
  label smoothing and random label flipping for the discriminator;
  ``loss="wgan-gp"``: Wasserstein GAN with gradient penalty, either two-sided
  ``(‖∇D‖ − 1)²`` (Gulrajani et al.), one-sided ``max(0, ‖∇D‖ − 1)²`` (Petzka et al.), or
  ``"max"``: the largest two-sided term of the batch instead of the mean (see
  :meth:`GAN.gradient_penalty`).
* ``aux_energy`` / ``aux_conditions``: AC-GAN auxiliary regression head in the critic
  (3DGAN): it predicts the incident energy (and the other conditions, e.g. the angle) of
  real and generated showers; the generator is rewarded when its showers are regressed
  to the conditions it was asked for.
* ``ecal_sum``: 3DGAN's total-energy ("ECAL sum") loss, in feature space (see
  :meth:`GAN.ecal_sum_loss` for what it compares and why).
* ``constrainer``: the HGCAL conditional WGAN's constrainer network (Erdmann et al.), a
  separate regression ``x → c`` trained on real showers only; the generator loss adds
  ``K·|L_real − L_fake|``.  ``constrainer_energy`` / ``constrainer_position``: the same with
  two separate regressors, of the energy (``c[:, 0]``) and of the impact position (the
  ``position_columns`` of c), with their own K_e, K_p; ``constrainer_pretrain_steps``: the
  first steps train the constrainers alone, on real showers, before the GAN starts.
* ``arch``: ``"mlp"`` (plain conditional MLPs), ``"layered"`` (CaloGAN-style
  layer-by-layer generator + locally connected critic; needs ``layer_sizes``) or
  ``"conv3d"`` (3DGAN-style 3D convolutions on a Cartesian grid; needs ``grid_shape``).

Training (``training_step``): the critic is updated on every batch, the generator on
every ``n_critic``-th batch (``(step + 1) % n_critic == 0``).  All random numbers of a
step (latent vectors, interpolation weights, label flips) come from a generator seeded
by ``(noise_seed, step, rank)``, so a run resumed at ``step`` continues exactly as an
uninterrupted one and never touches the global RNG.  ``noise_seed`` is a buffer drawn
at construction (like the initial weights) and saved in the state dict.

GANs have no likelihood and no validation loss that tracks sample quality:
``has_log_prob = False`` and ``validation_loss`` returns NaN, so the trainer selects
checkpoints by a physics metric.  :func:`duality_gap` estimates the duality gap of a
checkpoint (Grnarova et al.), a model-agnostic measure of how far the pair
(generator, critic) is from an equilibrium.

References:
    I. Goodfellow et al., "Generative Adversarial Networks", arXiv:1406.2661.
    I. Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028.
    H. Petzka, A. Fischer, D. Lukovnikov, "On the regularization of Wasserstein GANs",
    arXiv:1709.08894.
    T. Salimans et al., "Improved Techniques for Training GANs", arXiv:1606.03498
    (one-sided label smoothing).
    A. Odena, C. Olah, J. Shlens, "Conditional Image Synthesis with Auxiliary Classifier
    GANs", arXiv:1610.09585.
    M. Paganini, L. de Oliveira, B. Nachman, "CaloGAN", arXiv:1705.02355, arXiv:1712.10321.
    G. R. Khattak et al., "Fast simulation of a high granularity calorimeter by generative
    adversarial networks" (3DGAN), arXiv:2109.07388.
    M. Erdmann, J. Glombitza, T. Quast, "Precise simulation of electromagnetic calorimeter
    showers using a Wasserstein Generative Adversarial Network", arXiv:1807.01954.
    P. Grnarova et al., "A Domain Agnostic Measure for Monitoring and Evaluating GANs",
    arXiv:1811.05512.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hepgen.models._gan_nets import (
    Constrainer,
    Conv3dCritic,
    Conv3dGenerator,
    LayeredCritic,
    LayeredGenerator,
    MLPCritic,
    MLPGenerator,
)
from hepgen.models.base import GenerativeModel, register

__all__ = ["GAN", "duality_gap"]

_LOSSES = ("bce", "wgan-gp")
_GPS = ("two-sided", "one-sided", "max")
_ARCHS = ("mlp", "layered", "conv3d")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"gan: hparam {name!r} must be one of {list(choices)}, found {value!r}")


def _check_range(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> float:
    value = float(value)
    ok = lo <= value < hi if hi_open else lo <= value <= hi
    if not ok or math.isnan(value):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"gan: hparam {name!r} must be in [{lo}, {hi}{bracket}, found {value}")
    return value


@register
class GAN(GenerativeModel):
    """Conditional GAN / WGAN-GP with auxiliary physics losses (see the module docstring).

    Arguments:
        n_features: dimension D of the preprocessed features.
        n_conditions: dimension C of the preprocessed conditions (log E_inc first).
        arch: ``"mlp"``, ``"layered"`` (needs ``layer_sizes``) or ``"conv3d"`` (needs
            ``grid_shape``).
        loss: ``"bce"`` or ``"wgan-gp"``.
        gp: ``"two-sided"`` or ``"one-sided"`` gradient penalty.
        gp_weight: λ of the gradient penalty (WGAN-GP only; default 10).
        n_critic: critic updates per generator update (default 5 for WGAN-GP, 1 for BCE).
        label_flip: probability of swapping the real/fake targets of the discriminator
            (BCE only), in [0, 0.5).
        label_smoothing: real target 1 − s for the discriminator (one-sided; BCE only).
        aux_energy: weight of the critic's energy-regression head (AC-GAN / 3DGAN).
        aux_conditions: weight of the head's regression of the other conditions (angle,
            position); needs ``n_conditions > 1``.
        ecal_sum: weight of the total-energy loss (:meth:`ecal_sum_loss`).
        constrainer: K of the constrainer term ``K·|L_real − L_fake|`` (one regressor of all
            the conditions).
        constrainer_energy, constrainer_position: K_e, K_p of two separate constrainers,
            regressing the energy ``c[:, 0]`` and the impact position ``c[:, position_columns]``.
        position_columns: condition columns of the impact position (default: all but 0).
        constrainer_pretrain_steps: the first this many training steps update only the
            constrainers (on real showers): they are pre-trained before the GAN starts.
        latent_dim: size of the Gaussian latent vector.
        hidden, n_hidden: width and number of hidden layers of the MLPs.
        channels: convolution channels (``conv3d``).
        layer_norm: LayerNorm (GroupNorm(1, ·) for convolutions) in generator and critic.
        spectral_norm: spectral normalisation of the critic's layers.
        layer_sizes: voxels per layer (``layered``): D = len + sum.
        grid_shape: ``[nz, ny, nx]`` (``conv3d``): D = nz + nz·ny·nx, layers along z.
        betas: Adam betas; default (0.5, 0.9) for BCE and (0.0, 0.9) for WGAN-GP, the
            values of DCGAN-style training and of Gulrajani et al.
        critic_lr_scale: the critic's learning rate is ``lr · critic_lr_scale`` (TTUR).

    Example:
        >>> gan = GAN(n_features=10, n_conditions=1, hidden=32)
        >>> opts = gan.configure_optimizers(lr=1e-4, weight_decay=0.0)
        >>> x, c = torch.randn(64, 10), torch.randn(64, 1)
        >>> stats = gan.training_step(x, c, opts, step=0, grad_clip=5.0)
        >>> gan.sample(c, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([64, 10])
    """

    family = "gan"
    has_log_prob = False

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        arch: str = "mlp",
        loss: str = "wgan-gp",
        gp: str = "two-sided",
        gp_weight: float | None = None,
        n_critic: int | None = None,
        label_flip: float = 0.0,
        label_smoothing: float = 0.0,
        aux_energy: float = 0.0,
        aux_conditions: float = 0.0,
        ecal_sum: float = 0.0,
        constrainer: float = 0.0,
        constrainer_energy: float = 0.0,
        constrainer_position: float = 0.0,
        position_columns: Sequence[int] | None = None,
        constrainer_pretrain_steps: int = 0,
        latent_dim: int = 64,
        hidden: int = 256,
        n_hidden: int = 3,
        channels: int = 16,
        layer_norm: bool = False,
        spectral_norm: bool = False,
        layer_sizes: Sequence[int] | None = None,
        grid_shape: Sequence[int] | None = None,
        betas: Sequence[float] | None = None,
        critic_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(n_features, n_conditions)
        _check_choice("arch", arch, _ARCHS)
        _check_choice("loss", loss, _LOSSES)
        _check_choice("gp", gp, _GPS)
        wgan = loss == "wgan-gp"
        gp_weight = (
            (10.0 if wgan else 0.0)
            if gp_weight is None
            else _check_range("gp_weight", gp_weight, 0, math.inf)
        )
        n_critic = (5 if wgan else 1) if n_critic is None else int(n_critic)
        if n_critic < 1:
            raise ValueError(f"gan: hparam 'n_critic' must be >= 1, found {n_critic}")
        label_flip = _check_range("label_flip", label_flip, 0.0, 0.5, hi_open=True)
        label_smoothing = _check_range("label_smoothing", label_smoothing, 0.0, 0.5, hi_open=True)
        if not wgan and gp_weight:
            raise ValueError(
                f"gan: the gradient penalty (gp_weight={gp_weight}) belongs to loss='wgan-gp', found loss={loss!r}"
            )
        if wgan and (label_flip or label_smoothing):
            raise ValueError(
                f"gan: label_flip/label_smoothing apply to loss='bce' only, found loss={loss!r} with "
                f"label_flip={label_flip}, label_smoothing={label_smoothing}"
            )
        weights = {
            k: _check_range(k, v, 0.0, math.inf)
            for k, v in {
                "aux_energy": aux_energy,
                "aux_conditions": aux_conditions,
                "ecal_sum": ecal_sum,
                "constrainer": constrainer,
                "constrainer_energy": constrainer_energy,
                "constrainer_position": constrainer_position,
                "critic_lr_scale": critic_lr_scale,
            }.items()
        }
        if weights["critic_lr_scale"] == 0:
            raise ValueError("gan: hparam 'critic_lr_scale' must be > 0, found 0")
        if weights["aux_conditions"] and n_conditions < 2:
            raise ValueError(
                f"gan: aux_conditions={aux_conditions} needs conditions besides the energy, "
                f"found n_conditions={n_conditions}"
            )
        sizes = {
            "latent_dim": latent_dim,
            "hidden": hidden,
            "n_hidden": n_hidden,
            "channels": channels,
        }
        for name, value in sizes.items():
            lowest = 0 if name == "n_hidden" else 1
            if int(value) < lowest:
                raise ValueError(
                    f"gan: hparam {name!r} must be an integer >= {lowest}, found {value}"
                )
        if betas is None:
            betas = (0.0, 0.9) if wgan else (0.5, 0.9)
        betas = [float(b) for b in betas]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"gan: hparam 'betas' must be two numbers in [0, 1), found {betas}")
        position_columns = self._check_constrainers(weights, position_columns, constrainer_pretrain_steps)
        constrainer_pretrain_steps = int(constrainer_pretrain_steps)
        layer_sizes = self._check_layer_sizes(arch, layer_sizes)
        grid_shape = self._check_grid_shape(arch, grid_shape)

        self.hparams.update(
            arch=arch,
            loss=loss,
            gp=gp,
            gp_weight=gp_weight,
            n_critic=n_critic,
            label_flip=label_flip,
            label_smoothing=label_smoothing,
            **{k: v for k, v in weights.items()},
            position_columns=position_columns,
            constrainer_pretrain_steps=constrainer_pretrain_steps,
            latent_dim=int(latent_dim),
            hidden=int(hidden),
            n_hidden=int(n_hidden),
            channels=int(channels),
            layer_norm=bool(layer_norm),
            spectral_norm=bool(spectral_norm),
            layer_sizes=layer_sizes,
            grid_shape=grid_shape,
            betas=betas,
        )
        self.arch, self.loss_type, self.gp_type = arch, loss, gp
        self.gp_weight, self.n_critic = gp_weight, n_critic
        self.label_flip, self.label_smoothing = label_flip, label_smoothing
        self.aux_energy, self.aux_conditions = weights["aux_energy"], weights["aux_conditions"]
        self.ecal_sum_weight, self.constrainer_weight = weights["ecal_sum"], weights["constrainer"]
        self.critic_lr_scale = weights["critic_lr_scale"]
        self.latent_dim, self.betas = int(latent_dim), tuple(betas)
        self.n_aux = n_conditions if (self.aux_energy or self.aux_conditions) else 0

        d, cdim, h, nh, ln, sn = (
            n_features,
            n_conditions,
            int(hidden),
            int(n_hidden),
            bool(layer_norm),
            bool(spectral_norm),
        )
        n_out = 1 + self.n_aux
        if arch == "mlp":
            self.generator = MLPGenerator(d, cdim, self.latent_dim, h, nh, ln)
            self.critic = MLPCritic(d, cdim, n_out, h, nh, ln, sn)
        elif arch == "layered":
            self.generator = LayeredGenerator(layer_sizes, cdim, self.latent_dim, h, nh, ln)
            self.critic = LayeredCritic(layer_sizes, cdim, n_out, h, nh, ln, sn, embed=min(h, 64))
        else:
            self.generator = Conv3dGenerator(
                grid_shape, cdim, self.latent_dim, h, int(channels), ln
            )
            self.critic = Conv3dCritic(grid_shape, cdim, n_out, h, int(channels), ln, sn)
        self.constrainer = Constrainer(d, cdim, h, max(nh, 1)) if self.constrainer_weight else None
        # HGCAL WGAN: separate energy and impact-position regressors (module None when K = 0)
        self.position_columns = position_columns
        self.constrainer_pretrain_steps = constrainer_pretrain_steps
        self.constrainer_weights = {"constrainer": self.constrainer_weight,
                                    "constrainer_energy": weights["constrainer_energy"],
                                    "constrainer_position": weights["constrainer_position"]}
        self.constrainer_energy = (Constrainer(d, 1, h, max(nh, 1))
                                   if weights["constrainer_energy"] else None)
        self.constrainer_position = (Constrainer(d, len(position_columns), h, max(nh, 1))
                                     if weights["constrainer_position"] else None)
        # seeds the per-step noise; drawn like the initial weights, saved in the state dict
        self.register_buffer("noise_seed", torch.randint(0, 2**62, (), dtype=torch.int64))

    # --- hparam validation ------------------------------------------------------------------
    def _check_constrainers(self, weights: dict, position_columns, pretrain_steps) -> list[int]:
        cdim = self.n_conditions
        cols = list(range(1, cdim)) if position_columns is None else [int(i) for i in position_columns]
        if weights["constrainer_position"] and (not cols or any(not 0 < i < cdim for i in cols)
                                                or len(set(cols)) != len(cols)):
            raise ValueError(f"gan: hparam 'position_columns' must be distinct condition columns in "
                             f"[1, {cdim - 1}] (column 0 is the energy), found {cols} with n_conditions={cdim}")
        if isinstance(pretrain_steps, bool) or int(pretrain_steps) != pretrain_steps or pretrain_steps < 0:
            raise ValueError(f"gan: hparam 'constrainer_pretrain_steps' must be an integer >= 0, "
                             f"found {pretrain_steps!r}")
        if pretrain_steps and not any(weights[k] for k in ("constrainer", "constrainer_energy",
                                                           "constrainer_position")):
            raise ValueError(f"gan: constrainer_pretrain_steps={pretrain_steps} needs a constrainer "
                             "(constrainer, constrainer_energy or constrainer_position > 0), found none")
        return cols

    def _check_layer_sizes(self, arch: str, layer_sizes) -> list[int] | None:
        if layer_sizes is None:
            if arch == "layered":
                raise ValueError(
                    "gan: arch='layered' needs hparam 'layer_sizes' (voxels per layer), found none"
                )
            return None
        sizes = [int(s) for s in layer_sizes]
        if not sizes or min(sizes) < 1 or len(sizes) + sum(sizes) != self.n_features:
            raise ValueError(
                f"gan: hparam 'layer_sizes' must be positive voxel counts with len + sum = n_features = "
                f"{self.n_features}, found {sizes} (len + sum = {len(sizes) + sum(sizes)})"
            )
        return sizes

    def _check_grid_shape(self, arch: str, grid_shape) -> list[int] | None:
        if grid_shape is None:
            if arch == "conv3d":
                raise ValueError(
                    "gan: arch='conv3d' needs hparam 'grid_shape' [nz, ny, nx], found none"
                )
            return None
        shape = [int(s) for s in grid_shape]
        if len(shape) != 3 or min(shape) < 1 or shape[0] + math.prod(shape) != self.n_features:
            raise ValueError(
                f"gan: hparam 'grid_shape' must be [nz, ny, nx] with nz + nz*ny*nx = n_features = "
                f"{self.n_features}, found {shape}"
            )
        return shape

    @classmethod
    def tiny_hparams(cls) -> dict:
        """Small sizes for fast tests of the family."""
        return {"hidden": 16, "n_hidden": 1, "latent_dim": 4, "channels": 2}

    # --- randomness ---------------------------------------------------------------------------
    def step_generator(self, step: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The ``torch.Generator`` of training step ``step``: seeded by (noise_seed, step, rank).

        Arguments:
            step: global training step (batch counter) — resuming at ``step`` reproduces it.
            device: device of the generator (that of the training batch).
        """
        rank = (
            torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized()
            else 0
        )
        state = np.random.SeedSequence(
            [int(self.noise_seed), int(step) & (2**63 - 1), rank]
        ).generate_state(2, np.uint32)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(state[0]) << 31 ^ int(state[1]))
        return gen

    def latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``(n, latent_dim)`` standard normal latent vectors drawn from ``generator``.

        Arguments:
            n: number of vectors.
            generator: source of randomness (None: the global RNG).
            device: where the result goes (default: the generator's device, else CPU).
        """
        gdev = generator.device if generator is not None else device
        z = torch.randn(n, self.latent_dim, generator=generator, device=gdev)
        return z if device is None else z.to(device)

    @property
    def noise_dim(self) -> int:
        """Length of the latent vector: ``sample_from_noise`` maps ``(c, z)`` to a sample."""
        return self.latent_dim

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The generator as a deterministic map: ``c: (B, C)``, ``z: (B, latent_dim)`` → ``(B, D)``."""
        # shape[0], never len(): len() would fix the batch size when exported with torch.export
        if z.ndim != 2 or z.shape[1] != self.latent_dim or z.shape[0] != c.shape[0]:
            raise ValueError(
                f"gan: z must have shape ({c.shape[0]}, {self.latent_dim}), found {tuple(z.shape)}"
            )
        return self.generator(z, c)

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One generated feature vector per condition row: ``c: (B, C)`` → ``(B, D)``.

        Equals ``sample_from_noise(c, torch.randn(B, latent_dim, generator=generator))``.

        Arguments:
            c: preprocessed conditions.
            generator: seeded ``torch.Generator`` for reproducible samples (the global RNG
                is left untouched); None draws from the global RNG.
        """
        return self.generator(self.latent(len(c), generator, c.device), c)

    # --- critic-side terms --------------------------------------------------------------------
    def critic_outputs(
        self, x: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(score: (B,), aux: (B, C) or None)``: the critic's adversarial score and its
        auxiliary regression of the conditions."""
        out = self.wrapped("critic")(x, c)  # the DDP wrapper during data-parallel training
        return out[:, 0], (out[:, 1:] if self.n_aux else None)

    def gradient_penalty(
        self,
        x_real: torch.Tensor,
        x_fake: torch.Tensor,
        c: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Gradient penalty of the adversarial score at random interpolates (unweighted).

        ``x̂ = ε x_real + (1 − ε) x_fake`` with ``ε ~ U(0, 1)`` per sample; the penalty is
        ``mean((‖∇_x D(x̂, c)‖₂ − 1)²)`` (two-sided, Gulrajani et al.) or
        ``mean(max(0, ‖∇_x D(x̂, c)‖₂ − 1)²)`` (one-sided, Petzka et al.), or
        ``max_i (‖∇_x D(x̂_i, c_i)‖₂ − 1)²`` (``"max"``: the worst interpolate of the batch, a
        stricter Lipschitz penalty; our reading of the "GPmax" variant of the HGCAL WGAN, whose
        exact definition we could not check in its text).  Only the gradient with respect to
        the features is penalised, not the conditions.

        Arguments:
            x_real, x_fake: ``(B, D)`` real and generated features (x_fake is detached).
            c: ``(B, C)`` conditions of both.
            eps: optional ``(B, 1)`` interpolation weights (drawn from ``generator`` if None).
            generator: source of ``eps``.
        """
        if eps is None:
            eps = torch.rand(
                len(x_real),
                1,
                generator=generator,
                device=generator.device if generator is not None else x_real.device,
            ).to(x_real.device)
        x_hat = (eps * x_real.detach() + (1.0 - eps) * x_fake.detach()).requires_grad_(True)
        score = self.wrapped("critic")(x_hat, c)[:, 0]
        (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
        # the 1e-12 keeps the gradient of the norm finite where ∇D vanishes
        norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
        excess = norm - 1.0
        if self.gp_type == "one-sided":
            excess = F.relu(excess)
        if self.gp_type == "max":
            return excess.pow(2).max()
        return excess.pow(2).mean()

    def bce_targets(
        self, n: int, real: bool, generator: torch.Generator | None = None, device=None
    ) -> torch.Tensor:
        """``(n,)`` discriminator targets: 1 − label_smoothing for real, 0 for fake, each
        swapped with probability ``label_flip`` (drawn from ``generator``)."""
        gdev = generator.device if generator is not None else device
        real_t, fake_t = 1.0 - self.label_smoothing, 0.0
        t = torch.full((n,), real_t if real else fake_t, device=gdev)
        if self.label_flip:
            flip = torch.rand(n, generator=generator, device=gdev) < self.label_flip
            t = torch.where(flip, torch.full_like(t, fake_t if real else real_t), t)
        return t if device is None else t.to(device)

    def aux_loss(self, pred: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        """Weighted MSE of the auxiliary head: ``aux_energy·MSE(energy) + aux_conditions·MSE(rest)``.

        Arguments:
            pred: ``(B, C)`` predicted conditions (None when there is no head: returns 0).
            c: ``(B, C)`` preprocessed conditions (standardised, so MSE is in units of the
                spread; 3DGAN uses a relative error on E, which is ill-defined here).
        """
        if pred is None:
            return c.new_zeros(())
        loss = self.aux_energy * F.mse_loss(pred[:, 0], c[:, 0])
        if self.aux_conditions and c.shape[1] > 1:
            loss = loss + self.aux_conditions * F.mse_loss(pred[:, 1:], c[:, 1:])
        return loss

    def _constrainer_target(self, name: str, c: torch.Tensor) -> torch.Tensor:
        if name == "constrainer_energy":
            return c[:, :1]
        if name == "constrainer_position":
            return c[:, self.position_columns]
        return c

    def active_constrainers(self) -> list[str]:
        """Names of the constrainer networks in use (``constrainer``, ``constrainer_energy``,
        ``constrainer_position``), in that order."""
        return [k for k in self.constrainer_weights if getattr(self, k) is not None]

    def constrainer_loss(self, x: torch.Tensor, c: torch.Tensor, name: str = "constrainer") -> torch.Tensor:
        """MSE of the constrainer ``name``'s regression of its targets (all of c, the energy
        ``c[:, :1]`` or the position ``c[:, position_columns]``) from ``x``: the loss it is
        trained with on real showers; 0 when that constrainer is not in use."""
        if getattr(self, name, None) is None:
            return c.new_zeros(())
        return F.mse_loss(self.wrapped(name)(x), self._constrainer_target(name, c))

    def constrainer_term(
        self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """``Σ_k K_k·|L_k(x_real) − L_k(x_fake)|`` over the constrainers in use: the generator
        is pushed until each constrainer regresses its showers' labels as well as those of
        real ones (Erdmann et al.); zero when x_fake == x_real.  The real side is computed
        without gradients: only the generated showers carry gradient (to the generator).

        Arguments:
            x_real, x_fake: ``(B, D)`` real and generated features for the same conditions.
            c: ``(B, C)`` the conditions.
        """
        term = c.new_zeros(())
        for name in self.active_constrainers():
            with torch.no_grad():
                l_real = self.constrainer_loss(x_real, c, name)
            term = term + self.constrainer_weights[name] * (l_real - self.constrainer_loss(x_fake, c, name)).abs()
        return term

    def ecal_sum_loss(
        self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """Total-energy loss on feature 0 (unweighted).

        Why in feature space: in the ShowerPreprocessor layout feature 0 is the
        standardised logit of ``E_tot / (scale·E_inc)``, a monotonic function of the shower's
        total energy over the incident energy, so the ECAL sum needs no decoding (decoding
        would need the preprocessor's fitted state inside the model).  3DGAN pulls every
        shower's sum toward the mean response at its energy, which also shrinks the
        resolution; here the generated and real batches — generated for the *same*
        conditions — are compared by the first two moments of feature 0 and by its
        covariance with log E_inc (``c[:, 0]``), i.e. the response, the resolution and the
        energy dependence of the response.  Every term has expectation zero when the
        generator reproduces the conditional distribution of the total energy.

        Arguments:
            x_real, x_fake: ``(B, D)`` real and generated features; ``B >= 2``.
            c: ``(B, C)`` the conditions of both.
        """
        r, g, e = x_real[:, 0], x_fake[:, 0], c[:, 0] - c[:, 0].mean()
        mean = (g.mean() - r.mean()).pow(2)
        std = (g.std(correction=0) - r.std(correction=0)).pow(2)
        cov = ((g - g.mean()) * e).mean() - ((r - r.mean()) * e).mean()
        return mean + std + cov.pow(2)

    def adversarial_value(
        self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """The minimax objective M(G, D) the critic maximises and the generator minimises.

        BCE: ``mean log σ(D(x_real)) + mean log(1 − σ(D(x_fake)))``; WGAN: ``mean D(x_real)
        − mean D(x_fake)`` (the critic's estimate of the Wasserstein-1 distance).
        """
        s_real, _ = self.critic_outputs(x_real, c)
        s_fake, _ = self.critic_outputs(x_fake, c)
        if self.loss_type == "bce":
            return F.logsigmoid(s_real).mean() + F.logsigmoid(-s_fake).mean()
        return s_real.mean() - s_fake.mean()

    def critic_loss(
        self,
        x_real: torch.Tensor,
        x_fake: torch.Tensor,
        c: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The critic's loss on one batch and its parts (floats, for logging).

        BCE: ``BCE(D(x_real), t_real) + BCE(D(x_fake), t_fake)`` with smoothed/flipped
        targets; WGAN-GP: ``mean D(x_fake) − mean D(x_real)``.  Plus ``gp_weight · GP``,
        the AC-GAN head's regression on real and generated showers, and the constrainer's
        regression loss on real showers (its parameters are disjoint from the critic's).
        """
        x_fake = x_fake.detach()
        s_real, a_real = self.critic_outputs(x_real, c)
        s_fake, a_fake = self.critic_outputs(x_fake, c)
        parts: dict[str, float] = {}
        if self.loss_type == "bce":
            t_real = self.bce_targets(len(s_real), True, generator, s_real.device)
            t_fake = self.bce_targets(len(s_fake), False, generator, s_fake.device)
            adv = F.binary_cross_entropy_with_logits(
                s_real, t_real
            ) + F.binary_cross_entropy_with_logits(s_fake, t_fake)
        else:
            w_dist = s_real.mean() - s_fake.mean()
            adv = -w_dist
            parts["wasserstein"] = w_dist.item()
        loss = adv
        parts["critic_adv"] = adv.item()
        if self.gp_weight:
            gp = self.gradient_penalty(x_real, x_fake, c, generator=generator)
            loss = loss + self.gp_weight * gp
            parts["gp"] = gp.item()
        if self.n_aux:
            aux = self.aux_loss(a_real, c) + self.aux_loss(a_fake, c)
            loss = loss + aux
            parts["aux_critic"] = aux.item()
        for name in self.active_constrainers():
            con = self.constrainer_loss(x_real, c, name)
            loss = loss + con
            parts[f"{name}_real"] = con.item()
        return loss, parts

    def generator_loss(
        self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator's loss on one batch and its parts.

        BCE: non-saturating ``BCE(D(x_fake), 1)``; WGAN-GP: ``−mean D(x_fake)``; plus the
        AC-GAN regression of the generated showers, ``ecal_sum · ecal_sum_loss`` and the
        constrainer term.  ``x_fake`` must carry the generator's graph.
        """
        s_fake, a_fake = self.critic_outputs(x_fake, c)
        if self.loss_type == "bce":
            adv = F.binary_cross_entropy_with_logits(s_fake, torch.ones_like(s_fake))
        else:
            adv = -s_fake.mean()
        loss = adv
        parts = {"generator_adv": adv.item()}
        if self.n_aux:
            aux = self.aux_loss(a_fake, c)
            loss = loss + aux
            parts["aux_generator"] = aux.item()
        if self.ecal_sum_weight:
            es = self.ecal_sum_loss(x_real, x_fake, c)
            loss = loss + self.ecal_sum_weight * es
            parts["ecal_sum"] = es.item()
        if self.active_constrainers():
            ct = self.constrainer_term(x_real, x_fake, c)
            loss = loss + ct
            parts["constrainer_term"] = ct.item()
        return loss, parts

    # --- the trainer's interface ----------------------------------------------------------------
    def configure_optimizers(
        self, lr: float, weight_decay: float
    ) -> dict[str, torch.optim.Optimizer]:
        """``{"generator": AdamW, "critic": AdamW}`` with the GAN betas (see class docstring).

        The constrainer networks, when present, are further parameter groups of the
        critic's optimiser: they are trained in the critic step, on real showers.
        """
        groups = [{"params": list(self.critic.parameters())}]
        for name in self.active_constrainers():
            groups.append({"params": list(getattr(self, name).parameters())})
        return {
            "generator": torch.optim.AdamW(
                self.generator.parameters(), lr=lr, betas=self.betas, weight_decay=weight_decay
            ),
            "critic": torch.optim.AdamW(
                groups, lr=lr * self.critic_lr_scale, betas=self.betas, weight_decay=weight_decay
            ),
        }

    def training_step(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
        grad_clip: float | None = None,
    ) -> dict[str, float]:
        """One batch: a critic update, and a generator update on every ``n_critic``-th step.

        Arguments:
            x: ``(B, D)`` real preprocessed features; c: ``(B, C)`` their conditions.
            optimizers: the dict from :meth:`configure_optimizers`.
            step: global batch counter (selects generator steps and seeds the noise).
            grad_clip: max gradient norm per network (None / 0: no clipping).

        Returns:
            floats: ``loss`` (the critic's total loss), its parts, and — on generator
            steps — ``generator_loss`` and its parts.
        """
        rng = self.step_generator(step, x.device)
        opt_c, opt_g = optimizers["critic"], optimizers["generator"]
        if int(step) < self.constrainer_pretrain_steps:
            return self._pretrain_constrainers(x, c, opt_c, step, grad_clip)

        with torch.no_grad():
            x_fake = self.sample(c, rng)
        opt_c.zero_grad(set_to_none=True)
        c_loss, out = self.critic_loss(x, x_fake, c, rng)
        if not torch.isfinite(c_loss):
            raise FloatingPointError(
                f"step {step}: critic loss became {c_loss.item()}; lower the lr"
            )
        c_loss.backward()
        _clip(opt_c, grad_clip)
        opt_c.step()
        out["loss"] = out["critic_loss"] = c_loss.item()

        if (int(step) + 1) % self.n_critic == 0:
            opt_g.zero_grad(set_to_none=True)
            x_gen = self.wrapped("generator")(self.latent(len(c), rng, c.device), c)
            g_loss, g_parts = self.generator_loss(x, x_gen, c)
            if not torch.isfinite(g_loss):
                raise FloatingPointError(
                    f"step {step}: generator loss became {g_loss.item()}; lower the lr"
                )
            g_loss.backward()
            _clip(opt_g, grad_clip)
            opt_g.step()
            # the generator's backward also filled the critic's gradients: drop them
            opt_c.zero_grad(set_to_none=True)
            out.update(g_parts)
            out["generator_loss"] = g_loss.item()
        return out

    def _pretrain_constrainers(self, x: torch.Tensor, c: torch.Tensor, opt_c: torch.optim.Optimizer,
                               step: int, grad_clip: float | None) -> dict[str, float]:
        """A pre-training step: only the constrainers learn, on the real batch (the critic's
        parameters get no gradient, so AdamW leaves them untouched; the generator is idle)."""
        opt_c.zero_grad(set_to_none=True)
        parts = {f"{name}_real": self.constrainer_loss(x, c, name) for name in self.active_constrainers()}
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: constrainer loss became {loss.item()}; lower the lr")
        loss.backward()
        _clip(opt_c, grad_clip)
        opt_c.step()
        out = {k: v.item() for k, v in parts.items()}
        out["loss"] = out["constrainer_pretrain"] = loss.item()
        return out

    def ddp_modules(self) -> dict[str, nn.Module]:
        """Generator, critic (and constrainers): each wrapped in DDP by the trainer and called
        through :meth:`wrapped` wherever gradients flow."""
        mods = {"generator": self.generator, "critic": self.critic}
        for name in self.active_constrainers():
            mods[name] = getattr(self, name)
        return mods

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`loss`."""
        return self.loss(x, c)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The critic's adversarial loss on ``(x, c)`` against samples with fixed noise.

        For monitoring only (training goes through :meth:`training_step`): the negative
        critic estimate of the divergence — ``mean D(fake) − mean D(real)`` for WGAN-GP,
        the discriminator's BCE for ``loss="bce"`` — without regularisers.
        """
        fake = self.sample(c, self.step_generator(-1, x.device))
        return -self.adversarial_value(x, fake, c)

    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """NaN: a GAN's losses do not track sample quality, so checkpoints are chosen by a
        physics metric."""
        return torch.tensor(float("nan"), device=x.device)


def _clip(opt: torch.optim.Optimizer, max_norm: float | None) -> None:
    if max_norm:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_norm)


def duality_gap(
    model: GAN,
    x: torch.Tensor,
    c: torch.Tensor,
    steps: int = 50,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """Estimate of the duality gap ``DG = max_D' M(G, D') − min_G' M(G', D)`` of a GAN.

    ``M`` is :meth:`GAN.adversarial_value` on the batch ``(x, c)``.  The worst-case
    critic is approximated by ``steps`` Adam steps on a copy of the critic (maximising
    its own training objective: ``M`` minus the gradient penalty for WGAN-GP, which
    keeps the maximum finite), the worst-case generator by ``steps`` Adam steps on a copy
    of the generator minimising ``M``.  Both are evaluated on the same fixed latent
    vectors; the running best (including the start, ``M(G, D)``) is kept, so the estimate
    is ≥ 0.  A pair at equilibrium (generator = data, critic indifferent) has a gap near
    0; a larger gap means further from equilibrium.  Auxiliary losses are not part of M.
    The model itself is not modified.

    Arguments:
        model: the GAN (a checkpoint's model).
        x: ``(B, D)`` real features; c: ``(B, C)`` their conditions.
        steps: optimisation steps for each of the two copies.
        lr: their Adam learning rate (betas of the model).
        seed: seeds the latent vectors and the GP interpolation.

    References:
        P. Grnarova, K. Y. Levy, A. Lucchi, N. Perraudin, I. Goodfellow, T. Hofmann,
        A. Krause, "A Domain Agnostic Measure for Monitoring and Evaluating GANs",
        arXiv:1811.05512.
    """
    if steps < 0:
        raise ValueError(f"duality_gap: steps must be >= 0, found {steps}")
    rng = torch.Generator(device=x.device).manual_seed(int(seed))
    z_eval = model.latent(len(x), rng, x.device)

    def value(m: GAN) -> float:
        m.eval()
        with torch.no_grad():
            return float(m.adversarial_value(x, m.generator(z_eval, c), c))

    # worst-case critic for the current generator
    m_d = copy.deepcopy(model)
    with torch.no_grad():
        fake = m_d.generator(z_eval, c)
    best_d = value(m_d)
    opt = torch.optim.Adam(m_d.critic.parameters(), lr=lr, betas=model.betas)
    for _ in range(steps):
        m_d.train()
        objective = m_d.adversarial_value(x, fake, c)
        if m_d.gp_weight:
            objective = objective - m_d.gp_weight * m_d.gradient_penalty(x, fake, c, generator=rng)
        opt.zero_grad(set_to_none=True)
        (-objective).backward()
        opt.step()
        best_d = max(best_d, value(m_d))

    # worst-case generator for the current critic
    m_g = copy.deepcopy(model)
    best_g = value(m_g)
    opt = torch.optim.Adam(m_g.generator.parameters(), lr=lr, betas=model.betas)
    for _ in range(steps):
        m_g.train()
        objective = m_g.adversarial_value(x, m_g.sample(c, rng), c)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        best_g = min(best_g, value(m_g))
    return best_d - best_g
