"""Conditional flow matching: a velocity field trained by regression, sampled with an ODE solver.

A network ``v_θ(x, t, c)`` learns the velocity that carries standard-normal noise
(``t = 0``) to the data (``t = 1``).  Training regresses it onto the velocity of the
*conditional optimal-transport path* between a noise draw ``x0`` and a data point ``x1``
(Lipman et al., eq. 20-23):

    x_t = (1 - (1 - σ_min) t) x0 + t x1,      u_t = x1 - (1 - σ_min) x0,
    loss = E_{t ~ U[0,1], x0, x1} |v_θ(x_t, t, c) - u_t|²   (mean over features).

With ``σ_min = 0`` this is rectified flow (Liu et al.).  Sampling integrates
``dx/dt = v_θ(x, t, c)`` from ``t = 0`` to 1 with a fixed-step solver; the solver and the
number of steps trade speed for fidelity and are chosen at sampling time
(:attr:`ConditionalFlowMatching.sample_method`, :attr:`~ConditionalFlowMatching.sample_steps`
or the arguments of :meth:`~ConditionalFlowMatching.sample`).  Network evaluations per
sample: ``steps`` (Euler), ``2·steps`` (midpoint), ``4·steps`` (RK4).

The likelihood of this model exists (probability-flow ODE with the instantaneous
change of variables) but costs ``D`` backward passes per solver stage for the exact
divergence; :meth:`~ConditionalFlowMatching.ode_log_prob` provides it as a diagnostic for
small ``D``.  It is too slow to select checkpoints on showers, so ``has_log_prob`` is False
and the validation loss is the flow-matching loss on held-out data at fixed noise.

References:
    Y. Lipman et al., "Flow Matching for Generative Modeling", arXiv:2210.02747.
    X. Liu, C. Gong, Q. Liu, "Flow Straight and Fast: Learning to Generate and Transfer
    Data with Rectified Flow", arXiv:2209.03003.
    O. Amram, K. Pedro, "CaloDiffusion", arXiv:2308.03876.
    L. Favaro et al., "CaloDREAM — Detector Response Emulation via Attentive flow
    Matching", arXiv:2405.09629.
    R. T. Q. Chen et al., "Neural Ordinary Differential Equations" (instantaneous change
    of variables), arXiv:1806.07366.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hepgen.models.base import GenerativeModel, register

__all__ = ["SAMPLERS", "ConditionalFlowMatching", "integrate", "ot_path"]

SAMPLERS = ("euler", "midpoint", "rk4")
_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


def ot_path(
    x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point and target velocity on the conditional optimal-transport path (Lipman eq. 20-23).

    Arguments:
        x0: ``(B, D)`` noise draws (the path's start, ``t = 0``).
        x1: ``(B, D)`` data points (the path's end, ``t = 1``).
        t: ``(B, 1)`` or ``(B,)`` times in [0, 1].
        sigma_min: width of the path's end around ``x1`` (0: rectified flow).

    Returns:
        ``x_t = (1 - (1 - σ_min) t) x0 + t x1`` and ``u_t = x1 - (1 - σ_min) x0``, both ``(B, D)``.
    """
    t = t.reshape(-1, 1) if t.dim() == 1 else t
    return (1.0 - (1.0 - sigma_min) * t) * x0 + t * x1, x1 - (1.0 - sigma_min) * x0


def integrate(
    f: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    steps: int,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
) -> torch.Tensor:
    """Solve ``dx/dt = f(x, t)`` from ``t0`` to ``t1`` with ``steps`` equal fixed steps.

    Hand-written rather than taken from torchdiffeq (not a dependency): the three classic
    explicit fixed-step Runge-Kutta rules are a few lines, and a fixed step count is what
    the speed-vs-fidelity scans of this project need.

    Arguments:
        f: the velocity, ``f(x: (B, ...), t: float) -> (B, ...)``.
        x: the state at ``t0``.
        steps: number of steps (>= 1); ``t1 < t0`` integrates backwards.
        method: ``"euler"`` (order 1), ``"midpoint"`` (order 2) or ``"rk4"`` (order 4).

    Returns:
        The state at ``t1``, shaped like ``x``.
    """
    if method not in _STAGES:
        raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, found {method!r}")
    if int(steps) < 1:
        raise ValueError(f"steps: expected an integer >= 1, found {steps!r}")
    steps = int(steps)
    h = (t1 - t0) / steps
    for i in range(steps):
        t = t0 + i * h
        if method == "euler":
            x = x + h * f(x, t)
        elif method == "midpoint":
            x = x + h * f(x + 0.5 * h * f(x, t), t + 0.5 * h)
        else:
            k1 = f(x, t)
            k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
            k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
            k4 = f(x + h * k3, t + h)
            x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x


class _ResidualBlock(nn.Module):
    """``h + W2 SiLU(W1 LN(h) + E e)``: a pre-norm MLP block with an additive embedding."""

    def __init__(self, hidden: int, embed: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.lin1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(embed, hidden)
        self.lin2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return h + self.lin2(nn.functional.silu(self.lin1(self.norm(h)) + self.emb(e)))


class _VelocityNet(nn.Module):
    """Residual MLP ``v(x, t, c)``; ``t`` enters through sinusoidal features, ``c`` directly."""

    def __init__(self, n_features: int, n_conditions: int, hidden: int, n_blocks: int, time_freqs: int) -> None:
        super().__init__()
        # log-spaced angular frequencies 1 … 1000 for t in [0, 1] (Transformer-style embedding)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), time_freqs)))
        n_embed_in = 2 * time_freqs + 1 + n_conditions
        self.embed = nn.Sequential(nn.Linear(n_embed_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(n_features, hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden, hidden) for _ in range(n_blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_features)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1).to(x.dtype)
        arg = t * self.freqs
        e = self.embed(torch.cat([t, arg.sin(), arg.cos(), c], dim=-1))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(self.out_norm(h))


@register
class ConditionalFlowMatching(GenerativeModel):
    """Conditional flow matching (CaloDREAM-style) with a residual-MLP velocity field.

    Arguments:
        n_features: data dimension D.
        n_conditions: condition dimension C.
        hidden_features: width of the velocity network.
        n_blocks: number of residual blocks.
        time_freqs: number of sinusoidal time frequencies.
        sigma_min: end width of the conditional OT path (0: rectified flow).
        sampler: default ODE solver, one of ``"euler"``, ``"midpoint"``, ``"rk4"``.
        steps: default number of solver steps.
        net: for subclasses: a velocity network ``net(x: (B, D), t: (B,), c: (B, C)) → (B, D)``
            used instead of the residual MLP (``hidden_features``/``n_blocks`` are then unused
            and not recorded in ``hparams``).

    Attributes:
        sample_method, sample_steps: the solver and step count :meth:`sample` uses when
            not given; start as ``sampler`` and ``steps``, may be changed after loading
            (e.g. to scan speed against fidelity) without retraining.

    Example:
        >>> cfm = ConditionalFlowMatching(n_features=10, n_conditions=1, steps=20)
        >>> x = cfm.sample(torch.zeros(5, 1), torch.Generator().manual_seed(0))      # (5, 10)
        >>> x8 = cfm.sample(torch.zeros(5, 1), torch.Generator().manual_seed(0), steps=8, method="rk4")
    """

    family = "flow_matching"
    has_log_prob = False

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        hidden_features: int = 512,
        n_blocks: int = 4,
        time_freqs: int = 8,
        sigma_min: float = 0.0,
        sampler: str = "midpoint",
        steps: int = 25,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__(n_features, n_conditions)
        if sampler not in SAMPLERS:
            raise ValueError(f"{self.family} hparam 'sampler': expected one of {list(SAMPLERS)}, found {sampler!r}")
        if int(steps) < 1:
            raise ValueError(f"{self.family} hparam 'steps': expected an integer >= 1, found {steps!r}")
        if not 0.0 <= float(sigma_min) < 1.0:
            raise ValueError(f"{self.family} hparam 'sigma_min': expected 0 <= sigma_min < 1, found {sigma_min!r}")
        if net is None:  # the residual MLP; a subclass passes its own velocity network instead
            self.hparams.update(hidden_features=int(hidden_features), n_blocks=int(n_blocks))
            net = _VelocityNet(n_features, n_conditions, int(hidden_features), int(n_blocks), int(time_freqs))
        self.hparams.update(time_freqs=int(time_freqs), sigma_min=float(sigma_min), sampler=sampler, steps=int(steps))
        self.sigma_min = float(sigma_min)
        self.sample_method = sampler
        self.sample_steps = int(steps)
        self.net = net

    def velocity(self, x: torch.Tensor, t: torch.Tensor | float, c: torch.Tensor) -> torch.Tensor:
        """``v_θ(x, t, c)``: ``x: (B, D)``, ``t``: scalar or ``(B,)``, ``c: (B, C)`` → ``(B, D)``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.net(x, t, c)

    def loss(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching regression loss (mean over batch and features).

        ``generator`` supplies ``x0`` and ``t`` (None: torch's global RNG, which the
        trainer seeds and checkpoints).
        """
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = torch.rand(x.shape[0], 1, generator=generator, device=x.device, dtype=x.dtype)
        xt, ut = ot_path(x0, x, t, self.sigma_min)
        return (self.velocity(xt, t.reshape(-1), c) - ut).square().mean()

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The flow-matching loss at noise and times drawn from a generator seeded with 0.

        Fixed noise makes epochs comparable; note that this regression loss tracks sample
        quality only loosely (a physics metric is the better selector when affordable).
        """
        return self.loss(x, c, generator=torch.Generator(device=x.device).manual_seed(0))

    @torch.no_grad()
    def sample(
        self,
        c: torch.Tensor,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        method: str | None = None,
    ) -> torch.Tensor:
        """Integrate noise to data: ``c: (B, C)`` → ``(B, D)`` (no gradient).

        Arguments:
            c: preprocessed conditions.
            generator: source of the initial noise (reproducible for a seeded generator).
            steps: solver steps (default :attr:`sample_steps`).
            method: ``"euler"``, ``"midpoint"`` or ``"rk4"`` (default :attr:`sample_method`).
        """
        x0 = torch.randn(c.shape[0], self.n_features, generator=generator, device=c.device, dtype=c.dtype)
        return self.sample_from_noise(c, x0, steps=steps, method=method)

    @property
    def noise_dim(self) -> int:
        """The ODE starts from ``n_features`` standard-normal numbers."""
        return self.n_features

    def sample_from_noise(
        self, c: torch.Tensor, z: torch.Tensor, steps: int | None = None, method: str | None = None
    ) -> torch.Tensor:
        """Integrate the ODE from given noise: ``c: (B, C)``, ``z: (B, D)`` → ``(B, D)``.

        ``steps`` and ``method`` default to :attr:`sample_steps` and :attr:`sample_method`;
        the solver loop is plain Python, so a traced export unrolls it at the current setting.
        """
        return integrate(
            lambda x, t: self.velocity(x, t, c),
            z,
            steps=self.sample_steps if steps is None else steps,
            method=self.sample_method if method is None else method,
        )

    def ode_log_prob(
        self, x: torch.Tensor, c: torch.Tensor, steps: int = 100, method: str = "rk4"
    ) -> torch.Tensor:
        """``log p(x | c)`` through the probability-flow ODE with the exact divergence ``(B,)``.

        Integrates ``d/dt (x, ℓ) = (v, ∇·v)`` from ``t = 1`` back to 0, then
        ``log p(x) = log N(x_0; 0, 1) + ℓ(0)``.  The divergence is the trace of the full
        ``D × D`` Jacobian, i.e. ``D`` backward passes per solver stage: use for small ``D``
        (diagnostics, tests), not for showers.  The only error is the solver's.
        """
        d = self.n_features

        def single(xi: torch.Tensor, ti: torch.Tensor, ci: torch.Tensor) -> torch.Tensor:
            return self.net(xi[None], ti[None], ci[None])[0]

        jac = torch.func.vmap(torch.func.jacrev(single), in_dims=(0, 0, 0))

        def augmented(state: torch.Tensor, t: float) -> torch.Tensor:
            xs = state[:, :d]
            tt = torch.full((xs.shape[0],), t, dtype=xs.dtype, device=xs.device)
            v = self.net(xs, tt, c)
            div = torch.diagonal(jac(xs, tt, c), dim1=-2, dim2=-1).sum(dim=-1, keepdim=True)
            return torch.cat([v, div], dim=-1)

        with torch.no_grad():
            start = torch.cat([x, torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)], dim=-1)
            end = integrate(augmented, start, steps=steps, method=method, t0=1.0, t1=0.0)
        z, delta = end[:, :d], end[:, d]
        return -0.5 * z.square().sum(dim=-1) - 0.5 * d * math.log(2.0 * math.pi) + delta

    @classmethod
    def tiny_hparams(cls) -> dict:
        """Small sizes for quick tests."""
        return {"hidden_features": 32, "n_blocks": 1, "time_freqs": 2, "steps": 4}
