"""A transformer velocity field for jet flow matching (PC-JeDi / EPiC-JeDi style): ``jet_transformer_fm``.

Same data conventions as :mod:`hepgen.models.epic` (``x: (B, P·F)`` slot-major particle
cloud, column 0 of ``c`` the multiplicity ``n``; the first ``n`` slots are real) and the
same masked conditional flow matching (:class:`~hepgen.models.epic.JetFlowMatching`: loss
over real particle features only, zero noise and zero output in padding slots, the exact
likelihood over the ``n·F`` real dimensions).  Only the velocity network differs: where
EPiC lets particles exchange information through a small pooled vector, here every
particle attends to every other real particle of its jet.

Network ``v(x, t, c)`` (shapes for ``B`` jets of ``P`` slots, ``F`` features, width ``d``):

* tokens ``h = W_in x_i``: ``(B, P, d)`` (padding slots zeroed first, with ``where`` so that
  inf/NaN there cannot leak in);
* a per-jet embedding ``e = MLP([n/P, type one-hot, pT, η, …, t, sin ωt, cos ωt])``: ``(B, d)``
  — time and jet conditions;
* ``n_layers`` pre-norm blocks, each ``h ← h + g₁·Attn(LN(h)·(1+s₁)+b₁)`` then
  ``h ← h + g₂·MLP(LN(h)·(1+s₂)+b₂)``, where ``(s₁, b₁, g₁, s₂, b₂, g₂) = W e`` is the
  adaptive layer norm of DiT (Peebles & Xie, arXiv:2212.09748; "adaLN-Zero": ``W`` starts at
  zero, so every block starts as the identity).  ``Attn`` is multi-head self-attention
  (:func:`torch.nn.functional.scaled_dot_product_attention`) with a key-padding mask built
  from the multiplicity: padding slots are never attended to;
* output ``v_i = W_out(LN(h_i)·(1+s)+b)``: ``(B, P, F)``, multiplied by the mask.

No positional encoding: the network is permutation equivariant (permuting the real
particles permutes the velocity), and padding slots cannot influence real particles (they
are masked out as keys and zeroed after every block); ``tests/test_jets_transformer.py``
checks both.  Cost per jet: ``O(P·d²)`` for the linear layers plus ``O(P²·d)`` for the
attention — at ``P = 30`` the linear layers dominate.

References:
    M. Leigh et al., "PC-JeDi: Diffusion for Particle Cloud Generation in High Energy
    Physics", arXiv:2303.05376; "EPiC-ly Fast Particle Cloud Generation with Flow-Matching
    and Diffusion", arXiv:2310.00049.
    W. Peebles, S. Xie, "Scalable Diffusion Models with Transformers" (adaLN-Zero),
    arXiv:2212.09748.
    A. Vaswani et al., "Attention Is All You Need", arXiv:1706.03762.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hepgen.models.base import register
from hepgen.models.epic import JetFlowMatching, particle_slots, split_conditions
from hepgen.models.flow_matching import ConditionalFlowMatching

__all__ = ["JetTransformer", "JetTransformerFlowMatching", "TransformerBlock"]


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return h * (1.0 + scale) + shift


class TransformerBlock(nn.Module):
    """A pre-norm transformer block with adaptive layer norm (adaLN-Zero) and a key-padding mask.

    Arguments:
        dim: token width ``d`` (a multiple of ``heads``).
        heads: attention heads.
        mlp_ratio: hidden width of the feed-forward part, in units of ``dim``.

    ``forward(h, e, attend, mask)``: ``h: (B, P, d)`` tokens, ``e: (B, d)`` per-jet embedding
    (time + conditions), ``attend: (B, 1, 1, P)`` bool, True for slots that may be attended
    to, ``mask: (B, P, 1)`` float 0/1 → ``(B, P, d)``, zero at padding slots.

    Example:
        >>> blk = TransformerBlock(8, heads=2)
        >>> mask = torch.tensor([[1.0, 1.0, 0.0]])[..., None]
        >>> blk(torch.randn(1, 3, 8), torch.randn(1, 8), mask[..., 0].bool()[:, None, None, :], mask).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"jet transformer: expected 'hidden' a multiple of 'heads', found {dim} and {heads}")
        self.heads = int(heads)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        width = max(1, int(round(mlp_ratio * dim)))
        self.mlp = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: the block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor, attend: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, p, d = h.shape
        s1, b1, g1, s2, b2, g2 = self.ada(F.silu(e))[:, None, :].chunk(6, dim=-1)
        q, k, v = self.qkv(_modulate(self.norm1(h), b1, s1)).reshape(b, p, 3, self.heads, d // self.heads) \
            .permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, heads, P, d/heads)
        h = h + g1 * self.proj(a.transpose(1, 2).reshape(b, p, d))
        h = h + g2 * self.mlp(_modulate(self.norm2(h), b2, s2))
        return h * mask


class JetTransformer(nn.Module):
    """``v(x, t, c)`` on flattened particle clouds: the transformer of the module docstring.

    Arguments:
        n_particles: slots ``P``.
        n_point_features: features per particle ``F``.
        n_conditions: width of ``c`` (column 0: multiplicity).
        hidden: token width ``d``.
        n_layers: transformer blocks.
        heads: attention heads.
        mlp_ratio: feed-forward width / ``d``.
        time_freqs: sinusoidal time frequencies (log-spaced 1 … 1000).

    ``forward(x: (B, P·F), t: (B,), c: (B, C)) → (B, P·F)``, zero in padding slots.

    Example:
        >>> net = JetTransformer(n_particles=4, n_point_features=3, n_conditions=2, hidden=8, n_layers=1, heads=2)
        >>> c = torch.tensor([[2.0, 0.5], [4.0, -1.0]])             # multiplicities 2 and 4
        >>> v = net(torch.randn(2, 12), torch.tensor([0.1, 0.9]), c)
        >>> v.shape, bool((v.reshape(2, 4, 3)[0, 2:] == 0).all())
        (torch.Size([2, 12]), True)
    """

    def __init__(self, n_particles: int, n_point_features: int, n_conditions: int, hidden: int = 64,
                 n_layers: int = 3, heads: int = 4, mlp_ratio: float = 2.0, time_freqs: int = 8) -> None:
        super().__init__()
        self.n_particles, self.n_point_features = int(n_particles), int(n_point_features)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), int(time_freqs))))
        cond_dim = int(n_conditions) + 1 + 2 * int(time_freqs)
        self.embed = nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(self.n_point_features, hidden)
        self.blocks = nn.ModuleList(TransformerBlock(hidden, heads, mlp_ratio) for _ in range(int(n_layers)))
        self.out_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.out_ada = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, self.n_point_features)
        for lin in (self.out_ada, self.out):  # adaLN-Zero: the velocity starts at zero
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        mask, cond = split_conditions(c, self.n_particles)
        t = t.reshape(-1, 1).to(x.dtype)
        arg = t * self.freqs
        e = self.embed(torch.cat([cond, t, arg.sin(), arg.cos()], dim=-1))
        attend = mask[..., 0] > 0
        attend[:, 0] = True  # a jet without particles attends to slot 0 (output masked): no all-masked NaN row
        attend = attend[:, None, None, :]
        pts = x.reshape(b, self.n_particles, self.n_point_features)
        # where, not a product: inf/NaN in padding slots must not become NaN (inf · 0)
        pts = torch.where(mask > 0, pts, torch.zeros((), dtype=pts.dtype, device=pts.device))
        h = self.inp(pts) * mask
        for block in self.blocks:
            h = block(h, e, attend, mask)
        shift, scale = self.out_ada(F.silu(e))[:, None, :].chunk(2, dim=-1)
        v = self.out(_modulate(self.out_norm(h), shift, scale)) * mask
        return v.reshape(b, -1)


@register
class JetTransformerFlowMatching(JetFlowMatching):
    """Conditional flow matching on particle clouds with a transformer velocity field.

    Everything but the network is :class:`~hepgen.models.epic.JetFlowMatching` (masked
    loss, solvers, ``sample_from_noise``, ``ode_log_prob``); the network is
    :class:`JetTransformer`.

    Arguments:
        n_features: ``P · F`` (flattened cloud).
        n_conditions: condition width; column 0 is the multiplicity.
        n_particles: particle slots ``P``.
        hidden: token width (a multiple of ``heads``).
        n_layers: transformer blocks.
        heads: attention heads.
        mlp_ratio: feed-forward width / ``hidden``.
        time_freqs, sigma_min, sampler, steps: as for ``flow_matching``.

    Example:
        >>> m = JetTransformerFlowMatching(n_features=12, n_conditions=2, n_particles=4, hidden=8, heads=2,
        ...                                n_layers=1, steps=2)
        >>> x = m.sample(torch.tensor([[3.0, 0.0]]), torch.Generator().manual_seed(0))   # (1, 12)
        >>> x.shape, bool((x.reshape(1, 4, 3)[0, 3] == 0).all())
        (torch.Size([1, 12]), True)
    """

    family = "jet_transformer_fm"
    data_kind = "jets"
    has_log_prob = False

    def __init__(self, n_features: int, n_conditions: int, n_particles: int = 30, hidden: int = 64,
                 n_layers: int = 3, heads: int = 4, mlp_ratio: float = 2.0, time_freqs: int = 8,
                 sigma_min: float = 0.0, sampler: str = "midpoint", steps: int = 16) -> None:
        n_particles, n_point = particle_slots(self.family, n_features, n_particles)
        if int(heads) < 1 or int(hidden) % int(heads):
            raise ValueError(f"{self.family} hparam 'heads': expected a divisor of hidden={hidden}, found {heads!r}")
        net = JetTransformer(n_particles, n_point, int(n_conditions), int(hidden), int(n_layers), int(heads),
                             float(mlp_ratio), int(time_freqs))
        # the grandparent's constructor: JetFlowMatching's own would build an EPiC network
        ConditionalFlowMatching.__init__(self, n_features, n_conditions, time_freqs=int(time_freqs),
                                         sigma_min=sigma_min, sampler=sampler, steps=steps, net=net)
        self.n_particles, self.n_point_features = n_particles, n_point
        self.hparams.update(n_particles=n_particles, hidden=int(hidden), n_layers=int(n_layers), heads=int(heads),
                            mlp_ratio=float(mlp_ratio))

    @classmethod
    def tiny_hparams(cls) -> dict:
        return {"n_particles": 6, "hidden": 8, "n_layers": 1, "heads": 2, "mlp_ratio": 1.0, "time_freqs": 2,
                "steps": 4}
