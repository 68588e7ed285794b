"""Permutation-equivariant networks for jets as particle clouds, and the EPiC flow-matching family.

Jets reach a model through the same ``(B, D)`` / ``(B, C)`` interface as showers
(:mod:`hepgen.models.base`), with two conventions set by
:class:`hepgen.domains.jets.preprocessing.JetPreprocessor`:

* ``x`` is the zero-padded particle cloud flattened: ``D = P · F`` (``P`` particle slots of
  ``F`` preprocessed features, slot-major, i.e. ``x.reshape(B, P, F)``);
* column 0 of ``c`` is the jet's number of particles ``n`` (a whole number, 1 … P); the
  first ``n`` slots are real particles, the others padding.  The remaining columns are the
  other conditions (jet type one-hot, jet pT and η, …).

The networks never see the slot order: every per-particle operation is applied to each
particle alike, and particles interact only through masked mean and sum pooling, so
permuting the real particles permutes the output (equivariance) and leaves pooled
quantities — a critic's score, the likelihood — unchanged (invariance);
``tests/test_jets_models.py`` checks both.  Padding slots are multiplied by the mask after
every layer, so they can neither influence the real particles nor carry a value out.

The building block is the EPiC layer of Buhmann, Kasieczka and Thaler ("EPiC-GAN:
Equivariant Point Cloud Generation for Particle Jets", arXiv:2301.08128): a small global
vector is updated from the pooled particles, then every particle is updated from itself and
the global vector.  Cost is linear in the number of particles (no attention), which is what
makes these models fast enough to beat Pythia by orders of magnitude.  Written here rather
than taken from a library because no maintained package provides it (the authors' code is a
research repository without a package), and it is a few lines on top of ``torch.nn``.

References:
    E. Buhmann, G. Kasieczka, J. Thaler, arXiv:2301.08128 (EPiC-GAN).
    M. Leigh et al., "PC-JeDi" arXiv:2303.05376 and "EPiC-ly Fast Particle Cloud Generation
    with Flow-Matching and Diffusion" (EPiC-JeDi / EPiC-FM), arXiv:2310.00049.
    R. Kansal et al., "Particle Cloud Generation with Message Passing GANs", arXiv:2106.11535.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hepgen.models.base import register
from hepgen.models.flow_matching import ConditionalFlowMatching, ot_path

__all__ = ["EPiCLayer", "EPiCNet", "JetFlowMatching", "jet_mask", "particle_slots", "split_conditions"]

_ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.01), "silu": nn.SiLU, "gelu": nn.GELU}


def jet_mask(c: torch.Tensor, n_particles: int) -> torch.Tensor:
    """``(B, P, 1)`` float mask of real particles from the multiplicity in column 0 of ``c``."""
    n = c[:, :1].round().clamp(0, n_particles)
    slots = torch.arange(n_particles, device=c.device, dtype=c.dtype)
    return (slots[None, :] < n).to(c.dtype)[..., None]


def particle_slots(family: str, n_features: int, n_particles: int) -> tuple[int, int]:
    """``(P, F)``: particle slots and features per particle of a flattened ``(P · F)`` cloud.

    >>> particle_slots("epic_fm", 120, 30)
    (30, 4)
    """
    if int(n_particles) < 1 or int(n_features) % int(n_particles):
        raise ValueError(f"{family} hparam 'n_particles': expected a divisor of n_features={n_features}, "
                         f"found {n_particles!r}")
    return int(n_particles), int(n_features) // int(n_particles)


def split_conditions(c: torch.Tensor, n_particles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask (B, P, 1), network conditions (B, C))``: the multiplicity column of ``c`` is
    replaced by ``n / P`` (an input of order one for the networks)."""
    mask = jet_mask(c, n_particles)
    return mask, torch.cat([c[:, :1] / n_particles, c[:, 1:]], dim=-1)


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, found {name!r}")
    return _ACTIVATIONS[name]()


class EPiCLayer(nn.Module):
    """One EPiC layer: global update from pooled particles, then a per-particle update.

    ``g ← g + MLP([mean_i h_i, s·Σ_i h_i, g, c])`` and ``h_i ← h_i + MLP([h_i, g, c])``
    (sums over real particles only; ``s`` scales the sum to order one).  The per-particle
    MLP's first layer is split into a particle part and a per-jet part that is computed once
    per jet and broadcast — the same function as one layer on the concatenation, with
    ``P``-fold fewer multiplications for the ``[g, c]`` columns.

    Arguments:
        hidden: per-particle feature width L.
        global_dim: global vector width G.
        cond_dim: condition width C.
        mlp_width: hidden width of both MLPs.
        sum_scale: ``s`` (e.g. ``1 / P``).
        activation: ``"leaky_relu"`` (EPiC-GAN), ``"silu"`` or ``"gelu"``.
    """

    def __init__(self, hidden: int, global_dim: int, cond_dim: int, mlp_width: int, sum_scale: float,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        self.sum_scale = float(sum_scale)
        self.g1 = nn.Linear(2 * hidden + global_dim + cond_dim, mlp_width)
        self.g2 = nn.Linear(mlp_width, global_dim)
        self.l1_local = nn.Linear(hidden, mlp_width)
        self.l1_global = nn.Linear(global_dim + cond_dim, mlp_width, bias=False)
        self.l2 = nn.Linear(mlp_width, hidden)
        self.act = _activation(activation)

    def forward(self, h: torch.Tensor, g: torch.Tensor, c: torch.Tensor, mask: torch.Tensor):
        """``h: (B, P, L)``, ``g: (B, G)``, ``c: (B, C)``, ``mask: (B, P, 1)`` → new ``(h, g)``."""
        s = (h * mask).sum(dim=1)
        n = mask.sum(dim=1).clamp_min(1.0)
        g = g + self.g2(self.act(self.g1(torch.cat([s / n, s * self.sum_scale, g, c], dim=-1))))
        per_jet = self.l1_global(torch.cat([g, c], dim=-1))[:, None, :]
        h = h + self.l2(self.act(self.l1_local(h) + per_jet))
        return h * mask, g


class EPiCNet(nn.Module):
    """A stack of EPiC layers: particle cloud + conditions → per-particle outputs and a jet vector.

    Arguments:
        in_features: features per particle at the input.
        out_features: features per particle at the output (0: none, e.g. a critic).
        cond_dim: width of the per-jet conditions.
        n_particles: slots P (sets the sum-pooling scale 1/P).
        hidden: per-particle width.
        global_dim: global vector width.
        n_layers: number of EPiC layers.
        mlp_width: hidden width inside the layers (default ``hidden``).
        activation: see :class:`EPiCLayer`.

    ``forward(x, c, mask)`` returns ``(y, summary)``: ``y: (B, P, out_features)`` (zero at
    padding slots) and ``summary: (B, G + 2·hidden)`` = the final global vector with the
    masked mean and scaled sum of the particles — permutation invariant.
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, n_particles: int, hidden: int = 128,
                 global_dim: int = 16, n_layers: int = 4, mlp_width: int | None = None,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        width = int(mlp_width or hidden)
        self.sum_scale = 1.0 / float(n_particles)
        self.local_in = nn.Linear(in_features, hidden)
        self.cond_in = nn.Linear(cond_dim, hidden, bias=False)
        self.global_in = nn.Linear(2 * hidden + cond_dim, global_dim)
        self.layers = nn.ModuleList(
            EPiCLayer(hidden, global_dim, cond_dim, width, self.sum_scale, activation) for _ in range(int(n_layers))
        )
        self.act = _activation(activation)
        self.local_out = nn.Linear(hidden, out_features) if out_features else None
        self.summary_dim = global_dim + 2 * hidden

    def _pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = (h * mask).sum(dim=1)
        return torch.cat([s / mask.sum(dim=1).clamp_min(1.0), s * self.sum_scale], dim=-1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor):
        h = self.act(self.local_in(x) + self.cond_in(c)[:, None, :]) * mask
        g = self.global_in(torch.cat([self._pool(h, mask), c], dim=-1))
        for layer in self.layers:
            h, g = layer(h, g, c, mask)
        y = self.local_out(h) * mask if self.local_out is not None else None
        return y, torch.cat([g, self._pool(h, mask)], dim=-1)


class _EPiCVelocity(nn.Module):
    """``v(x, t, c)`` on flattened clouds with the signature of the shower velocity network."""

    def __init__(self, n_particles: int, n_point_features: int, n_conditions: int, hidden: int,
                 global_dim: int, n_layers: int, time_freqs: int) -> None:
        super().__init__()
        self.n_particles, self.n_point_features = n_particles, n_point_features
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), time_freqs)))
        cond_dim = n_conditions + 1 + 2 * time_freqs
        self.epic = EPiCNet(n_point_features, n_point_features, cond_dim, n_particles, hidden=hidden,
                            global_dim=global_dim, n_layers=n_layers, activation="silu")

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mask, cond = split_conditions(c, self.n_particles)
        t = t.reshape(-1, 1).to(x.dtype)
        arg = t * self.freqs
        cond = torch.cat([cond, t, arg.sin(), arg.cos()], dim=-1)
        pts = x.reshape(x.shape[0], self.n_particles, self.n_point_features)
        # where, not a product: inf/NaN in padding slots must not become NaN (inf · 0)
        v, _ = self.epic(torch.where(mask > 0, pts, torch.zeros((), dtype=pts.dtype, device=pts.device)), cond, mask)
        return v.reshape(x.shape[0], -1)


@register
class JetFlowMatching(ConditionalFlowMatching):
    """Conditional flow matching on particle clouds with an EPiC velocity field (EPiC-FM).

    The conditional-OT flow matching of :class:`~hepgen.models.flow_matching.ConditionalFlowMatching`
    (loss, solvers, step scans, the exact ODE likelihood) with a permutation-equivariant
    velocity network and the padding masked out everywhere: the noise of padding slots is
    zero, the loss averages over real particle features only, and the likelihood counts only
    the ``n·F`` real dimensions.

    Arguments:
        n_features: ``P · F`` (flattened cloud).
        n_conditions: condition width; column 0 is the multiplicity (module docstring).
        n_particles: particle slots ``P``.
        hidden: per-particle width of the EPiC network.
        global_dim: width of its global vector.
        n_layers: number of EPiC layers.
        time_freqs, sigma_min, sampler, steps: as for ``flow_matching``.
    """

    family = "epic_fm"
    data_kind = "jets"
    has_log_prob = False  # exact via ode_log_prob, but D backward passes per stage: not for selection

    def __init__(self, n_features: int, n_conditions: int, n_particles: int = 30, hidden: int = 128,
                 global_dim: int = 16, n_layers: int = 4, time_freqs: int = 8, sigma_min: float = 0.0,
                 sampler: str = "midpoint", steps: int = 16) -> None:
        n_particles, n_point = particle_slots(self.family, n_features, n_particles)
        net = _EPiCVelocity(n_particles, n_point, int(n_conditions), int(hidden), int(global_dim), int(n_layers),
                            int(time_freqs))
        super().__init__(n_features, n_conditions, time_freqs=int(time_freqs), sigma_min=sigma_min, sampler=sampler,
                         steps=steps, net=net)
        self.n_particles, self.n_point_features = n_particles, n_point
        self.hparams.update(n_particles=n_particles, hidden=int(hidden), global_dim=int(global_dim),
                            n_layers=int(n_layers))

    def _flat_mask(self, c: torch.Tensor) -> torch.Tensor:
        m = jet_mask(c, self.n_particles)
        return m.expand(-1, -1, self.n_point_features).reshape(c.shape[0], -1)

    def loss(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss averaged over the real particles' features (padding excluded)."""
        m = self._flat_mask(c).to(x.dtype)
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * m
        t = torch.rand(x.shape[0], 1, generator=generator, device=x.device, dtype=x.dtype)
        xt, ut = ot_path(x0, x * m, t, self.sigma_min)
        err = (self.velocity(xt, t.reshape(-1), c) - ut).square() * m
        return err.sum() / m.sum().clamp_min(1.0)

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor, steps: int | None = None,
                          method: str | None = None) -> torch.Tensor:
        """Integrate the ODE from ``z`` (padding slots of ``z`` are ignored); padding comes out 0."""
        return super().sample_from_noise(c, z * self._flat_mask(c).to(z.dtype), steps=steps, method=method)

    def student_spec(self) -> tuple[str, dict]:
        """The permutation-equivariant one-pass student (:mod:`hepgen.models.jet_student`)."""
        return "jet_student", {"n_particles": self.n_particles}

    def ode_log_prob(self, x: torch.Tensor, c: torch.Tensor, steps: int = 100, method: str = "rk4") -> torch.Tensor:
        """``log p(x_real | c)`` over the ``n·F`` real dimensions (padding carries no density)."""
        m = self._flat_mask(c).to(x.dtype)
        lp = super().ode_log_prob(x * m, c, steps=steps, method=method)
        # the parent's Gaussian term counts every dimension; padding dims sit at exactly 0
        return lp + 0.5 * (self.n_features - m.sum(dim=-1)) * math.log(2.0 * math.pi)

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"n_particles": 6, "hidden": 16, "global_dim": 4, "n_layers": 1, "time_freqs": 2, "steps": 4}
