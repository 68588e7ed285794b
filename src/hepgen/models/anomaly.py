"""Dense auto-encoder and variational auto-encoder for anomaly detection on trigger-level events.

Both families are trained on Standard-Model background only and see ``(B, 57)`` scaled
features of the ADC2021 layout (:mod:`hepgen.data.l1`; the scaling is the L1 domain's,
:mod:`hepgen.domains.anomaly`).  They are not meant to generate events; they provide
:meth:`anomaly_outputs`, the reconstruction and the latent posterior from which
:mod:`hepgen.domains.anomaly.scores` computes the anomaly scores:

* ``l1_ae`` (:class:`DenseAutoencoder`): the ADC2021 baseline dense auto-encoder shape,
  57 → 32 → 16 → 3 → 16 → 32 → 57 with LeakyReLU (Govorkova et al., Sci. Data 9 (2022) 118,
  arXiv:2107.02157, "baseline DNN AE"), trained on the mean squared reconstruction error.
* ``l1_vae`` (:class:`DenseVAE`): :class:`hepgen.models.vae.ConditionalVAE` (reused by
  subclassing, without conditions) with a fixed decoder σ, so its loss is
  ``Σ (x − x′)² / (2σ²) + β · KL`` — the MSE-plus-KL loss of the AXOL1TL trigger VAE
  (CMS DP-2023/079), whose trigger score is the squared norm of the latent mean ``|μ|²``.

References:
    E. Govorkova et al., "LHC physics dataset for unsupervised New Physics detection at 40 MHz",
    arXiv:2107.02157.
    E. Govorkova et al., "Autoencoders on field-programmable gate arrays for real-time,
    unsupervised new physics detection at 40 MHz at the LHC", arXiv:2108.03986.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from hepgen.models.base import GenerativeModel, register
from hepgen.models.vae import ConditionalVAE

__all__ = ["DenseAutoencoder", "DenseVAE"]


def _dense(sizes: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.3))
    return nn.Sequential(*layers)


def _check_widths(family: str, hidden: list, latent_dim: int) -> list[int]:
    widths = [int(h) for h in hidden]
    if not widths or min(widths) < 1 or int(latent_dim) < 1:
        raise ValueError(f"{family} hparams 'hidden'/'latent_dim': expected positive integers, found "
                         f"{hidden!r} / {latent_dim!r}")
    return widths


@register
class DenseAutoencoder(GenerativeModel):
    """Dense auto-encoder: ``x: (B, D)`` → latent ``z: (B, K)`` → ``x′: (B, D)``; loss = mean (x − x′)².

    Arguments:
        n_features: D (57 for the ADC2021 layout).
        n_conditions: must be 0 (the anomaly models are unconditional).
        hidden: encoder widths (the decoder mirrors them); default the ADC2021 baseline ``[32, 16]``.
        latent_dim: K (3 in the baseline).

    Example:
        >>> ae = DenseAutoencoder(n_features=57, n_conditions=0)
        >>> out = ae.anomaly_outputs(torch.zeros(4, 57), torch.zeros(4, 0))
        >>> out["recon"].shape, out["mu"].shape, out["logvar"] is None
        (torch.Size([4, 57]), torch.Size([4, 3]), True)
    """

    family = "l1_ae"
    data_kind = "l1"
    has_log_prob = False

    def __init__(self, n_features: int, n_conditions: int = 0, hidden: list | tuple = (32, 16),
                 latent_dim: int = 3) -> None:
        super().__init__(n_features, n_conditions)
        if self.n_conditions != 0:
            raise ValueError(f"l1_ae hparam 'n_conditions': expected 0 (unconditional), found {n_conditions!r}")
        widths = _check_widths("l1_ae", list(hidden), latent_dim)
        self.hparams.update(hidden=widths, latent_dim=int(latent_dim))
        self.latent_dim = int(latent_dim)
        self.encoder = _dense([self.n_features, *widths, self.latent_dim], final_activation=False)
        self.decoder = _dense([self.latent_dim, *widths[::-1], self.n_features], final_activation=False)

    def forward_ae(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, D)`` → ``(x′: (B, D), z: (B, K))``."""
        z = self.encoder(x)
        return self.decoder(z), z

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error over batch and features."""
        recon, _ = self.forward_ae(x)
        return (recon - x).square().mean()

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The loss on held-out data (no gradient)."""
        return self.loss(x, c)

    @torch.no_grad()
    def anomaly_outputs(self, x: torch.Tensor, c: torch.Tensor) -> dict:
        """``{"recon": (B, D), "mu": (B, K) (the code z), "logvar": None}``."""
        recon, z = self.forward_ae(x)
        return {"recon": recon, "mu": z, "logvar": None}

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError("l1_ae is an auto-encoder, not a generator: it has no prior to sample; "
                                  "use l1_vae or anomaly_outputs()")

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"hidden": [8], "latent_dim": 2}


@register
class DenseVAE(ConditionalVAE):
    """Dense VAE: an unconditional :class:`~hepgen.models.vae.ConditionalVAE` with fixed decoder σ
    and LeakyReLU dense encoder/decoder of the ADC2021 shape (57 → 32 → 16 → 2K; K → 16 → 32 → 57).

    The ELBO, the KL term, the KL warm-up, sampling and the checkpointable hyper-parameters
    come from the parent class; only the networks are replaced (plain ``nn.Linear`` +
    LeakyReLU, which hls4ml converts and an FPGA implements cheaply, instead of SiLU MLPs).
    Loss ``mean(Σ_d (x − m)² / (2σ²) + β_t KL) / D`` (plus a constant): reconstruction MSE and
    KL, AXOL1TL style.

    Arguments:
        n_features: D; n_conditions: must be 0.
        latent_dim: K (3, as the ADC2021 baseline VAE).
        hidden: encoder widths (the decoder mirrors them).
        beta: KL weight (default 0.1: with β = 1 the toy and L1 samples collapse the posterior,
            μ ≈ 0 for every event, and the latent scores carry no information);
            kl_warmup_steps: linear ramp of β (see the parent class).
        sigma: the fixed decoder σ (features are scaled to O(1)); σ = 1/√2 makes the
            reconstruction term exactly the summed squared error.

    Example:
        >>> vae = DenseVAE(n_features=57, n_conditions=0)
        >>> out = vae.anomaly_outputs(torch.zeros(4, 57), torch.zeros(4, 0))
        >>> sorted(k for k, v in out.items() if v is not None), out["mu"].shape
        (['logvar', 'mu', 'recon'], torch.Size([4, 3]))
        >>> DenseVAE(**vae.hparams).hparams == vae.hparams
        True
    """

    family = "l1_vae"
    data_kind = "l1"

    def __init__(self, n_features: int, n_conditions: int = 0, latent_dim: int = 3, hidden: list | tuple = (32, 16),
                 beta: float = 0.1, kl_warmup_steps: int = 0, sigma: float = 0.7071067811865476) -> None:
        if int(n_conditions) != 0:
            raise ValueError(f"l1_vae hparam 'n_conditions': expected 0 (unconditional), found {n_conditions!r}")
        widths = _check_widths("l1_vae", list(hidden), latent_dim)
        super().__init__(n_features, 0, latent_dim=latent_dim, hidden_features=widths[0], n_hidden=len(widths),
                         beta=beta, kl_warmup_steps=kl_warmup_steps, decoder_sigma="fixed", sigma=sigma,
                         sample_noise=False)
        # the parent's fixed or replaced arguments are not constructor arguments of this family
        for key in ("decoder_sigma", "sample_noise", "hidden_features", "n_hidden"):
            self.hparams.pop(key)
        self.hparams["hidden"] = widths
        self.encoder = _dense([self.n_features, *widths, 2 * self.latent_dim], final_activation=False)
        self.decoder = _dense([self.latent_dim, *widths[::-1], self.n_features], final_activation=False)

    @torch.no_grad()
    def anomaly_outputs(self, x: torch.Tensor, c: torch.Tensor) -> dict:
        """``{"recon": decoder mean at z = μ (B, D), "mu": (B, K), "logvar": (B, K)}`` (deterministic)."""
        mu, logvar = self.encode(x, c)
        recon, _ = self.decode(mu, c)
        return {"recon": recon, "mu": mu, "logvar": logvar}

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"latent_dim": 2, "hidden": [8]}
