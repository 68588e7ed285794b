"""Conditional variational auto-encoder (β-VAE) with a Gaussian decoder.

The encoder ``q(z | x, c) = N(μ(x, c), diag σ²(x, c))`` and the decoder
``p(x | z, c) = N(m(z, c), diag s²)`` are MLPs that both see the conditions ``c``; the
prior is ``p(z) = N(0, 1)``.  Training minimises

    loss = E_q[-log p(x | z, c)] + β_t · KL(q(z | x, c) || p(z)),

per data dimension (so that numbers are comparable across geometries and with the flow
families), estimated with one reparameterised draw of ``z`` per shower.  ``β_t`` ramps
linearly from 0 to ``beta`` over the first ``kl_warmup_steps`` optimiser steps (KL
annealing, against posterior collapse) and is ``beta`` afterwards.

With ``beta = 1`` the negative loss is the evidence lower bound (ELBO) on
``log p(x | c)``: a *bound*, not the log-likelihood, so this family has no ``log_prob``.
:meth:`ConditionalVAE.elbo` returns the ELBO per shower (always with β = 1) and
:meth:`ConditionalVAE.anomaly_score` its negative, the usual VAE anomaly score.

Decoder noise at sampling time (``sample_noise``).  The preprocessed shower features are
*dequantised*: an empty voxel is not one value but a broad blob at very negative logit
values, and the per-voxel fluctuations of a shower are not a function of a small latent
vector.  Returning only the decoder mean ``m(z, c)`` gives smooth, "average" showers with
too little voxel-to-voxel variance (the well-known blurriness of VAE samples); drawing
``x = m + s · ε`` reproduces the per-feature spread the decoder was trained to explain.
hepgen therefore samples with the decoder noise by default (``sample_noise=True``); set it
to False for the decoder mean (e.g. to look at the "clean" shower a latent point encodes).

References:
    D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114.
    I. Higgins et al., "β-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework", ICLR 2017.
    S. R. Bowman et al., "Generating Sentences from a Continuous Space" (KL annealing),
    arXiv:1511.06349.
"""

from __future__ import annotations

import math

import torch
import zuko
from torch import nn

from hepgen.models.base import GenerativeModel, register

__all__ = ["ConditionalVAE", "gaussian_kl"]

_MIN_LOG_SIGMA = math.log(1e-3)  # decoder σ floor: features are standardised (σ ≈ 1)
_LOGVAR_RANGE = (-30.0, 20.0)  # encoder log-variance clamp: keeps exp() finite early on
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, 1)) in nats, summed over the last axis.

    The closed form ``0.5 Σ (mu² + exp(logvar) - 1 - logvar)`` (Kingma & Welling,
    arXiv:1312.6114, appendix B).

    Arguments:
        mu: ``(..., K)`` means of the diagonal Gaussian.
        logvar: ``(..., K)`` log-variances.

    Returns:
        ``(...)`` KL divergences.
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


@register
class ConditionalVAE(GenerativeModel):
    """Conditional β-VAE with MLP encoder/decoder and a Gaussian decoder.

    Arguments:
        n_features: data dimension D.
        n_conditions: condition dimension C.
        latent_dim: dimension K of the latent space.
        hidden_features: width of the hidden layers of encoder and decoder.
        n_hidden: number of hidden layers of encoder and decoder.
        beta: weight β of the KL term (1 gives the ELBO; > 1 a β-VAE).
        kl_warmup_steps: optimiser steps over which β ramps linearly from 0 (0: no ramp).
        decoder_sigma: ``"learned"`` — one trained standard deviation per feature
            (initialised at ``sigma``); ``"fixed"`` — ``sigma`` for every feature.
        sigma: the fixed / initial decoder standard deviation (features are standardised,
            so 1 is the scale of the data).
        sample_noise: draw ``x = m + s·ε`` when sampling (default) or return the decoder
            mean ``m`` (see the module docstring for why the noise matters here).

    Example:
        >>> vae = ConditionalVAE(n_features=10, n_conditions=1, latent_dim=4)
        >>> x = vae.sample(torch.zeros(5, 1), torch.Generator().manual_seed(0))  # (5, 10)
        >>> vae.anomaly_score(x, torch.zeros(5, 1)).shape
        torch.Size([5])
    """

    family = "vae"
    has_log_prob = False

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        latent_dim: int = 32,
        hidden_features: int = 256,
        n_hidden: int = 2,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        decoder_sigma: str = "learned",
        sigma: float = 1.0,
        sample_noise: bool = True,
    ) -> None:
        super().__init__(n_features, n_conditions)
        if int(latent_dim) < 1:
            raise ValueError(f"vae hparam 'latent_dim': expected an integer >= 1, found {latent_dim!r}")
        if not float(beta) >= 0:
            raise ValueError(f"vae hparam 'beta': expected a number >= 0, found {beta!r}")
        if int(kl_warmup_steps) < 0:
            raise ValueError(f"vae hparam 'kl_warmup_steps': expected >= 0, found {kl_warmup_steps!r}")
        if decoder_sigma not in ("learned", "fixed"):
            raise ValueError(f"vae hparam 'decoder_sigma': expected 'learned' or 'fixed', found {decoder_sigma!r}")
        if not float(sigma) > 0:
            raise ValueError(f"vae hparam 'sigma': expected a number > 0, found {sigma!r}")
        self.hparams.update(
            latent_dim=int(latent_dim),
            hidden_features=int(hidden_features),
            n_hidden=int(n_hidden),
            beta=float(beta),
            kl_warmup_steps=int(kl_warmup_steps),
            decoder_sigma=decoder_sigma,
            sigma=float(sigma),
            sample_noise=bool(sample_noise),
        )
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.sample_noise = bool(sample_noise)
        hidden = [int(hidden_features)] * int(n_hidden)
        self.encoder = zuko.nn.MLP(n_features + n_conditions, 2 * self.latent_dim, hidden, activation=nn.SiLU)
        self.decoder = zuko.nn.MLP(self.latent_dim + n_conditions, n_features, hidden, activation=nn.SiLU)
        log_sigma = torch.full((n_features,), math.log(float(sigma)))
        if decoder_sigma == "learned":
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self._step: int | None = None  # set by training_step for the KL warm-up
        self._last_terms: dict[str, float] = {}

    # --- building blocks ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters: ``x: (B, D)``, ``c: (B, C)`` → ``mu, logvar: (B, K)``."""
        h = self.encoder(torch.cat([x, c], dim=-1))
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(*_LOGVAR_RANGE)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder parameters: ``z: (B, K)``, ``c: (B, C)`` → mean ``(B, D)``, log σ ``(D,)``."""
        return self.decoder(torch.cat([z, c], dim=-1)), self.log_sigma.clamp(min=_MIN_LOG_SIGMA)

    def kl_weight(self, step: int | None = None) -> float:
        """β_t: ``beta · min(1, (step + 1) / kl_warmup_steps)``; ``beta`` when step is None."""
        if step is None or self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, (int(step) + 1) / self.kl_warmup_steps)

    def elbo_terms(
        self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """One-draw estimate of the two ELBO terms per shower.

        Arguments:
            x: ``(B, D)`` preprocessed features.
            c: ``(B, C)`` preprocessed conditions.
            generator: source of the reparameterisation noise (None: torch's global RNG,
                which the trainer seeds and checkpoints).

        Returns:
            ``{"recon": (B,), "kl": (B,)}``: ``log p(x | z, c)`` at ``z ~ q(z | x, c)``
            (nats, summed over features) and ``KL(q || p(z))`` (nats, closed form).
        """
        mu, logvar = self.encode(x, c)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        mean, log_sigma = self.decode(z, c)
        recon = (-0.5 * ((x - mean) * torch.exp(-log_sigma)).square() - log_sigma - 0.5 * _LOG_2PI).sum(dim=-1)
        return {"recon": recon, "kl": gaussian_kl(mu, logvar)}

    # --- the GenerativeModel interface -------------------------------------------------------
    def loss(self, x: torch.Tensor, c: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """``mean(-recon + β_t · KL) / D`` with β_t from ``step`` (or the training step in progress)."""
        terms = self.elbo_terms(x, c)
        beta = self.kl_weight(step if step is not None else self._step)
        self._last_terms = {
            "recon_nll": float(-terms["recon"].mean().item()) / self.n_features,
            "kl": float(terms["kl"].mean().item()) / self.n_features,
            "kl_weight": beta,
        }
        return (-terms["recon"] + beta * terms["kl"]).mean() / self.n_features

    def training_step(self, x, c, optimizers, step, grad_clip, scaler=None) -> dict[str, float]:
        """The default step (:meth:`GenerativeModel.training_step`), with β_t taken from ``step``.

        Returns the base class's dict plus ``recon_nll`` and ``kl`` (nats per dimension)
        and ``kl_weight`` (β_t), for the training log.
        """
        self._step = int(step)
        try:
            out = dict(super().training_step(x, c, optimizers, step, grad_clip, scaler=scaler))
        finally:
            self._step = None
        out.update(self._last_terms)
        return out

    @torch.no_grad()
    def elbo(
        self, x: torch.Tensor, c: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Evidence lower bound on ``log p(x | c)`` per shower, in nats (β = 1).

        Arguments:
            x: ``(B, D)`` preprocessed features.
            c: ``(B, C)`` preprocessed conditions.
            n_samples: number of latent draws averaged (the estimate's variance falls as 1/n).
            generator: source of the latent draws; None uses a generator seeded with 0, so
                that the same inputs always give the same number.

        Returns:
            ``(B,)`` ELBO estimates.
        """
        if int(n_samples) < 1:
            raise ValueError(f"n_samples: expected an integer >= 1, found {n_samples!r}")
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for _ in range(int(n_samples)):
            terms = self.elbo_terms(x, c, generator)
            total += terms["recon"] - terms["kl"]
        return total / int(n_samples)

    def anomaly_score(
        self, x: torch.Tensor, c: torch.Tensor, n_samples: int = 16, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``-ELBO`` per shower ``(B,)``, nats: large for showers the model finds unlikely.

        Deterministic for ``generator=None`` (see :meth:`elbo`).
        """
        return -self.elbo(x, c, n_samples=n_samples, generator=generator)

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per dimension (β = 1, one seeded draw): comparable between epochs."""
        return -self.elbo(x, c).mean() / self.n_features

    @property
    def noise_dim(self) -> int:
        """``latent_dim`` (the latent draw) plus ``n_features`` (decoder noise) if ``sample_noise``."""
        return self.latent_dim + (self.n_features if self.sample_noise else 0)

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Decode given noise: ``c: (B, C)``, ``z: (B, noise_dim)`` → ``(B, D)``.

        ``z[:, :latent_dim]`` is the latent point; the rest (if ``sample_noise``) scales the
        decoder standard deviation: ``x = m(z_lat, c) + s · z[:, latent_dim:]``.
        """
        if z.shape[-1] != self.noise_dim:
            raise ValueError(f"noise: expected {self.noise_dim} numbers per sample, found shape {tuple(z.shape)}")
        mean, log_sigma = self.decode(z[:, : self.latent_dim], c)
        if not self.sample_noise:
            return mean
        return mean + log_sigma.exp() * z[:, self.latent_dim :]

    @torch.no_grad()
    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``z ~ N(0, 1)``: ``c: (B, C)`` → ``(B, D)`` (with decoder noise if ``sample_noise``)."""
        z = torch.randn(c.shape[0], self.noise_dim, generator=generator, device=c.device, dtype=c.dtype)
        return self.sample_from_noise(c, z)

    @classmethod
    def tiny_hparams(cls) -> dict:
        """Small sizes for quick tests."""
        return {"latent_dim": 4, "hidden_features": 32, "n_hidden": 1}
