"""Refiner and critic for a grid of detector stations with time traces (surface detectors).

The generic refiner of :mod:`hepgen.refine.refiner` adds a correction to every feature.
For traces stored as ``x = asinh(S/scale)`` per station and time bin, a small additive
correction in ``x`` becomes a large *multiplicative* one on a big signal, and noise added
in ``x`` inflates station integrals (the mean of ``e^ε`` exceeds 1): on the Auger-like toy
that refiner inflated the station signals (docs/refine.md).  The modules here act where the
corrections stay bounded, per triggered station, in linear signal units:

    S'(t) = g · [S(t) + I⁺ · Δu(t)] + σ · ε(t),    g = exp(a_max · tanh(a)),

with ``S`` the trace (VEM per bin), ``I = Σ_t S(t)`` the station integral, ``I⁺ = max(I, 1 VEM)``,
``a`` a per-station log-gain (bounded: ``g ∈ [e^−a_max, e^a_max]``), ``Δu`` a time-shape
correction of the normalised trace ``u = S/I⁺`` (a small 1-D convolution over the time bins
that also sees the noise ``ε`` — pulse spikiness is stochastic —, weights shared by all
stations, as arXiv:1802.03325's refiner is convolutional; plus a dense head over the bins,
since shortening a pulse is not shift invariant), and ``σ`` a noise amplitude *in VEM*, one for all stations, learned or fixed (data carry more baseline noise,
which is additive in linear units).  Every head starts at zero, so the refiner starts as the
identity.  ``a``, ``Δu`` and ``σ`` come from a per-station network that sees the station's
normalised trace, ``log(1 + I)``, the event labels and its neighbourhood: a 2-D convolution
over the ``n_x × n_y`` map of ``log(1 + I)`` and the trigger flags (distance to the core is
otherwise unknown to a single station).

With ``shot_noise=True`` the time-shape convolution no longer sees the noise (``Δu`` is the
mean correction) and the stochastic part of the shape becomes **shot noise**: a signal made of
quanta of size ``q`` (a muon ≈ 1 VEM, an EM particle ≪ 1 VEM) fluctuates with variance ``q · m``
per bin, ``m`` the mean signal, so

    S'(t) = g · [m(t) + Σ_j k_j δ(t − j)] + σ · ε(t),   m = S + I⁺ Δu,
    δ = m (exp(a ε' − a²/2) − 1),   a² = ln(1 + q/m)   (log-normal: mean 0, variance q m, m + δ > 0),

with ``q = 4 VEM · sigmoid(·)`` a head of the per-station network (starting at ≈ 0.01 VEM) and
``k`` a causal kernel of 5 taps shared by all stations (``Σ k² = 1``: the pulse's light decay
correlates neighbouring bins), ``ε'`` the noise sequence rolled by a quarter of the trace.  Where
there is no signal (the trace's tail) nothing is added.  (Measured on the Auger-like toy: the
quantum is not learned, it falls to ≈ 0; what the option changes in practice is that the shape
convolution no longer sees the noise.  docs/refine.md, fourth round.)

With ``shot_pulses=True`` as well the fluctuation is made of **discrete pulses** instead of the
log-normal per bin: a fraction ``f`` of the smoothed mean signal arrives as quanta of ``q`` VEM
(a muon), their number per bin Poisson, each spread over the following bins by a causal kernel
``k`` of unit area (the tank's light decay),

    S'(t) = g · [m(t) + q Σ_j k_j (n(t − j) − λ(t − j))] + σ · ε(t),
    n(t) ~ Poisson(λ(t)),   λ = f · max(m̄ − 0.05 VEM, 0) / q,

with ``m̄`` the mean trace averaged over ±3 bins (so that baseline noise in the tail does not
draw pulses), ``q = 4 VEM · sigmoid(·)`` starting at 1 VEM and ``f = sigmoid(·)`` starting at
0.0025 (nearly the identity), both heads of the per-station network, and ``k`` starting at
an exponential of 1.5 bins (the Auger-like toy's tank decay).  ``n`` is drawn by inverting the
Poisson CDF at ``Φ(ε')`` (so the given noise fixes it, and a refined file is reproducible); the
gradient passes as if ``n = λ + √λ ε'`` (straight-through: forward the discrete draw, backward
the Gaussian of equal variance).  A log-normal per bin is not what a few ≈ 1 VEM muons with the
tank's decay look like (docs/refine.md, tenth round).  (Measured on the Auger-like toy: the refiner
switches the pulses off, ``f`` falls below 0.001 and ``q`` runs to its bound; kept on by a floor on
``f`` they are learned at ``q`` ≈ 1 VEM, the toy's muon, but the classifier AUC does not fall.
docs/refine.md, eleventh round.)

With ``shape_envelope=True`` the shape correction is bounded by the pulse:
``Δu ← env(u) · tanh(Δu)``, ``env`` the mean of ``|u|`` over ±3 bins, so that it cannot put
structure where the trace carries no signal (the free correction, scaled by the station
integral, wrote structure into the noise-only tails of big stations).

By default untriggered stations (all-zero traces) stay zero.  With ``fill_silent=True`` the
refiner acts on the whole footprint, as the study's refiner does: a silent station within two
grid steps of a triggered one may receive an additive pulse

    S'(t) = A · softmax(b + Δb + conv[b, ε̃])(t) + σ · ε(t),   A = T · softplus(z),

with ``T`` the trigger threshold (VEM), ``z`` (12 × a linear head, for a faster start) from
the same per-station network (which sees the neighbourhood, the distance to the
signal-weighted core estimate and the labels; ``z`` starts at −2.5, so ``A ≈ 0.08 T``), ``b`` the log of a fixed Gamma(1.5, 9 bins) pulse (a
muon-like pulse far from the core), ``Δb`` a dense head and ``conv`` a small 1-D convolution of
the base shape and a noise sequence ``ε̃`` (``ε`` rolled by half the trace: independent bins),
so that the pulse can be spiky like a few muons.  The event keeps its labels: the refiner is
conditioned on the event and adds signal where the rest of the footprint says data would
have it.  Whenever ``trigger_vem`` is set, every refined station — new or old — then passes
the detector's trigger rule (``Σ_t S' ≥ T``, else all zeros), so a refined event is a valid
event of its kind.  The hard threshold has no gradient: in training the rule is applied with
a **straight-through estimator** (forward: the hard rule, as at apply time; backward: the
identity), so a station below threshold still receives the critic's gradient at zero, which
tells whether data would have signal there.

The critic sees, per station, the ``asinh`` trace, the normalised cumulative trace
``C(t) = Σ_{t'≤t} S / I⁺`` (the rise-time information in linear units), ``log(1 + I)`` and
the labels, through a shared per-station network; the station embeddings are placed on the footprint
grid and go through two 3 × 3 convolutions (the station positions matter, mean pooling
loses them), then mean and max pooling and a head with the labels.  With ``min_signal > 0``
stations whose integral is well below it look untriggered to the critic (a smooth gate): the
refiner cannot create stations, so the critic should not reward it for the number of weak
stations near the trigger threshold, which it could only imitate by lowering every gain.

Both modules take and return the flat features ``(N, n_x·n_y·n_t)`` of
:class:`hepgen.refine.adapters.TraceAdapter`.

Example:
    >>> import torch
    >>> r = StationRefiner(n_labels=2, grid=(3, 3), n_t=8, hidden=8)
    >>> x = torch.asinh(torch.rand(4, 72) * 50)
    >>> x[:, :8] = 0.0                        # an untriggered station
    >>> bool(torch.allclose(r(x, torch.zeros(4, 2)), x, atol=1e-4))   # identity at the start
    True
    >>> StationCritic(n_labels=2, grid=(3, 3), n_t=8, hidden=8)(torch.cat([x, torch.zeros(4, 2)], 1)).shape
    torch.Size([4])
    >>> f = StationRefiner(n_labels=2, grid=(3, 3), n_t=8, hidden=8, fill_silent=True, trigger_vem=3.0)
    >>> bool(torch.allclose(f(x, torch.zeros(4, 2)), x, atol=1e-4))   # silent stations stay silent at the start
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hepgen.refine.critic_mlp import NEGATIVE_SLOPE, critic_mlp
from hepgen.refine.moments import moment_basis, normal_equation_loss

__all__ = ["StationCritic", "StationRefiner", "core_distance", "excess_roughness", "log_total", "near_live",
           "poisson_quantile", "soft_count", "station_quantities"]

_CTX = 16  # channels of the footprint context of the refiner
_SIGMA_MAX = 0.5  # VEM per bin: the largest noise amplitude the refiner may add
_FILM = 8  # conditioning channels of the time-shape convolution
_CRITIC_CONV = 24  # channels of the critic's convolutions over the footprint (cost: double backward of the GP)
#: shot noise: the largest quantum (VEM) the refiner may give a station's signal, and the
#: starting pre-activation of its head (q = _SHOT_QMAX sigmoid(−6) ≈ 0.01 VEM: far below the
#: EM quanta of the toy, so the refiner starts as the identity in distribution)
_SHOT_QMAX = 4.0
_SHOT_INIT = -6.0
_SHOT_TAPS = 5  # causal taps of the learned pulse-correlation kernel of the shot noise
#: shot pulses: starting quantum (VEM; a muon), starting pre-activation of the fraction of the
#: signal in quanta (sigmoid(−6) ≈ 0.0025: nearly the identity), starting decay of the pulse
#: kernel (bins; the Auger-like toy's tank), the signal per bin (VEM) below which no quanta are
#: drawn (the smoothed mean: above the toy's baseline noise averaged over 7 bins, 0.03/√7 VEM),
#: and the mean number per bin above which the draw is the Gaussian of equal variance (P(n ≥ 40)
#: < 1e-9 below it)
_PULSE_Q_INIT = 1.0
_PULSE_FRAC_INIT = -6.0
_PULSE_DECAY_BINS = 1.5
_PULSE_FLOOR_VEM = 0.05
_PULSE_EXACT_MAX = 10.0
_PULSE_TERMS = 40
_ENVELOPE = 3  # half-width (bins) of the pulse envelope that bounds the shape correction (shape_envelope)
_FILL_REACH = 2  # a silent station may be turned on within this many grid steps (Chebyshev) of a triggered one
_FILL_INIT = -2.5  # starting pre-activation of a silent station's amplitude: A = T softplus(-2.5) ≈ 0.08 T
#: the amplitude head's output is multiplied by this: A must travel from ≈ 0 to the threshold
#: within a few hundred steps: at the plain rate it reached 0.3 T after 460, at 4× 0.6 T (docs/refine.md)
_FILL_GAIN = 12.0
#: weight of the added signal on silent stations in the closeness term, relative to the
#: triggered-station term: mild, so that new stations appear where the critic asks for them
SILENT_CLOSENESS = 0.1


def station_quantities(x: torch.Tensor, grid, n_t: int, scale: float):
    """Linear-unit station quantities from flat ``asinh(S/scale)`` features ``(N, G·n_t)``.

    Returns ``(s, live, integral, positive_integral)``: ``s`` ``(N, G, n_t)`` VEM, ``live``
    ``(N, G)`` bool (any non-zero bin), ``integral`` ``(N, G)`` VEM and ``max(integral, 1)``.
    """
    n, g = x.shape[0], int(grid[0]) * int(grid[1])
    xs = x.reshape(n, g, n_t)
    s = scale * torch.sinh(xs)
    live = (xs != 0).any(dim=-1)
    integral = s.sum(dim=-1)
    return s, live, integral, integral.clamp(min=1.0)


def log_total(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``(N,)`` log(1 + Σ S) (VEM) of flat ``asinh(S/scale)`` features ``(N, D)`` (silent stations read zeros)."""
    return torch.log1p((scale * torch.sinh(x)).sum(-1).clamp(min=0))


def soft_count(x: torch.Tensor, n_t: int, scale: float, threshold: float) -> torch.Tensor:
    """``(N,)`` soft number of stations ``Σ min(I / threshold, 1)`` of flat ``asinh`` features: the
    exact count when every station is silent or ≥ ``threshold`` (VEM), as under the trigger rule,
    and differentiable (through the straight-through rule its gradient reaches silent stations).

    Example (stations of 6, 3 and 1.5 VEM and silent ones, threshold 3 VEM):
        >>> s = torch.zeros(1, 9, 4); s[0, 0], s[0, 4], s[0, 8] = 1.5, 0.75, 0.375
        >>> float(soft_count(torch.asinh(s / 0.1).reshape(1, -1), 4, 0.1, 3.0)[0])
        2.5
    """
    s = (scale * torch.sinh(x.reshape(x.shape[0], -1, n_t))).sum(-1)
    return (s / threshold).clamp(0.0, 1.0).sum(1)


def excess_roughness(x: torch.Tensor, n_t: int, scale: float) -> torch.Tensor:
    """``(N,)``: the event's excess roughness ``ln(10⁻³ + Σ_s (V_s − 2 P_s) / Σ_s I_s)`` of flat
    ``asinh(S/scale)`` features ``(N, G·n_t)``: ``V_s`` the total variation of station ``s``'s
    trace with a zero before and after it, ``P_s = max(max_t S_s, 0)`` its peak, ``I_s`` its
    integral (VEM; sums over all stations, silent ones read zeros; the denominator at least 1 VEM).

    A pulse that rises once and falls once has ``V = 2P`` however sharp it is, so the excess
    counts only the ups and downs on top of that: the spikes of a pulse made of ≈ 1 VEM muons
    against a smooth electromagnetic one, and baseline noise.  On the Auger-like toy data are
    rougher than sim (70 % against 30 % muons); matching the peakiness Σ P / Σ I as well made
    the refiner sharpen the mean pulse instead (rise times too short), and matching it station by
    station given the station's size reshaped the pulses and once diverged (docs/refine.md,
    sixth round).

    Example (a station of 1, 3, 1 VEM has no excess; 1, 3, 1, 2, 1 VEM has 2 VEM, over 8 VEM):
        >>> s = torch.zeros(2, 2, 5); s[0, 0, :3] = torch.tensor([1.0, 3.0, 1.0])
        >>> s[1, 0] = torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0])
        >>> [abs(round(v - 1e-3, 4)) for v in excess_roughness(torch.asinh(s / 0.1).reshape(2, -1), 5, 0.1).exp().tolist()]
        [0.0, 0.25]
    """
    s = scale * torch.sinh(x.reshape(x.shape[0], -1, n_t))
    padded = nn.functional.pad(s, (1, 1))
    excess = (padded[..., 1:] - padded[..., :-1]).abs().sum(-1) - 2 * s.amax(-1).clamp(min=0)
    return torch.log(1e-3 + excess.sum(1).clamp(min=0) / s.sum((1, 2)).clamp(min=1.0))


def near_live(live: torch.Tensor, grid) -> torch.Tensor:
    """``(N, G)`` bool: stations within ``_FILL_REACH`` grid steps (Chebyshev distance) of a
    triggered one, the triggered ones included — the stations a filling refiner may turn on."""
    n, k = live.shape[0], 2 * _FILL_REACH + 1
    m = nn.functional.max_pool2d(live.float().view(n, 1, int(grid[0]), int(grid[1])), k, stride=1, padding=_FILL_REACH)
    return m.view(n, -1) > 0


def core_distance(weights: torch.Tensor, grid, eps: float = 0.0) -> torch.Tensor:
    """``(N, G)`` distance of each station to the ``weights``-weighted centroid of the stations
    (``weights`` ``(N, G)``, e.g. the integrals of triggered stations: the core estimate), in units
    of 4 grid spacings.  An event with no weight: distances to the grid's corner.  ``eps`` > 0:
    ``√(d² + eps)`` (a finite gradient at a station on the centroid, for the critic's gradient penalty).

    Example:
        >>> w = torch.zeros(1, 9); w[0, 4] = 5.0             # 3 × 3 grid, all signal in the centre
        >>> [round(float(v), 4) for v in core_distance(w, (3, 3))[0, [0, 1, 4]]]
        [0.3536, 0.25, 0.0]
    """
    gx, gy = torch.meshgrid(torch.arange(int(grid[0]), dtype=weights.dtype),
                            torch.arange(int(grid[1]), dtype=weights.dtype), indexing="ij")
    pos = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (G, 2)
    w = weights / weights.sum(1, keepdim=True).clamp(min=1e-6)
    core = w @ pos  # (N, 2)
    if eps > 0:
        return torch.sqrt(((pos[None] - core[:, None]) ** 2).sum(-1) + eps) / 4.0
    return (pos[None] - core[:, None]).norm(dim=-1) / 4.0


class _Scalar(nn.Module):
    """One learned number (a module, so that its optimiser group can be told apart)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        return self.value


class StationRefiner(nn.Module):
    """Per-station gain, time-shape and noise refiner (module docstring); the identity until trained.

    Arguments:
        n_labels: L.  grid: ``(n_x, n_y)`` stations.  n_t: time bins.  scale: the adapter's
        ``asinh`` scale (VEM).  hidden: width of the station network.
        stochastic, noise_init: learned noise amplitude, starting at ``noise_init`` VEM.
        fixed_noise: a noise amplitude (VEM, < 0.5) to add instead of learning one.
        max_log_gain: ``a_max`` (default 0.7: gains within ×0.5 … ×2).

    ``forward(x: (N, D), y: (N, L), noise: (N, D) | None) -> (N, D)``, ``D = n_x n_y n_t``.
    """

    n_groups = 1  # interface of ResidualRefiner: one network for the whole event
    clip_min = None

    def __init__(self, n_labels: int, grid=(9, 9), n_t: int = 80, scale: float = 0.1, hidden: int = 64,
                 stochastic: bool = True, noise_init: float = 1e-2, max_log_gain: float = 0.7,
                 fixed_noise: float | None = None, fill_silent: bool = False,
                 trigger_vem: float | None = None, fill_random: bool = False,
                 trigger_curriculum: float | None = None, shot_noise: bool = False,
                 shape_envelope: bool = False, match_moments: float = 0.0, match_roughness: bool = False,
                 shot_pulses: bool = False) -> None:
        super().__init__()
        if shot_pulses and not shot_noise:
            raise ValueError("shot_pulses: needs shot_noise (the pulses replace its log-normal fluctuation)")
        #: the shot noise is a Poisson number of quanta with a decay kernel (docstring)
        self.shot_pulses = bool(shot_pulses)
        #: weight of the moment-matching term (moment_loss; 0 = none)
        if not (match_moments >= 0 and math.isfinite(match_moments)):
            raise ValueError(f"match_moments: expected a weight >= 0, found {match_moments!r}")
        if match_moments > 0 and not (trigger_vem is not None and trigger_vem > 0):
            raise ValueError(f"match_moments: needs the trigger threshold (> 0 VEM) for the station count, "
                             f"found {trigger_vem!r}")
        self.match_moments = float(match_moments)
        #: the moments also include the pulses' excess roughness (event_quantities)
        if match_roughness and not self.match_moments > 0:
            raise ValueError("match_roughness: needs match_moments > 0 (it adds a quantity to the moments)")
        self.match_roughness = bool(match_roughness)
        if self.match_moments > 0:  # only then: without the option the state-dict keys are those of before
            k = 3 if self.match_roughness else 2
            self.register_buffer("moment_coef", torch.zeros(k, 1 + 2 * int(n_labels)))
            self.register_buffer("moment_std", torch.ones(k))
        #: the time-shape correction is bounded by the pulse's envelope (docstring)
        self.shape_envelope = bool(shape_envelope)
        if shot_noise and not stochastic:
            raise ValueError("shot_noise: needs the stochastic refiner (it adds noise)")
        #: the shape correction is deterministic and the stochastic part is shot noise (docstring)
        self.shot_noise = bool(shot_noise)
        if fill_random and not fill_silent:
            raise ValueError("fill_random: needs fill_silent (the amplitude of silent stations)")
        if trigger_curriculum is not None and not (0 < trigger_curriculum <= 1 and trigger_vem):
            raise ValueError(f"trigger_curriculum: expected a factor in (0, 1] with a trigger_vem > 0, found "
                             f"{trigger_curriculum!r} (trigger_vem {trigger_vem!r})")
        self.fill_random = bool(fill_random)
        #: training only: the trigger rule's threshold starts at this fraction of trigger_vem and
        #: rises linearly to it over the first half of training (set_progress); None = no curriculum
        self.trigger_curriculum = None if trigger_curriculum is None else float(trigger_curriculum)
        self._rule_factor = 1.0
        if fill_silent and not (trigger_vem is not None and trigger_vem > 0):
            raise ValueError(f"trigger_vem: fill_silent needs the trigger threshold (> 0 VEM), found {trigger_vem!r}")
        if trigger_vem is not None and not trigger_vem >= 0:
            raise ValueError(f"trigger_vem: expected None or >= 0 (VEM), found {trigger_vem!r}")
        self.fill_silent = bool(fill_silent)
        self.trigger_vem = None if trigger_vem is None else float(trigger_vem)
        self.grid, self.n_t, self.scale = (int(grid[0]), int(grid[1])), int(n_t), float(scale)
        self.n_features = self.grid[0] * self.grid[1] * self.n_t
        self.group_size = self.n_features
        self.n_labels, self.stochastic, self.max_log_gain = int(n_labels), bool(stochastic), float(max_log_gain)
        self.fixed_noise = None if fixed_noise is None else float(fixed_noise)
        self.register_buffer("y_mean", torch.zeros(n_labels))
        self.register_buffer("y_std", torch.ones(n_labels))
        # footprint maps: log(1 + I), trigger flag (+ distance to the core estimate when filling)
        self.ctx = nn.Sequential(nn.Conv2d(3 if self.fill_silent else 2, _CTX, 3, padding=1), nn.SiLU(), nn.Conv2d(_CTX, _CTX, 3, padding=1),
                                 nn.SiLU())
        self.enc = nn.Sequential(nn.Linear(self.n_t + 1 + n_labels + _CTX, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU())
        self.gain = nn.Linear(hidden, 1)
        self.film = nn.Linear(hidden, _FILM)
        # normalised trace, conditioning, noise (not with shot noise: the shape correction is then the mean one)
        n_in = 1 + _FILM + (1 if self.stochastic and not self.shot_noise else 0)
        self.shape = nn.Sequential(nn.Conv1d(n_in, 16, 5, padding=2), nn.SiLU(), nn.Conv1d(16, 1, 5, padding=2))
        # a dense head over the time bins too: shortening a pulse (rise time) is not shift invariant
        self.shape_dense = nn.Linear(hidden, self.n_t)
        for layer in (self.gain, self.shape[-1], self.shape_dense):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.shot_noise:
            # per-station quantum q = _SHOT_QMAX sigmoid(head) (VEM) and a causal kernel shared by all
            # stations (softmax weights, scaled to unit L2 norm so that it keeps the variance)
            self.shot = nn.Linear(hidden, 1)
            nn.init.zeros_(self.shot.weight)
            nn.init.constant_(self.shot.bias, _SHOT_INIT)
            self.shot_kernel = nn.Parameter(torch.zeros(_SHOT_TAPS))
        if self.shot_pulses:
            # quanta of ≈ 1 VEM from the start, a fraction of the signal that starts near 0, and a
            # kernel that starts as the tank's exponential decay (softmax of −j/τ: unit area)
            with torch.no_grad():
                self.shot.bias.fill_(math.log(_PULSE_Q_INIT / (_SHOT_QMAX - _PULSE_Q_INIT)))
                self.shot_kernel.copy_(-torch.arange(_SHOT_TAPS, dtype=torch.float32) / _PULSE_DECAY_BINS)
            self.shot_frac = nn.Linear(hidden, 1)
            nn.init.zeros_(self.shot_frac.weight)
            nn.init.constant_(self.shot_frac.bias, _PULSE_FRAC_INIT)
        if self.fill_silent:
            self.fill_amp = nn.Linear(hidden, 1)
            nn.init.zeros_(self.fill_amp.weight)
            nn.init.constant_(self.fill_amp.bias, _FILL_INIT / _FILL_GAIN)
            self.fill_dense = nn.Linear(hidden, self.n_t)
            self.fill_conv = nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.SiLU(), nn.Conv1d(8, 1, 5, padding=2))
            for layer in (self.fill_dense, self.fill_conv[-1]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            t = torch.arange(self.n_t, dtype=torch.float32) + 0.5
            base = 0.5 * torch.log(t) - t / 9.0  # log Gamma(1.5, 9 bins) density, up to a constant
            self.register_buffer("fill_base", base - torch.logsumexp(base, 0))
            if self.fill_random:
                # the amplitude also depends on a random number per station (z = a + b ξ): whether a
                # station far from the core fires is random (a few muons), which a deterministic
                # amplitude can imitate only through the additive noise near the threshold
                self.fill_spread = nn.Linear(hidden, 1)
                nn.init.zeros_(self.fill_spread.weight)
                nn.init.zeros_(self.fill_spread.bias)
        if self.stochastic:
            # σ = σ_max sigmoid(z): bounded, and unlike a clamp it keeps a gradient at the bound
            # (a clamped σ that overshoots once stays stuck there).  One σ for all stations and
            # events: electronic noise does not depend on the shower (a per-station σ was used
            # to imitate muon spikiness on big stations and overshot the baseline noise)
            # fixed_noise: σ measured (e.g. from the baseline of sim and data), not learned
            p = min(float(noise_init if fixed_noise is None else fixed_noise) / _SIGMA_MAX, 0.999)
            self.log_sigma = _Scalar(math.log(max(p, 1e-6) / (1 - p)))
            if fixed_noise is not None:
                self.log_sigma.value.requires_grad_(False)

    def fast_parameters(self) -> list:
        """Parameters trained at the faster noise learning rate: the amplitude of silent stations
        (which must travel from ≈ 0 to the threshold within a few hundred steps) and the head of
        the shot-noise quantum."""
        fast = list(self.shot.parameters()) if self.shot_noise else []
        if self.shot_pulses:
            fast += list(self.shot_frac.parameters())
        if not self.fill_silent:
            return fast
        return fast + list(self.fill_amp.parameters()) + (list(self.fill_spread.parameters()) if self.fill_random else [])

    def set_progress(self, fraction: float) -> None:
        """Training schedule (called by ``train_refiner`` with the fraction of training done): with
        ``trigger_curriculum`` f₀ the trigger rule in training uses ``T · (f₀ + (1 − f₀) min(1, 2 fraction))``;
        evaluation (``model.eval()``) always uses ``T``."""
        if self.trigger_curriculum is not None:
            f0 = self.trigger_curriculum
            self._rule_factor = f0 + (1.0 - f0) * min(1.0, 2.0 * max(float(fraction), 0.0))

    def set_normalisation(self, x: np.ndarray, y: np.ndarray) -> None:
        """Standardise the labels with ``y``'s mean and spread (the traces need no standardising)."""
        with torch.no_grad():
            if self.n_labels:
                self.y_mean.copy_(torch.as_tensor(y.mean(axis=0), dtype=torch.float32))
                self.y_std.copy_(torch.as_tensor(np.maximum(y.std(axis=0), 1e-3), dtype=torch.float32))

    def event_quantities(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2)``: log(1 + Σ S) and the soft station count Σ min(I/T, 1) (``T`` = ``trigger_vem``;
        the exact count when every station is silent or ≥ T, as under the trigger rule) of flat
        ``asinh`` features ``x`` ``(N, D)``.  Differentiable: through the straight-through trigger
        rule the count's gradient reaches the amplitude of silent stations.  With ``match_roughness``
        ``(N, 3)``: then :func:`excess_roughness`."""
        q = [log_total(x, self.scale), soft_count(x, self.n_t, self.scale, self.trigger_vem)]
        if self.match_roughness:
            q.append(excess_roughness(x, self.n_t, self.scale))
        return torch.stack(q, 1)

    def _moment_basis(self, y: torch.Tensor) -> torch.Tensor:
        """``(N, 1 + 2L)``: :func:`hepgen.refine.moments.moment_basis` with the refiner's label standardisation."""
        return moment_basis(y, self.y_mean, self.y_std)

    def fit_moments(self, x: np.ndarray, y: np.ndarray, batch_size: int = 2048) -> None:
        """With ``match_moments``: least-squares fits of the event quantities of *data* ``x``
        ``(N, D)``, ``y`` ``(N, L)`` on the basis ``[1, ŷ, ŷ² − 1]`` (``ŷ`` the standardised labels;
        call after :meth:`set_normalisation`), stored with the residuals' standard deviations."""
        if self.match_moments <= 0:
            return
        with torch.no_grad():
            xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
            q = torch.cat([self.event_quantities(xt[s:s + batch_size]) for s in range(0, len(xt), batch_size)])
            a = self._moment_basis(yt).to(torch.float64)
            coef = torch.linalg.lstsq(a, q.to(torch.float64)).solution  # (K, 2)
            self.moment_coef.copy_(coef.T.to(torch.float32))
            self.moment_std.copy_((q.to(torch.float64) - a @ coef).std(0, unbiased=False).clamp(min=1e-3).to(torch.float32))

    def moment_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The moment-matching term: with ``r_q = (q(out) − c_q·φ(y)) / σ_q`` the standardised
        residuals of refined events from data's fits (:meth:`fit_moments`; ``q`` = log total
        signal, station count, and with ``match_roughness`` the excess roughness; ``φ`` =
        ``[1, ŷ, ŷ² − 1]``), ``Σ_q Σ_k (mean_batch r_q φ_k)²``.  It is zero when the least-squares
        fit of ``q`` on ``φ`` is the same for refined events as for
        data (the fit's normal equations), so it asks for data's total signal and number of
        stations *as functions of the labels*, not event by event.  Adversarial training alone
        left refined events a station short at some zeniths (docs/refine.md, fifth round)."""
        phi = self._moment_basis(y)
        r = (self.event_quantities(out) - phi @ self.moment_coef.T) / self.moment_std  # (N, 2 or 3)
        return normal_equation_loss(r, phi)

    def normalise(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic inputs: the ``asinh`` features unchanged, standardised labels."""
        return x, (y - self.y_mean) / self.y_std

    def closeness(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Mean over triggered stations of ``|log(1 + I') − log(1 + I)| + mean_t |C'(t) − C(t)|``:
        change of the integral and of the normalised cumulative trace, insensitive to the added
        zero-mean noise (which the refiner is meant to add)."""
        s0, live, i0, p0 = station_quantities(x, self.grid, self.n_t, self.scale)
        s1, _, i1, p1 = station_quantities(out, self.grid, self.n_t, self.scale)
        d_int = (torch.log1p(i1.clamp(min=0)) - torch.log1p(i0.clamp(min=0))).abs()
        d_cum = (s1.cumsum(-1) / p1[..., None] - s0.cumsum(-1) / p0[..., None]).abs().mean(-1)
        w = live.float()
        close = ((d_int + d_cum) * w).sum() / w.sum().clamp(min=1.0)
        if self.fill_silent:
            # signal added to silent stations, mildly penalised (weight SILENT_CLOSENESS)
            dead = 1.0 - w
            close = close + SILENT_CLOSENESS * (torch.log1p(i1.clamp(min=0)) * dead).sum() / dead.sum().clamp(min=1.0)
        return close

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        s, live, integral, ipos = station_quantities(x, self.grid, self.n_t, self.scale)
        li = torch.log1p(integral.clamp(min=0))
        maps = [li / 3.0, live.float()]
        if self.fill_silent:
            maps.append(self._core_distance(integral.clamp(min=0) * live))
        gmap = torch.stack(maps, dim=1).view(n, len(maps), *self.grid)
        ctx = self.ctx(gmap).view(n, _CTX, -1).transpose(1, 2)  # (n, G, _CTX)
        yn = (y - self.y_mean) / self.y_std
        ev, st = live.nonzero(as_tuple=True)  # triggered stations get gain, shape and noise
        out = s.clone()
        eps_all = noise.reshape(n, -1, self.n_t) if (noise is not None and self.stochastic) else None
        sigma = _SIGMA_MAX * torch.sigmoid(self.log_sigma()) if self.stochastic else None  # VEM per bin
        if len(ev):
            u = s[ev, st] / ipos[ev, st, None]  # (M, n_t)
            h = self.enc(torch.cat([u, li[ev, st, None] / 3.0, yn[ev], ctx[ev, st]], dim=1))
            gain = torch.exp(self.max_log_gain * torch.tanh(self.gain(h)))  # (M, 1)
            z = [u[:, None, :], self.film(h)[:, :, None].expand(-1, _FILM, self.n_t)]
            eps = None
            if self.stochastic:
                eps = eps_all[ev, st] if eps_all is not None else torch.zeros_like(u)
                if not self.shot_noise:
                    z.append(eps[:, None, :])
            du = self.shape(torch.cat(z, dim=1))[:, 0, :] + self.shape_dense(h)
            if self.shape_envelope:
                du = self.envelope(u) * torch.tanh(du)
            mean = s[ev, st] + ipos[ev, st, None] * du
            if self.shot_noise and eps_all is not None:
                fluctuation = self.shot_pulse_fluctuation if self.shot_pulses else self.shot_fluctuation
                mean = mean + fluctuation(mean, h, torch.roll(eps, self.n_t // 4, dims=-1))
            new = gain * mean
            if eps_all is not None:
                new = new + sigma * eps
            out = out.index_put((ev, st), new)
        if self.fill_silent:
            ed, sd = (near_live(live, self.grid) & ~live).nonzero(as_tuple=True)
            if len(ed):
                out = out.index_put((ed, sd), self._silent_pulse(ctx[ed, sd], yn[ed], eps_all, ed, sd, sigma))
        if self.trigger_vem is not None:
            # the detector's trigger rule on every refined station; straight-through in training:
            # forward = the hard rule (exact zeros below threshold), backward = the identity
            thr = self.trigger_vem * (self._rule_factor if self.training else 1.0)
            hard = (out.sum(-1, keepdim=True) >= thr).to(out.dtype)
            out = out + (out * hard - out).detach()
        res = torch.asinh(out / self.scale).reshape(n, -1)
        if self.fill_silent or self.trigger_vem is not None:
            return res
        # untriggered stations: exactly their input (zeros), not a round trip through sinh
        return torch.where(live[..., None].expand(-1, -1, self.n_t).reshape(n, -1), res, x)

    @staticmethod
    def envelope(u: torch.Tensor) -> torch.Tensor:
        """``(M, n_t)``: the pulse's envelope, the mean of ``|u|`` over ``±_ENVELOPE`` bins (``u`` the
        normalised trace).  With ``shape_envelope`` the shape correction is ``envelope · tanh(Δu)``:
        it can move, at most double or remove signal near where the pulse is, and add nothing
        where there is none (the free correction, scaled by the station integral, put
        signal-proportional structure into the noise-only tails of big stations: docs/refine.md)."""
        return _moving_mean(u.abs())

    def shot_quantum(self, h: torch.Tensor) -> torch.Tensor:
        """``(M, 1)`` VEM: the quantum ``q`` of the shot noise of each station (``h`` its embedding)."""
        return _SHOT_QMAX * torch.sigmoid(self.shot(h))

    def shot_kernel_weights(self) -> torch.Tensor:
        """``(_SHOT_TAPS,)``: the causal kernel of the shot noise, ``k_0`` at lag 0, ``Σ k² = 1``."""
        k = torch.softmax(self.shot_kernel, 0)
        return k / k.norm()

    def shot_fluctuation(self, mean: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``(M, n_t)`` VEM: zero-mean shot noise ``Σ_j k_j δ(t − j)`` of the corrected mean trace
        ``m = max(mean, 0)`` (VEM per bin).  A signal made of quanta of size ``q`` (a muon ≈ 1 VEM,
        an EM particle ≪ 1) fluctuates with variance ``q m`` per bin, and upwards more than
        downwards when ``q`` is not small against ``m`` (a few muons make spikes, never a dip below
        the baseline).  So ``m + δ`` is log-normal: ``δ = m (exp(a ε − a²/2) − 1)``,
        ``a² = ln(1 + q/m)``, which has mean 0 and variance exactly ``m² (e^{a²} − 1) = q m``, and
        ``m + δ > 0``.  ``k`` spreads each fluctuation over the following bins as the tank's light
        decay does; with ``Σ k² = 1`` the variance of bin ``t`` is ``q Σ_j k_j² m(t − j)``, which is
        ``q m`` on a slowly varying trace.  Where there is no signal (``m < 1e-4`` VEM: the trace's
        tail) nothing is added."""
        m = mean.clamp(min=1e-4)
        a2 = torch.log1p(self.shot_quantum(h) / m)
        delta = m * torch.expm1(torch.sqrt(a2) * eps - 0.5 * a2)
        delta = torch.where(mean > 1e-4, delta, torch.zeros_like(delta))
        return _causal(delta, self.shot_kernel_weights())

    def shot_fraction(self, h: torch.Tensor) -> torch.Tensor:
        """``(M, 1)``: with ``shot_pulses``, the fraction ``f`` of each station's signal that arrives in quanta."""
        return torch.sigmoid(self.shot_frac(h))

    def shot_pulse_fluctuation(self, mean: torch.Tensor, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``(M, n_t)`` VEM: zero-mean fluctuation of discrete pulses (``shot_pulses``; module docstring).

        ``λ = f max(m̄ − 0.05, 0) / q`` quanta per bin, ``m̄`` the mean trace ``mean`` (VEM per bin)
        averaged over ±3 bins; ``n = F⁻¹_λ(Φ(ε))`` (:func:`poisson_quantile`) for ``λ ≤ 10``, else
        ``λ + √λ ε``; the result ``q Σ_j k_j (n − λ)(t − j)`` with ``Σ k = 1``.  Per bin it has mean
        0 and variance ``q² Σ_j k_j² λ(t − j)``, i.e. ``q f m Σ k²`` on a slowly varying trace.
        The gradient is that of ``q (√λ ε)`` (straight-through)."""
        q, f = self.shot_quantum(h), self.shot_fraction(h)
        lam = f * (_moving_mean(mean) - _PULSE_FLOOR_VEM).clamp(min=0.0) / q
        gauss = lam.clamp(min=1e-6).sqrt() * eps  # n − λ in the Gaussian limit: carries the gradient
        with torch.no_grad():
            exact = poisson_quantile(lam.clamp(max=_PULSE_EXACT_MAX), torch.special.ndtr(eps)) - lam
            draw = torch.where(lam <= _PULSE_EXACT_MAX, exact, gauss)
        return _causal(q * (gauss + (draw - gauss).detach()), torch.softmax(self.shot_kernel, 0))

    def _core_distance(self, weights: torch.Tensor) -> torch.Tensor:
        return core_distance(weights, self.grid)

    def _silent_pulse(self, ctx, yn, eps_all, ed, sd, sigma) -> torch.Tensor:
        """``(M, n_t)`` VEM: the pulse proposed for silent stations (module docstring)."""
        m = len(ed)
        zero = torch.zeros(m, self.n_t, dtype=ctx.dtype)
        h = self.enc(torch.cat([zero, torch.zeros(m, 1, dtype=ctx.dtype), yn, ctx], dim=1))
        eps = eps_all[ed, sd] if eps_all is not None else zero
        pre = self.fill_amp(h)
        if self.fill_random:
            # ξ ~ N(0, 1) per station: one bin of its noise sequence (0 without noise: the median amplitude)
            pre = pre + self.fill_spread(h) * eps[:, self.n_t // 2, None]
        amp = self.trigger_vem * nn.functional.softplus(_FILL_GAIN * pre)  # (M, 1) VEM
        # a second noise sequence for the pulse shape: the same bins rolled by half the trace (independent)
        eps2 = torch.roll(eps, self.n_t // 2, dims=-1)
        base = self.fill_base[None].expand(m, -1)
        logits = base + self.fill_dense(h) + self.fill_conv(torch.stack([base, eps2], 1))[:, 0, :]
        pulse = amp * torch.softmax(logits, dim=-1)
        if eps_all is not None:
            pulse = pulse + sigma * eps
        return pulse


def _moving_mean(x: torch.Tensor) -> torch.Tensor:
    """``(M, n_t)``: the mean of ``x`` ``(M, n_t)`` over ``±_ENVELOPE`` bins (fewer at the trace's ends)."""
    return nn.functional.avg_pool1d(x[:, None, :], 2 * _ENVELOPE + 1, stride=1, padding=_ENVELOPE,
                                    count_include_pad=False)[:, 0, :]


def _causal(delta: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``(M, n_t)``: ``Σ_j k_j δ(t − j)`` of ``delta`` ``(M, n_t)`` with the causal kernel ``k`` (``k_0`` at lag 0)."""
    padded = nn.functional.pad(delta[:, None, :], (len(k) - 1, 0))
    return nn.functional.conv1d(padded, k.flip(0).view(1, 1, -1))[:, 0, :]


def poisson_quantile(lam: torch.Tensor, u: torch.Tensor, terms: int = _PULSE_TERMS) -> torch.Tensor:
    """The Poisson quantile ``min{n : P(N ≤ n | λ) ≥ u}`` of each element (float, same shape as ``lam``).

    ``lam`` (≥ 0, at most ≈ 10 so that the ``terms`` = 40 first probabilities hold all but
    < 1e-9 of the mass) and ``u`` in (0, 1) broadcast together.  Sums the probabilities
    ``e^{−λ} λ^n / n!`` (as a cumulative product, in float64); ``torch.distributions.Poisson`` has
    no inverse CDF, and ``scipy.stats.poisson.ppf`` took 3× as long on a training batch (measured:
    157 ms against 46 ms for 512 × 80 bins).  No gradient.

    Example:
        >>> poisson_quantile(torch.tensor([0.0, 1.0, 1.0, 1.0]), torch.tensor([0.9, 0.3, 0.5, 0.95]))
        tensor([0., 0., 1., 3.])

    (Hand: P(0 | 1) = e⁻¹ = 0.368, P(≤ 1) = 0.736, P(≤ 2) = 0.920, P(≤ 3) = 0.981.)
    """
    lam64, u64 = torch.broadcast_tensors(lam.detach().to(torch.float64), u.detach().to(torch.float64))
    n = torch.arange(1, terms, dtype=torch.float64)
    ratio = lam64[..., None] / n  # p(n) / p(n − 1)
    p = torch.exp(-lam64)[..., None] * torch.cat([torch.ones_like(lam64)[..., None], torch.cumprod(ratio, -1)], -1)
    return (p.cumsum(-1) < u64[..., None]).sum(-1).to(lam.dtype)


class StationCritic(nn.Module):
    """Wasserstein critic over the station grid (module docstring).

    ``forward(z: (N, D + L)) -> (N,)``, ``z`` = flat ``asinh`` features then standardised labels.
    """

    def __init__(self, n_labels: int, grid=(9, 9), n_t: int = 80, scale: float = 0.1, hidden: int = 64,
                 min_signal: float = 0.0, all_stations: bool = False, dropout: float = 0.0,
                 core_distance: bool = False, total_signal: bool = False, total_response: bool = False,
                 count_vem: float | None = None, roughness: bool = False, dense: bool = False) -> None:
        super().__init__()
        # dense: the score also adds an MLP on the whole event, every station and time bin at once
        # (each feature standardised with the pooled training samples' mean and spread, as the
        # classifier two-sample test's StandardScaler does, then the labels): the grid critic sees
        # the stations through one shared network, pooled, and the classifier that judges the
        # refiner (an MLP on the standardised bins) found what it did not (docs/refine.md, twelfth round on the toy)
        self.dense = bool(dense)
        # roughness: each station's network also sees its total variation Σ_t |S(t+1) − S(t)| / I⁺,
        # which grows at *first order* with zero-mean fluctuations (spiky muon pulses); through the
        # asinh trace alone a piecewise-linear critic rewards added noise only at second order, and
        # the shot quantum was not learned (docs/refine.md, fourth round)
        self.roughness = bool(roughness)
        # count_vem: the head also sees the event's number of stations, Σ_stations min(I / count_vem, 1)
        # (the exact count when every station is silent or ≥ count_vem, as under the trigger rule
        # with count_vem = trigger_vem; differentiable, so that the straight-through trigger rule
        # passes "more stations here" to the refiner), as a standardised residual from a linear
        # fit on the labels like total_response (data have more stations than sim at high zenith)
        if count_vem is not None and not count_vem > 0:
            raise ValueError(f"count_vem: expected a threshold > 0 VEM (the trigger's), found {count_vem!r}")
        self.count_vem = None if count_vem is None else float(count_vem)
        if self.count_vem is not None:
            self.register_buffer("count_coef", torch.zeros(n_labels + 1))
            self.register_buffer("count_std", torch.ones(()))
        # total_response: the head also sees the event's log(1 + Σ I) as a standardised residual
        # from its linear dependence on the labels (fit_total_response): a scale mismatch of
        # 0.1 dex at one zenith is ~1 σ of this input, but ~0.08 of log(1 + Σ I)/3 over the
        # spectrum, which a critic held to a unit gradient norm hardly rewards (as with
        # hepgen.refine.critic_sums for showers)
        self.total_response = bool(total_response)
        if self.total_response:  # only then: without the option the state-dict keys are those of before
            self.register_buffer("response_coef", torch.zeros(n_labels + 1))
            self.register_buffer("response_std", torch.ones(()))
        # total_signal: the head also sees the event's log(1 + Σ I) (all stations, VEM) beside the
        # labels: the size of the footprint at a given energy and zenith, which the gains set
        self.total_signal = bool(total_signal)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), found {dropout!r}")
        # dropout after each layer of the station network and of the head (a regulariser against
        # memorising the finite training samples; 0 = the modules of before, same state-dict keys)
        self.dropout = float(dropout)
        # core_distance: each station's network also sees its distance to the signal-weighted core
        # estimate, beside its log(1 + I) and the labels (sec θ): the lateral distribution at a
        # given zenith, which the gains must follow
        self.core_distance = bool(core_distance)
        # all_stations: the station network also runs on silent stations near triggered ones
        # (those a filling refiner may turn on), so that the critic has a gradient with respect
        # to their traces; the output is the same as without it
        self.all_stations = bool(all_stations)
        self.grid, self.n_t, self.scale = (int(grid[0]), int(grid[1])), int(n_t), float(scale)
        if not min_signal >= 0:
            raise ValueError(f"min_signal: expected >= 0 (VEM), found {min_signal!r}")
        self.min_signal = float(min_signal)
        self.d = self.grid[0] * self.grid[1] * self.n_t
        self.phi = critic_mlp([2 * self.n_t + 1 + int(self.core_distance) + int(self.roughness) + n_labels,
                               hidden, hidden], self.dropout, activate_last=True)
        k = min(hidden, _CRITIC_CONV)
        self.conv = nn.Sequential(nn.Conv2d(hidden, k, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE),
                                  nn.Conv2d(k, k, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE))
        self.head = critic_mlp([2 * k + n_labels + int(self.total_signal) + int(self.total_response)
                                + int(self.count_vem is not None), hidden, 1], self.dropout)
        if self.dense:  # only then: without the option the state-dict keys are those of before
            self.register_buffer("dense_mean", torch.zeros(self.d))
            self.register_buffer("dense_std", torch.ones(self.d))
            self.dense_net = critic_mlp([self.d + n_labels, hidden, hidden, 1], self.dropout)

    @classmethod
    def from_architecture(cls, architecture: dict, n_labels: int, hidden: int) -> StationCritic:
        """The critic of a station refiner run: its options read from the adapter's ``architecture``
        dict (the refiner checkpoint's ``hparams["refiner_architecture"]``)."""
        return cls(n_labels, architecture["grid"], architecture["n_t"], architecture["scale"], hidden,
                   float(architecture.get("critic_min_vem", 0.0)),
                   all_stations=bool(architecture.get("fill_silent", False)),
                   dropout=float(architecture.get("critic_dropout", 0.0)),
                   core_distance=bool(architecture.get("critic_core_distance", False)),
                   total_signal=bool(architecture.get("critic_total", False)),
                   total_response=bool(architecture.get("critic_response", False)),
                   count_vem=architecture.get("trigger_vem") if architecture.get("critic_count") else None,
                   roughness=bool(architecture.get("critic_roughness", False)),
                   dense=bool(architecture.get("critic_dense", False)))

    def fit_residuals(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> None:
        """Least-squares fits of the event quantities the head sees as residuals: with
        ``total_response`` ``log(1 + Σ S) ≈ c₀ + Σ_l c_l y_l``, with ``count_vem`` the soft station
        count likewise, on the pooled training events (``x`` ``(N, D)`` flat ``asinh`` features,
        ``y`` ``(N, L)`` the critic's standardised labels); stored as buffers with the residuals'
        standard deviation.  The head then sees ``(q − c·[1, y]) / σ``.  With ``dense`` also each
        feature's mean and spread over ``x`` (spread at least 10⁻³), which standardise the dense
        branch's input.  Without the options: nothing."""
        fits = ([("response", lambda b: log_total(b, self.scale))] if self.total_response else []) + \
            ([("count", lambda b: soft_count(b, self.n_t, self.scale, self.count_vem))] if self.count_vem is not None else [])
        with torch.no_grad():
            if self.dense:
                xd = x.to(torch.float64)
                self.dense_mean.copy_(xd.mean(0).to(torch.float32))
                self.dense_std.copy_(xd.std(0, unbiased=False).clamp(min=1e-3).to(torch.float32))
            a = torch.cat([torch.ones(len(x), 1, dtype=torch.float64), y.to(torch.float64)], 1)
            for name, fn in fits:
                q = torch.cat([fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]).to(torch.float64)
                coef = torch.linalg.lstsq(a, q[:, None]).solution[:, 0]
                resid = q - a @ coef
                getattr(self, f"{name}_coef").copy_(coef.to(torch.float32))
                getattr(self, f"{name}_std").copy_(resid.std(unbiased=False).clamp(min=1e-3).to(torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        x, y = z[:, :self.d].reshape(n, -1, self.n_t), z[:, self.d:]
        live = (x != 0).any(dim=-1)
        if self.all_stations:
            live = near_live(live, self.grid)
        ev, st = live.nonzero(as_tuple=True)
        # the station network runs on triggered stations only (~10 % of them); an untriggered
        # station (all-zero input) gets φ(0, y)
        xl = x[ev, st]
        s = self.scale * torch.sinh(xl)
        integral = s.sum(-1, keepdim=True)
        feats = [xl / 3.0, torch.log1p(integral.clamp(min=0)) / 3.0, s.cumsum(-1) / integral.clamp(min=1.0)]
        if self.core_distance:
            # signal-weighted centroid of the triggered stations (the refiner's core estimate)
            tot = (self.scale * torch.sinh(x)).sum(-1).clamp(min=0) * (x != 0).any(dim=-1)
            feats.append(core_distance(tot, self.grid, eps=1e-6)[ev, st, None])
        if self.roughness:
            feats.append(s.diff(dim=-1).abs().sum(-1, keepdim=True) / integral.clamp(min=1.0))
        # the labels enter every station's network (and the head): the critic compares signals
        # at a given energy and zenith, not only their overall distributions
        feats = torch.cat(feats + [y[ev]], dim=-1)
        h0 = self.phi(torch.cat([torch.zeros(n, feats.shape[1] - y.shape[1], dtype=z.dtype), y], dim=1))  # (n, H)
        hl = self.phi(feats)
        if self.min_signal > 0:
            # stations well below min_signal look untriggered to the critic (smooth gate in ln I, width 0.2)
            gate = torch.sigmoid((torch.log(integral.clamp(min=1e-3)) - math.log(self.min_signal)) / 0.2)
            hl = h0[ev] + gate * (hl - h0[ev])
        g = live.shape[1]
        h = h0[:, None, :].expand(n, g, -1).reshape(n * g, -1).index_put((ev * g + st,), hl)
        h = h.view(n, g, h0.shape[1]).transpose(1, 2).reshape(n, -1, *self.grid)
        h = self.conv(h).flatten(2)
        pooled = [h.mean(-1), h.amax(-1), y]
        if self.total_signal:
            # the event's total from the station integrals above (every other station reads zeros)
            total = torch.zeros(n, dtype=z.dtype).index_add(0, ev, integral[:, 0])
            pooled.append(torch.log1p(total.clamp(min=0))[:, None] / 3.0)
        if self.total_response:
            lt = log_total(z[:, :self.d], self.scale)
            fit = self.response_coef[0] + y @ self.response_coef[1:]
            pooled.append(((lt - fit) / self.response_std)[:, None])
        if self.count_vem is not None:
            fit = self.count_coef[0] + y @ self.count_coef[1:]
            pooled.append(((soft_count(z[:, :self.d], self.n_t, self.scale, self.count_vem) - fit) / self.count_std)[:, None])
        score = self.head(torch.cat(pooled, dim=1)).squeeze(1)
        if self.dense:
            score = score + self.dense_net(torch.cat([(z[:, :self.d] - self.dense_mean) / self.dense_std, y], 1)).squeeze(1)
        return score
