"""Fitted, invertible preprocessing of showers and conditions for generative models.

:class:`ShowerPreprocessor` maps showers (MeV voxels) to an unbounded feature vector in
which density models train well, and back.  It follows the CaloFlow recipe:

1. *Dequantisation*: uniform noise in ``[0, noise_level)`` MeV is added to every voxel so
   that empty voxels are not a delta function (the inverse removes everything below
   ``threshold`` MeV, which restores the sparsity).
2. *Energy fractions* (``n_layers`` numbers in [0, 1]):
   ``u_0 = E_tot / (scale · E_inc)`` and ``u_l = E_{l-1} / Σ_{j ≥ l-1} E_j`` for
   ``l = 1 … n_layers-1`` — each layer's share of the energy not yet placed, so any
   vector in the unit cube maps back to valid, non-negative layer energies.
3. *Shapes*: every voxel divided by its layer energy (each layer sums to one).
4. Both parts go through ``logit(α + (1-2α) x)`` and are standardised with the fitted
   mean and standard deviation.
5. Optionally (``deposit_bound`` B, issue 14), the scale of each *shape* feature is widened
   to ``max(std, (max - mean) / B)`` so that the largest training value lies at B standard
   units.  Sparse voxels (a shower's outermost radial bins, occupied in a few % of showers)
   have a spike of empty voxels (logit of noise / layer energy, ≈ -12) and rare deposits
   ≈ 7 logit units higher; the standard deviation is dominated by that gap, so the deposits
   sit at ≈ sqrt((1-p)/p) ≈ 4–6 standard units for occupancy p ≈ 3–5 %.  The rational-
   quadratic splines of the flows are the identity outside ``[-5, 5]``, so deposits beyond
   it are out of the flow's reach and the generated outer bins stay nearly empty.
   With ``energy_bound`` B_e the *energy* features get the same treatment on both sides, from
   quantiles rather than extremes: each scale is at least ``max(q_hi - mean, mean - q_lo) / B_e``
   with ``q_lo``, ``q_hi`` the training quantiles at ``ENERGY_BOUND_QUANTILE`` and
   ``1 - ENERGY_BOUND_QUANTILE`` (10⁻⁴).  The energy fractions of deep layers have a heavy tail:
   a low-energy shower that stops before layer 4 has ``u_4`` (layer 3's share of what is left)
   near 1, 4–8 standard units out, where the energy flow's splines are the identity.

6. Optionally (``occupancy``, issue 14), ``n_layers`` more energy features: each layer's number
   of lit cells k (voxels at or above ``threshold``), dequantised as ``(k + U(0, 1)) / (n_cells + 1)``,
   after the energy fractions.  The energy flow then learns the lit-cell counts jointly with the
   layer energies, the shape flow sees them among its conditions, and the inverse keeps the k
   largest cells of each layer (k at most the layer energy over the threshold), renormalised to
   the layer energy, and raises kept cells below the threshold to it with the energy of the
   larger ones (:func:`fill_to_threshold`), so that the layer keeps its energy and k lit cells.  A shape flow alone smeared
   the energy of some low-energy layers over nearly every cell (docs/models.md).  The raised cells
   do not all go to the threshold itself (a spike in the cell spectrum): each gets an energy from
   the training showers' spectrum of a layer's faintest lit cell (``lift_quantiles``, fitted with
   ``occupancy``), at a quantile level taken from the fractional part of the dequantised count,
   capped at the layer's faintest cell above the threshold.
   A layer given exactly one lit cell does not take it from the shape flow (whose shares for
   such a layer are diffuse: a coupling flow with a few spline bins does not represent "one cell
   of 48, anywhere", and the largest share follows the smooth, central mean profile): the cell is
   drawn from the training showers' histogram of that layer's lone lit cell in the shower's bin of
   E_inc (``lone_cells``, fitted with ``occupancy`` when there are no extra conditions), by the
   inverse CDF at (a multiple of) the same fractional part of the count, which a count of one leaves
   unused by the lift.  The shape features of such a layer are then ignored (docs/models.md, "Lone cells").

7. Optionally (``orientations``, issue 14), a symmetry of the showers' distribution: the voxel
   permutations of a group (:meth:`hepgen.data.geometry.CylindricalBinning.orientations`: the
   azimuthal rotations of the binning, and mirror images).  Features are not changed; a
   generated shower is turned by a group element drawn uniformly and independently of it
   (:meth:`ShowerPreprocessor.orient`), which makes the generated distribution exactly
   invariant, as the true one is, and closer to it: averaging a density over a group it is
   invariant under never increases its KL divergence from the truth (convexity).  With
   ``augment_orientations`` each training shower is also turned by a random element every epoch.
   Why: a spline coupling flow does not know the symmetry and breaks it in the joint
   distribution of the cells (not in their means): on the demo's data, turning every generated
   shower at random took hepgen's low-level classifier AUC from 0.55-0.60 to 0.51-0.52
   (docs/models.md, "Orientation").

Conditions are ``log(E_inc)`` and any extra conditions (angle, impact position),
standardised with fitted statistics.

The state is a dict of plain lists (``state_dict`` / ``from_state``) so that it is
saved inside checkpoints loadable with ``torch.load(weights_only=True)``.

References:
    C. Krause, D. Shih, "CaloFlow: Fast and Accurate Generation of Calorimeter Showers
    with Normalizing Flows", arXiv:2106.05285.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Sequence

import numpy as np

__all__ = ["ENERGY_BOUND_QUANTILE", "LIFT_QUANTILES", "LIFT_STEP", "LONE_CELL_BINS", "LONE_CELL_MIN", "LONE_CELL_PRIOR", "LONE_CELL_SCRAMBLE",
           "ShowerPreprocessor", "features_rows", "fill_to_threshold", "incident_energy_array", "keep_largest",
           "lone_cell_index"]


LIFT_STEP = 0.5 * (np.sqrt(5.0) - 1.0)  # golden-ratio step of the raised cells' quantile levels
LIFT_QUANTILES = 33  # levels of the faintest-lit-cell spectrum kept by fit (occupancy)
#: energy_bound: the tail quantile (each side) of an energy feature placed at B_e standard units;
#: not the extremes, so that one odd training shower does not squeeze a feature's bulk
ENERGY_BOUND_QUANTILE = 1e-4
#: occupancy: bins of log E_inc (equal numbers of training showers) of the lone-lit-cell histograms
LONE_CELL_BINS = 8
#: ... each bin's histogram is pulled towards the layer's histogram over all energies with this many
#: pseudo-counts (a bin with few lone cells keeps the overall shape)
LONE_CELL_PRIOR = 10.0
#: ... and a layer with fewer lone-lit training layers than this keeps the shape flow's largest share
LONE_CELL_MIN = 20
#: ... the cell is drawn at the fractional part of this multiple of the count's fractional part: uniform in
#: training, the generated one is not quite (demo, layers 6-7: 1.3× the mean density in its first tenth,
#: 0.8× in its last), and the drawn lone cells sat 2-3 mm inside the law's mean radius; the fractional
#: part of 64 × a smooth density is uniform to ~1/64 of its slope (docs/models.md, "Lone cells")
LONE_CELL_SCRAMBLE = 64


def _logit(x: np.ndarray, alpha: float) -> np.ndarray:
    x = alpha + (1.0 - 2.0 * alpha) * x
    return np.log(x) - np.log1p(-x)


def _expit(y: np.ndarray, alpha: float) -> np.ndarray:
    x = 0.5 * (1.0 + np.tanh(0.5 * y))  # overflow-free sigmoid
    return np.clip((x - alpha) / (1.0 - 2.0 * alpha), 0.0, 1.0)


def incident_energy_array(incident_energies) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` incident energies in MeV → ``(N,)`` float64, checked finite and > 0.

    >>> incident_energy_array([[1e3], [5e4]])
    array([ 1000., 50000.])
    """
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
        raise ValueError("incident energies must be finite and > 0 MeV")
    return e


def keep_largest(shares: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Zero all but the ``k[i]`` largest entries of each row ``shares[i]`` (ties at the k-th value
    are all kept); ``k[i] = 0`` zeroes the row.  ``(N, M)``, ``(N,)`` → ``(N, M)``.

    >>> keep_largest(np.array([[0.1, 0.5, 0.2, 0.2], [0.3, 0.3, 0.4, 0.0]]), np.array([2, 0]))
    array([[0. , 0.5, 0.2, 0.2],
           [0. , 0. , 0. , 0. ]])
    """
    shares = np.asarray(shares)
    k = np.asarray(k, dtype=np.int64).reshape(-1, 1)
    ordered = -np.sort(-shares, axis=1)
    kth = np.take_along_axis(ordered, np.clip(k - 1, 0, shares.shape[1] - 1), axis=1)
    return np.where((shares >= kth) & (k > 0), shares, 0.0)


def lone_cell_index(cdf: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one cell per row: the number of entries of ``cdf[i]`` at or below
    ``v = (LONE_CELL_SCRAMBLE · phase[i]) mod 1``, at most ``n - 1``.  ``cdf (N, n)`` non-decreasing rows
    ending at 1, ``phase (N,)`` in [0, 1) → ``(N,)`` int.

    >>> cdf = np.array([[0.25, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]])
    >>> lone_cell_index(cdf, (np.array([0.6, 0.1]) + [3, 60]) / LONE_CELL_SCRAMBLE)   # v = 0.6, 0.1
    array([2, 2])
    """
    cdf = np.asarray(cdf)
    v = np.mod(np.asarray(phase, dtype=np.float64).reshape(-1, 1) * LONE_CELL_SCRAMBLE, 1.0)
    return np.minimum((cdf <= v).sum(axis=1), cdf.shape[1] - 1)


def fill_to_threshold(cells: np.ndarray, threshold: float, quantiles: np.ndarray | None = None,
                      phase: np.ndarray | None = None) -> np.ndarray:
    """Raise every non-zero cell below ``threshold`` to it, taking the energy from the cells above
    it in proportion to their excess over it, so that each row keeps its sum and its lit cells.
    ``(N, M)`` MeV → ``(N, M)`` MeV.  Needs ``row sum ≥ threshold × lit cells`` (the inverse caps the
    count so); a row without cells above the threshold then has all its cells at the threshold.

    With ``quantiles`` (``(Q,)``, a quantile function on the levels ``linspace(0, 1, Q)`` in units
    of the threshold, non-decreasing, ``quantiles[0] = 1``) and ``phase`` (``(N,)`` in ``[0, 1)``),
    the j-th raised cell of row i (in cell order) is raised to ``threshold × quantile(level)``
    (linear interpolation) at ``level = (phase[i] + j φ) mod 1``, φ = (√5 − 1)/2 (a golden-ratio
    sequence: distinct levels for several cells of a row), capped at the row's faintest cell above
    the threshold; as far as the energy above the threshold allows (otherwise all raised cells
    give up the same share of their part above the threshold).  Sums and lit cells are kept.

    >>> fill_to_threshold(np.array([[0.005, 0.02, 0.075, 0.0]]), 0.01)   # deficit 0.005 from excesses 0.01, 0.065
    array([[0.01      , 0.01933333, 0.07066667, 0.        ]])
    >>> q = np.array([1.0, 1.5, 2.0])                                    # level 0.5 → 1.5 × threshold
    >>> fill_to_threshold(np.array([[0.005, 0.02, 0.075, 0.0]]), 0.01, q, np.array([0.5]))
    array([[0.015     , 0.01866667, 0.06633333, 0.        ]])
    """
    cells = np.asarray(cells, dtype=np.float64)
    low = (cells > 0) & (cells < threshold)
    high = cells >= threshold
    deficit = np.where(low, threshold - cells, 0.0).sum(axis=1, keepdims=True)
    excess = np.where(high, cells - threshold, 0.0)
    total = excess.sum(axis=1, keepdims=True)
    target = np.full_like(cells, threshold)
    if quantiles is not None:
        q = np.asarray(quantiles, dtype=np.float64)
        level = (np.asarray(phase, dtype=np.float64).reshape(-1, 1) + (np.cumsum(low, axis=1) - 1) * LIFT_STEP) % 1.0
        pos = level * (len(q) - 1)
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(q) - 2)
        target = threshold * (q[i0] + (pos - i0) * (q[i0 + 1] - q[i0]))
        faintest = np.where(high, cells, np.inf).min(axis=1, keepdims=True)
        target = np.clip(target, threshold, np.where(np.isfinite(faintest), faintest, threshold))
    extra = np.where(low, target - threshold, 0.0).sum(axis=1, keepdims=True)
    # the share of the wanted energy above the threshold that the cells above it can give
    share = np.clip(np.divide(total - deficit, extra, out=np.ones_like(extra), where=extra > 0), 0.0, 1.0)
    keep = 1.0 - np.divide(deficit + share * extra, total, out=np.zeros_like(total), where=total > 0)
    lifted = threshold + share * (target - threshold)
    return np.where(low, lifted, np.where(high, threshold + excess * np.clip(keep, 0.0, 1.0), 0.0))


def features_rows(n_voxels: int) -> int:
    """Rows whose float64 feature transients (about six ``(rows, n_voxels)`` arrays) take ~200 MB:
    the slice size of computing features in bounded memory."""
    return max(1, (1 << 22) // max(1, int(n_voxels)))


class _Moments:
    """Running count, mean and variance (ddof 0) per column, merged batch by batch (float64).

    Chan, Golub, LeVeque, "Algorithms for computing the sample variance", Am. Stat. 37 (1983):
    the pairwise update of (n, mean, M2); hand-written because numpy has no streaming moments.
    """

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta ** 2 * (self.n * nb / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n)


@dataclass
class ShowerPreprocessor:
    """Invertible map showers (MeV) ↔ standardised logit features.

    Arguments:
        layer_sizes: number of voxels in each active layer, in depth order.
        condition_names: extra condition datasets used besides the incident energy.
        noise_level: width (MeV) of the dequantisation noise added to every voxel.
        threshold: voxels below this energy (MeV) are set to zero after the inverse.
        alpha: logit regulariser.
        deposit_bound: None (the plain standardisation, the default, as in checkpoints written
            before it existed) or B > 0: each shape feature's scale is at least
            ``(max - mean) / B`` over the training rows, so no training deposit is standardised
            above B (step 5 above; the spline flows' support is ``[-5, 5]``).
        energy_bound: None (the default, as in checkpoints written before it existed) or
            B_e > 0: each energy feature's scale is at least ``max(q_hi - mean, mean - q_lo) / B_e``,
            ``q_lo``, ``q_hi`` its training quantiles at ``ENERGY_BOUND_QUANTILE`` and one minus it
            (step 5 above).
        occupancy: False (the default, as in checkpoints written before it existed) or True:
            the lit-cell count of each layer is a feature too, and the inverse keeps that many
            cells (step 6 above).
        lift_quantiles: fitted with ``occupancy``: ``(n_layers, LIFT_QUANTILES)``, per layer the
            quantiles at ``linspace(0, 0.99, Q)`` (the top 1 % cut; the first entry set to 1) of the
            faintest lit cell's energy in units of ``threshold``, over training layers with at least
            two lit cells; :func:`fill_to_threshold` reads them as levels 0 to 1.  None (checkpoints
            written before it existed) raises kept cells to the threshold itself.
        lone_cells: fitted with ``occupancy`` and no extra conditions: ``(LONE_CELL_BINS, n_voxels)``,
            row b, the slice of layer l: where layer l's only lit cell sits in training showers whose
            log(E_inc / MeV) falls in bin b of ``lone_edges`` (a probability per cell, summing to one
            over the layer; averaged over ``orientations``; ``LONE_CELL_PRIOR`` pseudo-counts of the
            layer's histogram over all bins; zeros for a layer with fewer than ``LONE_CELL_MIN`` such
            training layers).  The inverse draws a layer's cell from it when its count is one (step 6).
            None (checkpoints written before it existed; models with extra conditions, where the place
            depends on them) keeps the shape flow's largest share.
        lone_edges: the ``LONE_CELL_BINS - 1`` inner edges of those bins in log(E_inc / MeV).
        orientations: None (the default) or ``(G, n_voxels)`` integer voxel permutations of a
            symmetry group of the showers' distribution, row 0 the identity (step 7; e.g.
            :func:`hepgen.data.geometry.orientation_permutations`); generated showers are turned
            by a uniformly drawn row (:meth:`orient`).
        augment_orientations: with ``orientations``, turn each training shower by a random row
            every time its features are drawn (:meth:`transform`, and the fit).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> energies = rng.uniform(1e3, 1e4, (50, 1))                    # MeV
        >>> showers = rng.exponential(1.0, (50, 8)) * energies / 16      # (N, 8) MeV
        >>> pre = ShowerPreprocessor(layer_sizes=[4, 4]).fit(showers, energies)
        >>> x = pre.transform(showers, energies, rng)
        >>> x.shape                                                      # 2 layer energies + 8 voxels
        (50, 10)
        >>> back = pre.inverse(x, energies)                              # (N, 8) MeV
        >>> bool(np.allclose(back, showers, rtol=1e-2, atol=0.05))
        True
    """

    layer_sizes: Sequence[int]
    condition_names: Sequence[str] = ()
    noise_level: float = 1e-3
    threshold: float = 1e-2
    alpha: float = 1e-6
    deposit_bound: float | None = None
    energy_bound: float | None = None
    occupancy: bool = False
    orientations: np.ndarray | None = field(default=None, repr=False)
    augment_orientations: bool = False
    # fitted state
    scale: float = 1.0
    feat_mean: np.ndarray | None = field(default=None, repr=False)
    feat_std: np.ndarray | None = field(default=None, repr=False)
    cond_mean: np.ndarray | None = field(default=None, repr=False)
    cond_std: np.ndarray | None = field(default=None, repr=False)
    lift_quantiles: np.ndarray | None = field(default=None, repr=False)
    lone_cells: np.ndarray | None = field(default=None, repr=False)
    lone_edges: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.layer_sizes = [int(s) for s in self.layer_sizes]
        self.condition_names = list(self.condition_names)
        if self.threshold < self.noise_level:
            raise ValueError(
                f"threshold ({self.threshold} MeV) must be >= noise_level ({self.noise_level} MeV)"
            )
        for name in ("deposit_bound", "energy_bound"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) > 0:
                    raise ValueError(f"{name}: expected None or a number > 0, found {value!r}")
                setattr(self, name, float(value))
        if self.orientations is not None:
            perms = np.asarray(self.orientations, dtype=np.int64)
            if (perms.ndim != 2 or perms.shape[1] != self.n_voxels or len(perms) == 0
                    or not np.array_equal(np.sort(perms, axis=1), np.broadcast_to(np.arange(self.n_voxels), perms.shape))
                    or not np.array_equal(perms[0], np.arange(self.n_voxels))):
                raise ValueError(f"orientations: expected (G, {self.n_voxels}) voxel permutations with the identity "
                                 f"first, found an array of shape {perms.shape}")
            self.orientations = perms
        elif self.augment_orientations:
            raise ValueError("augment_orientations needs orientations (the voxel permutations), found None")

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes)

    @property
    def n_voxels(self) -> int:
        return int(sum(self.layer_sizes))

    @property
    def n_energy_features(self) -> int:
        """Features before the shapes: the energy fractions, and the lit-cell counts with ``occupancy``."""
        return self.n_layers * (2 if self.occupancy else 1)

    @property
    def n_features(self) -> int:
        return self.n_energy_features + self.n_voxels

    def orient(self, showers: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Each shower turned by orientation ``floor(u G)`` (step 7); ``showers`` itself without orientations.

        ``showers (N, n_voxels)``, ``u (N,)`` uniform in [0, 1), drawn independently of the showers.

        >>> pre = ShowerPreprocessor([3], orientations=np.array([[0, 1, 2], [2, 0, 1]]))
        >>> pre.orient(np.array([[1., 2., 3.], [1., 2., 3.]]), np.array([0.2, 0.7]))
        array([[1., 2., 3.],
               [3., 1., 2.]])
        """
        if self.orientations is None:
            return showers
        g = np.minimum((np.asarray(u, dtype=np.float64).reshape(-1) * len(self.orientations)).astype(np.int64),
                       len(self.orientations) - 1)
        return np.take_along_axis(np.asarray(showers), self.orientations[g], axis=1)

    @property
    def fitted(self) -> bool:
        return self.feat_mean is not None

    # --- conditions ---------------------------------------------------------------------
    def raw_conditions(self, incident_energies: np.ndarray, conditions: dict | None = None) -> np.ndarray:
        """(N, 1 + k) float64: log(E_inc/MeV) followed by the extra conditions in order."""
        e = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
        cols = [np.log(e)]
        conditions = conditions or {}
        for name in self.condition_names:
            if name not in conditions:
                raise ValueError(f"condition {name!r} is required by this model, found {sorted(conditions)}")
            cols.append(np.asarray(conditions[name], dtype=np.float64).reshape(len(e), -1))
        return np.concatenate(cols, axis=1)

    def transform_conditions(self, incident_energies, conditions=None) -> np.ndarray:
        c = self.raw_conditions(incident_energies, conditions)
        return ((c - self.cond_mean) / self.cond_std).astype(np.float32)

    # --- showers ------------------------------------------------------------------------
    def _split(self, showers: np.ndarray) -> list[np.ndarray]:
        bounds = np.cumsum([0, *self.layer_sizes])
        return [showers[:, bounds[i] : bounds[i + 1]] for i in range(self.n_layers)]

    def _unit_features(self, showers, incident_energies, rng) -> np.ndarray:
        raw = np.asarray(showers, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != self.n_voxels:
            raise ValueError(f"showers: expected shape (N, {self.n_voxels}), found {raw.shape}")
        if self.augment_orientations:  # step 7: a random orientation of each shower
            raw = self.orient(raw, rng.uniform(size=len(raw)))
        showers = raw + rng.uniform(0.0, self.noise_level, size=raw.shape)
        layers = self._split(showers)
        e_layer = np.stack([l.sum(axis=1) for l in layers], axis=1)  # (N, L)
        e_tot = e_layer.sum(axis=1)
        e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
        u = np.empty_like(e_layer)
        u[:, 0] = e_tot / (self.scale * e_inc)
        remaining = e_tot[:, None] - np.cumsum(e_layer, axis=1) + e_layer  # Σ_{j ≥ l} E_j
        u[:, 1:] = e_layer[:, :-1] / remaining[:, :-1]
        shapes = np.concatenate([l / l.sum(axis=1, keepdims=True) for l in layers], axis=1)
        parts = [u, shapes]
        if self.occupancy:  # lit cells of the showers as given (before the dequantisation noise)
            # lit as the inverse keeps cells: at or above the threshold
            lit = np.stack([(l >= self.threshold).sum(axis=1) for l in self._split(raw)], axis=1)
            sizes = np.asarray(self.layer_sizes, dtype=np.float64)
            parts.insert(1, (lit + rng.uniform(0.0, 1.0, size=lit.shape)) / (sizes + 1.0))
        return np.clip(np.concatenate(parts, axis=1), 0.0, 1.0)

    def fit(self, showers, incident_energies, conditions=None, seed: int = 0) -> "ShowerPreprocessor":
        """Fit energy scale and standardisation on training showers (MeV).

        The energy scale is 1.5 × the largest training response ``E_tot / E_inc`` (headroom so
        that generated showers can exceed it); the feature and condition means and standard
        deviations are those of the training rows.  Computed by :meth:`fit_chunks` on the whole
        array (float64 transients in slices of :func:`features_rows` rows; one slice — the same
        numbers as a single numpy mean/std — up to ~4M voxel values)."""
        showers, incident_energies = np.asarray(showers), np.asarray(incident_energies)
        return self.fit_chunks(lambda: [(showers, incident_energies, conditions)], seed=seed)

    def fit_chunks(self, chunks: Callable[[], Iterable[tuple]], seed: int = 0) -> "ShowerPreprocessor":
        """:meth:`fit` on data read chunk by chunk: two passes over ``chunks()``.

        ``chunks()`` yields ``(showers, incident_energies, conditions)`` of consecutive rows (the
        rows :meth:`fit` would see, in the same order).  Pass 1: the largest response
        ``E_tot/E_inc`` (the energy scale) and the conditions' moments; pass 2: the features'
        moments.  Means and variances are merged chunk by chunk with Chan, Golub and LeVeque's
        pairwise update (float64); the dequantisation noise is drawn from ``default_rng(seed)``
        consumed row after row, the same numbers as on the whole array at once.  The result
        equals the in-memory fit's up to float64 rounding of the sums (tested to 1e-9 relative).
        Peak memory: a chunk and float64 transients of ``features_rows`` rows at a time.

        Example:
            >>> rng = np.random.default_rng(0)
            >>> e = rng.uniform(1e3, 1e4, (40, 1)); s = rng.exponential(1.0, (40, 8)) * e / 16
            >>> a = ShowerPreprocessor([4, 4]).fit(s, e, seed=3)
            >>> b = ShowerPreprocessor([4, 4]).fit_chunks(lambda: ((s[i:i + 7], e[i:i + 7], {})
            ...                                                     for i in range(0, 40, 7)), seed=3)
            >>> bool(np.allclose(a.feat_std, b.feat_std, rtol=1e-12)) and a.scale == b.scale
            True
        """
        top, cond, step = 0.0, _Moments(), features_rows(self.n_voxels)
        faintest: list[list[np.ndarray]] = [[] for _ in self.layer_sizes]  # occupancy: per layer, per slice
        # occupancy: log E_inc of every row; per layer (voxel of the lone lit cell, its row's log E_inc)
        log_e, lone = [], [[] for _ in self.layer_sizes]
        for showers, energies, conditions in chunks():
            e_inc = np.asarray(energies, dtype=np.float64).reshape(-1)
            for i in range(0, e_inc.size, step):
                rows = np.asarray(showers[i:i + step], dtype=np.float64)
                top = max(top, float((rows.sum(axis=1) / e_inc[i:i + step]).max()))
                if self.occupancy:
                    log_e.append(np.log(e_inc[i:i + step]))
                    for l, cells in enumerate(self._split(rows)):
                        lit = cells >= self.threshold
                        n_lit = lit.sum(axis=1)
                        faintest[l].append(np.where(lit, cells, np.inf)[n_lit >= 2].min(axis=1) / self.threshold)
                        one = n_lit == 1
                        lone[l].append(np.stack([np.argmax(lit[one], axis=1), log_e[-1][one]], axis=1))
            if e_inc.size:
                cond.add(self.raw_conditions(energies, conditions))
        if cond.n == 0:
            raise ValueError("ShowerPreprocessor.fit_chunks: expected showers, found none")
        self.scale = float(1.5 * max(top, 1e-6))
        if self.occupancy:
            levels = np.linspace(0.0, 0.99, LIFT_QUANTILES)
            table = np.ones((self.n_layers, LIFT_QUANTILES))
            for l, parts in enumerate(faintest):
                values = np.concatenate(parts)
                if values.size:  # a layer never lit in two cells keeps the threshold itself
                    table[l] = np.maximum.accumulate(np.quantile(values, levels))
            table[:, 0] = 1.0
            self.lift_quantiles = table
            if not self.condition_names:  # with extra conditions the place depends on them: no table
                self._fit_lone_cells(np.concatenate(log_e), [np.concatenate(parts) for parts in lone])
        rng, feat, top_feat = np.random.default_rng(seed), _Moments(), None
        energy_rows = []  # energy_bound: the energy features of every training row (n_energy_features floats each)
        for showers, energies, _ in chunks():
            for i in range(0, len(showers), features_rows(self.n_voxels)):
                j = i + features_rows(self.n_voxels)
                z = _logit(self._unit_features(showers[i:j], energies[i:j], rng), self.alpha)
                feat.add(z)
                if self.energy_bound is not None:
                    energy_rows.append(z[:, : self.n_energy_features].copy())
                if len(z):
                    top_feat = z.max(axis=0) if top_feat is None else np.maximum(top_feat, z.max(axis=0))
        self.feat_mean, self.feat_std = feat.mean, np.maximum(feat.std, 1e-3)
        if self.deposit_bound is not None:
            # step 5: widen the shape features' scales so that the largest deposit is at B units
            k = self.n_energy_features
            reach = (top_feat[k:] - self.feat_mean[k:]) / self.deposit_bound
            self.feat_std = np.concatenate([self.feat_std[:k], np.maximum(self.feat_std[k:], reach)])
        if self.energy_bound is not None:
            # step 5, energy features: both tails, from quantiles
            k = self.n_energy_features
            rows = np.concatenate(energy_rows)
            lo, hi = np.quantile(rows, [ENERGY_BOUND_QUANTILE, 1.0 - ENERGY_BOUND_QUANTILE], axis=0)
            reach = np.maximum(hi - self.feat_mean[:k], self.feat_mean[:k] - lo) / self.energy_bound
            self.feat_std = np.concatenate([np.maximum(self.feat_std[:k], reach), self.feat_std[k:]])
        self.cond_mean, self.cond_std = cond.mean, np.maximum(cond.std, 1e-6)
        return self

    def _fit_lone_cells(self, log_e: np.ndarray, lone: list[np.ndarray]) -> None:
        """``lone_cells`` and ``lone_edges`` from every training row's log E_inc ``(N,)`` and, per layer,
        ``(M_l, 2)`` rows (the lone lit cell's index in the layer, its shower's log E_inc)."""
        edges = np.quantile(log_e, np.linspace(0.0, 1.0, LONE_CELL_BINS + 1)[1:-1])
        table = np.zeros((LONE_CELL_BINS, self.n_voxels))
        start = 0
        for size, rows in zip(self.layer_sizes, lone):
            if len(rows) >= LONE_CELL_MIN:
                cell, where = rows[:, 0].astype(np.int64), np.searchsorted(edges, rows[:, 1])
                counts = np.zeros((LONE_CELL_BINS, size))
                np.add.at(counts, (where, cell), 1.0)
                overall = counts.sum(axis=0) / counts.sum()
                table[:, start:start + size] = ((counts + LONE_CELL_PRIOR * overall)
                                                / (counts.sum(axis=1, keepdims=True) + LONE_CELL_PRIOR))
            start += size
        if self.orientations is not None:  # the law is invariant under the group: average over it
            table = table[:, self.orientations].mean(axis=1)
        self.lone_cells, self.lone_edges = table, edges

    @property
    def lone_cdf(self) -> np.ndarray | None:
        """``(LONE_CELL_BINS, n_voxels)``: ``lone_cells`` summed cumulatively within each layer (a layer
        without a law stays zero); None without ``lone_cells``."""
        if self.lone_cells is None:
            return None
        return np.concatenate([np.cumsum(part, axis=1) for part in self._split(self.lone_cells)], axis=1)

    @property
    def lone_layers(self) -> list[bool]:
        """Per layer, whether a count of one draws the cell from ``lone_cells`` (all False without it)."""
        if self.lone_cells is None:
            return [False] * self.n_layers
        return [bool(part[0].sum() > 0) for part in self._split(self.lone_cells)]

    def transform(self, showers, incident_energies, rng: np.random.Generator) -> np.ndarray:
        """(N, n_voxels) MeV → (N, n_layers + n_voxels) float32 standardised features."""
        self._check_fitted()
        # in slices of features_rows rows (bounded float64 transients); the noise generator is
        # consumed row after row, so the result does not depend on the slicing
        showers = np.asarray(showers)
        step, n = features_rows(self.n_voxels), len(showers)
        out = np.empty((n, self.n_features), dtype=np.float32)
        e = np.asarray(incident_energies).reshape(-1)
        for i in range(0, n, step):
            z = _logit(self._unit_features(showers[i:i + step], e[i:i + step], rng), self.alpha)
            out[i:i + step] = (z - self.feat_mean) / self.feat_std
        return out

    def decode_parts(self, features: np.ndarray, incident_energies: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of :meth:`inverse` before any cell is kept or dropped.

        ``(N, n_features)`` features, ``(N,)`` or ``(N, 1)`` MeV → ``{"e_layer": (N, n_layers) MeV,
        "shapes": (N, n_voxels) shares in [0, 1] (each layer's sum to ~1), "occupancy": (N, n_layers)
        dequantised counts in [0, 1], "lit": (N, n_layers) the lit cells the inverse keeps}`` (the
        last two None without occupancy).  ``e_layer`` includes the dequantisation noise's mass, as
        the training features did; ``lit`` is :meth:`lit_cells_of` capped at what the layer's
        energy can fill at the threshold, ``floor(E_layer / threshold)``.

        Example (a layer's energy comes back up to the noise's mass, at most 4 cells × 1e-3 MeV here):
            >>> rng = np.random.default_rng(0)
            >>> energies = rng.uniform(1e3, 1e4, (20, 1))                        # MeV
            >>> showers = rng.exponential(1.0, (20, 8)) * energies / 16          # every cell lit
            >>> pre = ShowerPreprocessor([4, 4], occupancy=True).fit(showers, energies)
            >>> parts = pre.decode_parts(pre.transform(showers, energies, rng), energies)
            >>> sums = np.stack([showers[:, :4].sum(axis=1), showers[:, 4:].sum(axis=1)], axis=1)
            >>> bool(np.all(np.abs(parts["e_layer"] - sums) <= 4e-3 + 1e-6 * sums)), parts["lit"][:2].tolist()
            (True, [[4, 4], [4, 4]])
        """
        self._check_fitted()
        x = _expit(np.asarray(features, dtype=np.float64) * self.feat_std + self.feat_mean, self.alpha)
        L = self.n_layers
        u = x[:, :L]
        remaining = u[:, 0] * self.scale * np.asarray(incident_energies, dtype=np.float64).reshape(-1)
        e_layer = np.empty_like(u)
        for l in range(L - 1):
            e_layer[:, l] = u[:, l + 1] * remaining
            remaining = remaining - e_layer[:, l]
        e_layer[:, -1] = remaining
        occupancy = x[:, L : 2 * L] if self.occupancy else None
        lit = None if occupancy is None else np.minimum(self.lit_cells_of(occupancy),
                                                        np.floor(e_layer / self.threshold + 1e-9)).astype(np.int64)
        return {"e_layer": e_layer, "shapes": x[:, self.n_energy_features :], "occupancy": occupancy, "lit": lit}

    def inverse(self, features: np.ndarray, incident_energies: np.ndarray) -> np.ndarray:
        """(N, n_features) features → (N, n_voxels) float32 showers in MeV (≥ 0)."""
        parts = self.decode_parts(features, incident_energies)
        e_layer, shapes, occupancy, lit = parts["e_layer"], parts["shapes"], parts["occupancy"], parts["lit"]
        e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
        if lit is not None:  # the fractional part of the dequantised count: U(0, 1) in training
            phase = np.mod(occupancy * (np.asarray(self.layer_sizes) + 1.0), 1.0)
            # per layer (N, n_cells): the cumulative lone-cell law of each shower's bin of E_inc
            cdf = None if self.lone_cells is None else self._split(
                self.lone_cdf[np.searchsorted(self.lone_edges, np.log(e_inc))])
            drawn = self.lone_layers
        out = []
        for l, s in enumerate(self._split(shapes)):
            e = e_layer[:, l : l + 1]
            if lit is not None:
                k = lit[:, l]
                if cdf is not None and drawn[l]:  # one lit cell: drawn from the lone-cell law
                    one = np.flatnonzero(k == 1)
                    s = s.copy()
                    s[one] = 0.0
                    s[one, lone_cell_index(cdf[l][one], phase[one, l])] = 1.0
                s = keep_largest(s, k)
            norm = s.sum(axis=1, keepdims=True)
            cells = np.divide(s, norm, out=np.zeros_like(s), where=norm > 0) * e
            if lit is not None:
                q = None if self.lift_quantiles is None else self.lift_quantiles[l]
                cells = fill_to_threshold(cells, self.threshold, q, phase[:, l])
            out.append(cells)
        showers = np.concatenate(out, axis=1)
        showers[showers < self.threshold] = 0.0
        return showers.astype(np.float32)

    def lit_cells_of(self, occupancy: np.ndarray) -> np.ndarray:
        """(N, n_layers) dequantised occupancies in [0, 1] → lit-cell counts ``floor(o · (n_cells + 1))``,
        clipped to ``[0, n_cells]`` (the inverse of step 6).

        >>> ShowerPreprocessor([4, 9], occupancy=True).lit_cells_of(np.array([[0.5, 0.05], [1.0, 0.0]]))
        array([[2, 0],
               [4, 0]])
        """
        sizes = np.asarray(self.layer_sizes)
        return np.clip(np.floor(np.asarray(occupancy) * (sizes + 1)), 0, sizes).astype(np.int64)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("ShowerPreprocessor is not fitted: call fit() first")

    # --- persistence ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        self._check_fitted()
        return {
            "layer_sizes": list(self.layer_sizes),
            "condition_names": list(self.condition_names),
            "noise_level": self.noise_level,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "deposit_bound": self.deposit_bound,
            "energy_bound": self.energy_bound,
            "occupancy": self.occupancy,
            "lift_quantiles": None if self.lift_quantiles is None else np.asarray(self.lift_quantiles).tolist(),
            "lone_cells": None if self.lone_cells is None else np.asarray(self.lone_cells).tolist(),
            "lone_edges": None if self.lone_edges is None else np.asarray(self.lone_edges).tolist(),
            "orientations": None if self.orientations is None else self.orientations.tolist(),
            "augment_orientations": self.augment_orientations,
            "scale": self.scale,
            "feat_mean": self.feat_mean.tolist(),
            "feat_std": self.feat_std.tolist(),
            "cond_mean": self.cond_mean.tolist(),
            "cond_std": self.cond_std.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "ShowerPreprocessor":
        arrays = {k: np.asarray(state[k], dtype=np.float64) for k in ("feat_mean", "feat_std", "cond_mean", "cond_std")}
        scalars = {k: state[k] for k in ("layer_sizes", "condition_names", "noise_level", "threshold", "alpha", "scale")}
        # checkpoints written before deposit_bound (energy_bound) existed were standardised without it
        # ... and without occupancy (and its lift_quantiles)
        # ... and without orientations
        # ... and without the lone-cell law
        lift, perms = state.get("lift_quantiles"), state.get("orientations")
        lone, lone_edges = state.get("lone_cells"), state.get("lone_edges")
        return cls(**scalars, **arrays, deposit_bound=state.get("deposit_bound"), energy_bound=state.get("energy_bound"),
                   occupancy=bool(state.get("occupancy", False)),
                   orientations=None if perms is None else np.asarray(perms, dtype=np.int64),
                   augment_orientations=bool(state.get("augment_orientations", False)),
                   lift_quantiles=None if lift is None else np.asarray(lift, dtype=np.float64),
                   lone_cells=None if lone is None else np.asarray(lone, dtype=np.float64),
                   lone_edges=None if lone_edges is None else np.asarray(lone_edges, dtype=np.float64))
