"""One-pass student of a flow: a feed-forward network distilled from a trained teacher.

A trained normalizing flow (or any model with a deterministic ``sample_from_noise``) is a
fixed map ``x = T(z, c)`` from standard-normal noise to features.  The student ``S`` is a
plain MLP trained to reproduce that map on pairs ``(z, c) → T(z, c)`` drawn from the teacher
(:func:`hepgen.train.distill.distill`): it needs no data, only the teacher and the
conditions to sample at.  ``S`` is not invertible and has no likelihood, but it samples with a
few dense matrix products: on the demo binning (392 features) ~10× the coupling-spline
teacher's rate, because the teacher's cost is dominated by element-wise spline arithmetic
that the student does not have.

This is the knowledge-distillation idea of CaloFlow II / iCaloFlow (Krause & Shih), where an
inverse-autoregressive student learns the teacher's noise-to-shower map, with the student of
Baranchuk et al.: a non-invertible feed-forward network trained by regression on teacher
pairs (L1 loss).

References:
    C. Krause, D. Shih, "CaloFlow II: Even Faster and Still Accurate Generation of
    Calorimeter Showers with Normalizing Flows", arXiv:2110.11377.
    M. Buckley, C. Krause, I. Pang, D. Shih, "Inductive CaloFlow" (iCaloFlow),
    arXiv:2305.11934.
    A. Baranchuk, V. Aliev, A. Babenko, "Distilling the Knowledge from Normalizing Flows",
    arXiv:2106.12971.
"""

from __future__ import annotations

import torch
from torch import nn

from hepgen.models.base import GenerativeModel, register

__all__ = ["FlowStudent"]


@register
class FlowStudent(GenerativeModel):
    """Feed-forward student ``x = W ⊙ z + MLP([z, c])`` of a noise-to-features teacher.

    Arguments:
        n_features: D, the teacher's feature dimension.
        n_conditions: C.
        noise_dim: the teacher's noise dimension (default ``n_features``, as for flows).
        hidden: width of the hidden layers.
        n_hidden: number of hidden layers.
        teacher_family: the family it was distilled from (kept in the checkpoint's hparams).

    The element-wise skip ``W ⊙ z`` (only when ``noise_dim == n_features``) carries the
    part of a flow's map that is monotonic in each feature's own noise; the MLP (SiLU
    activations) learns the rest.

    Example:
        >>> s = FlowStudent(n_features=6, n_conditions=2, hidden=16, n_hidden=2)
        >>> c, z = torch.zeros(4, 2), torch.randn(4, 6)
        >>> s.sample_from_noise(c, z).shape
        torch.Size([4, 6])
        >>> s.distill_loss(z, c, s.sample_from_noise(c, z).detach()).item()
        0.0
    """

    family = "student"
    has_log_prob = False
    data_kind = None  # whatever its teacher generates; trained by hepgen.train.distill only

    def __init__(self, n_features: int, n_conditions: int, noise_dim: int | None = None, hidden: int = 1024,
                 n_hidden: int = 3, teacher_family: str | None = None) -> None:
        super().__init__(n_features, n_conditions)
        noise_dim = self.n_features if noise_dim is None else int(noise_dim)
        if noise_dim < 1 or int(hidden) < 1 or int(n_hidden) < 1:
            raise ValueError(f"student hparams: noise_dim, hidden and n_hidden must be >= 1, found "
                             f"{noise_dim}, {hidden}, {n_hidden}")
        self.hparams.update(noise_dim=noise_dim, hidden=int(hidden), n_hidden=int(n_hidden),
                            teacher_family=teacher_family)
        self._noise_dim = noise_dim
        layers: list[nn.Module] = []
        width = noise_dim + self.n_conditions
        for _ in range(int(n_hidden)):
            layers += [nn.Linear(width, int(hidden)), nn.SiLU()]
            width = int(hidden)
        layers.append(nn.Linear(width, self.n_features))
        self.net = nn.Sequential(*layers)
        self.skip = nn.Parameter(torch.ones(self.n_features)) if noise_dim == self.n_features else None

    @property
    def noise_dim(self) -> int:
        return self._noise_dim

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``c: (B, C)``, ``z: (B, noise_dim)`` → features ``(B, D)``."""
        x = self.net(torch.cat([z, c], dim=-1))
        return x + self.skip * z if self.skip is not None else x

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(c.shape[0], self.noise_dim, generator=generator, device=c.device, dtype=c.dtype)
        return self.sample_from_noise(c, z)

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the student family learns from a teacher, not from data: "
                                  "hepgen distill TEACHER.pt --data FILE -o DIR")
