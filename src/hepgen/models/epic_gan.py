"""EPiC-GAN: an adversarial generator of jets as particle clouds, behind hepgen's model interface.

One registered family, ``epic_gan`` (:class:`JetGAN`, ``data_kind = "jets"``), after
Buhmann, Kasieczka and Thaler ("EPiC-GAN: Equivariant Point Cloud Generation for Particle
Jets", arXiv:2301.08128).  The jet conventions — the flattened zero-padded cloud ``x: (B, P·F)``
and the multiplicity ``n`` in condition column 0 — are those of :mod:`hepgen.models.epic`.

* Generator (:class:`EPiCGenerator`): every particle slot gets its own Gaussian noise
  vector (``latent_local`` numbers), every jet one global noise vector (``latent_global``
  numbers) that enters the :class:`~hepgen.models.epic.EPiCNet` together with the
  conditions; the network maps the ``n`` real slots to ``n`` particles of ``F`` features.
  Padding slots come out exactly 0.  Since the per-particle noise is i.i.d. and the network
  is permutation equivariant, the generated cloud is an exchangeable set, as in the paper.
  The output layer is rescaled at construction so that generated features start with unit
  spread, like the standardised data (:meth:`EPiCGenerator._unit_output_scale`).
* Critic (:class:`EPiCCritic`): an ``EPiCNet`` without per-particle output reads the
  (masked) cloud with the conditions; its permutation-invariant summary (global vector,
  masked mean and scaled sum of the particles) and the conditions go through a small MLP to
  one score per jet.  Values in padding slots never reach the score.
* Loss: least squares (LSGAN, Mao et al.), as EPiC-GAN uses, with the symmetric labels
  ``a = −1`` (generated), ``b = +1`` (real) and the generator target ``c = +1``: the critic
  minimises ``½·E[(D(x) − 1)²] + ½·E[(D(G(z)) + 1)²]``, the generator ``½·E[(D(G(z)) − 1)²]``.
  A freshly initialised critic outputs ≈ 0, the midpoint of ±1, so its first steps go into
  telling real from generated instead of into learning a constant offset (with 0/1 labels
  its mean output had only reached ≈ 0.4 after the 24 steps of the trainer's toy-jet test,
  and the generator had meanwhile drifted away from the data).  ``loss="wgan-gp"``
  switches to the Wasserstein loss with the two-sided gradient penalty of Gulrajani et al.
  (padding has zero gradient by construction).

Training (``training_step``): the critic is updated on every batch, the generator on every
``n_critic``-th batch (``(step + 1) % n_critic == 0``), exactly as in :mod:`hepgen.models.gan`.
All random numbers of a step come from a ``torch.Generator`` seeded by
``(noise_seed, step, rank)`` (:meth:`JetGAN.step_generator`), so a run resumed at ``step``
continues exactly as an uninterrupted one and the global RNG is never touched;
``noise_seed`` is a buffer drawn at construction and saved in the state dict.  Generator and
critic are the modules of :meth:`JetGAN.ddp_modules` and are called through
:meth:`~hepgen.models.base.GenerativeModel.wrapped` wherever gradients flow.  The critic
scores real and generated jets in one call (it has no batch statistics, so this equals two
calls).  fp16 mixed precision is supported through the trainer's ``GradScaler``.

A GAN has no likelihood and no validation loss that tracks sample quality:
``has_log_prob = False``, ``validation_loss`` returns NaN and the trainer selects
checkpoints by the jet physics metric.  :meth:`JetGAN.sanity_metric` compares the
per-feature mean and spread of the real particles of generated and true jets.

References:
    E. Buhmann, G. Kasieczka, J. Thaler, "EPiC-GAN: Equivariant Point Cloud Generation for
    Particle Jets", SciPost Phys. 15 (2023) 130, arXiv:2301.08128.
    X. Mao et al., "Least Squares Generative Adversarial Networks", arXiv:1611.04076.
    M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium" (TTUR), arXiv:1706.08500.
    D. Mishkin, J. Matas, "All you need is a good init" (LSUV), arXiv:1511.06422.
    I. Gulrajani et al., "Improved Training of Wasserstein GANs", arXiv:1704.00028.
    R. Kansal et al., "Particle Cloud Generation with Message Passing GANs" (MP-GAN,
    JetNet), arXiv:2106.11535.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hepgen.models.base import GenerativeModel, register
from hepgen.models.epic import EPiCNet, jet_mask, split_conditions

__all__ = ["EPiCCritic", "EPiCGenerator", "JetGAN", "lsgan_critic_loss", "lsgan_generator_loss"]

_LOSSES = ("lsgan", "wgan-gp")


def _bad(name: str, expected: str, found) -> ValueError:
    return ValueError(f"epic_gan: hparam {name!r} must be {expected}, found {found!r}")


def _int(name: str, value, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or value != int(value) \
            or int(value) < lowest:
        raise _bad(name, f"an integer >= {lowest}", value)
    return int(value)


def _float(name: str, value, lowest: float, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _bad(name, "a number", value) from None
    if not math.isfinite(v) or v < lowest or (positive and v == 0):
        raise _bad(name, f"a finite number {'>' if positive else '>='} {lowest}", value)
    return v


def lsgan_critic_loss(s_real: torch.Tensor, s_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares critic loss with labels +1 (real) and −1 (generated):
    ``½·mean((s_real − 1)²) + ½·mean((s_fake + 1)²)``.

    >>> float(lsgan_critic_loss(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])))
    1.25
    """
    return 0.5 * (s_real - 1.0).square().mean() + 0.5 * (s_fake + 1.0).square().mean()


def lsgan_generator_loss(s_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares generator loss with target +1: ``½·mean((s_fake − 1)²)``.

    >>> float(lsgan_generator_loss(torch.tensor([1.0, -1.0])))
    1.0
    """
    return 0.5 * (s_fake - 1.0).square().mean()


def _zero_padding(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``y`` with every padding slot set to exactly +0 (also where ``y`` is not finite)."""
    return torch.where(mask > 0, y, torch.zeros((), dtype=y.dtype, device=y.device))


class EPiCGenerator(nn.Module):
    """EPiC-GAN generator: ``(z: (B, P·latent_local + latent_global), c: (B, C)) → x: (B, P·F)``.

    ``z[:, :P·latent_local]`` is the per-slot noise, slot-major (slot ``i`` reads
    ``z[:, i·latent_local:(i + 1)·latent_local]``); the rest is the jet's global noise,
    appended to the network conditions of :func:`~hepgen.models.epic.split_conditions`.

    Arguments:
        n_particles: slots P.
        n_point_features: features per particle F.
        n_conditions: condition width C (column 0 the multiplicity).
        latent_local, latent_global: noise per particle and per jet.
        hidden, global_dim, n_layers: of the :class:`~hepgen.models.epic.EPiCNet`.
    """

    def __init__(self, n_particles: int, n_point_features: int, n_conditions: int, latent_local: int,
                 latent_global: int, hidden: int, global_dim: int, n_layers: int) -> None:
        super().__init__()
        self.n_particles, self.n_point_features = n_particles, n_point_features
        self.n_conditions = n_conditions
        self.latent_local, self.latent_global = latent_local, latent_global
        self.epic = EPiCNet(latent_local, n_point_features, n_conditions + latent_global, n_particles,
                            hidden=hidden, global_dim=global_dim, n_layers=n_layers, activation="leaky_relu")
        self._unit_output_scale()

    @torch.no_grad()
    def _unit_output_scale(self, n_jets: int = 256) -> None:
        """Rescale the rows of the output layer so that every generated feature has spread 1
        at initialisation, like the standardised data (LSUV-style, Mishkin and Matas).

        Measured on ``n_jets`` jets of ``P`` particles, the other conditions 0, with
        fixed-seed noise: it leaves the global RNG alone and depends only on the weights;
        the factor is capped at 10.  With PyTorch's default initialisation the generated
        spread starts near 0.3 and took the GAN ~100 steps to grow on toy jets.
        """
        noise = torch.randn(n_jets, self.n_particles * self.latent_local + self.latent_global,
                            generator=torch.Generator().manual_seed(0))
        c = torch.zeros(n_jets, self.n_conditions)
        c[:, 0] = self.n_particles
        y = self.forward(noise, c).reshape(-1, self.n_point_features)
        self.epic.local_out.weight.div_(y.std(dim=0).clamp_min(0.1)[:, None])

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]  # shape[0], never len(): keeps the batch size free under torch.export
        n_local = self.n_particles * self.latent_local
        mask, cond = split_conditions(c, self.n_particles)
        local = z[:, :n_local].reshape(b, self.n_particles, self.latent_local)
        y, _ = self.epic(local, torch.cat([cond, z[:, n_local:]], dim=-1), mask)
        return _zero_padding(y, mask).reshape(b, self.n_particles * self.n_point_features)


class EPiCCritic(nn.Module):
    """EPiC-GAN critic: ``(x: (B, P·F), c: (B, C)) → score: (B,)``, invariant under permutations
    of the real particles and blind to the padding slots.

    Arguments:
        n_particles: slots P.
        n_point_features: features per particle F.
        n_conditions: condition width C (column 0 the multiplicity).
        hidden, global_dim, n_layers: of the :class:`~hepgen.models.epic.EPiCNet`; ``hidden``
            is also the width of the score MLP.
    """

    def __init__(self, n_particles: int, n_point_features: int, n_conditions: int, hidden: int,
                 global_dim: int, n_layers: int) -> None:
        super().__init__()
        self.n_particles, self.n_point_features = n_particles, n_point_features
        self.epic = EPiCNet(n_point_features, 0, n_conditions, n_particles, hidden=hidden,
                            global_dim=global_dim, n_layers=n_layers, activation="leaky_relu")
        self.head = nn.Sequential(nn.Linear(self.epic.summary_dim + n_conditions, hidden), nn.LeakyReLU(0.01),
                                  nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mask, cond = split_conditions(c, self.n_particles)
        pts = _zero_padding(x.reshape(x.shape[0], self.n_particles, self.n_point_features), mask)
        _, summary = self.epic(pts, cond, mask)
        return self.head(torch.cat([summary, cond], dim=-1))[:, 0]


@register
class JetGAN(GenerativeModel):
    """EPiC-GAN for particle-cloud jets (see the module docstring).

    Arguments:
        n_features: ``P · F`` (flattened cloud).
        n_conditions: condition width C >= 1; column 0 is the multiplicity.
        n_particles: particle slots P (a divisor of ``n_features``).
        hidden: per-particle width of the EPiC networks of generator and critic (and the
            width of the critic's score MLP).
        global_dim: width of their global vectors.
        n_layers: EPiC layers in each network (>= 1).
        latent_local: Gaussian noise numbers per particle slot (>= 1).
        latent_global: Gaussian noise numbers per jet (>= 0).
        n_critic: critic updates per generator update (default 1 for LSGAN, as EPiC-GAN;
            5 for WGAN-GP).
        loss: ``"lsgan"`` (default) or ``"wgan-gp"``.
        gp_weight: λ of the gradient penalty (WGAN-GP only; default 10).
        betas: Adam betas; default (0.5, 0.9) for LSGAN, (0.0, 0.9) for WGAN-GP.
        critic_lr_scale: the critic's learning rate is ``lr · critic_lr_scale`` (TTUR,
            Heusel et al.).

    Defaults follow the paper's EPiC-GAN for 30-particle JetNet jets: 6 EPiC layers of width
    128, a 10-wide global vector, 3 local and 10 global noise numbers.

    Example:
        >>> gan = JetGAN(n_features=18, n_conditions=2, n_particles=6, hidden=16, global_dim=4, n_layers=1)
        >>> c = torch.tensor([[3.0, 0.5], [6.0, -1.0]])  # multiplicities 3 and 6
        >>> x = gan.sample(c, torch.Generator().manual_seed(0))
        >>> x.shape, bool((x.reshape(2, 6, 3)[0, 3:] == 0).all())
        (torch.Size([2, 18]), True)
    """

    family = "epic_gan"
    data_kind = "jets"
    has_log_prob = False

    def __init__(self, n_features: int, n_conditions: int, n_particles: int = 30, hidden: int = 128,
                 global_dim: int = 10, n_layers: int = 6, latent_local: int = 3, latent_global: int = 10,
                 n_critic: int | None = None, loss: str = "lsgan", gp_weight: float | None = None,
                 betas: Sequence[float] | None = None, critic_lr_scale: float = 1.0) -> None:
        super().__init__(n_features, n_conditions)
        if self.n_conditions < 1:
            raise _bad("n_conditions", ">= 1 (column 0 is the multiplicity)", n_conditions)
        n_particles = _int("n_particles", n_particles, 1)
        if self.n_features % n_particles:
            raise _bad("n_particles", f"a divisor of n_features={self.n_features}", n_particles)
        hidden = _int("hidden", hidden, 1)
        global_dim = _int("global_dim", global_dim, 1)
        n_layers = _int("n_layers", n_layers, 1)
        latent_local = _int("latent_local", latent_local, 1)
        latent_global = _int("latent_global", latent_global, 0)
        if loss not in _LOSSES:
            raise _bad("loss", f"one of {list(_LOSSES)}", loss)
        wgan = loss == "wgan-gp"
        n_critic = (5 if wgan else 1) if n_critic is None else _int("n_critic", n_critic, 1)
        gp_weight = (10.0 if wgan else 0.0) if gp_weight is None else _float("gp_weight", gp_weight, 0.0)
        if gp_weight and not wgan:
            raise _bad("gp_weight", "0 with loss='lsgan' (the penalty belongs to 'wgan-gp')", gp_weight)
        if betas is None:
            betas = (0.0, 0.9) if wgan else (0.5, 0.9)
        try:
            betas = [float(b) for b in betas]
        except (TypeError, ValueError):
            raise _bad("betas", "two numbers in [0, 1)", betas) from None
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise _bad("betas", "two numbers in [0, 1)", betas)
        critic_lr_scale = _float("critic_lr_scale", critic_lr_scale, 0.0, positive=True)

        self.n_particles = n_particles
        self.n_point_features = self.n_features // n_particles
        self.latent_local, self.latent_global = latent_local, latent_global
        self.loss_type, self.n_critic, self.gp_weight = loss, n_critic, gp_weight
        self.betas, self.critic_lr_scale = tuple(betas), critic_lr_scale
        self.hparams.update(n_particles=n_particles, hidden=hidden, global_dim=global_dim, n_layers=n_layers,
                            latent_local=latent_local, latent_global=latent_global, n_critic=n_critic,
                            loss=loss, gp_weight=gp_weight, betas=betas, critic_lr_scale=critic_lr_scale)
        self.generator = EPiCGenerator(n_particles, self.n_point_features, self.n_conditions, latent_local,
                                       latent_global, hidden, global_dim, n_layers)
        self.critic = EPiCCritic(n_particles, self.n_point_features, self.n_conditions, hidden, global_dim,
                                 n_layers)
        # seeds the per-step noise; drawn like the initial weights, saved in the state dict
        self.register_buffer("noise_seed", torch.randint(0, 2**62, (), dtype=torch.int64))

    @classmethod
    def tiny_hparams(cls) -> dict:
        """Small sizes for fast tests of the family (6 particle slots)."""
        return {"n_particles": 6, "hidden": 16, "global_dim": 4, "n_layers": 1, "latent_local": 2,
                "latent_global": 2}

    # --- randomness ---------------------------------------------------------------------------
    def step_generator(self, step: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The ``torch.Generator`` of training step ``step``: seeded by (noise_seed, step, rank).

        Arguments:
            step: global training step (batch counter) — resuming at ``step`` reproduces it.
            device: device of the generator (that of the training batch).
        """
        rank = (torch.distributed.get_rank()
                if torch.distributed.is_available() and torch.distributed.is_initialized() else 0)
        state = np.random.SeedSequence([int(self.noise_seed), int(step) & (2**63 - 1), rank]).generate_state(
            2, np.uint32)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(state[0]) << 31 ^ int(state[1]))
        return gen

    @property
    def noise_dim(self) -> int:
        """``P · latent_local + latent_global``: per-slot noise (slot-major), then the jet's."""
        return self.n_particles * self.latent_local + self.latent_global

    def noise(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, noise_dim)`` standard-normal noise for the conditions ``c`` (dtype and device of
        ``c``), drawn from ``generator`` (None: the global RNG)."""
        gdev = generator.device if generator is not None else c.device
        z = torch.randn(c.shape[0], self.noise_dim, generator=generator, device=gdev, dtype=c.dtype)
        return z.to(c.device)

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The generator as a deterministic map: ``c: (B, C)``, ``z: (B, noise_dim)`` → ``(B, P·F)``.

        The noise of padding slots is ignored; padding slots of the result are exactly 0.
        """
        if z.ndim != 2 or z.shape[1] != self.noise_dim or z.shape[0] != c.shape[0]:
            raise ValueError(f"epic_gan: z must have shape ({c.shape[0]}, {self.noise_dim}), found {tuple(z.shape)}")
        return self.generator(z, c)

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One generated jet per condition row: ``c: (B, C)`` → ``(B, P·F)``, with ``c[:, 0]`` real
        particles each.  Equals ``sample_from_noise(c, torch.randn(B, noise_dim, generator=generator))``
        (noise in the dtype of ``c``); None draws from the global RNG."""
        return self.sample_from_noise(c, self.noise(c, generator))

    # --- losses -------------------------------------------------------------------------------
    def scores(self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor):
        """``(D(x_real, c), D(x_fake, c))``, both ``(B,)``, from one call of the (wrapped) critic."""
        s = self.wrapped("critic")(torch.cat([x_real, x_fake]), torch.cat([c, c]))
        return s[: x_real.shape[0]], s[x_real.shape[0]:]

    def gradient_penalty(self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor,
                         generator: torch.Generator | None = None, scaler=None) -> torch.Tensor:
        """Two-sided penalty ``mean((‖∇_x D(x̂, c)‖₂ − 1)²)`` at ``x̂ = ε x_real + (1 − ε) x_fake``,
        ``ε ~ U(0, 1)`` per jet (unweighted).  Real and generated jets share ``c``, hence the
        multiplicity, so ``x̂`` is zero-padded too and the gradient vanishes on padding.

        With a fp16 ``scaler`` the gradient is taken of the scaled score and unscaled, as the
        PyTorch AMP notes prescribe for gradient penalties.
        """
        gdev = generator.device if generator is not None else x_real.device
        eps = torch.rand(x_real.shape[0], 1, generator=generator, device=gdev).to(x_real)
        x_hat = (eps * x_real.detach() + (1.0 - eps) * x_fake.detach()).requires_grad_(True)
        out = self.wrapped("critic")(x_hat, c).sum()
        if scaler is not None:
            (grad,) = torch.autograd.grad(scaler.scale(out), x_hat, create_graph=True)
            grad = grad / scaler.get_scale()
        else:
            (grad,) = torch.autograd.grad(out, x_hat, create_graph=True)
        norm = torch.sqrt(grad.float().square().sum(dim=1) + 1e-12)  # 1e-12: finite gradient at ∇D = 0
        return (norm - 1.0).square().mean()

    def critic_loss(self, x_real: torch.Tensor, x_fake: torch.Tensor, c: torch.Tensor,
                    generator: torch.Generator | None = None, scaler=None) -> tuple[torch.Tensor, dict[str, float]]:
        """The critic's loss on one batch and its parts (floats, for logging).

        LSGAN: ``½·mean((D(x_real) − 1)²) + ½·mean((D(x_fake) + 1)²)``; WGAN-GP:
        ``mean D(x_fake) − mean D(x_real) + gp_weight · GP``.  ``x_fake`` is detached.
        """
        s_real, s_fake = self.scores(x_real, x_fake.detach(), c)
        s_real, s_fake = s_real.float(), s_fake.float()
        parts = {"critic_real": s_real.mean().item(), "critic_fake": s_fake.mean().item()}
        if self.loss_type == "lsgan":
            return lsgan_critic_loss(s_real, s_fake), parts
        w_dist = s_real.mean() - s_fake.mean()
        parts["wasserstein"] = w_dist.item()
        loss = -w_dist
        if self.gp_weight:
            gp = self.gradient_penalty(x_real, x_fake, c, generator, scaler)
            parts["gp"] = gp.item()
            loss = loss + self.gp_weight * gp
        return loss, parts

    def generator_loss(self, x_fake: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """LSGAN: ``½·mean((D(x_fake) − 1)²)``; WGAN-GP: ``−mean D(x_fake)``.  ``x_fake`` must carry
        the generator's graph."""
        s = self.wrapped("critic")(x_fake, c).float()
        return lsgan_generator_loss(s) if self.loss_type == "lsgan" else -s.mean()

    # --- the trainer's interface ----------------------------------------------------------------
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """``{"generator": AdamW, "critic": AdamW}`` with the GAN betas; the critic's learning rate
        is scaled by ``critic_lr_scale``."""
        return {
            "generator": torch.optim.AdamW(self.generator.parameters(), lr=lr, betas=self.betas,
                                           weight_decay=weight_decay),
            "critic": torch.optim.AdamW(self.critic.parameters(), lr=lr * self.critic_lr_scale, betas=self.betas,
                                        weight_decay=weight_decay),
        }

    def training_step(self, x: torch.Tensor, c: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                      step: int, grad_clip: float | None = None,
                      scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
        """One batch: a critic update, and a generator update on every ``n_critic``-th step.

        Arguments:
            x: ``(B, P·F)`` real clouds; c: ``(B, C)`` their conditions (multiplicity first).
            optimizers: the dict from :meth:`configure_optimizers`.
            step: global batch counter (selects generator steps and seeds the noise).
            grad_clip: max gradient norm per network (None / 0: no clipping).
            scaler: fp16 ``GradScaler`` from the trainer (None otherwise); updated once per step.

        Returns:
            floats: ``loss`` (= ``critic_loss``), the critic's mean scores (and Wasserstein
            estimate / penalty for WGAN-GP), and on generator steps ``generator_loss``.
        """
        rng = self.step_generator(step, x.device)
        opt_c, opt_g = optimizers["critic"], optimizers["generator"]

        with torch.no_grad():
            x_fake = self.sample(c, rng)
        opt_c.zero_grad(set_to_none=True)
        c_loss, out = self.critic_loss(x, x_fake, c, rng, scaler)
        if not torch.isfinite(c_loss):
            raise FloatingPointError(f"step {step}: critic loss became {c_loss.item()}; lower the lr")
        _backward_and_step(c_loss, opt_c, grad_clip, scaler)
        out["loss"] = out["critic_loss"] = c_loss.item()

        if (int(step) + 1) % self.n_critic == 0:
            opt_g.zero_grad(set_to_none=True)
            x_gen = self.wrapped("generator")(self.noise(c, rng), c)
            g_loss = self.generator_loss(x_gen, c)
            if not torch.isfinite(g_loss):
                raise FloatingPointError(f"step {step}: generator loss became {g_loss.item()}; lower the lr")
            _backward_and_step(g_loss, opt_g, grad_clip, scaler)
            # the generator's backward also filled the critic's gradients: drop them
            opt_c.zero_grad(set_to_none=True)
            out["generator_loss"] = g_loss.item()
        if scaler is not None:
            scaler.update()
        return out

    def ddp_modules(self) -> dict[str, nn.Module]:
        """Generator and critic: each wrapped in DDP by the trainer and called through
        :meth:`wrapped` wherever gradients flow."""
        return {"generator": self.generator, "critic": self.critic}

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`loss`."""
        return self.loss(x, c)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The critic's adversarial loss on ``(x, c)`` against samples with fixed noise (no
        penalty); for monitoring only — training goes through :meth:`training_step`."""
        fake = self.sample(c, self.step_generator(-1, x.device))
        s_real, s_fake = self.scores(x, fake, c)
        if self.loss_type == "lsgan":
            return 0.5 * (s_real - 1.0).square().mean() + 0.5 * (s_fake + 1.0).square().mean()
        return s_fake.mean() - s_real.mean()

    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """NaN: a GAN's losses do not track sample quality, so checkpoints are chosen by the jet
        physics metric."""
        return torch.tensor(float("nan"), device=x.device)

    @torch.no_grad()
    def sanity_metric(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator) -> float:
        """Mean over the ``F`` particle features of ``Δmean² + Δstd²`` between the real particles
        of jets sampled at ``c`` and those of ``x`` (padding excluded).

        Arguments:
            x: ``(B, P·F)`` real clouds; c: ``(B, C)`` their conditions.
            generator: source of the samples' noise.
        """
        shape = (x.shape[0], self.n_particles, self.n_point_features)
        real = jet_mask(c, self.n_particles)[..., 0] > 0
        a = x.reshape(shape)[real].double()
        b = self.sample(c, generator).reshape(shape)[real].double()
        d = (a.mean(0) - b.mean(0)).square() + (a.std(0) - b.std(0)).square()
        return float(d.mean())


def _backward_and_step(loss: torch.Tensor, opt: torch.optim.Optimizer, max_norm: float | None, scaler) -> None:
    """backward → (unscale) → gradient-norm clipping over ``opt``'s parameters → step."""
    params = [p for g in opt.param_groups for p in g["params"]]
    if scaler is None:
        loss.backward()
        if max_norm:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        if max_norm:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        scaler.step(opt)  # skipped if the unscaled gradients are not finite
