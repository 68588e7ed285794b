"""A one-pass, permutation-equivariant student of a jet flow-matching teacher: ``jet_student``.

A flow-matching jet model (:class:`~hepgen.models.epic.JetFlowMatching`, ``epic_fm``;
:class:`~hepgen.models.jet_transformer.JetTransformerFlowMatching`, ``jet_transformer_fm``)
maps per-particle Gaussian noise to a particle cloud by integrating an ODE: 16 network passes
per jet with the presets' 8 midpoint steps.  That map is deterministic and permutation
equivariant (no slot order enters the velocity field), so a single permutation-equivariant
network can learn it by regression on teacher pairs ``(z, c) → T(z, c)`` — knowledge
distillation of an iterative generator (Luhman & Luhman 2021).  ``hepgen distill`` trains it
(:mod:`hepgen.train.distill`); the checkpoint keeps the teacher's preprocessing and is used by
``hepgen sample-jets``, ``bench``, ``export`` and ``evaluate-jets`` like any jets checkpoint.

Network (``B`` jets, ``P`` slots, ``F`` features per particle, same data conventions as
:mod:`hepgen.models.epic`: ``x: (B, P·F)`` slot-major, column 0 of ``c`` the multiplicity):

    ``x_i = s ⊙ z_i + EPiC(z, c)_i``  for the real particles ``i < n``, 0 in padding slots,

where ``z: (B, P, F)`` is the teacher's noise (padding slots ignored), ``s: (F,)`` a learned
per-feature scale (starts at 1) and EPiC the equivariant network of
:class:`~hepgen.models.epic.EPiCNet` (particles interact through masked mean and sum pooling;
cost linear in ``P``, the reason a student can be orders of magnitude faster than the
attention teacher).  ``network="transformer"`` puts the teacher's own kind of network there
instead (:class:`~hepgen.models.jet_transformer.JetTransformer`, self-attention between the
particles, its time input held at 0): one pass of it costs about what one teacher pass does.

References:
    E. Luhman, T. Luhman, "Knowledge Distillation in Iterative Generative Models for Improved
    Sampling Speed", arXiv:2101.02388.
    E. Buhmann, G. Kasieczka, J. Thaler, arXiv:2301.08128 (EPiC layers, the critic).
    A. Sauer et al., "Adversarial Diffusion Distillation", arXiv:2311.17042.
"""

from __future__ import annotations

import torch
from torch import nn

from hepgen.models.base import GenerativeModel, register
from hepgen.models.epic import EPiCNet, jet_mask, particle_slots, split_conditions
from hepgen.models.epic_gan import EPiCCritic
from hepgen.models.jet_transformer import JetTransformer

__all__ = ["JetStudent"]


@register
class JetStudent(GenerativeModel):
    """One-pass EPiC student ``x = s ⊙ z + EPiC(z, c)`` of a jet flow-matching teacher.

    Arguments:
        n_features: ``P · F``, the teacher's flattened cloud width.
        n_conditions: C, the teacher's condition width (column 0: multiplicity).
        n_particles: particle slots ``P`` (the teacher's).
        hidden: per-particle width of the EPiC network.
        n_hidden: number of EPiC layers.
        global_dim: width of its global vector (EPiC only).
        network: ``"epic"`` (default) or ``"transformer"`` (``hidden`` wide tokens,
            ``n_hidden`` blocks of 4-head attention).
        teacher_family: the family it was distilled from (kept in the checkpoint's hparams).

    Example:
        >>> s = JetStudent(n_features=12, n_conditions=2, n_particles=4, hidden=8, n_hidden=1, global_dim=4)
        >>> c = torch.tensor([[2.0, 0.3], [4.0, -1.0]])          # multiplicities 2 and 4
        >>> x = s.sample_from_noise(c, torch.randn(2, 12))
        >>> x.shape, bool((x.reshape(2, 4, 3)[0, 2:] == 0).all())   # padding slots come out 0
        (torch.Size([2, 12]), True)
        >>> z = torch.randn(2, 12)
        >>> s.distill_loss(z, c, s.sample_from_noise(c, z).detach()).item()
        0.0
    """

    family = "jet_student"
    has_log_prob = False
    data_kind = None  # generates its teacher's jets; trained by hepgen.train.distill only

    def __init__(self, n_features: int, n_conditions: int, n_particles: int = 30, hidden: int = 128,
                 n_hidden: int = 4, global_dim: int = 16, network: str = "epic",
                 teacher_family: str | None = None) -> None:
        super().__init__(n_features, n_conditions)
        n_particles, n_point = particle_slots(self.family, n_features, n_particles)
        if int(hidden) < 1 or int(n_hidden) < 1 or int(global_dim) < 1:
            raise ValueError(f"jet_student hparams: hidden, n_hidden and global_dim must be >= 1, found "
                             f"{hidden}, {n_hidden}, {global_dim}")
        if network not in ("epic", "transformer"):
            raise ValueError(f"jet_student hparam 'network': expected 'epic' or 'transformer', found {network!r}")
        self.n_particles, self.n_point_features = n_particles, n_point
        self.hparams.update(n_particles=n_particles, hidden=int(hidden), n_hidden=int(n_hidden),
                            global_dim=int(global_dim), network=network, teacher_family=teacher_family)
        if network == "epic":
            self.net = EPiCNet(n_point, n_point, int(n_conditions), n_particles, hidden=int(hidden),
                               global_dim=int(global_dim), n_layers=int(n_hidden), activation="silu")
        else:
            self.net = JetTransformer(n_particles, n_point, int(n_conditions), int(hidden), int(n_hidden),
                                      heads=4 if int(hidden) % 4 == 0 else 1)
        self.skip = nn.Parameter(torch.ones(n_point))

    @property
    def noise_dim(self) -> int:
        """``P · F``: one standard normal per particle feature, as the teacher's."""
        return self.n_features

    def _points(self, c: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask, cond = split_conditions(c, self.n_particles)
        pts = z.reshape(z.shape[0], self.n_particles, self.n_point_features)
        # where, not a product: inf/NaN noise in padding slots must not become NaN (inf · 0)
        return torch.where(mask > 0, pts, torch.zeros((), dtype=pts.dtype, device=pts.device)), mask, cond

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``c: (B, C)``, ``z: (B, P·F)`` → preprocessed cloud ``(B, P·F)``, zero in padding slots."""
        pts, mask, cond = self._points(c, z)
        if isinstance(self.net, EPiCNet):
            y, _ = self.net(pts, cond, mask)
        else:  # the transformer takes the raw conditions (it splits off the multiplicity) and a time
            y = self.net(pts.reshape(z.shape[0], -1), torch.zeros(z.shape[0], dtype=z.dtype, device=z.device),
                         c).reshape(pts.shape)
        return ((y + self.skip * pts) * mask).reshape(z.shape[0], -1)

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(c.shape[0], self.noise_dim, generator=generator, device=c.device, dtype=c.dtype)
        return self.sample_from_noise(c, z)

    def distill_error(self, x: torch.Tensor, c: torch.Tensor, x_teacher: torch.Tensor) -> torch.Tensor:
        """Mean absolute deviation from the teacher over the real particles' features only."""
        m = jet_mask(c, self.n_particles).expand(-1, -1, self.n_point_features).reshape(x.shape[0], -1)
        err = (x - x_teacher).abs() * m
        return err.sum() / m.sum().clamp_min(1.0)

    def make_critic(self, n_layers: int = 3) -> EPiCCritic:
        """A fresh EPiC-GAN critic for adversarial distillation (``hepgen distill --adversarial``):
        the student's width and global vector, ``n_layers`` EPiC layers; ``(B, P·F), (B, C) → (B,)``."""
        return EPiCCritic(self.n_particles, self.n_point_features, self.n_conditions, self.hparams["hidden"],
                          self.hparams["global_dim"], int(n_layers))

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the jet_student family learns from a teacher, not from data: "
                                  "hepgen distill TEACHER.pt --data FILE -o DIR")

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"n_particles": 6, "hidden": 8, "n_hidden": 1, "global_dim": 4}
