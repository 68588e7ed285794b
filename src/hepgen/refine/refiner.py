"""Adversarial refiner: a residual network that moves simulated events towards data.

The refiner ``R`` maps a simulated event ``x`` (``(D,)`` features from an adapter of
:mod:`hepgen.refine.adapters`) with its labels ``y`` (``(L,)``) to

    x' = x + s ⊙ [Δ(x̂, ŷ) + σ(x̂, ŷ) ⊙ ε],   ε ~ N(0, 1)^D,

where ``x̂, ŷ`` are standardised with the means and spreads ``s`` of the training samples
(sim and data pooled, stored in the refiner), ``Δ`` is a
residual MLP whose last layer starts at zero (so the refiner *starts as the identity*), and
``σ`` an optional learned noise amplitude (``stochastic=True``; it starts at ``noise_init``
and lets the refiner add the extra noise of data, which a deterministic map cannot).
Refinement keeps the event's labels: they are inputs, never outputs.

Training (unpaired samples sim and data) follows the Wasserstein GAN with gradient penalty
(Gulrajani et al., arXiv:1704.00028): a critic ``C(x, y)`` (MLP, labels concatenated when
``condition_critic``) is trained ``n_critic`` times per refiner step on

    L_C = E[C(x')] − E[C(x_data)] + λ_gp E[(‖∇C(x̃)‖ − 1)²],

and the refiner on ``L_R = −E[C(x')] + λ_close · E|x' − x|/s`` (the *closeness* term,
mean absolute change in units of the simulation's spread per feature).  The closeness term
keeps each refined event near its input so that its event-level labels stay valid; its
weight ``closeness`` (default 0.1) is a hyper-parameter whose effect the benchmarks
measure (docs/refine.md).

References:
    M. Erdmann, L. Geiger, J. Glombitza, D. Schmidt, "Generating and refining particle
    detector simulations using the Wasserstein distance in adversarial networks",
    arXiv:1802.03325 (refiner + Wasserstein critic on Auger surface-detector traces);
    A. Shrivastava et al., "Learning from Simulated and Unsupervised Images through
    Adversarial Training", arXiv:1612.07828 (refiner with a self-regularisation term);
    CMS FastSim refinement, arXiv:2309.12919, arXiv:2410.15992.

Example:
    >>> import torch
    >>> r = ResidualRefiner(n_features=4, n_labels=1, hidden=8)
    >>> x, y = torch.randn(3, 4), torch.randn(3, 1)
    >>> bool(torch.equal(r(x, y), x))        # identity at the start
    True
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.refine.adapters import get_adapter, read_kind, read_pair
from hepgen.refine.critic_layers import LayerCritic, layer_groups
from hepgen.refine.critic_mlp import critic_mlp
from hepgen.refine.critic_sums import SumsCritic, sum_groups
from hepgen.refine.moments import ResponseMoments
from hepgen.refine.options import set_adapter_options
from hepgen.refine.response import LayerResponse, response_groups, scale_log1p
from hepgen.refine.stations import StationCritic, StationRefiner

__all__ = [
    "FAMILY",
    "Critic",
    "GroupCritic",
    "RefinerConfig",
    "ResidualRefiner",
    "apply_file",
    "check_against_state",
    "load_refiner",
    "refine_arrays",
    "refine_data",
    "save_refiner",
    "train_files",
    "train_refiner",
]

log = logging.getLogger(__name__)
FAMILY = "refiner"
_GROUP_EMBEDDING = 8  # size of the learned embedding that tells the shared network which group it sees


@dataclass
class RefinerConfig:
    """Hyper-parameters of :func:`train_refiner` (defaults are those of the benchmarks).

    Arguments:
        hidden: width of the refiner's residual MLP.  n_blocks: residual blocks.
        critic_hidden: width of the critic (two hidden layers).
        epochs: passes over the simulation (one refiner step per batch).
        batch_size: events per batch (sim and data).
        n_critic: critic steps per refiner step.
        lr, critic_lr: Adam learning rates (β = (0.5, 0.9), as in arXiv:1704.00028).
        gp_weight: λ_gp of the gradient penalty.
        closeness: λ_close of the closeness term (0 = pure adversarial).
        closeness_mean: the closeness term compares each event with the refiner's output
            *without noise* (the mean correction), so that the noise the refiner adds is not
            penalised.  A term on the noisy output penalises a learned noise amplitude (e.g. the
            shot noise of :mod:`hepgen.refine.stations`) at first order — |Δ log I| of a random
            change grows like its standard deviation — and drove it to zero (docs/refine.md,
            fifth round).  Costs one more refiner forward per step.
        stochastic: learn a noise amplitude σ(x, y).  noise_init: its starting value (in
            units of the features' spread).  noise_lr_factor: learning-rate multiplier of the
            σ head (σ = exp(·) must travel several e-folds, e.g. from 0.01 to 1, which at the
            base rate would take tens of thousands of steps).
        condition_critic: give the critic the labels too (needs labels on data).
        ema: decay of the exponential moving average of the refiner's weights that is
            returned and applied (0 = the last weights); it smooths the adversarial
            oscillation (standard GAN practice, e.g. arXiv:1806.04498).
        critic_warmup: critic steps against the untrained (identity) refiner before the
            first refiner step, so that the refiner's first gradients mean something.
        seed: seeds weights, batches and noise (torch.Generator; resumable).
        architecture: ``"auto"`` = the network the adapter of the data asks for (traces: the
            per-station refiner and grid critic of :mod:`hepgen.refine.stations`; showers:
            the residual MLP), ``"mlp"`` = the residual MLP (:class:`ResidualRefiner`) always.
        critic_sums: the critic also sees the log energy sums of the adapter's ``sum_groups``
            (showers: each layer and the total; :mod:`hepgen.refine.critic_sums`), MLP critic only.
        critic_sums_head: the critic's score also adds a small network (width ``critic_hidden // 2``)
            on those log sums and the labels alone (``SumsCritic(head=Critic(…))``).  Needs
            ``critic_sums``.  Why: a classifier on the layer responses alone separated refined
            from Geant4 showers as well as one on every voxel; measured, it did not move the
            whole-shower hold-out AUC (docs/refine.md, thirteenth round).
        critic_counts: ``E_c`` > 0 (the features' energy unit, MeV for showers; 0 = off): the sums
            critic also sees, per layer, a soft count of the voxels above ``E_c``
            (:func:`hepgen.refine.critic_sums.soft_counts`, standardised).  Needs ``critic_sums``.
            Why: on Geant4 a classifier on the per-layer counts of voxels above 0.1 MeV separated
            refined showers more than one on every voxel; measured with ``E_c`` = 0.1 MeV it brought
            the summaries' hold-out AUC 0.698–0.729 → 0.650–0.660 and left the low-level one
            (0.643–0.651; two refiner seeds; docs/refine.md, fourteenth round).
        critic_layers: the critic's score also sums one small network per layer of the adapter's
            ``sum_groups`` (width ``critic_hidden // 2``, each on its layer's features and the
            labels; :class:`hepgen.refine.critic_layers.LayerCritic`), MLP critic only.  Why: a
            classifier on one Geant4 layer found more than one on the whole shower (docs/refine.md).
        response: ``"off"``, or the residual refiner becomes a shape correction that keeps the
            energy of each group and is followed by a per-event response factor per group,
            ``E' = E · exp(a(labels, own response))`` (:mod:`hepgen.refine.response`), identity at
            the start; ``"total"``: one group, the whole event (the shape part may move energy
            between layers); ``"layers"``: the adapter's ``sum_groups`` without the total (one
            factor per layer).  Needs a kind with ``sum_groups`` (showers).
        response_depth: the response factor also depends on the input event's depth, its
            energy-weighted mean layer (:class:`hepgen.refine.response.LayerResponse`,
            ``depth_groups``), so that late showers may lose energy out of the back as Geant4's do.
            Needs ``response`` and layers in the adapter's ``sum_groups`` (showers).
        response_fractions: the response factor also depends, through a small network, on the
            layer fractions of the event after the shape correction and the noise per layer
            (:class:`hepgen.refine.response.LayerResponse`, ``fraction_groups``), so that energy
            moved into the early layers can raise the response as in Geant4.  Needs ``response``
            and layers in the adapter's ``sum_groups`` (showers).  Measured on Geant4 with the layer
            noise it did the opposite (the total followed layer 1 less) and raised the hold-out AUC
            0.641 → 0.673 (one refiner seed; docs/refine.md, fourteenth round).
        layer_noise: the refiner also multiplies each layer's energy by a learned random factor
            ``exp(σ_l(ŷ) ε_l)`` per event (``ResidualRefiner(layer_noise=…)``), a coherent move of
            energy between layers that independent voxel noise cannot make (with ``response`` the
            total is then set back and rescaled as before).  Needs ``stochastic`` and layers in the
            adapter's ``sum_groups`` (showers); use with ``closeness_mean``, or the closeness term
            penalises the amplitude.  Why: GFlash's layer energies move together (its profile has
            two parameters) far more than Geant4's; measured on Geant4 it lowered the hold-out AUC
            0.665 → 0.641 (one refiner seed; docs/refine.md, thirteenth round).
        match_response: weight of :class:`hepgen.refine.moments.ResponseMoments` on the whole
            event (0 = off): the refiner is asked for data's mean log response ln(E_tot/E_inc) and
            its variance as functions of the labels.  Needs ``sum_groups`` and a first label
            ln(E_inc) (showers).  The critic, which memorises the finite shower samples, asked for
            neither (docs/refine.md, seventh round).
        match_profile: weight of :class:`hepgen.refine.moments.ResponseMoments` with ``cross=True`` on
            every row of the adapter's ``sum_groups`` (showers: each layer and the total; 0 = off):
            data's mean log response of each, its spread and every pair's correlation, as functions
            of the labels.  Needs ``sum_groups`` with at least 2 rows and a first label ln(E_inc).
            Why: the refined layer responses moved together like GFlash's, not like Geant4's, and
            neither a critic head on them nor a depth term fixed it; at weight 1 it made the Geant4
            demonstration worse on every figure (docs/refine.md, thirteenth round).
        match_occupancy: after training, fit :meth:`ResidualRefiner.fit_occupancy` (per feature,
            a cut below which refined values are set to ``clip_min``, so that each voxel is
            occupied as often as in data; stored in the refiner and applied at apply time, not in
            training).  Residual MLP refiner on features with a floor (``clip_min``) only.
        azimuthal_slices: the residual MLP becomes one network shared by the A azimuthal slices
            of a cylindrical (L, A, R) binning (the adapter's ``azimuthal_grid``; showers of a
            regular CaloChallenge-style binning), each slice seeing its own L·R features, the
            mean of all slices and the labels: the correction cannot depend on the direction, as
            the physics does not, and each weight learns from A times as many examples.  Why: on
            the Geant4 demonstration the refined showers' azimuthal pattern within a ring is what
            a classifier on one layer sees first (docs/refine.md, eighth round).
    """

    hidden: int = 256
    n_blocks: int = 2
    critic_hidden: int = 256
    epochs: int = 20
    batch_size: int = 128
    n_critic: int = 5
    lr: float = 2e-4
    critic_lr: float = 5e-4
    gp_weight: float = 10.0
    closeness: float = 0.1
    closeness_mean: bool = False
    stochastic: bool = True
    noise_init: float = 1e-2
    noise_lr_factor: float = 50.0
    condition_critic: bool = True
    critic_warmup: int = 200
    ema: float = 0.995
    seed: int = 0
    architecture: str = "auto"
    critic_sums: bool = False
    critic_sums_head: bool = False
    critic_counts: float = 0.0
    critic_layers: bool = False
    response: str = "off"
    response_depth: bool = False
    response_fractions: bool = False
    layer_noise: bool = False
    match_response: float = 0.0
    match_profile: float = 0.0
    match_occupancy: bool = False
    azimuthal_slices: bool = False

    def __post_init__(self) -> None:
        if self.response not in ("off", "total", "layers"):
            raise ValueError(f"refiner config key 'response': expected 'off', 'total' or 'layers', found {self.response!r}")
        if self.architecture not in ("auto", "mlp"):
            raise ValueError(f"refiner config key 'architecture': expected 'auto' or 'mlp', found {self.architecture!r}")
        for name in ("hidden", "n_blocks", "critic_hidden", "epochs", "batch_size", "n_critic", "critic_warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or \
                    v < (0 if name in ("n_blocks", "critic_warmup") else 1):
                raise ValueError(f"refiner config key {name!r}: expected a positive integer, found {v!r}")
        for name in ("lr", "critic_lr", "noise_init", "noise_lr_factor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"refiner config key {name!r}: expected a number > 0, found {v!r}")
        if self.layer_noise and not self.stochastic:
            raise ValueError("refiner config key 'layer_noise': expected a stochastic refiner (stochastic=True), "
                             "found stochastic=False")
        if self.critic_counts and not self.critic_sums:
            raise ValueError("refiner config key 'critic_counts': expected critic_sums=True (the counts are "
                             "inputs of the sums critic), found critic_sums=False")
        if self.critic_sums_head and not self.critic_sums:
            raise ValueError("refiner config key 'critic_sums_head': expected critic_sums=True (the head reads "
                             "the critic's log sums), found critic_sums=False")
        for name in (f.name for f in fields(self) if f.type in ("bool", bool)):   # every switch
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"refiner config key {name!r}: expected true or false, found {getattr(self, name)!r}")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise ValueError(f"refiner config key 'ema': expected a number in [0, 1), found {self.ema!r}")
        for name in ("gp_weight", "closeness", "match_response", "match_profile", "critic_counts"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"refiner config key {name!r}: expected a number >= 0, found {v!r}")

    @classmethod
    def from_dict(cls, d: dict) -> RefinerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"refiner config: unknown keys {unknown}; expected keys from {sorted(known)}")
        return cls(**d)


class ResidualRefiner(nn.Module):
    """``x' = x + s ⊙ (Δ + σ ⊙ ε)`` (module docstring); the identity until trained.

    Arguments:
        n_features: D.  n_labels: L (0 allowed).  hidden, n_blocks: the MLP.
        stochastic, noise_init: the learned noise amplitude.
        clip_min: lower bound of every feature (the adapter's ``clip_min``; ``None`` = none).
        response_groups: ``(G, D)`` 0/1 groups of a :class:`hepgen.refine.response.LayerResponse`
            after the residual part (which then keeps each group's energy); an int G = that many
            groups to be loaded from a state dict; ``None`` = no response factor.
        response_depth: ``(K, D)`` 0/1 layers of the response factor's depth term
            (``LayerResponse(depth_groups=…)``), an int K to be loaded from a state dict, or ``None``.
        response_fractions: ``(K, D)`` 0/1 layers of the response factor's fraction term
            (``LayerResponse(fraction_groups=…)``), an int K to be loaded from a state dict, or ``None``.
        layer_noise: ``(K, D)`` 0/1 non-overlapping layers (an int K to be loaded from a state
            dict, or ``None``): with noise, each layer's energies are multiplied by
            ``exp(σ_l(ŷ) ε_l)``, ``ε_l = Σ_{v∈l} ε_v / √n_l`` (standard normal, independent between
            layers, drawn from the same noise as the voxels'), ``σ_l = exp(·) ≤ 1`` linear in the
            standardised labels in the exponent, starting at ``noise_init``; applied before the
            range clamp and the response factor.  Needs ``stochastic``.
        occupancy: keep a per-feature occupancy cut (:meth:`fit_occupancy`).
        azimuthal: ``(L, A, R)``: features are L layers × A angles × R radii (radial fastest);
            one network is shared by the A angular slices, each seeing its L·R features, the
            mean over slices and the labels (``RefinerConfig.azimuthal_slices``); ``None`` = one
            network on the whole vector (or on the groups of ``group_size``).

    ``forward(x: (N, D), y: (N, L), noise: (N, D) | None) -> (N, D)``; without ``noise``
    the refiner is deterministic (its mean correction).
    """

    def __init__(self, n_features: int, n_labels: int, hidden: int = 256, n_blocks: int = 2,
                 stochastic: bool = True, noise_init: float = 1e-3, clip_min: float | None = None,
                 group_size: int | None = None, response_groups: np.ndarray | int | None = None,
                 occupancy: bool = False, azimuthal: tuple[int, int, int] | None = None,
                 response_depth: np.ndarray | int | None = None,
                 layer_noise: np.ndarray | int | None = None,
                 response_fractions: np.ndarray | int | None = None) -> None:
        super().__init__()
        self.n_features, self.n_labels, self.stochastic = int(n_features), int(n_labels), bool(stochastic)
        self.clip_min = None if clip_min is None else float(clip_min)
        f = int(group_size) if group_size else int(n_features)
        if f < 1 or n_features % f:
            raise ValueError(f"group_size: expected a divisor of n_features={n_features}, found {group_size!r}")
        self.group_size, self.n_groups = f, int(n_features) // f
        n_emb = _GROUP_EMBEDDING if self.n_groups > 1 else 0
        # optional azimuthal slices: one network for each of the A angular slices of an (L, A, R)
        # cylindrical binning, seeing its own L·R voxels, the slices' mean (each ring's average) and
        # the labels, so the correction is the same in every direction (rotation-equivariant)
        self.azimuthal = None if azimuthal is None else tuple(int(v) for v in azimuthal)
        if self.azimuthal is not None:
            if len(self.azimuthal) != 3 or min(self.azimuthal) < 1 or int(np.prod(self.azimuthal)) != n_features \
                    or self.n_groups > 1:
                raise ValueError(f"azimuthal: expected (L, A, R) with L·A·R = n_features = {n_features} and no "
                                 f"groups, found {azimuthal!r} with group_size {group_size!r}")
            f_in = 2 * self.azimuthal[0] * self.azimuthal[2] + n_labels
            f = self.azimuthal[0] * self.azimuthal[2]
        else:
            f_in = self.group_size + n_labels + n_emb
        for name, size in (("x_mean", n_features), ("x_std", n_features), ("y_mean", n_labels), ("y_std", n_labels)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        # range of the training features: a refined value never leaves [min(lo, x), max(hi, x)]
        self.register_buffer("x_lo", torch.full((n_features,), -torch.inf))
        self.register_buffer("x_hi", torch.full((n_features,), torch.inf))
        if n_emb:
            self.group_embedding = nn.Parameter(0.1 * torch.randn(self.n_groups, n_emb))
        self.inp = nn.Linear(f_in, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(n_blocks))
        self.out = nn.Linear(hidden, f)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if self.stochastic:
            self.log_sigma = nn.Linear(hidden, f)
            nn.init.zeros_(self.log_sigma.weight)
            nn.init.constant_(self.log_sigma.bias, math.log(noise_init))
        # optional response factor per group after the residual (shape) correction
        # (hepgen.refine.response); an int = that many groups, to be filled by load_state_dict
        response_groups = _group_matrix(response_groups, n_features)
        response_depth = _group_matrix(response_depth, n_features)
        response_fractions = _group_matrix(response_fractions, n_features)
        for key, part in (("response_depth", response_depth), ("response_fractions", response_fractions)):
            if part is not None and response_groups is None:
                raise ValueError(f"refiner config key {key!r}: expected a response factor (response 'total' or "
                                 "'layers'), found response 'off'")
        self.response = None if response_groups is None else LayerResponse(
            response_groups, n_labels, depth_groups=response_depth, fraction_groups=response_fractions)
        # optional coherent noise per layer: a random factor on each layer's energy
        layer_noise = _group_matrix(layer_noise, n_features)
        self.layer_sigma = None
        if layer_noise is not None:
            ln = torch.as_tensor(np.asarray(layer_noise, np.float32))
            if not self.stochastic or ln.ndim != 2 or ln.shape[1] != n_features or (ln.sum(dim=0) > 1).any():
                raise ValueError("refiner config key 'layer_noise': expected a stochastic refiner and a (K, "
                                 f"{n_features}) matrix of non-overlapping layers, found stochastic={self.stochastic} "
                                 f"and shape {tuple(ln.shape)}")
            self.register_buffer("noise_layers", ln)
            self.layer_sigma = nn.Linear(max(int(n_labels), 1), ln.shape[0])
            nn.init.zeros_(self.layer_sigma.weight)
            nn.init.constant_(self.layer_sigma.bias, math.log(noise_init))
        # optional occupancy calibration (fit_occupancy): refined features below a cut are set to
        # clip_min at apply time; only then a buffer, so that older checkpoints load unchanged
        self.occupancy = bool(occupancy)
        if self.occupancy:
            self.register_buffer("occupancy_cut", torch.zeros(n_features))

    def set_normalisation(self, x: np.ndarray, y: np.ndarray) -> None:
        """Standardise with per-feature mean and spread of ``x`` (training passes sim and data
        pooled); spreads are floored at 10 % of their root-mean-square so that a feature
        (nearly) constant in one sample does not blow up the critic's inputs."""
        with torch.no_grad():
            sd = x.std(axis=0)
            floor = max(1e-3, 0.1 * float(np.sqrt(np.mean(sd**2))))
            self.x_mean.copy_(torch.as_tensor(x.mean(axis=0), dtype=torch.float32))
            self.x_std.copy_(torch.as_tensor(np.maximum(sd, floor), dtype=torch.float32))
            self.x_lo.copy_(torch.as_tensor(x.min(axis=0), dtype=torch.float32))
            self.x_hi.copy_(torch.as_tensor(x.max(axis=0), dtype=torch.float32))
            if self.n_labels:
                self.y_mean.copy_(torch.as_tensor(y.mean(axis=0), dtype=torch.float32))
                self.y_std.copy_(torch.as_tensor(np.maximum(y.std(axis=0), 1e-3), dtype=torch.float32))
        if self.response is not None:
            self.response.set_normalisation(x, y)

    def normalise(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x - self.x_mean) / self.x_std, (y - self.y_mean) / self.y_std

    def closeness(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Mean absolute change per feature in units of the features' spread."""
        return ((out - x).abs() / self.x_std).mean()

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        xn, yn = self.normalise(x, y)
        n, g = x.shape[0], self.n_groups
        if self.azimuthal is not None:  # (N, A, L·R) slices, each with the slices' mean beside it
            n_l, n_a, n_r = self.azimuthal
            sl = xn.view(n, n_l, n_a, n_r).transpose(1, 2).reshape(n, n_a, n_l * n_r)
            z = torch.cat([sl, sl.mean(dim=1, keepdim=True).expand(n, n_a, -1),
                           yn[:, None, :].expand(n, n_a, self.n_labels)], dim=2)
        elif g > 1:  # the same network on every group (e.g. station trace), told which group it is
            z = torch.cat([xn.view(n, g, self.group_size), yn[:, None, :].expand(n, g, self.n_labels),
                           self.group_embedding[None].expand(n, g, -1)], dim=2)
        else:
            z = torch.cat([xn, yn], dim=1)
        h = self.inp(z)
        for block in self.blocks:
            h = h + block(h)
        h = torch.nn.functional.silu(h)
        corr = self._to_features(self.out(h))
        if noise is not None and self.stochastic:
            # σ ≤ 1 spread: a bounded amplitude keeps the adversarial game from diverging
            corr = corr + torch.exp(torch.clamp(self._to_features(self.log_sigma(h)), max=0.0)) * noise.view(n, -1)
        out = x + self.x_std * corr
        if noise is not None and self.layer_sigma is not None:
            out = self._layer_noise(out, yn, noise.view(n, -1))
        out = torch.minimum(torch.maximum(out, torch.minimum(self.x_lo, x)), torch.maximum(self.x_hi, x))
        # the physical range of the features (e.g. energies >= 0), inside training too: the
        # critic must never see values data cannot have
        out = out if self.clip_min is None else torch.clamp(out, min=self.clip_min)
        # with a response factor the residual part corrects the shape within each group (its
        # group sums are set back to the input's) and the factor, a function of the input event,
        # sets the group energies
        out = out if self.response is None else self.response(x, yn, y, shaped=out)
        if self.occupancy and not self.training:
            floor = 0.0 if self.clip_min is None else self.clip_min
            below = (self.occupancy_cut > floor) & (out < self.occupancy_cut)
            out = torch.where(below, torch.full_like(out, floor), out)
        return out

    def _layer_noise(self, out: torch.Tensor, yn: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each layer's energies × ``exp(σ_l ε_l)`` (``layer_noise`` in the class docstring)."""
        eps = (noise @ self.noise_layers.T) / self.noise_layers.sum(dim=1).clamp(min=1.0).sqrt()   # (N, K)
        z = yn if self.n_labels else torch.ones(len(out), 1)
        sigma = torch.exp(torch.clamp(self.layer_sigma(z), max=0.0))
        return scale_log1p(out, torch.expm1(sigma * eps) @ self.noise_layers)

    def fast_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at the noise learning rate besides ``log_sigma``'s: the layer noise's."""
        return [] if self.layer_sigma is None else list(self.layer_sigma.parameters())

    def _to_features(self, t: torch.Tensor) -> torch.Tensor:
        """The network's output (per group or azimuthal slice) as ``(N, D)`` in feature order."""
        n = t.shape[0]
        if self.azimuthal is None:
            return t.reshape(n, -1)
        n_l, n_a, n_r = self.azimuthal
        return t.view(n, n_a, n_l, n_r).transpose(1, 2).reshape(n, -1)

    def fit_occupancy(self, x_ref: np.ndarray, x_data: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Occupancy calibration: for each feature (or each group ``g`` of ``groups``, ``(G, D)``
        0/1) the cut ``τ`` such that the fraction of refined values ``x_ref`` ``(N, D)`` above
        ``clip_min`` after the cut equals data's ``x_data`` ``(M, D)`` (``τ`` = the refined values'
        quantile at data's empty fraction; 0 = no cut where refined events are not fuller than
        data).  Sets and returns the ``(D,)`` cuts (feature units).

        Why: the residual refiner turns many empty voxels into tiny deposits (≪ 1 MeV) that the
        critic on ``log(1 + E/MeV)`` hardly sees but the per-layer sparsity shows at once
        (docs/refine.md, seventh round).  Training uses one cut per feature (voxel): on the
        Geant4 demonstration it left the voxel-level classifier where it was, one cut per layer
        did not."""
        if not self.occupancy:
            raise ValueError("fit_occupancy: the refiner was built without occupancy=True")
        floor = 0.0 if self.clip_min is None else self.clip_min
        cut = np.zeros(self.n_features, np.float32)
        groups = np.eye(self.n_features, dtype=bool) if groups is None else np.asarray(groups, bool)
        for g in groups:
            ref, dat = x_ref[:, g].ravel(), x_data[:, g].ravel()
            p_data, p_ref = float((dat > floor).mean()), float((ref > floor).mean())
            if p_ref > p_data:
                cut[g] = np.quantile(ref, 1.0 - p_data)
        with torch.no_grad():
            self.occupancy_cut.copy_(torch.from_numpy(cut))
        return cut


class GroupCritic(nn.Module):
    """Critic for grouped features (e.g. one trace per station): a per-group network φ, its mean
    over groups (a Deep Sets pooling, arXiv:1703.06114) and a head on the pooled vector and the labels.

    ``forward(z: (N, D + L)) -> (N,)`` with ``z`` = standardised features then labels.
    """

    def __init__(self, n_features: int, n_labels: int, group_size: int, hidden: int = 256) -> None:
        super().__init__()
        self.d, self.f, self.g = int(n_features), int(group_size), int(n_features) // int(group_size)
        self.group_embedding = nn.Parameter(0.1 * torch.randn(self.g, _GROUP_EMBEDDING))
        self.phi = critic_mlp([self.f + n_labels + _GROUP_EMBEDDING, hidden, hidden], activate_last=True)
        self.head = critic_mlp([hidden + n_labels, hidden, 1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        x, y = z[:, :self.d].view(n, self.g, self.f), z[:, self.d:]
        h = self.phi(torch.cat([x, y[:, None, :].expand(n, self.g, y.shape[1]),
                                self.group_embedding[None].expand(n, self.g, -1)], dim=2))
        return self.head(torch.cat([h.mean(dim=1), y], dim=1)).squeeze(1)


class Critic(nn.Module):
    """Wasserstein critic ``C(x̂, ŷ) -> (N,)``: an MLP on standardised features (and labels)."""

    def __init__(self, n_inputs: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = critic_mlp([n_inputs, hidden, hidden, 1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


def _group_matrix(groups, n_features: int):
    """A refiner's ``(K, D)`` 0/1 group argument as given, or ``None``; an int K (a checkpoint's
    hparams) becomes K zero rows that ``load_state_dict`` fills, 0 becomes ``None``."""
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        return np.zeros((int(groups), n_features), np.float32) if groups else None
    return groups


def _build_refiner(d, n_lab, hidden, n_blocks, stochastic, noise_init, clip_min, group_size, architecture,
                   response_groups=None, occupancy=False, azimuthal=None, response_depth=None, layer_noise=None,
                   response_fractions=None):
    if architecture is None:
        return ResidualRefiner(d, n_lab, hidden, n_blocks, stochastic, noise_init, clip_min, group_size,
                               response_groups, occupancy, azimuthal, response_depth, layer_noise, response_fractions)
    if _group_matrix(layer_noise, d) is not None:
        raise ValueError(f"refiner config key 'layer_noise': the {architecture.get('name')!r} refiner has no layers; "
                         "expected layer_noise=False or architecture='mlp'")
    if _group_matrix(response_groups, d) is not None:
        raise ValueError(f"refiner config key 'response': the {architecture.get('name')!r} refiner has no "
                         "response factor; expected response='off' or architecture='mlp'")
    model = StationRefiner(n_lab, architecture["grid"], architecture["n_t"], architecture["scale"], hidden,
                           stochastic, noise_init, fixed_noise=architecture.get("noise_vem"),
                           fill_silent=bool(architecture.get("fill_silent", False)),
                           trigger_vem=architecture.get("trigger_vem"),
                           fill_random=bool(architecture.get("fill_random", False)),
                           trigger_curriculum=architecture.get("trigger_curriculum"),
                           shot_noise=bool(architecture.get("shot_noise", False)),
                           shape_envelope=bool(architecture.get("shape_envelope", False)),
                           match_moments=float(architecture.get("match_moments", 0.0)),
                           match_roughness=bool(architecture.get("match_roughness", False)),
                           shot_pulses=bool(architecture.get("shot_pulses", False)))
    if model.n_features != d:
        raise ValueError(f"architecture: expected {model.n_features} features for grid {architecture['grid']} × "
                         f"n_t {architecture['n_t']}, found {d}")
    return model


def _architecture_of(model) -> dict | None:
    if isinstance(model, StationRefiner):
        # a fixed noise is kept only where noise is added at all (the stochastic refiner)
        arch = {"name": "stations", "grid": list(model.grid), "n_t": model.n_t, "scale": model.scale,
                "noise_vem": model.fixed_noise if model.stochastic else None}
        if model.fill_silent or model.trigger_vem is not None:
            arch.update(fill_silent=model.fill_silent, trigger_vem=model.trigger_vem)
        if model.fill_random:
            arch["fill_random"] = True
        if model.trigger_curriculum is not None:
            arch["trigger_curriculum"] = model.trigger_curriculum
        if model.shot_noise:
            arch["shot_noise"] = True
        if model.shot_pulses:
            arch["shot_pulses"] = True
        if model.shape_envelope:
            arch["shape_envelope"] = True
        return arch
    return None


def _check_arrays(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: expected x (N, D) and labels (N, L) with equal N, found {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least 1 event, found 0")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{name}: expected finite features and labels, found NaN/Inf")
    return x, y


def _critic_input(model: ResidualRefiner, x, y, use_labels: bool) -> torch.Tensor:
    xn, yn = model.normalise(x, y)
    return torch.cat([xn, yn], dim=1) if use_labels and model.n_labels else xn


def _gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    eps = torch.rand(real.shape[0], 1, generator=gen)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((grad.norm(dim=1) - 1.0) ** 2).mean()


def train_refiner(x_sim, y_sim, x_data, y_data, config: RefinerConfig | None = None,
                  checkpoint: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
                  keep_sim: np.ndarray | None = None, payload_extra: dict | None = None,
                  clip_min: float | None = None, group_size: int | None = None,
                  architecture: dict | None = None,
                  sum_groups: np.ndarray | None = None,
                  refresh: Callable[[int], tuple] | None = None,
                  azimuthal_grid: tuple[int, int, int] | None = None) -> tuple[ResidualRefiner, dict]:
    """Train a refiner sim → data on arrays; checkpoint (and resume) at every epoch.

    Arguments:
        x_sim: ``(N_s, D)`` simulation features.  y_sim: ``(N_s, L)`` its labels.
        x_data: ``(N_d, D)`` data features.  y_data: ``(N_d, L)`` data labels (used only when
            ``config.condition_critic``).
        config: :class:`RefinerConfig`.
        checkpoint: a ``.pt`` path written (atomically) after every epoch; when it exists and
            ``resume`` is true, training continues from its epoch with the same RNG stream,
            so an interrupted run ends with the same weights as an uninterrupted one.
        keep_sim: optional ``(N_s, D)`` bool: features the refiner must not change (e.g.
            untriggered stations); they are held fixed in training as in application.
        payload_extra: ``kind``, ``preprocessing`` (adapter state) and ``meta`` entries to
            store in the checkpoint.
        clip_min: lower bound of the features (the adapter's ``clip_min``), applied inside
            the refiner in training and application.
        group_size: features per group (the adapter's ``group_size``, e.g. the time bins of
            one station): refiner and critic then share one network over the groups, which
            learns from every station of every event at once.  ``None``: one group.
        architecture: the adapter's ``architecture(state)``: ``None`` = :class:`ResidualRefiner`
            with an MLP (or grouped) critic; ``{"name": "stations", "grid": [n_x, n_y], "n_t": …,
            "scale": …}`` = :class:`hepgen.refine.stations.StationRefiner` and
            :class:`~hepgen.refine.stations.StationCritic` (ignored when ``config.architecture == "mlp"``).
        sum_groups: ``(G, D)`` 0/1 matrix (the adapter's ``sum_groups``) whose log energy sums the
            critic sees when ``config.critic_sums`` (:class:`hepgen.refine.critic_sums.SumsCritic`).
        refresh: fresh samples against memorisation (for a source that can generate events, e.g.
            a toy): ``refresh(epoch) -> (x_sim, y_sim, x_data, y_data, keep_sim)`` is called at the
            start of every epoch ``k >= 1`` (0-based; epoch 0 and the critic warm-up use the
            arrays above, which also set the normalisation) and its arrays replace the training
            samples for that epoch (same ``D`` and ``L``; ``keep_sim`` may be ``None``).  It must be
            a function of ``epoch`` alone, so that a resumed run draws the same samples.
        azimuthal_grid: ``(L, A, R)`` of the features (the adapter's ``azimuthal_grid(state)``),
            needed by ``config.azimuthal_slices``.

    Returns:
        ``(refiner, history)`` (the refiner with the moving-average weights), history = ``{"epoch": [...], "critic_w": [...],
        "closeness": [...], "gp": [...]}`` per epoch (``critic_w`` = E[C(data)] − E[C(x')],
        the critic's Wasserstein estimate).
    """
    config = config or RefinerConfig()
    x_sim, y_sim = _check_arrays(x_sim, y_sim, "sim")
    x_data, y_data = _check_arrays(x_data, y_data, "data")
    if x_sim.shape[1] != x_data.shape[1] or y_sim.shape[1] != y_data.shape[1]:
        raise ValueError(f"data: expected {x_sim.shape[1]} features and {y_sim.shape[1]} labels like sim, "
                         f"found {x_data.shape[1]} and {y_data.shape[1]}")
    if keep_sim is not None:
        keep_sim = np.asarray(keep_sim, bool)
        if keep_sim.shape != x_sim.shape:
            raise ValueError(f"keep_sim: expected shape {x_sim.shape}, found {keep_sim.shape}")
    d, n_lab = x_sim.shape[1], y_sim.shape[1]
    if config.architecture == "mlp":
        architecture = None
    if architecture is not None and architecture.get("name") != "stations":
        raise ValueError(f"architecture: expected None or {{'name': 'stations', ...}}, found {architecture!r}")
    torch.manual_seed(config.seed)  # weight initialisation only; batches and noise use `gen`
    resp = response_groups(sum_groups, d, config.response) if config.response != "off" else None
    for key in ("response_depth", "response_fractions"):
        if getattr(config, key) and (resp is None or architecture is not None):
            raise ValueError(f"refiner config key {key!r}: expected a response factor (response 'total' or "
                             f"'layers') of the residual MLP refiner, found response {config.response!r} and "
                             f"architecture {(architecture or {}).get('name', 'mlp')!r}")
    depth = layer_groups(sum_groups, d, key="response_depth") if config.response_depth else None
    fractions = layer_groups(sum_groups, d, key="response_fractions") if config.response_fractions else None
    noise_layers = layer_groups(sum_groups, d, key="layer_noise") if config.layer_noise else None
    if config.match_occupancy and (architecture is not None or clip_min is None):
        raise ValueError("refiner config key 'match_occupancy': expected the residual MLP refiner and features with "
                         f"a floor (the adapter's clip_min, e.g. energies >= 0), found architecture "
                         f"{(architecture or {}).get('name', 'mlp')!r} and clip_min {clip_min!r}")
    if config.azimuthal_slices and (architecture is not None or azimuthal_grid is None):
        raise ValueError("refiner config key 'azimuthal_slices': expected the residual MLP refiner and an (L, A, R) "
                         "cylindrical binning of equal layers from the adapter, found architecture "
                         f"{(architecture or {}).get('name', 'mlp')!r} and grid {azimuthal_grid!r}")
    azimuthal = tuple(int(v) for v in azimuthal_grid) if config.azimuthal_slices else None
    model = _build_refiner(d, n_lab, config.hidden, config.n_blocks, config.stochastic, config.noise_init, clip_min,
                           group_size, architecture, resp, config.match_occupancy, azimuthal, depth, noise_layers,
                           fractions)
    model.set_normalisation(np.concatenate([x_sim, x_data]), np.concatenate([y_sim, y_data]))
    # a station refiner with match_moments: data's total signal and station count as functions of the labels
    getattr(model, "fit_moments", lambda *a: None)(x_data, y_data)
    moments = None
    if config.match_response > 0:
        if sum_groups is None or np.shape(sum_groups)[1:] != (d,) or n_lab < 1:
            found = None if sum_groups is None else np.shape(sum_groups)
            raise ValueError("refiner config key 'match_response': expected sum groups from the adapter and a "
                             f"label (the incident energy), found groups {found} and {n_lab} labels")
        moments = ResponseMoments(np.ones((1, d), np.float32), model.y_mean, model.y_std)
        moments.fit(x_data, y_data)
    profile = None
    if config.match_profile > 0:
        rows = None if sum_groups is None else np.asarray(sum_groups, np.float32)
        rows = None if rows is None or rows.ndim != 2 or rows.shape[1] != d else rows[rows.any(axis=1)]
        if rows is None or len(rows) < 2 or n_lab < 1:
            raise ValueError("refiner config key 'match_profile': expected at least 2 sum groups (layers) from the "
                             f"adapter and a label (the incident energy), found "
                             f"{None if sum_groups is None else np.shape(sum_groups)} groups and {n_lab} labels")
        profile = ResponseMoments(rows, model.y_mean, model.y_std, cross=True)
        profile.fit(x_data, y_data)
    use_labels = config.condition_critic and n_lab > 0
    n_lab_c = n_lab if use_labels else 0
    if architecture is not None:
        critic = StationCritic.from_architecture(architecture, n_lab_c, config.critic_hidden)
        if critic.total_response or critic.count_vem is not None or critic.dense:
            # the total signal's (station count's) linear dependence on the labels, fitted on both
            # samples; the dense branch's standardisation
            xn, yn = model.normalise(torch.from_numpy(np.concatenate([x_sim, x_data])),
                                     torch.from_numpy(np.concatenate([y_sim, y_data])))
            critic.fit_residuals(xn, yn[:, :n_lab_c])
    elif model.n_groups > 1:
        critic = GroupCritic(d, n_lab_c, model.group_size, config.critic_hidden)
    elif config.critic_sums:
        if sum_groups is None or np.shape(sum_groups)[1:] != (d,):
            raise ValueError(f"refiner config key 'critic_sums': expected sum groups of shape (G, {d}) from the "
                             f"adapter, found {None if sum_groups is None else np.shape(sum_groups)}")
        n_sums = len(sum_groups) + (SumsCritic.n_counts(sum_groups) if config.critic_counts else 0)
        critic = SumsCritic(Critic(d + n_lab_c + n_sums, config.critic_hidden), sum_groups,
                            model.x_mean, model.x_std, n_lab_c, np.concatenate([x_sim, x_data]),
                            model.y_mean, model.y_std, np.concatenate([y_sim, y_data]),
                            head=Critic(n_sums + n_lab_c, max(config.critic_hidden // 2, 1))
                            if config.critic_sums_head else None,
                            count_threshold=config.critic_counts or None)
    else:
        critic = Critic(d + n_lab_c, config.critic_hidden)
    if config.critic_layers:
        if architecture is not None or model.n_groups > 1:
            raise ValueError("refiner config key 'critic_layers': expected the residual MLP refiner on ungrouped "
                             f"features (showers), found architecture {(architecture or {}).get('name', 'mlp')!r} "
                             f"with {model.n_groups} groups")
        critic = LayerCritic(critic, layer_groups(sum_groups, d), n_lab_c, max(config.critic_hidden // 2, 1))
    sigma_params = list(model.log_sigma.parameters()) if model.stochastic else []
    # e.g. the station refiner's amplitude of silent stations: trained at the noise rate too
    sigma_params += list(getattr(model, "fast_parameters", list)())
    other = [p for p in model.parameters() if all(p is not q for q in sigma_params)]
    groups = [{"params": other}] + ([{"params": sigma_params, "lr": config.lr * config.noise_lr_factor}]
                                    if sigma_params else [])
    opt_r = torch.optim.Adam(groups, lr=config.lr, betas=(0.5, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=config.critic_lr, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(int(config.seed))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history = {"epoch": [], "critic_w": [], "closeness": [], "gp": []}
    hparams = {**asdict(config), "n_features": d, "n_labels": n_lab, "clip_min": clip_min,
               "group_size": model.group_size, "refiner_architecture": architecture,
               "response_groups": 0 if resp is None else len(resp),
               "response_depth_layers": 0 if depth is None else len(depth),
               "layer_noise_layers": 0 if noise_layers is None else len(noise_layers),
               "response_fraction_layers": 0 if fractions is None else len(fractions),
               "azimuthal": None if azimuthal is None else list(azimuthal)}
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        payload = load_checkpoint(checkpoint)
        # checkpoints written before the response factor existed lack its keys: they had none
        old = {k: v for k, v in {"response": "off", "response_groups": 0, "closeness_mean": False,
                                 "match_response": 0.0, "match_occupancy": False, "azimuthal_slices": False,
                                 "azimuthal": None, "critic_layers": False, "response_depth": False,
                                 "critic_sums_head": False, "critic_counts": 0.0, "layer_noise": False, "layer_noise_layers": 0,
                                 "match_profile": 0.0, "response_fractions": False, "response_fraction_layers": 0,
                                 "response_depth_layers": 0, **payload["hparams"]}.items()
               if k != "epochs"}
        new = {k: v for k, v in hparams.items() if k != "epochs"}
        if payload.get("family") != FAMILY or old != new:
            raise ValueError(f"{checkpoint}: key 'hparams': cannot resume a run with other settings; expected "
                             f"{new}, found {old}. Delete the file or pass the same settings")
        tr = payload["trainer"]
        model.load_state_dict(tr["raw_model"])
        ema = {k: v.clone() for k, v in payload["model"].items()}
        critic.load_state_dict(tr["critic"])
        opt_r.load_state_dict(tr["opt_refiner"])
        opt_c.load_state_dict(tr["opt_critic"])
        gen.set_state(tr["generator"])
        history = {k: list(v) for k, v in tr["history"].items()}
        start = int(tr["epoch"])
        log.info("resuming refiner training from epoch %d of %s", start, checkpoint)

    xs, ys, xd, yd = (torch.from_numpy(a) for a in (x_sim, y_sim, x_data, y_data))
    ks = torch.from_numpy(keep_sim) if keep_sim is not None else None
    n_s, n_d, bs = len(xs), len(xd), min(config.batch_size, len(xs), len(xd))
    steps = max(1, n_s // bs)

    def fresh_samples(epoch):
        got = refresh(epoch)
        if not (isinstance(got, tuple) and len(got) == 5):
            raise ValueError(f"refresh({epoch}): expected a tuple (x_sim, y_sim, x_data, y_data, keep_sim), found {type(got).__name__}")
        a_s, b_s = _check_arrays(got[0], got[1], f"refresh({epoch}) sim")
        a_d, b_d = _check_arrays(got[2], got[3], f"refresh({epoch}) data")
        if a_s.shape[1] != d or a_d.shape[1] != d or b_s.shape[1] != n_lab or b_d.shape[1] != n_lab:
            raise ValueError(f"refresh({epoch}): expected {d} features and {n_lab} labels, found sim "
                             f"{a_s.shape[1]}/{b_s.shape[1]}, data {a_d.shape[1]}/{b_d.shape[1]}")
        k = None if got[4] is None else np.asarray(got[4], bool)
        if k is not None and k.shape != a_s.shape:
            raise ValueError(f"refresh({epoch}): keep_sim: expected shape {a_s.shape}, found {k.shape}")
        return (*(torch.from_numpy(a) for a in (a_s, b_s, a_d, b_d)), None if k is None else torch.from_numpy(k))

    def critic_step(xb, yb, kb):
        jd = torch.randint(n_d, (len(xb),), generator=gen)
        noise = torch.randn(xb.shape, generator=gen)
        with torch.no_grad():
            fake = model(xb, yb, noise)
            if kb is not None:
                fake = torch.where(kb, xb, fake)
        real_in = _critic_input(model, xd[jd], yd[jd], use_labels)
        fake_in = _critic_input(model, fake, yb, use_labels)
        w = critic(real_in).mean() - critic(fake_in).mean()
        gp = _gradient_penalty(critic, real_in, fake_in, gen)
        loss_c = -w + config.gp_weight * gp
        opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_c.step()
        return w, gp

    set_progress = getattr(model, "set_progress", None)
    if set_progress is not None:
        set_progress(start / config.epochs)
    if start == 0:
        for _ in range(config.critic_warmup):
            idx = torch.randint(n_s, (bs,), generator=gen)
            critic_step(xs[idx], ys[idx], ks[idx] if ks is not None else None)
    bar = tqdm(total=config.epochs * steps, initial=start * steps, disable=not progress, desc="refiner", unit="step")
    try:
        for epoch in range(start, config.epochs):
            if refresh is not None and epoch >= 1:
                # new events every epoch: the critic cannot memorise a finite sample
                xs, ys, xd, yd, ks = fresh_samples(epoch)
                n_s, n_d = len(xs), len(xd)
                bs = min(config.batch_size, n_s, n_d)
                steps = max(1, n_s // bs)
            perm = torch.randperm(n_s, generator=gen)
            sums = np.zeros(3)
            for step in range(steps):
                idx = perm[step * bs:(step + 1) * bs]
                xb, yb = xs[idx], ys[idx]
                kb = ks[idx] if ks is not None else None
                if set_progress is not None:  # a refiner's own training schedule (e.g. a threshold curriculum)
                    set_progress((epoch * steps + step) / (config.epochs * steps))
                for _ in range(config.n_critic):
                    w, gp = critic_step(xb, yb, kb)
                noise = torch.randn(xb.shape, generator=gen)
                fake = model(xb, yb, noise)
                if kb is not None:
                    fake = torch.where(kb, xb, fake)
                if config.closeness_mean:
                    mean = model(xb, yb, None)
                    close = model.closeness(xb, mean if kb is None else torch.where(kb, xb, mean))
                else:
                    close = model.closeness(xb, fake)
                loss_r = -critic(_critic_input(model, fake, yb, use_labels)).mean() + config.closeness * close
                if getattr(model, "match_moments", 0) > 0:
                    loss_r = loss_r + model.match_moments * model.moment_loss(fake, yb)
                if moments is not None:
                    loss_r = loss_r + config.match_response * moments.loss(fake, yb)
                if profile is not None:
                    loss_r = loss_r + config.match_profile * profile.loss(fake, yb)
                w_val = w.item()
                if not (torch.isfinite(loss_r) and math.isfinite(w_val)):
                    # stop before the step: the checkpoint keeps the last finished epoch
                    raise FloatingPointError(
                        f"refiner training diverged at epoch {epoch + 1}, step {step + 1}: refiner loss "
                        f"{loss_r.item():.4g}, critic W {w_val:.4g}; "
                        + (f"{checkpoint} holds epoch {epoch}" if checkpoint is not None else "no checkpoint")
                        + " (try a lower learning rate or another seed)")
                opt_r.zero_grad(set_to_none=True)
                loss_r.backward()
                opt_r.step()
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        if v.dtype.is_floating_point:
                            ema[k].mul_(config.ema).add_(v, alpha=1 - config.ema)
                sums += (w_val, close.item(), gp.item())
                bar.update(1)
            sums /= steps
            for key, v in zip(("critic_w", "closeness", "gp"), sums):
                history[key].append(float(v))
            history["epoch"].append(epoch + 1)
            bar.set_postfix(W=f"{sums[0]:.3g}", close=f"{sums[1]:.3g}")
            log.info("refiner epoch %d/%d: critic W %.4g, closeness %.4g, gp %.3g", epoch + 1, config.epochs, *sums)
            if checkpoint is not None:
                _save(checkpoint, model, ema, critic, opt_r, opt_c, gen, history, epoch + 1, hparams, payload_extra)
    finally:
        bar.close()
    model.load_state_dict(ema)
    model.eval()
    if config.match_occupancy:
        # the cut is fitted on the refined training sim (the noise as at apply time) against data
        model.fit_occupancy(refine_arrays(model, x_sim, y_sim, seed=config.seed, keep=keep_sim), x_data)
        if checkpoint is not None and Path(checkpoint).is_file():
            payload = load_checkpoint(checkpoint)
            payload["model"] = model.state_dict()
            save_checkpoint(checkpoint, payload)
    return model, history


def _save(path, model, ema, critic, opt_r, opt_c, gen, history, epoch, hparams, extra) -> None:
    extra = extra or {}
    save_checkpoint(path, {
        "family": FAMILY, "hparams": hparams, "model": ema,
        "preprocessing": extra.get("preprocessing", {}), "kind": extra.get("kind"),
        "meta": {**extra.get("meta", {}), "epoch": epoch, "history": history},
        "trainer": {"raw_model": model.state_dict(), "critic": critic.state_dict(), "opt_refiner": opt_r.state_dict(),
                    "opt_critic": opt_c.state_dict(), "generator": gen.get_state(), "epoch": epoch,
                    "history": history},
    })


def save_refiner(path, model: ResidualRefiner, config: RefinerConfig | None = None, kind: str | None = None,
                 preprocessing: dict | None = None, meta: dict | None = None) -> None:
    """Write a refiner (e.g. an untrained, identity one) as a checkpoint :func:`apply_file` can use."""
    config = config or (RefinerConfig(hidden=model.inp.out_features, n_blocks=len(model.blocks),
                                      stochastic=model.stochastic, azimuthal_slices=model.azimuthal is not None)
                        if isinstance(model, ResidualRefiner)
                        else RefinerConfig(hidden=model.enc[0].out_features, stochastic=model.stochastic))
    hparams = {**asdict(config), "n_features": model.n_features, "n_labels": model.n_labels,
               "clip_min": model.clip_min, "group_size": model.group_size,
               "refiner_architecture": _architecture_of(model),
               "response_groups": model.response.n_groups if getattr(model, "response", None) is not None else 0,
               "response_depth_layers": _depth_layers(model),
               "layer_noise_layers": _noise_layers(model),
               "response_fraction_layers": _fraction_layers(model),
               "match_occupancy": bool(getattr(model, "occupancy", False)),
               "azimuthal": None if getattr(model, "azimuthal", None) is None else list(model.azimuthal)}
    save_checkpoint(path, {"family": FAMILY, "hparams": hparams, "model": model.state_dict(),
                           "preprocessing": preprocessing or {}, "kind": kind,
                           "meta": {"epoch": 0, **(meta or {})}, "trainer": {}})


def _depth_layers(model) -> int:
    """K, the layers of the response factor's depth term (0 without one)."""
    response = getattr(model, "response", None)
    return 0 if response is None or response.depth is None else int(response.depth_groups.shape[0])


def _fraction_layers(model) -> int:
    """K, the layers of the response factor's fraction term (0 without one)."""
    response = getattr(model, "response", None)
    return 0 if response is None or response.fractions is None else int(response.fraction_groups.shape[0])


def _noise_layers(model) -> int:
    """K, the layers of the refiner's layer noise (0 without)."""
    return 0 if getattr(model, "layer_sigma", None) is None else int(model.noise_layers.shape[0])


def load_refiner(path: str | os.PathLike) -> tuple[ResidualRefiner, dict]:
    """A trained refiner and its checkpoint payload (``kind``, ``preprocessing``, ``meta``)."""
    payload = load_checkpoint(path)
    if payload.get("family") != FAMILY:
        raise ValueError(f"{path}: key 'family': expected {FAMILY!r}, found {payload.get('family')!r}")
    hp = payload["hparams"]
    model = _build_refiner(hp["n_features"], hp["n_labels"], hp["hidden"], hp["n_blocks"], hp["stochastic"],
                           hp["noise_init"], hp.get("clip_min"), hp.get("group_size"), hp.get("refiner_architecture"),
                           hp.get("response_groups", 0), bool(hp.get("match_occupancy", False)),
                           hp.get("azimuthal"), hp.get("response_depth_layers", 0), hp.get("layer_noise_layers", 0),
                           hp.get("response_fraction_layers", 0))
    model.load_state_dict(payload["model"])
    model.eval()
    return model, payload


def refine_arrays(model: ResidualRefiner, x, y, seed: int = 0, keep: np.ndarray | None = None,
                  stochastic: bool = True, batch_size: int = 4096) -> np.ndarray:
    """Apply a refiner: ``(N, D)`` features and ``(N, L)`` labels → ``(N, D)`` float32 refined features.

    ``stochastic=False`` applies the mean correction only.  ``keep`` ``(N, D)`` bool marks
    features returned unchanged.  The output depends on ``seed`` (the noise) and not on
    ``batch_size``.
    """
    x, y = _check_arrays(x, y, "refine input")
    if x.shape[1] != model.n_features or y.shape[1] != model.n_labels:
        raise ValueError(f"refine input: expected {model.n_features} features and {model.n_labels} labels "
                         f"(the refiner's), found {x.shape[1]} and {y.shape[1]}")
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x.shape, generator=gen) if stochastic and model.stochastic else None
    out = np.empty_like(x)
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            sl = slice(s, s + batch_size)
            out[sl] = model(torch.from_numpy(x[sl]), torch.from_numpy(y[sl]),
                            None if noise is None else noise[sl]).numpy()
    if keep is not None:
        out = np.where(np.asarray(keep, bool), x, out)
    return out


def train_files(sim_path, data_path, out_dir, config: RefinerConfig | None = None, resume: bool = True,
                progress: bool = True, adapter_options: dict | None = None) -> Path:
    """``hepgen refine train``: train a refiner on two files of one kind; returns ``out_dir/refiner.pt``.

    The kind is sniffed from the files (:func:`hepgen.refine.adapters.read_pair` refuses
    different kinds, layouts, label sets and empty files).  The checkpoint holds the
    adapter state (``preprocessing``), the ``kind`` and the source files (``meta``).
    ``adapter_options`` sets options of the kind's adapter state (traces: ``critic_min_vem``,
    ``noise_vem`` — a number or ``"measured"``; :func:`hepgen.refine.options.set_adapter_options`).
    """
    config = config or RefinerConfig()
    kind, sim, data = read_pair(sim_path, data_path)
    adapter = get_adapter(kind)
    state = set_adapter_options(adapter.fit(sim), adapter_options, sim, data)
    x_s, y_s = adapter.to_arrays(sim, state)
    x_d, y_d = adapter.to_arrays(data, state)
    out = Path(out_dir) / "refiner.pt"
    extra = {"kind": kind, "preprocessing": state,
             "meta": {"sim": str(sim_path), "data": str(data_path), "n_sim": len(sim), "n_data": len(data)}}
    train_refiner(x_s, y_s, x_d, y_d, config, checkpoint=out, resume=resume, progress=progress,
                  keep_sim=adapter.keep_mask(sim, state), clip_min=adapter.clip_min,
                  group_size=adapter.group_size(state), architecture=adapter.architecture(state),
                  payload_extra=extra, sum_groups=sum_groups(adapter, sim), azimuthal_grid=adapter.azimuthal_grid(state))
    return out


def apply_file(checkpoint, sim_path, output, seed: int = 0, stochastic: bool = True):
    """``hepgen refine apply``: refine every event of ``sim_path`` and write ``output`` atomically.

    Labels and conditions are copied unchanged; provenance attributes ``refined_by``,
    ``refined_from``, ``refiner_epoch`` and ``refine_seed`` are added.  A file of another
    kind or detector layout than the refiner was trained on is refused.  Returns the refined data.
    """
    model, payload = load_refiner(checkpoint)
    kind = payload.get("kind")
    sim = read_kind(sim_path, kind, "the refiner's")
    adapter = get_adapter(kind)
    state = payload["preprocessing"]
    check_against_state(adapter, sim, state, str(sim_path))
    out = refine_data(model, state, sim, seed=seed, stochastic=stochastic, attrs={
        "refined_by": str(checkpoint), "refined_from": str(sim_path),
        "refiner_epoch": int(payload["meta"].get("epoch", 0)), "refine_seed": int(seed)})
    adapter.write(output, out)
    return out


def check_against_state(adapter, data, state: dict, source: str) -> None:
    """Refuse ``data`` (named ``source`` in the message) whose detector layout or label names differ
    from those a refiner was trained on (its checkpoint's ``preprocessing`` state)."""
    if adapter.layout(data) != state["layout"]:
        raise ValueError(f"{source}: detector layout differs from the refiner's training files: expected "
                         f"{state['layout']}, found {adapter.layout(data)}")
    if adapter.label_names(data) != state["labels"]:
        raise ValueError(f"{source}: expected labels {state['labels']} (the refiner's), found {adapter.label_names(data)}")


def refine_data(model: ResidualRefiner, state: dict, data, seed: int = 0, stochastic: bool = True,
                attrs: dict | None = None):
    """Refine a data object of the kind ``state["kind"]`` (the refiner checkpoint's ``preprocessing``)
    in memory: its adapter's arrays through :func:`refine_arrays` (the adapter's kept features
    unchanged) and back, labels and conditions copied, ``attrs`` added.  What
    :func:`apply_file` writes, without the file checks."""
    adapter = get_adapter(state["kind"])
    x, y = adapter.to_arrays(data, state)
    refined = refine_arrays(model, x, y, seed=seed, keep=adapter.keep_mask(data, state), stochastic=stochastic)
    return adapter.from_arrays(refined, data, state, attrs=attrs)
