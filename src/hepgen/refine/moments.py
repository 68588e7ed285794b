"""Match data's energy response and its spread as functions of the labels (a refiner loss term).

Why: on showers the Wasserstein critic memorises the finite training samples (docs/refine.md,
"Why the pure scale fails") and so neither holds the refined response E_tot/E_inc at data's nor
asks for data's narrower peak: Geant4's response is 6.5 % above GFlash's with a *smaller*
shower-to-shower spread, and the refined peak ended 4–7 % high between 3 and 33 GeV and no
narrower than GFlash's, which a classifier on the summaries sees at once (AUC ≈ 0.93).  This
term asks for both directly, as the station refiner's moments do for traces
(:meth:`hepgen.refine.stations.StationRefiner.moment_loss`), here with the second moment too.

For each group ``g`` of features (rows of the adapter's ``sum_groups``; showers: the whole event)
the event quantity is the log response

    q_g = log(1 + Σ_{v ∈ g} expm1(x_v)) − y_0          (x = log(1 + E/MeV), y_0 = ln(E_inc/MeV)),

and with the basis ``φ(y) = [1, ŷ, ŷ² − 1]`` (``ŷ`` the standardised labels) :meth:`fit` stores
data's least-squares fit ``q_g ≈ φ·a_g``, the residuals' spread ``σ_g`` and the fit
``r_g² ≈ φ·b_g`` of the squared standardised residual ``r_g = (q_g − φ·a_g)/σ_g`` (the variance
as a function of the labels).  :meth:`loss` of a batch is

    L = Σ_g Σ_k [ (mean r_g φ_k)² + (mean (r_g² − φ·b_g) φ_k)² ],

zero when refined events give the same least-squares fits of the mean and of the variance on
``φ`` as data (the fits' normal equations): data's mean response and its spread *as functions
of the labels*, not event by event.  Everything is differentiable in ``x``.

With ``cross=True`` (``RefinerConfig.match_profile``: every layer and the total) the products of
two groups' standardised residuals are fitted too, ``r_g r_h ≈ φ·c_gh`` (their correlation as a
function of the labels), and ``L`` gains ``Σ_{g<h} Σ_k (mean (r_g r_h − φ·c_gh) φ_k)²``.  Why: on
the Geant4 demonstration the refined layer responses had data's means and spreads but not how
they move together (GFlash's layers are far more correlated than Geant4's, and Geant4's total
response rises with the energy in the first layers: longitudinal leakage), and a critic that
saw exactly these numbers did not make the refiner reproduce them (docs/refine.md, thirteenth
round).  Measured there at weight 1 (G35a) it made every figure worse: 36 products estimated on
a batch of 128 give a noisy gradient.

Example (data with response ≈ 1 at every energy; an event at response e^0.1 costs more than one at 1):
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(7, 11, (500, 1)).astype(np.float32)                    # ln E_inc
    >>> e = np.exp(y) * (1 + 0.02 * rng.standard_normal((500, 1)))            # one voxel: E_tot
    >>> x = np.log1p(e).astype(np.float32)
    >>> m = ResponseMoments(np.ones((1, 1), np.float32), y.mean(0), y.std(0))
    >>> m.fit(x, y)
    >>> yt = torch.from_numpy(y)
    >>> bool(m.loss(torch.from_numpy(x) + 0.1, yt) > m.loss(torch.from_numpy(x), yt))
    True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hepgen.refine.critic_sums import log_sums

__all__ = ["ResponseMoments", "moment_basis", "normal_equation_loss"]


def moment_basis(y: torch.Tensor, y_mean: torch.Tensor, y_std: torch.Tensor) -> torch.Tensor:
    """``(N, 1 + 2L)``: 1, the standardised labels ``ŷ = (y − y_mean)/y_std`` and ``ŷ² − 1`` of labels
    ``y`` ``(N, L)`` — the basis on which every moment term fits data's quantities."""
    yn = (y - y_mean) / y_std
    return torch.cat([torch.ones(len(y), 1, dtype=y.dtype), yn, yn ** 2 - 1.0], 1)


def normal_equation_loss(r: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``Σ_q Σ_k (mean_n r_nq φ_nk)²`` of residuals ``r`` ``(N, Q)`` and basis ``phi`` ``(N, K)``: zero
    when the least-squares fit of the residuals on the basis is zero (its normal equations), i.e.
    when a batch gives data's fits."""
    return ((r[:, :, None] * phi[:, None, :]).mean(0) ** 2).sum()


class ResponseMoments(nn.Module):
    """Moments of the log group responses of refined events against data's (module docstring).

    Arguments:
        groups: ``(G, D)`` 0/1 feature groups (the adapter's ``sum_groups`` rows to match).
        y_mean, y_std: ``(L,)`` the labels' standardisation (the refiner's).
        cross: also match the products of every pair of groups' standardised residuals
            (their correlations as functions of the labels; module docstring).
    """

    def __init__(self, groups: np.ndarray, y_mean, y_std, cross: bool = False) -> None:
        super().__init__()
        groups = np.asarray(groups, np.float32)
        if groups.ndim != 2 or groups.shape[0] < 1:
            raise ValueError(f"moments: expected (G, D) feature groups, found shape {groups.shape}")
        y_mean, y_std = torch.as_tensor(np.asarray(y_mean, np.float32)), torch.as_tensor(np.asarray(y_std, np.float32))
        k = 1 + 2 * len(y_mean)
        self.register_buffer("groups", torch.from_numpy(groups))
        self.register_buffer("y_mean", y_mean.reshape(-1))
        self.register_buffer("y_std", y_std.reshape(-1).clamp(min=1e-6))
        self.register_buffer("coef_mean", torch.zeros(len(groups), k))
        self.register_buffer("coef_sq", torch.zeros(len(groups), k))
        self.register_buffer("std", torch.ones(len(groups)))
        pairs = torch.triu_indices(len(groups), len(groups), offset=1) if cross else torch.zeros(2, 0, dtype=torch.long)
        self.register_buffer("pairs", pairs)                                   # (2, P) group pairs g < h
        self.register_buffer("coef_cross", torch.zeros(pairs.shape[1], k))

    def basis(self, y: torch.Tensor) -> torch.Tensor:
        """``(N, 1 + 2L)``: :func:`moment_basis` with the refiner's label standardisation."""
        return moment_basis(y, self.y_mean, self.y_std)

    def quantities(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N, G)``: the log responses ``q_g`` of features ``x`` ``(N, D)`` with labels ``y`` ``(N, L)``."""
        return log_sums(x, self.groups) - y[:, :1]

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit data's mean and variance of ``q`` on the basis (``x`` ``(N, D)``, ``y`` ``(N, L)``)."""
        with torch.no_grad():
            xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
            if len(xt) < 2 * self.coef_mean.shape[1]:
                raise ValueError(f"moments: expected at least {2 * self.coef_mean.shape[1]} data events to fit, "
                                 f"found {len(xt)}")
            a, q = self.basis(yt).double(), self.quantities(xt, yt).double()
            c = torch.linalg.lstsq(a, q).solution  # (K, G)
            res = q - a @ c
            std = res.std(0).clamp(min=1e-6)
            b = torch.linalg.lstsq(a, (res / std) ** 2).solution
            self.coef_mean.copy_(c.T.float())
            self.std.copy_(std.float())
            self.coef_sq.copy_(b.T.float())
            if self.pairs.shape[1]:
                r = res / std
                cc = torch.linalg.lstsq(a, r[:, self.pairs[0]] * r[:, self.pairs[1]]).solution   # (K, P)
                self.coef_cross.copy_(cc.T.float())

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The moment term ``L`` of a batch (module docstring); a scalar, differentiable in ``x``."""
        phi = self.basis(y)
        r = (self.quantities(x, y) - phi @ self.coef_mean.T) / self.std  # (N, G)
        loss = normal_equation_loss(r, phi) + normal_equation_loss(r ** 2 - phi @ self.coef_sq.T, phi)
        if self.pairs.shape[1]:
            loss = loss + normal_equation_loss(r[:, self.pairs[0]] * r[:, self.pairs[1]] - phi @ self.coef_cross.T, phi)
        return loss
