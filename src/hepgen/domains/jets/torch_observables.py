"""Jet observables as differentiable functions of particle tensors, for training losses.

:mod:`hepgen.metrics.jets` computes the validation observables with FastJet on numpy
arrays: exact, but not differentiable.  ``hepgen distill --observables`` needs the same
quantities as torch functions of a student's output, so that the student learns each
teacher jet's substructure and not only its particles (:meth:`JetDomain.distill_observables`).
No maintained library offers N-subjettiness in torch (FastJet contrib and ``energyflow`` are
numpy/C++), hence this module; its values are tested against FastJet contrib.

Conventions: ``B`` jets of ``P`` slots; ``pt``: constituent ``pT_rel = pT / pT_jet``,
``eta``, ``phi``: ``η_rel``, ``φ_rel`` (radians, relative to the jet axis, so no φ wrap);
``mask``: 1 for a real particle, 0 for padding (padding values are ignored).  Constituents
are massless, so rapidity = η.

* :func:`nsubjettiness` — τ_1 … τ_N with ``OnePass_KT_Axes``-like axes: exclusive kT
  clustering (pT-weighted recombination of (η, φ), the small-angle form of the E-scheme),
  then Weiszfeld/Lloyd passes of minimisation.  The axes carry no gradient: at the
  minimising axes the derivative of τ_N with respect to them vanishes (envelope theorem),
  so the gradient flows through the constituents' distances and pT only.
* :func:`jet_mass` — invariant mass of the constituents, in units of the jet pT.
* :func:`energy_correlation_d2` — D2 = e3 / e2³ (β = 1), as
  :func:`hepgen.metrics.jets.energy_correlation_d2` (energyflow) computes it.
* :func:`axis_ratio` — minor-to-major axis ratio of the constituents' (unweighted) spread in
  (η, φ): the jet's 2-D shape, which a per-particle classifier reads from the angles alone;
* :func:`constituent_moments` — mean and spread of ``log pT_rel`` and the mean ΔR of a
  jet's constituents: the soft particles, which the infrared-safe observables above hardly
  see (and the jet classifier, :mod:`hepgen.domains.jets.classifier`, reads).

References:
    J. Thaler, K. Van Tilburg, "Identifying Boosted Objects with N-subjettiness",
    arXiv:1011.2268; "Maximizing Boosted Top Identification by Minimizing N-subjettiness",
    arXiv:1108.2701 (one-pass minimisation of the axes).
    A. Larkoski, I. Moult, D. Neill, arXiv:1409.6298 (D2).
"""

from __future__ import annotations

import torch

__all__ = ["axis_ratio", "constituent_moments", "energy_correlation_d2", "jet_mass", "nsubjettiness", "substructure"]

_EPS = 1e-12  # inside square roots: the distance to an axis on a particle has no finite slope


def jet_mass(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invariant mass of the masked massless constituents, ``(B, P)`` each → ``(B,)``.

    Example:
        Two particles with pT_rel = ½ at η = 0, φ = ±d/2 have m = sin(d/2)
        (as :func:`hepgen.metrics.jets.jet_mass`):

        >>> d = 0.4
        >>> m = jet_mass(torch.tensor([[0.5, 0.5]]), torch.zeros(1, 2), torch.tensor([[d / 2, -d / 2]]),
        ...              torch.ones(1, 2))
        >>> round(m.item(), 6), round(float(torch.sin(torch.tensor(d / 2))), 6)
        (0.198669, 0.198669)
    """
    w = pt * mask
    e = (w * torch.cosh(eta)).sum(1)
    px, py, pz = (w * torch.cos(phi)).sum(1), (w * torch.sin(phi)).sum(1), (w * torch.sinh(eta)).sum(1)
    return torch.sqrt((e**2 - px**2 - py**2 - pz**2).clamp_min(_EPS))


def energy_correlation_d2(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``D2 = e3 / e2³`` (β = 1) of every jet, ``(B, P)`` each → ``(B,)``; 0 where e2 = 0.

    ``z_i = pT_i / Σ pT``, ``θ_ij = ΔR_ij``; ``e2 = Σ_{i<j} z_i z_j θ_ij``,
    ``e3 = Σ_{i<j<k} z_i z_j z_k θ_ij θ_ik θ_jk``, summed as ``½ zᵀθz`` and
    ``⅙ Σ_ij (z_i θ_ij z_j) (θ diag(z) θ)_ij`` (θ_ii = 0 removes the repeated indices):
    O(P³) per jet, one batched matrix product.

    Example:
        Three equal particles at the corners of an equilateral triangle have D2 = 1:

        >>> h = 0.2 * 0.75 ** 0.5
        >>> energy_correlation_d2(torch.ones(1, 3), torch.tensor([[0.0, 0.2, 0.1]]), torch.tensor([[0.0, 0.0, h]]),
        ...                       torch.ones(1, 3)).item()
        1.0...
    """
    w = pt * mask
    z = w / w.sum(1, keepdim=True).clamp_min(1e-30)
    de, dp = eta[:, :, None] - eta[:, None, :], phi[:, :, None] - phi[:, None, :]
    off = 1.0 - torch.eye(pt.shape[1], dtype=pt.dtype, device=pt.device)
    theta = torch.sqrt(de * de + dp * dp + _EPS) * off                           # (B, P, P), 0 on the diagonal
    a = z[:, :, None] * theta * z[:, None, :]                                    # z_i θ_ij z_j
    e2 = a.sum((1, 2)) / 2
    e3 = (a * torch.bmm(theta * z[:, None, :], theta)).sum((1, 2)) / 6           # Σ_k θ_ik z_k θ_kj
    return torch.where(e2 > 0, e3 / e2.clamp_min(1e-12) ** 3, torch.zeros_like(e2))


@torch.no_grad()
def _kt_axes(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor,
             n_max: int) -> list[torch.Tensor]:
    """Exclusive-kT axes ``[(B, 1, 2), …, (B, n_max, 2)]`` in (η, φ); rows of jets with fewer
    than N constituents are left at 0 (their τ_N is 0 anyway)."""
    b, p = pt.shape
    pt, y, ph = pt * mask, eta.clone(), phi.clone()
    active = mask > 0
    axes = [pt.new_zeros(b, n, 2) for n in range(1, n_max + 1)]
    count = active.sum(1)
    eye = torch.eye(p, dtype=torch.bool, device=pt.device)
    for _ in range(p):
        for n in range(1, n_max + 1):
            hit = count == n
            if hit.any():  # the n active pseudojets, in slot order
                idx = torch.argsort((~active[hit]).to(torch.int8), dim=1, stable=True)[:, :n]
                axes[n - 1][hit] = torch.stack([y[hit].gather(1, idx), ph[hit].gather(1, idx)], dim=2)
        go = count > 1
        if not go.any():
            break
        # kT distance min(pT_i², pT_j²) ΔR_ij² (R large: no beam distance wins, as contrib's KT_Axes);
        # products, not ** 2: pow is several times slower on CPU and this loop dominates the cost
        pt2 = pt * pt
        dy, dp = y[:, :, None] - y[:, None, :], ph[:, :, None] - ph[:, None, :]
        d = torch.minimum(pt2[:, :, None], pt2[:, None, :]) * (dy * dy + dp * dp)
        ok = active[:, :, None] & active[:, None, :] & ~eye
        flat = d.masked_fill_(~ok, torch.inf).reshape(b, -1).argmin(1)
        i, j = flat // p, flat % p
        rows = torch.nonzero(go).squeeze(1)
        i, j = i[rows], j[rows]
        pi, pj = pt[rows, i], pt[rows, j]
        s = (pi + pj).clamp_min(1e-30)
        y[rows, i] = (pi * y[rows, i] + pj * y[rows, j]) / s
        ph[rows, i] = (pi * ph[rows, i] + pj * ph[rows, j]) / s
        pt[rows, i] = pi + pj
        pt[rows, j] = 0.0
        active[rows, j] = False
        count = active.sum(1)
    return axes


def _distances(eta: torch.Tensor, phi: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """ΔR between every particle and every axis: ``(B, P), (B, N, 2) → (B, P, N)``."""
    de, dp = eta[:, :, None] - axes[:, None, :, 0], phi[:, :, None] - axes[:, None, :, 1]
    return torch.sqrt(de * de + dp * dp + _EPS)


@torch.no_grad()
def _minimise(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor, axes: torch.Tensor,
              beta: float, passes: int) -> torch.Tensor:
    """``passes`` Lloyd steps: assign each particle to its nearest axis, move each axis to the
    weighted centre ``Σ w_i x_i / Σ w_i`` of its particles with ``w_i = pT_i ΔR_i^(β−2)`` (the
    Weiszfeld step of the β = 1 geometric median; the centroid for β = 2).  Never increases τ_N."""
    w0 = pt * mask
    x = torch.stack([eta, phi], dim=2)                                      # (B, P, 2)
    for _ in range(passes):
        dr = _distances(eta, phi, axes)                                      # (B, P, N)
        near = torch.nn.functional.one_hot(dr.argmin(2), axes.shape[1]).to(pt.dtype)  # (B, P, N)
        w = near * (w0[:, :, None] * dr.clamp_min(1e-6) ** (beta - 2.0))
        tot = w.sum(1)                                                       # (B, N)
        new = torch.einsum("bpn,bpk->bnk", w, x) / tot.clamp_min(1e-30)[:, :, None]
        axes = torch.where((tot > 0)[:, :, None], new, axes)                 # an axis without particles stays
    return axes


def nsubjettiness(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor,
                  n_max: int = 3, beta: float = 1.0, r0: float = 0.8, passes: int = 10) -> torch.Tensor:
    """τ_1 … τ_{n_max} of every jet, ``(B, P)`` each → ``(B, n_max)``, differentiable in pt, η, φ.

    ``τ_N = Σ_i pT_i min_k ΔR_ik^β / (Σ_i pT_i R0^β)`` (normalised measure) with axes from
    exclusive kT clustering refined by ``passes`` minimisation steps (see the module notes).
    A jet with at most N constituents has τ_N = 0, as in FastJet contrib.

    Example:
        Two equal particles a distance d apart: τ_1 = d / (2 R0) (any axis between them),
        τ_2 = 0.

        >>> t = nsubjettiness(torch.tensor([[0.5, 0.5]]), torch.zeros(1, 2), torch.tensor([[0.2, -0.2]]),
        ...                   torch.ones(1, 2), n_max=2)
        >>> [round(v, 6) for v in t[0].tolist()]
        [0.25, 0.0]
    """
    w = pt * mask
    axes = _kt_axes(pt, eta, phi, mask, n_max)
    count = (mask > 0).sum(1)
    out = []
    for n, ax in enumerate(axes, start=1):
        ax = _minimise(pt, eta, phi, mask, ax, beta, passes)
        dmin = _distances(eta, phi, ax).amin(2)                              # (B, P)
        tau = (w * dmin**beta).sum(1) / (w.sum(1).clamp_min(1e-30) * r0**beta)
        out.append(torch.where(count > n, tau, torch.zeros_like(tau)))
    return torch.stack(out, dim=1)


def substructure(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` each → ``(B, 4)``: jet mass (units of pT_jet), τ21 = τ2/τ1, τ32 = τ3/τ2
    (β = 1, R0 = 0.8; a ratio is 0 where its denominator is) and D2, the observables of
    :meth:`JetDomain.distill_observables`.

    Example:
        >>> pt = torch.tensor([[0.4, 0.3, 0.3]])
        >>> obs = substructure(pt, torch.tensor([[0.0, 0.3, -0.3]]), torch.tensor([[0.0, 0.2, 0.2]]), torch.ones(1, 3))
        >>> obs.shape, obs[0, 2].item()              # three particles: τ3 = 0, so τ32 = 0
        (torch.Size([1, 4]), 0.0)
    """
    tau = nsubjettiness(pt, eta, phi, mask, n_max=3)

    def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b > 0, a / b.clamp_min(1e-12), torch.zeros_like(a))

    return torch.stack([jet_mass(pt, eta, phi, mask), ratio(tau[:, 1], tau[:, 0]), ratio(tau[:, 2], tau[:, 1]),
                        energy_correlation_d2(pt, eta, phi, mask)], dim=1)


def constituent_moments(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` each → ``(B, 3)``: the mean and the standard deviation (population, ``1/n``)
    of ``log pT_rel`` over a jet's constituents, and their mean distance to the jet axis
    ``ΔR = sqrt(η_rel² + φ_rel²)`` (unweighted). Infrared-unsafe by design: a student that
    matches mass, τ_N and D2 can still make its softest constituents softer and wider
    (docs/jets.md).
    A jet without constituents gives ``(0, 1e-6, 0)``.

    Example:
        >>> pt = torch.tensor([[0.5, 0.5 * float(torch.e) ** -2, 0.3]])
        >>> out = constituent_moments(pt, torch.tensor([[0.0, 0.3, 9.0]]), torch.tensor([[0.0, 0.4, 9.0]]),
        ...                           torch.tensor([[1.0, 1.0, 0.0]]))    # third slot is padding
        >>> [round(v, 4) for v in out[0].tolist()]                        # log 0.5 - 1, spread 1, ΔR (0 + 0.5) / 2
        [-1.6931, 1.0, 0.25]
    """
    n = mask.sum(1).clamp_min(1.0)
    logpt = torch.log(torch.where(mask > 0, pt, torch.ones_like(pt)).clamp_min(1e-30))
    mean = (logpt * mask).sum(1) / n
    var = (((logpt - mean[:, None]) ** 2) * mask).sum(1) / n
    dr = torch.sqrt(eta**2 + phi**2 + _EPS)
    return torch.stack([mean, torch.sqrt(var + _EPS), (dr * mask).sum(1) / n], dim=1)


def axis_ratio(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` each → ``(B,)``: ``λ2 / λ1``, the ratio of the smaller to the larger eigenvalue
    of the covariance of the constituents' ``(η_rel, φ_rel)`` (unweighted, ``1/n``): 1 for a
    round jet, 0 for constituents on a line.  Seen on top jets (docs/jets.md): the students of
    ``hepgen distill --data-observables`` got it wrong while τ_N were right (a classifier on it
    alone: AUC 0.59), and with it in the data term the jet classifier's AUC fell to the
    teacher's.  ``pt`` is unused (same signature as the others); a jet with fewer than two
    constituents gives ≈ 0.

    Example:
        Constituents at η = ±1 and φ = ±0.5: variances 0.5 and 0.125, no correlation.

        >>> axis_ratio(torch.ones(1, 4), torch.tensor([[1.0, -1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.5, -0.5]]),
        ...            torch.ones(1, 4))
        tensor([0.2500])
    """
    del pt
    n = mask.sum(1).clamp_min(1.0)
    de = eta - (eta * mask).sum(1, keepdim=True) / n[:, None]
    dp = phi - (phi * mask).sum(1, keepdim=True) / n[:, None]
    cee, cpp, cep = ((de * de * mask).sum(1) / n, (dp * dp * mask).sum(1) / n, (de * dp * mask).sum(1) / n)
    half = (cee + cpp) / 2
    root = torch.sqrt(((cee - cpp) / 2) ** 2 + cep**2 + _EPS)
    return ((half - root).clamp_min(0.0) + _EPS) / (half + root)
