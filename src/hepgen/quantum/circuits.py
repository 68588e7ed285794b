"""Circuits of the quantum GAN: initial-state loaders, the RY + CZ variational form, Born probabilities.

The generator of a qGAN (Zoufal, Lucchi, Woerner, arXiv:1904.00043; the "IBM QGAN" of the
CERN openlab talk) is an ``n``-qubit circuit whose Born-rule probabilities over the basis
states ``|0⟩ … |2ⁿ−1⟩`` *are* the generated distribution over ``2ⁿ`` bins:

    |ψ(θ)⟩ = U_var(θ) U_load |0…0⟩,      p_θ(k) = |⟨k|ψ(θ)⟩|²

* ``U_load`` loads an initial distribution: ``uniform`` (a Hadamard on every qubit),
  ``normal`` (a discretised Gaussian) or ``random`` (a Dirichlet(1) draw, seeded), the
  last two by Möttönen amplitude preparation (RY + CNOT gates, quant-ph/0407010) of
  ``√p``.
* ``U_var`` is the RY + CZ form of the paper: a layer of RY rotations, then ``depth``
  repetitions of (CZ entanglers, RY layer): ``n·(depth+1)`` parameters.  With θ = 0 every
  RY is the identity and CZ only flips signs of the real, non-negative amplitudes, so the
  generator starts exactly at the loaded distribution.

Bin ``k`` is the basis state whose binary expansion has wire 0 as the most significant bit
(PennyLane's ``qml.probs`` order).

The circuits run on PennyLane (optional extra ``hepgen[quantum]``): ``default.qubit``
(exact state vector, backpropagation through the Torch interface) by default, or
``default.mixed`` (density matrix) with depolarising gate noise and readout error,
:class:`NoiseModel`.  No quantum simulation is written here.

Example (pure numpy, no extra needed):
    >>> initial_distribution("uniform", 2)
    array([0.25, 0.25, 0.25, 0.25])
    >>> n_parameters(3, depth=2)
    9
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from hepgen._extras import MissingExtraError, missing_extra_message

try:  # optional extra
    import pennylane as qml

    HAVE_PENNYLANE = True
except ImportError:  # pragma: no cover - exercised with the extra missing
    qml = None
    HAVE_PENNYLANE = False

__all__ = [
    "ENTANGLEMENTS",
    "HAVE_PENNYLANE",
    "INITS",
    "TORINO_NOISE",
    "NoiseModel",
    "born_probabilities",
    "discretised_normal",
    "initial_distribution",
    "n_parameters",
    "require_pennylane",
]

INITS = ("normal", "uniform", "random")
ENTANGLEMENTS = ("full", "linear")

_MISSING = missing_extra_message("hepgen.quantum", "quantum")


def require_pennylane() -> None:
    """Raise a one-line ``ImportError`` when PennyLane (extra ``hepgen[quantum]``) is missing."""
    if not HAVE_PENNYLANE:
        raise MissingExtraError(_MISSING)


@dataclass(frozen=True)
class NoiseModel:
    """Depolarising gate noise + symmetric readout error for ``default.mixed``.

    Arguments:
        error_1q: average gate error of one single-qubit gate (RY, H, …).
        error_2q: average gate error of one two-qubit gate (CZ, CNOT).
        readout: probability that a measured bit is flipped.
        name: where the numbers come from.

    The gate errors ``r`` are turned into PennyLane ``DepolarizingChannel`` probabilities
    ``p`` (probability of an X, Y or Z error) through the average-fidelity relation
    ``r = d/(d+1)·(1 − F_process)``: a single-qubit gate is followed by one channel of
    ``p = 3r/2``; a two-qubit gate by one channel on each of its wires with
    ``p = 5r/8`` (a product of two single-qubit channels, not the full two-qubit
    depolariser; exact to first order in ``r``).  T1/T2 relaxation and cross-talk are
    not modelled.

    Example:
        >>> NoiseModel(1e-3, 1e-2, 0.02).p_1q
        0.0015
    """

    error_1q: float
    error_2q: float
    readout: float
    name: str = "custom"

    def __post_init__(self) -> None:
        for key in ("error_1q", "error_2q", "readout"):
            v = getattr(self, key)
            if not 0.0 <= float(v) < 0.5:
                raise ValueError(f"NoiseModel: {key} must be in [0, 0.5), found {v}")

    @property
    def p_1q(self) -> float:
        return 1.5 * self.error_1q

    @property
    def p_2q(self) -> float:
        return 0.625 * self.error_2q

    def scaled(self, factor: float) -> NoiseModel:
        """The same model with every error multiplied by ``factor``."""
        return NoiseModel(self.error_1q * factor, self.error_2q * factor,
                          min(self.readout * factor, 0.499), f"{self.name} x{factor:g}")


# Median calibration of IBM Heron r1 "ibm_torino" (133 qubits), snapshot 2025-02-26 as
# shipped in qiskit-ibm-runtime's fake backend FakeTorino (props_torino.json): sx error
# 2.71e-4 (an RY is two sx pulses, so 5.42e-4 per RY), cz error 4.08e-3, readout 2.29e-2.
TORINO_NOISE = NoiseModel(error_1q=5.42e-4, error_2q=4.08e-3, readout=2.29e-2,
                          name="ibm_torino median calibration 2025-02-26")


def discretised_normal(n_bins: int, mu: float, sigma: float) -> np.ndarray:
    """Gaussian of mean ``mu`` and width ``sigma`` (in bin units) on the bin indices ``0 … n_bins−1``.

    ``p(k) ∝ exp(−(k − μ)²/(2σ²))``, normalised (the grid evaluation of Qiskit's
    ``NormalDistribution`` loader).

    Returns:
        ``(n_bins,)`` float64 probabilities.

    Example:
        >>> discretised_normal(4, 1.5, 1.0).round(3)
        array([0.134, 0.366, 0.366, 0.134])
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0 (bin units), found {sigma}")
    k = np.arange(int(n_bins), dtype=np.float64)
    w = np.exp(-0.5 * ((k - float(mu)) / float(sigma)) ** 2)
    return w / w.sum()


def initial_distribution(init: str, n_qubits: int, mu: float | None = None,
                         sigma: float | None = None, seed: int | np.random.Generator | None = 0
                         ) -> np.ndarray:
    """The distribution loaded by ``U_load`` before the variational form.

    Arguments:
        init: ``"uniform"``, ``"normal"`` or ``"random"``.
        n_qubits: number of qubits; the distribution has ``2**n_qubits`` bins.
        mu, sigma: mean and width (bin units) of ``"normal"``; default the centre of the
            grid and a quarter of its length.  :func:`hepgen.quantum.qgan.train_qgan` passes
            the target's mean and standard deviation, as the IBM QGAN tutorial does.
        seed: seeds the Dirichlet(1, …, 1) draw of ``"random"``.

    Returns:
        ``(2**n_qubits,)`` float64 probabilities, all > 0.

    Example:
        >>> p = initial_distribution("random", 3, seed=1)
        >>> p.shape, bool(np.isclose(p.sum(), 1.0))
        ((8,), True)
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, found {init!r}")
    if int(n_qubits) < 1:
        raise ValueError(f"n_qubits must be >= 1, found {n_qubits}")
    n = 2 ** int(n_qubits)
    if init == "uniform":
        return np.full(n, 1.0 / n)
    if init == "normal":
        mu = 0.5 * (n - 1) if mu is None else mu
        sigma = n / 4.0 if sigma is None else sigma
        return discretised_normal(n, mu, sigma)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n))
    p = np.maximum(p, 1e-12)
    return p / p.sum()


def n_parameters(n_qubits: int, depth: int) -> int:
    """Number of RY angles of the variational form: ``n_qubits · (depth + 1)``.

    Example:
        >>> n_parameters(6, 1)
        12
    """
    if int(depth) < 0:
        raise ValueError(f"depth must be >= 0, found {depth}")
    return int(n_qubits) * (int(depth) + 1)


def _entangler_pairs(n_qubits: int, entanglement: str) -> list[tuple[int, int]]:
    if entanglement == "full":
        return [(i, j) for i in range(n_qubits) for j in range(i + 1, n_qubits)]
    if entanglement == "linear":
        return [(i, i + 1) for i in range(n_qubits - 1)]
    raise ValueError(f"entanglement must be one of {ENTANGLEMENTS}, found {entanglement!r}")


def _load_ops(init_probs, n_qubits: int, uniform: bool) -> list:
    wires = list(range(n_qubits))
    if uniform:
        return [qml.Hadamard(w) for w in wires]
    amp = np.sqrt(np.asarray(init_probs, dtype=np.float64))
    return qml.MottonenStatePreparation.compute_decomposition(amp, wires=wires)


def _gates(ops: list) -> list:
    """Decompose until only RY, RZ, Hadamard, CNOT, CZ remain (the gates noise is attached to)."""
    out = []
    keep = {"RY", "RZ", "Hadamard", "CNOT", "CZ"}
    for op in ops:
        if op.name in keep:
            out.append(op)
        elif op.name == "GlobalPhase":  # no effect on probabilities
            continue
        else:
            out.extend(_gates(op.decomposition()))
    return out


@functools.lru_cache(maxsize=16)
def _qnode(n_qubits: int, depth: int, entanglement: str, uniform: bool, noise: NoiseModel | None):
    require_pennylane()
    pairs = _entangler_pairs(n_qubits, entanglement)
    if noise is None:
        dev = qml.device("default.qubit", wires=n_qubits)
    else:
        # readout error is applied below as a BitFlip channel before the measurement (the same
        # map); default.mixed's own ``readout_prob`` fails on analytic qml.probs in 0.45.1
        dev = qml.device("default.mixed", wires=n_qubits)

    def apply(op) -> None:
        qml.apply(op)
        if noise is not None:
            p = noise.p_1q if len(op.wires) == 1 else noise.p_2q
            if p > 0:
                for w in op.wires:
                    qml.DepolarizingChannel(p, wires=w)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(weights, init_probs):
        # operators are built outside the queue and applied once each through ``apply``
        with qml.QueuingManager.stop_recording():
            load = _load_ops(init_probs, n_qubits, uniform)
            ops = _gates(load) if noise is not None else list(load)
            for layer in range(depth + 1):
                if layer > 0:
                    ops.extend(qml.CZ(wires=[a, b]) for a, b in pairs)
                ops.extend(qml.RY(weights[..., layer, w], wires=w) for w in range(n_qubits))
        for op in ops:
            apply(op)
        if noise is not None and noise.readout > 0:
            for w in range(n_qubits):
                qml.BitFlip(noise.readout, wires=w)
        return qml.probs(wires=range(n_qubits))

    return circuit


def born_probabilities(weights: torch.Tensor, init_probs=None, init: str = "normal",
                       entanglement: str = "full", noise: NoiseModel | None = None) -> torch.Tensor:
    """Born-rule probabilities of the generator circuit, differentiable in ``weights``.

    Arguments:
        weights: ``(depth+1, n_qubits)`` RY angles (rad), or ``(B, depth+1, n_qubits)`` for a
            batch of ``B`` independent generators evaluated at once (parameter broadcasting).
        init_probs: ``(2**n_qubits,)`` distribution loaded before the variational form, or
            ``(B, 2**n_qubits)``, one per generator of the batch (ignored for
            ``init="uniform"``, which is a Hadamard layer).
        init: ``"uniform"`` selects the Hadamard loader; any other value the amplitude loader.
        entanglement: ``"full"`` (CZ on every pair, as Qiskit's ``TwoLocal`` default) or
            ``"linear"`` (nearest neighbours).
        noise: ``None`` for the exact state vector (``default.qubit``), else a
            :class:`NoiseModel` run on ``default.mixed`` (exact density matrix with noise; draw
            shots from the result).

    Returns:
        ``(2**n_qubits,)`` or ``(B, 2**n_qubits)`` float64 probabilities summing to 1.
    """
    require_pennylane()
    if not isinstance(weights, torch.Tensor):
        weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
    if weights.ndim not in (2, 3):
        raise ValueError(f"weights must have shape (depth+1, n_qubits) or (B, depth+1, n_qubits), found {tuple(weights.shape)}")
    depth, n_qubits = weights.shape[-2] - 1, weights.shape[-1]
    uniform = init == "uniform"
    if uniform:
        init_probs = np.full(2 ** n_qubits, 2.0 ** -n_qubits)
    elif init_probs is None:
        raise ValueError(f"init={init!r} needs init_probs of shape ({2 ** n_qubits},), found None")
    init_probs = np.asarray(init_probs, dtype=np.float64)
    if init_probs.shape[-1:] != (2 ** n_qubits,) or init_probs.ndim > 2:
        raise ValueError(f"init_probs must have shape ({2 ** n_qubits},) or (B, {2 ** n_qubits}), found {init_probs.shape}")
    node = _qnode(int(n_qubits), int(depth), entanglement, uniform, noise)
    return node(weights, init_probs)
