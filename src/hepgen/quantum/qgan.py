"""Hybrid quantum GAN: a Born-rule generator against the talk's classical discriminator.

Training follows the qGAN of Zoufal, Lucchi, Woerner (arXiv:1904.00043), the "IBM QGAN"
that the CERN openlab talk (Vallecorsa) used:

* generator: the circuit of :mod:`hepgen.quantum.circuits` (or a classical baseline with
  the same number of parameters, :data:`GENERATORS`); its output is the exact probability
  vector ``p_θ`` over the ``K = 2ⁿ`` bins;
* discriminator: the talk's network on the (scaled) bin coordinate,
  ``in → 512 + LeakyReLU → 216 + LeakyReLU → 1 + sigmoid`` (:class:`Discriminator`);
* losses (binary cross-entropy, the non-saturating generator loss of the qGAN paper):
  ``L_D = −E_real[log D(x)] − Σ_k p_θ(k) log(1 − D(k))``,
  ``L_G = −Σ_k p_θ(k) log D(k)``; the generator terms use the exact expectation over the
  ``K`` outcomes (the paper weights a batch of generated samples by their probabilities:
  same expectation, less noise); the real term is a mini-batch of bin indices drawn from a
  fixed training set sampled from the target;
* both optimised with AMSGrad (``torch.optim.Adam(amsgrad=True)``), one step each per
  iteration.

Several seeds are trained *together*: the generator circuits are evaluated with parameter
broadcasting and the ``S`` discriminators are a stacked ensemble (batched matrix products).
The seeds stay independent: losses are summed over seeds, and Adam/AMSGrad are element-wise,
so each seed's parameters see only their own gradient.

Example (classical baseline, no extra needed):
    >>> q = np.array([0.1, 0.2, 0.3, 0.4])
    >>> res = train_qgan(q, generator="softmax", seeds=[0], steps=5, n_train=100)
    >>> res.probs.shape, res.history["kl"].shape
    ((1, 4), (1, 5))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hepgen.quantum.circuits import (
    INITS,
    NoiseModel,
    born_probabilities,
    initial_distribution,
    n_parameters,
    require_pennylane,
)

#: Default generator learning rate: a normal start is already close to the target and needs
#: small steps; uniform and random starts (and the classical baselines, which start uniform)
#: are far from it and need larger ones (docs/quantum.md, sensitivity table).
DEFAULT_LR_G = {"normal": 0.002, "uniform": 0.01, "random": 0.01, "classical": 0.01}

__all__ = ["DEFAULT_LR_G", "GENERATORS", "Discriminator", "QGANResult", "kl_divergence", "train_qgan"]

GENERATORS = ("quantum", "softmax", "exponential")


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``D_KL(p ‖ q) = Σ_k p_k ln(p_k/q_k)`` in nats along the last axis (``0 ln 0 = 0``).

    Used as ``D_KL(p_generated ‖ p_target)`` (the qGAN paper's relative entropy); finite
    whenever the target is > 0 in every bin, which the shower profile is.

    Example:
        >>> float(kl_divergence(np.array([0.5, 0.5]), np.array([0.25, 0.75]))).__round__(6)
        0.143841
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


class Discriminator(nn.Module):
    """An ensemble of ``n_models`` independent copies of the talk's discriminator.

    Each copy is ``d_in → hidden[0] + LeakyReLU(0.2) → … → 1 + sigmoid`` (talk:
    ``hidden=(512, 216)``; its 8×8 attempt: four hidden layers).  Weights are initialised as
    ``torch.nn.Linear`` does (U(±1/√fan_in)), from ``seeds[i]`` for copy ``i``.

    Arguments:
        seeds: one integer per copy.
        d_in: input dimension (1: the scaled bin index; 2: (row, column) of an image bin).
        hidden: widths of the hidden layers.

    Shapes: ``forward(x)`` with ``x`` ``(n_models, M, d_in)`` returns ``(n_models, M)`` in (0, 1).

    Example:
        >>> d = Discriminator([0, 1], d_in=1)
        >>> d(torch.zeros(2, 3, 1)).shape  # float32 weights, float64 output
        torch.Size([2, 3])
    """

    def __init__(self, seeds: Sequence[int], d_in: int = 1, hidden: Sequence[int] = (512, 216)) -> None:
        super().__init__()
        dims = [int(d_in), *map(int, hidden), 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(a)
            ws, bs = [], []
            for s in seeds:
                g = torch.Generator().manual_seed(int(s) * 1009 + a * 7 + b)
                ws.append((torch.rand(a, b, generator=g) * 2 - 1) * bound)
                bs.append((torch.rand(1, b, generator=g) * 2 - 1) * bound)
            self.weights.append(nn.Parameter(torch.stack(ws)))
            self.biases.append(nn.Parameter(torch.stack(bs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < n - 1:
                h = nn.functional.leaky_relu(h, 0.2)
        return torch.sigmoid(h).squeeze(-1).double()


@dataclass
class QGANResult:
    """Outcome of :func:`train_qgan` for ``S`` seeds over ``K`` bins.

    Attributes:
        params: ``(S, …)`` trained generator parameters (RY angles ``(S, depth+1, n)`` in rad).
        init_probs: ``(S, K)`` loaded initial distributions (quantum generator).
        probs: ``(S, K)`` final generator distributions (exact; noisy if trained with ``noise``).
        target: ``(K,)``.
        history: ``kl`` ``(S, steps)``, ``loss_d`` and ``loss_g`` ``(S, steps)``.
        config: the arguments of the run.
    """

    params: np.ndarray
    init_probs: np.ndarray
    probs: np.ndarray
    target: np.ndarray
    history: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def noisy_probs(self, noise: NoiseModel) -> np.ndarray:
        """``(S, K)`` distributions of the trained circuits re-run on the noisy simulator."""
        if self.config.get("generator") != "quantum":
            raise ValueError(f"noisy_probs needs a quantum generator, found {self.config.get('generator')!r}")
        w = torch.as_tensor(self.params, dtype=torch.float64)
        init = self.config["init"]
        with torch.no_grad():
            p = born_probabilities(w, None if init == "uniform" else self.init_probs, init=init,
                                   entanglement=self.config["entanglement"], noise=noise)
        return _normalise(p.numpy())


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    return p / p.sum(axis=-1, keepdims=True)


def _coords(k: int, image: bool) -> torch.Tensor:
    """Discriminator inputs of the ``k`` bins: the index scaled to [0, 1], or (row, col)/(side−1)."""
    idx = torch.arange(k, dtype=torch.float64)
    if not image:
        return (idx / max(k - 1, 1))[:, None]
    side = round(math.sqrt(k))
    return torch.stack([idx // side, idx % side], dim=1) / max(side - 1, 1)


def train_qgan(target: np.ndarray, init: str = "normal", depth: int = 1, seeds: Sequence[int] = (0,),
               steps: int = 1000, generator: str = "quantum", lr_g: float | None = None, lr_d: float = 1e-3,
               batch_size: int = 5000, n_train: int = 20_000, param_scale: float = 0.1,
               hidden: Sequence[int] = (512, 216), entanglement: str = "full", image: bool = False,
               warmup: int = 50, noise: NoiseModel | None = None, progress: bool = False) -> QGANResult:
    """Train ``len(seeds)`` independent GANs on a target distribution over ``K`` bins.

    Arguments:
        target: ``(K,)`` probabilities, ``K`` a power of two for the quantum generator.
        init: ``"normal"`` (Gaussian of the target's mean and standard deviation, bin units),
            ``"uniform"`` or ``"random"`` (Dirichlet draw from the seed): the loaded state.
        depth: repetitions of (CZ entanglers, RY layer) after the first RY layer.
        seeds: one GAN per seed (initial angles, loaded random state, training set, batches
            and discriminator weights all derive from it).
        steps: iterations (one discriminator and one generator AMSGrad step each).
        generator: ``"quantum"`` (the circuit); ``"softmax"`` (``K`` free logits) or
            ``"exponential"`` (``log p(k) = Σ_j a_j L_j(x_k)`` over Legendre polynomials
            ``L_1 … L_m`` of the scaled bin index, ``m`` = the circuit's parameter count):
            classical baselines.
        lr_g, lr_d: AMSGrad learning rates of generator and discriminator; ``lr_g=None`` takes
            :data:`DEFAULT_LR_G` of the init (quantum) or ``"classical"``.
        batch_size: real samples per discriminator step, drawn from a fixed training set of
            ``n_train`` bin indices sampled from ``target``.
        param_scale: initial angles / logits uniform in ``±param_scale``.
        hidden: discriminator hidden widths (talk: 512, 216).
        entanglement: CZ pattern of the circuit, ``"full"`` or ``"linear"``.
        image: ``K`` bins form a square image; the discriminator sees (row, column).
        warmup: discriminator-only steps before the generator starts (an untrained
            discriminator first pushes a well-initialised generator away from the target).
        noise: train the circuit *on* the noisy simulator (``default.mixed`` with this
            :class:`~hepgen.quantum.circuits.NoiseModel`): the generator distribution, its
            gradient, ``history["kl"]`` and ``probs`` are then the noisy ones.
        progress: tqdm bar.

    Returns:
        :class:`QGANResult`.
    """
    target = np.asarray(target, dtype=np.float64)
    if target.ndim != 1 or np.any(target < 0) or not np.isclose(target.sum(), 1.0, atol=1e-6):
        raise ValueError(f"target must be a 1-d probability vector, found shape {target.shape}, sum {target.sum():.6g}")
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, found {generator!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, found {init!r}")
    if noise is not None and generator != "quantum":
        raise ValueError(f"noise applies to the quantum generator only, found generator={generator!r}")
    if int(steps) < 1 or len(seeds) < 1:
        raise ValueError(f"need steps >= 1 and at least one seed, found steps={steps}, seeds={list(seeds)}")
    if lr_g is None:
        lr_g = DEFAULT_LR_G[init if generator == "quantum" else "classical"]
    k = target.size
    n_qubits = round(math.log2(k))
    if generator == "quantum":
        require_pennylane()
        if 2 ** n_qubits != k:
            raise ValueError(f"the quantum generator needs 2**n bins, found {k}")
    s_count = len(seeds)
    rngs = [np.random.default_rng([int(s), 18]) for s in seeds]
    x = torch.arange(k, dtype=torch.float64)
    mu = float((target * np.arange(k)).sum())
    sigma = float(np.sqrt((target * (np.arange(k) - mu) ** 2).sum()))

    # --- generator parameters
    n_par = n_parameters(n_qubits, depth)
    if generator == "quantum":
        init_probs = np.stack([initial_distribution(init, n_qubits, mu=mu, sigma=sigma, seed=r) for r in rngs])
        shape = (depth + 1, n_qubits)
    else:
        init_probs = np.full((s_count, k), 1.0 / k)
        shape = (k,) if generator == "softmax" else (n_par,)
    theta0 = np.stack([r.uniform(-param_scale, param_scale, size=shape) for r in rngs])
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    if generator == "exponential":
        xs = (2 * x / max(k - 1, 1) - 1).numpy()
        basis = torch.tensor(np.stack([np.polynomial.legendre.Legendre.basis(j)(xs)
                                       for j in range(1, n_par + 1)], axis=0))  # (m, K)

    def gen_probs() -> torch.Tensor:
        if generator == "quantum":
            return born_probabilities(theta, None if init == "uniform" else init_probs, init=init,
                                      entanglement=entanglement, noise=noise)
        if generator == "softmax":
            return torch.softmax(theta, dim=-1)
        return torch.softmax(theta @ basis, dim=-1)

    # --- data and discriminator
    train_sets = [r.choice(k, size=int(n_train), p=target) for r in rngs]
    disc = Discriminator(list(seeds), d_in=2 if image else 1, hidden=hidden)
    coords = _coords(k, image).float().expand(s_count, k, -1).contiguous()
    opt_g = torch.optim.Adam([theta], lr=lr_g, betas=(0.7, 0.99), amsgrad=True)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_d, amsgrad=True, foreach=True)
    # cosine decay of the generator learning rate to lr_g/100: the GAN equilibrium is noisy
    # (mini-batches of real samples), and a decaying step lets the generator settle in it
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, T_max=int(steps), eta_min=lr_g / 100)
    hist = {key: np.zeros((s_count, int(steps))) for key in ("kl", "loss_d", "loss_g")}
    tq = np.log(np.clip(target, 1e-300, None))
    eps = 1e-12
    it = range(int(steps))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"qGAN {generator} {init} d{depth}", unit="step")
    for step in range(-int(warmup), 0):  # discriminator warm-up against the initial generator
        counts = np.stack([np.bincount(r.choice(ts, size=int(batch_size)), minlength=k)
                           for r, ts in zip(rngs, train_sets)]) / float(batch_size)
        with torch.no_grad():
            p = gen_probs()
        d = disc(coords)
        loss_d = -(torch.as_tensor(counts) * torch.log(d + eps) + p * torch.log(1 - d + eps)).sum(-1)
        opt_d.zero_grad()
        loss_d.sum().backward()
        opt_d.step()
    for step in it:
        counts = np.stack([np.bincount(r.choice(ts, size=int(batch_size)), minlength=k)
                           for r, ts in zip(rngs, train_sets)]) / float(batch_size)
        real_w = torch.as_tensor(counts)
        p = gen_probs()
        # discriminator step
        d = disc(coords)
        loss_d = -(real_w * torch.log(d + eps) + p.detach() * torch.log(1 - d + eps)).sum(-1)
        opt_d.zero_grad()
        loss_d.sum().backward()
        opt_d.step()
        # generator step (non-saturating loss)
        d = disc(coords).detach()
        loss_g = -(p * torch.log(d + eps)).sum(-1)
        opt_g.zero_grad()
        loss_g.sum().backward()
        opt_g.step()
        sched.step()
        pn = _normalise(p.detach().numpy())
        with np.errstate(divide="ignore", invalid="ignore"):
            hist["kl"][:, step] = np.where(pn > 0, pn * (np.log(pn) - tq), 0.0).sum(-1)
        hist["loss_d"][:, step] = loss_d.detach().numpy()
        hist["loss_g"][:, step] = loss_g.detach().numpy()
    with torch.no_grad():
        final = _normalise(gen_probs().numpy())
    cfg = {"generator": generator, "init": init, "depth": int(depth), "seeds": [int(s) for s in seeds],
           "steps": int(steps), "lr_g": lr_g, "lr_d": lr_d, "batch_size": int(batch_size),
           "n_train": int(n_train), "param_scale": param_scale, "warmup": int(warmup),
           "hidden": [int(h) for h in hidden], "entanglement": entanglement,
           "n_parameters": int(theta[0].numel()), "n_qubits": n_qubits,
           "noise": None if noise is None else vars(noise)}
    return QGANResult(params=theta.detach().numpy().copy(), init_probs=init_probs, probs=final,
                      target=target, history=hist, config=cfg)
