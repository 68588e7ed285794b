"""Physics observables of calorimeter showers (CaloChallenge high-level features and more).

All functions are pure numpy on ``showers: (N, n_voxels)`` in MeV and a geometry from
:mod:`hepgen.data.geometry`; they score a Geant4 file and a model's output alike.

* :func:`high_level_features` — the CaloChallenge per-layer features;
* :func:`depth_observables` — depth-weighted energy, shower depth and depth width (CaloFlow);
* :func:`response_resolution` — energy response and resolution in bins of the incident
  energy, with a fit of σ/E = a/√E ⊕ b;
* :func:`cell_energies`, :func:`layer_correlation` — single-cell energy spectrum and the
  layer-to-layer energy correlation matrix (Pearson, or Spearman: insensitive to a few outlying
  showers);
* :func:`lit_cells`, :func:`layer_energy_edges`, :func:`lit_cells_profile`,
  :func:`fraction_above_profile` — the number of lit cells of each layer as a function of that
  layer's energy (a model can get the mean occupancy right and still draw a few layers with
  their energy smeared over every cell: issue 14).

Definitions follow the CaloChallenge evaluation code: per layer, the energy, the
energy-weighted centre of the transverse coordinates x = r cos α ("η" direction) and
y = r sin α ("φ" direction) at voxel centres, and the energy-weighted standard deviations
(widths); a layer without energy has centre and width 0.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "DEPTH_OBSERVABLES",
    "FEATURE_LABELS",
    "FEATURE_TITLES",
    "cell_energies",
    "depth_observables",
    "feature_label",
    "feature_matrix",
    "feature_stem",
    "feature_title",
    "fraction_above_profile",
    "high_level_features",
    "incident_energy_edges",
    "layer_correlation",
    "orientation_asymmetry",
    "layer_energies",
    "layer_energy_edges",
    "lit_cells",
    "lit_cells_profile",
    "longitudinal_profile",
    "radial_profile",
    "resolution_model",
    "response_resolution",
]


def _check_showers(showers, geometry) -> np.ndarray:
    showers = np.asarray(showers, dtype=np.float64)
    if showers.ndim != 2 or showers.shape[1] != geometry.n_voxels:
        raise ValueError(f"showers: expected shape (N, {geometry.n_voxels}) for this geometry, "
                         f"found {showers.shape}")
    return showers


def layer_energies(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, n_layers) energy per active layer, MeV."""
    showers = _check_showers(showers, geometry)
    return np.stack([showers[:, s].sum(axis=1) for s in geometry.layer_slices], axis=1)


def longitudinal_profile(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, n_layers) fraction of each shower's energy per layer (0 for empty showers)."""
    e = layer_energies(showers, geometry)
    tot = e.sum(axis=1, keepdims=True)
    return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)


def radial_profile(showers: np.ndarray, geometry) -> tuple[np.ndarray, np.ndarray]:
    """Energy (MeV) per radial bin, summed over layers and angles.

    Cylindrical binnings: one bin per distinct radial bin centre of the binning (layers
    with the same ``r_edges`` share their bins).  Cartesian grids: rings of width
    ``cell_size`` in the voxel-centre radius ``voxel_r``, starting at 0; per-layer
    Cartesian and hexagonal geometries: rings of their ``ring_width_mm`` (finest cell side,
    pitch).

    Returns:
        ``(r_centres, energies)``: ``r_centres`` (n_r,) mm and ``energies`` (N, n_r) MeV;
        the rows of ``energies`` sum to the shower energies.
    """
    showers = _check_showers(showers, geometry)
    r = geometry.voxel_r()
    width = _ring_width(geometry)
    if width is not None:
        inverse = np.floor(r / width + 1e-9).astype(np.int64)
        n_r = int(inverse.max()) + 1
        centres = (np.arange(n_r) + 0.5) * width
    else:
        centres, inverse = np.unique(np.round(r, 6), return_inverse=True)
        n_r = centres.size
    # one-hot (n_voxels, n_r) matrix: a single BLAS product, no Python loop over bins
    onehot = np.zeros((r.size, n_r))
    onehot[np.arange(r.size), inverse.ravel()] = 1.0
    out = showers @ onehot
    if width is not None:
        keep = onehot.sum(axis=0) > 0  # rings holding no voxel centre
        centres, out = centres[keep], out[:, keep]
    return centres, out


def _ring_width(geometry) -> float | None:
    """Ring width (mm) of the radial profile: a Cartesian grid's cell size, or the
    ``ring_width_mm`` of the per-layer Cartesian and hexagonal geometries; None for
    cylindrical binnings (their own radial bins)."""
    if getattr(geometry, "kind", "") == "cartesian":
        return float(geometry.cell_size)
    width = getattr(geometry, "ring_width_mm", None)
    return None if width is None else float(width)


def _weighted_moments(e: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tot = e.sum(axis=1)
    safe = np.where(tot > 0, tot, 1.0)
    mean = (e @ coord) / safe
    second = (e @ coord**2) / safe
    width = np.sqrt(np.clip(second - mean**2, 0.0, None))
    return np.where(tot > 0, mean, 0.0), np.where(tot > 0, width, 0.0)


def high_level_features(showers: np.ndarray, incident_energies: np.ndarray, geometry,
                        threshold: float = 0.0) -> dict[str, np.ndarray]:
    """CaloChallenge high-level features, each ``(N,)``.

    Keys (stable; ``i`` runs over active layers):

    * ``E_tot_over_E_inc`` — visible energy over incident energy;
    * ``E_layer_{i}`` — layer energy, MeV;
    * ``EC_eta_{i}``, ``EC_phi_{i}``, ``EC_r_{i}`` — energy-weighted mean of x, y, r (mm);
    * ``width_eta_{i}``, ``width_phi_{i}``, ``width_r_{i}`` — energy-weighted std (mm);
    * ``sparsity_{i}`` — fraction of the layer's voxels with energy > ``threshold`` MeV.
    """
    showers = _check_showers(showers, geometry)
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if e_inc.shape[0] != showers.shape[0]:
        raise ValueError(f"incident_energies: expected {showers.shape[0]} values (one per shower), "
                         f"found {e_inc.shape[0]}")
    if np.any(~(e_inc > 0)):
        raise ValueError("incident_energies must be positive (MeV); found "
                         f"{e_inc[~(e_inc > 0)][:3].tolist()}")
    x, y = geometry.voxel_xy()
    r = geometry.voxel_r()
    feats: dict[str, np.ndarray] = {"E_tot_over_E_inc": showers.sum(axis=1) / e_inc}
    for i, s in enumerate(geometry.layer_slices):
        e = showers[:, s]
        feats[f"E_layer_{i}"] = e.sum(axis=1)
        for name, coord in (("eta", x[s]), ("phi", y[s]), ("r", r[s])):
            feats[f"EC_{name}_{i}"], feats[f"width_{name}_{i}"] = _weighted_moments(e, coord)
        feats[f"sparsity_{i}"] = (e > threshold).mean(axis=1)
    return feats


LOG_FEATURES = ("E_layer_", "depth_weighted_energy")  # energies: log10(E/MeV + 1e-3) in feature_matrix


def feature_matrix(features: dict[str, np.ndarray], incident_energies: np.ndarray | None = None,
                   exclude: tuple[str, ...] = ("E_tot_over_E_inc",)) -> tuple[np.ndarray, list[str]]:
    """Stack per-shower features into one (N, d) float64 matrix for multivariate metrics.

    Every feature in sorted key order except those in ``exclude``; energies
    (``E_layer_*``, ``depth_weighted_energy``) enter as log10(E/MeV + 10⁻³) so that their
    decades weigh alike and empty layers stay near −3 instead of −∞; then ``log10_E_tot``
    (log10 of the sum of ``E_layer_*`` + 10⁻³) when layer energies are present, and
    ``log10_E_inc`` when ``incident_energies`` is given.

    Arguments:
        features: name → (N,) per-shower values (e.g. :func:`high_level_features`).
        incident_energies: optional (N,) or (N, 1) MeV.
        exclude: feature names left out (default: the response, which contains E_inc).

    Returns:
        ``(X, names)``: X (N, d) and the d column names.
    """
    names = sorted(k for k in features if k not in exclude)
    cols, out_names = [], []
    for k in names:
        v = np.asarray(features[k], dtype=np.float64).ravel()
        if k.startswith(LOG_FEATURES):
            v = np.log10(np.clip(v, 0.0, None) + 1e-3)
            out_names.append(f"log10_{k}")
        else:
            out_names.append(k)
        cols.append(v)
    layers = [k for k in names if k.startswith("E_layer_")]
    if layers:
        tot = np.sum([np.asarray(features[k], dtype=np.float64).ravel() for k in layers], axis=0)
        cols.append(np.log10(np.clip(tot, 0.0, None) + 1e-3))
        out_names.append("log10_E_tot")
    if incident_energies is not None:
        e = np.asarray(incident_energies, dtype=np.float64).ravel()
        cols.append(np.log10(e))
        out_names.append("log10_E_inc")
    if not cols:
        raise ValueError("feature_matrix: no features left after excluding " + ", ".join(exclude))
    return np.stack(cols, axis=1), out_names


DEPTH_OBSERVABLES = ("depth_weighted_energy", "shower_depth", "depth_width")


def depth_observables(showers: np.ndarray, geometry) -> dict[str, np.ndarray]:
    """Longitudinal shower observables of CaloFlow, each ``(N,)``.

    With ``E_k`` the energy of active layer ``k = 0 … n_layers-1`` (front to back):

    * ``depth_weighted_energy`` — ``l_d = Σ_k k E_k`` (MeV);
    * ``shower_depth`` — ``s_d = l_d / Σ_k E_k``, the energy-weighted mean layer index;
    * ``depth_width`` — ``σ_d = √(Σ_k k² E_k / Σ_k E_k − s_d²)``, the energy-weighted
      standard deviation of the layer index.

    A shower without energy has depth and width 0.

    Arguments:
        showers: (N, n_voxels) MeV.
        geometry: a geometry of :mod:`hepgen.data.geometry`.

    Example:
        Two layers, 1 MeV in layer 0 and 3 MeV in layer 1: ``l_d = 3``, ``s_d = 0.75``,
        ``σ_d = √(0.75 − 0.5625) = 0.433``.

    References:
        C. Krause, D. Shih, "CaloFlow: Fast and Accurate Generation of Calorimeter Showers
        with Normalizing Flows", arXiv:2106.05285 (sec. 4, depth-weighted total energy,
        shower depth and depth width).
    """
    e = layer_energies(showers, geometry)
    k = np.arange(e.shape[1], dtype=np.float64)
    l_d = e @ k
    mean, width = _weighted_moments(e, k)
    return {"depth_weighted_energy": l_d, "shower_depth": mean, "depth_width": width}


def cell_energies(showers: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Single-cell energy spectrum: every voxel energy above ``threshold`` (MeV), flattened.

    Arguments:
        showers: (N, n_voxels) MeV.
        threshold: keep voxels with energy strictly above this (default: non-zero voxels).

    Returns:
        (M,) float64 energies, MeV, in the order of ``showers.ravel()``.
    """
    x = np.asarray(showers, dtype=np.float64).ravel()
    return x[x > threshold]


def layer_correlation(showers: np.ndarray, geometry, method: str = "pearson") -> np.ndarray:
    """(n_layers, n_layers) correlation matrix of the layer energies over showers.

    ``method="pearson"``: Pearson's r of the energies (MeV), which one outlying shower can move a
    lot (in make demo's report one generated shower of 10,000 with 14 GeV in layer 0, 9.6 times the
    next largest, changed a coefficient by 0.23); ``"spearman"``: Pearson's r of their ranks (average
    ranks for ties, :func:`scipy.stats.rankdata`), Spearman's ρ, which such a shower barely moves.
    Rows and columns of a layer whose energy is the same in every shower (e.g. always empty) are
    NaN: its correlation is undefined.  Needs at least two showers.

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> geo = CylindricalBinning.regular(2, [0, 1], n_alpha=1)
    >>> x = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0], [4.0, 100.0]])   # (4 showers, 2 layers) MeV
    >>> round(float(layer_correlation(x, geo)[0, 1]), 3), float(layer_correlation(x, geo, "spearman")[0, 1])
    (0.79, 1.0)
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"layer_correlation: method must be 'pearson' or 'spearman', found {method!r}")
    e = layer_energies(showers, geometry)
    if e.shape[0] < 2:
        raise ValueError(f"layer_correlation: need at least 2 showers, found {e.shape[0]}")
    if method == "spearman":
        e = rankdata(e, axis=0)
    centred = e - e.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    ok = norm > 1e-12 * np.maximum(np.abs(e).max(axis=0), 1e-300)
    unit = np.divide(centred, norm, out=np.zeros_like(centred), where=ok)
    corr = np.clip(unit.T @ unit, -1.0, 1.0)
    corr[~ok, :] = np.nan
    corr[:, ~ok] = np.nan
    return corr


def lit_cells(showers: np.ndarray, geometry, threshold: float = 0.0) -> np.ndarray:
    """(N, n_layers) number of cells of each layer with energy above ``threshold`` MeV.

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> geo = CylindricalBinning.regular(2, [0, 1, 2], n_alpha=1)
    >>> lit_cells(np.array([[0.0, 3.0, 0.5, 0.2]]), geo, threshold=0.3)          # 2 voxels per layer
    array([[1, 1]])
    """
    showers = _check_showers(showers, geometry)
    return np.stack([(showers[:, s] > threshold).sum(axis=1) for s in geometry.layer_slices], axis=1)


def layer_energy_edges(showers: np.ndarray, geometry, n_bins: int = 12, low_quantile: float = 0.005) -> np.ndarray:
    """(n_layers, n_bins + 1) log-spaced bin edges (MeV) of each layer's energy, from the
    ``low_quantile`` of its non-zero energies in ``showers`` (the reference) to their maximum.

    A layer with fewer than two distinct non-zero energies gets a row of NaN (no bins).

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> geo = CylindricalBinning.regular(1, [0, 1], n_alpha=1)
    >>> layer_energy_edges(np.array([[1.0], [10.0], [100.0], [0.0]]), geo, n_bins=2, low_quantile=0.0)
    array([[  1.,  10., 100.]])
    """
    e = layer_energies(showers, geometry)
    edges = np.full((e.shape[1], n_bins + 1), np.nan)
    for layer in range(e.shape[1]):
        pos = e[e[:, layer] > 0, layer]
        if np.unique(pos).size >= 2:
            lo, hi = np.quantile(pos, low_quantile), pos.max()
            if hi > lo:
                edges[layer] = np.geomspace(lo, hi, n_bins + 1)
    return edges


def _bin_index(e: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each energy in ``edges`` (last bin closed on the right); -1 outside or without bins."""
    if not np.all(np.isfinite(edges)):
        return np.full(e.shape, -1)
    idx = np.searchsorted(edges, e, side="right") - 1
    idx[e == edges[-1]] = len(edges) - 2
    idx[(idx < 0) | (idx >= len(edges) - 1)] = -1
    return idx


def lit_cells_profile(showers: np.ndarray, geometry, edges: np.ndarray, quantiles=(0.5, 0.9, 0.99),
                      threshold: float = 0.0) -> dict:
    """Quantiles of the number of lit cells of each layer, in bins of that layer's energy.

    Arguments:
        showers: (N, n_voxels) MeV.
        edges: (n_layers, B + 1) MeV, e.g. :func:`layer_energy_edges` of the reference.
        quantiles: the quantiles (numpy's default, linear interpolation).
        threshold: a cell is lit above this energy (MeV).

    Returns:
        ``{"n": (n_layers, B) showers per bin, "mean": (n_layers, B), "quantiles": (Q, n_layers, B)}``
        as float arrays, NaN in empty bins.

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> geo = CylindricalBinning.regular(1, [0, 1, 2, 3], n_alpha=1)
    >>> x = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [1.0, 1.0, 1.0], [3.0, 0, 0]])  # 3 cells, layer energies 1, 1, 3, 3
    >>> p = lit_cells_profile(x, geo, np.array([[0.5, 2.0, 4.0]]), quantiles=(0.5,))
    >>> p["n"], p["mean"], p["quantiles"]
    (array([[2., 2.]]), array([[1.5, 2. ]]), array([[[1.5, 2. ]]]))
    """
    e, n = layer_energies(showers, geometry), lit_cells(showers, geometry, threshold)
    edges = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    if edges.shape[0] != e.shape[1]:
        raise ValueError(f"lit_cells_profile: expected edges of {e.shape[1]} layers, found {edges.shape[0]}")
    q = np.asarray(quantiles, dtype=np.float64)
    n_bins = edges.shape[1] - 1
    counts = np.zeros((e.shape[1], n_bins))
    mean = np.full((e.shape[1], n_bins), np.nan)
    quant = np.full((q.size, e.shape[1], n_bins), np.nan)
    for layer in range(e.shape[1]):
        idx = _bin_index(e[:, layer], edges[layer])
        for b in range(n_bins):
            sel = n[idx == b, layer]
            counts[layer, b] = sel.size
            if sel.size:
                mean[layer, b] = sel.mean()
                quant[:, layer, b] = np.quantile(sel, q)
    return {"n": counts, "mean": mean, "quantiles": quant}


def fraction_above_profile(showers: np.ndarray, geometry, edges: np.ndarray, limit: np.ndarray,
                           threshold: float = 0.0) -> np.ndarray:
    """(n_layers,) fraction of showers, among those whose layer energy lies in a bin where
    ``limit`` is defined (finite), with more lit cells than ``limit`` in that bin.

    With ``limit`` the reference's 99th percentile (:func:`lit_cells_profile`), the reference
    itself gives at most 0.01 per bin; a generator that smears a layer's energy over every cell
    gives more.  NaN for a layer without such showers.

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> geo = CylindricalBinning.regular(1, [0, 1, 2, 3], n_alpha=1)
    >>> x = np.array([[1.0, 0, 0], [0.4, 0.3, 0.3], [3.0, 0, 0], [1.0, 1.0, 1.0]])
    >>> fraction_above_profile(x, geo, np.array([[0.5, 2.0, 4.0]]), np.array([[1.0, np.nan]]))
    array([0.5])
    """
    e, n = layer_energies(showers, geometry), lit_cells(showers, geometry, threshold)
    edges = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    limit = np.atleast_2d(np.asarray(limit, dtype=np.float64))
    out = np.full(e.shape[1], np.nan)
    for layer in range(e.shape[1]):
        idx = _bin_index(e[:, layer], edges[layer])
        defined = idx >= 0
        defined[defined] = np.isfinite(limit[layer, idx[defined]])
        if defined.any():
            out[layer] = float(np.mean(n[defined, layer] > limit[layer, idx[defined]]))
    return out


def orientation_asymmetry(showers: np.ndarray, orientations: np.ndarray) -> tuple[float, int]:
    """How far the mean energy fractions of the cells of ``showers`` are from a symmetry: ``(χ², ndof)``.

    The voxels fall into orbits under the permutations ``orientations (G, n_voxels)`` (a whole group)
    (:meth:`hepgen.data.geometry.CylindricalBinning.orientations`); if the showers' distribution
    is invariant, the cells of an orbit have equal means.  Each shower is divided by its total
    energy first (empty showers are left out), so that the spread of the showers' energies does not
    hide an asymmetry.  ``χ² = Σ_v (m_v − m̄_orbit)² / σ²(m_v)`` over the voxels, with
    ``σ²(m_v) = var_v / N``, ``ndof = Σ_orbits (size − 1)``; cells that are empty in every shower
    are left out.  χ²/ndof ≈ 1 for symmetric data (a guide, not a calibrated test: the cells of an
    orbit are correlated); ≫ 1 means the symmetry is broken.

    >>> rng = np.random.default_rng(0)
    >>> perms = np.array([[0, 1], [1, 0]])
    >>> chi2, ndof = orientation_asymmetry(rng.exponential(1.0, (10000, 2)), perms)
    >>> ndof, chi2 < 10
    (1, True)
    >>> orientation_asymmetry(rng.exponential(1.0, (10000, 2)) * [1.0, 1.2], perms)[0] > 100
    True
    """
    x = np.asarray(showers, dtype=np.float64)
    perms = np.asarray(orientations)
    total = x.sum(axis=1, keepdims=True)
    x = x[total[:, 0] > 0] / total[total[:, 0] > 0]
    if perms.ndim != 2 or perms.shape[1] != x.shape[1]:
        raise ValueError(f"orientation_asymmetry: expected (G, {x.shape[1]}) permutations, found {perms.shape}")
    # the rows are the whole group, so {p[v] : p in perms} is v's orbit; label it by its smallest voxel
    label = perms.min(axis=0)
    mean, var = x.mean(axis=0), x.var(axis=0) / len(x)
    live = var > 0
    chi2, ndof = 0.0, 0
    for orbit in np.unique(label):
        members = np.flatnonzero((label == orbit) & live)
        if len(members) > 1:
            m = mean[members]
            chi2 += float((((m - m.mean()) ** 2) / var[members]).sum())
            ndof += len(members) - 1
    return chi2, ndof


def incident_energy_edges(incident_energies: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin edges (MeV) in incident energy for :func:`response_resolution`.

    A discrete spectrum with at most ``n_bins`` distinct energies (CaloChallenge data set 1)
    gets one bin per energy, with edges at the geometric means of neighbouring energies;
    otherwise ``n_bins`` log-spaced bins span [min, max].

    Arguments:
        incident_energies: (N,) or (N, 1) MeV, > 0.
        n_bins: number of bins (at most).

    Returns:
        (n_edges,) increasing edges, MeV.
    """
    e = np.asarray(incident_energies, dtype=np.float64).ravel()
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, found {n_bins}")
    if e.size == 0 or np.any(~(e > 0)) or not np.all(np.isfinite(e)):
        raise ValueError("incident_energies must be a non-empty array of positive finite energies (MeV)")
    values = np.unique(e)
    if values.size == 1:
        return np.array([values[0] / 1.1, values[0] * 1.1])
    if values.size <= int(n_bins):
        mids = np.sqrt(values[1:] * values[:-1])
        return np.concatenate([[values[0] ** 2 / mids[0]], mids, [values[-1] ** 2 / mids[-1]]])
    return np.geomspace(values[0], values[-1], int(n_bins) + 1)


def resolution_model(e_gev, a, b):
    """σ/E = a/√(E/GeV) ⊕ b = √(a²/E + b²) (stochastic term ``a``, constant term ``b``)."""
    return np.sqrt(a**2 / np.asarray(e_gev, dtype=np.float64) + b**2)


def response_resolution(showers: np.ndarray, incident_energies: np.ndarray, n_bins: int = 10,
                        edges: np.ndarray | None = None, min_count: int = 20) -> dict:
    """Energy response and resolution in bins of incident energy, with a resolution fit.

    In each bin of E_inc, with ``R = E_vis / E_inc`` per shower (``E_vis`` = sum of voxels):
    the response is the mean of R (error std/√n) and the resolution the relative spread
    ``r = s / m`` (sample std over mean), with the delta-method error from the sample moments
    ``var(r)/r² = var(s²)/(4 s⁴) + s²/(n m²) − μ3/(n s² m)``, ``var(s²) = (μ4 − s⁴ (n−3)/(n−1))/n``
    (for Gaussian R this is ``1/(2(n−1)) + r²/n``; heavier tails give larger errors).  The resolutions of bins with at least ``min_count`` showers are fitted
    (``scipy.optimize.curve_fit``, weighted by their errors, ``absolute_sigma=True``) with
    ``σ/E = a/√(E/GeV) ⊕ b`` at the bins' mean incident energy.  The standard deviation is
    not robust: a few outlying showers widen it, as they should count for a surrogate model.

    Arguments:
        showers: (N, n_voxels) MeV.
        incident_energies: (N,) or (N, 1) MeV.
        n_bins: number of bins when ``edges`` is not given (:func:`incident_energy_edges`).
        edges: bin edges in MeV (pass the reference sample's edges to compare two samples
            bin by bin); showers outside them are ignored.
        min_count: bins with fewer showers get NaN response and resolution.

    Returns:
        dict of ``edges`` (n_bins+1,) MeV; per bin (n_bins,): ``n``, ``e_mean`` (mean E_inc,
        MeV), ``response``, ``response_err``, ``resolution``, ``resolution_err``; and ``fit``:
        ``{"a", "a_err", "b", "b_err", "chi2", "ndof"}`` with ``a`` in √GeV (NaN when fewer
        than 2 bins are usable or the fit fails).

    Example:
        A calorimeter with response 0.5 and a pure stochastic term σ/E = 10 %/√E:

        >>> rng = np.random.default_rng(1)
        >>> e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e5), 20_000))        # MeV
        >>> e_dep = 0.5 * e_inc * (1 + 0.1 / np.sqrt(e_inc / 1e3) * rng.standard_normal(e_inc.size))
        >>> r = response_resolution(e_dep[:, None], e_inc, n_bins=8)
        >>> bool(np.allclose(r["response"], 0.5, atol=0.005)), round(r["fit"]["a"], 2)
        (True, 0.1)
    """
    showers = np.asarray(showers, dtype=np.float64)
    e = np.asarray(incident_energies, dtype=np.float64).ravel()
    if showers.ndim != 2 or showers.shape[0] != e.size:
        raise ValueError(f"response_resolution: expected showers (N, n_voxels) and N incident energies, "
                         f"found {showers.shape} and {e.size}")
    if int(min_count) < 2:
        raise ValueError(f"min_count must be >= 2, found {min_count}")
    edges = incident_energy_edges(e, n_bins) if edges is None else np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must be increasing (at least 2), found {np.asarray(edges).tolist()}")
    ratio = showers.sum(axis=1) / e
    idx = np.searchsorted(edges, e, side="right") - 1
    idx[e == edges[-1]] = edges.size - 2  # the last edge belongs to the last bin
    nb = edges.size - 1
    out = {k: np.full(nb, np.nan) for k in ("e_mean", "response", "response_err", "resolution", "resolution_err")}
    out["n"] = np.bincount(idx[(idx >= 0) & (idx < nb)], minlength=nb).astype(np.int64)
    for i in range(nb):
        sel = idx == i
        n = int(sel.sum())
        if n < min_count:
            continue
        r = ratio[sel]
        m, s = r.mean(), r.std(ddof=1)
        out["e_mean"][i] = e[sel].mean()
        out["response"][i], out["response_err"][i] = m, s / np.sqrt(n)
        if m > 0 and s > 0:
            res = s / m
            out["resolution"][i] = res
            # delta method for r = s/m from the sample moments (no Gaussian assumption: tails from
            # leakage widen the error of s): var(s²) = (μ4 − s⁴ (n−3)/(n−1)) / n,
            # var(s) = var(s²)/(4 s²), var(m) = s²/n, cov(m, s) = μ3 / (2 s n)
            d = r - m
            mu3, mu4 = np.mean(d**3), np.mean(d**4)
            var_s2 = max((mu4 - s**4 * (n - 3) / (n - 1)) / n, 0.0)
            rel2 = var_s2 / (4 * s**4) + res**2 / n - mu3 / (n * s**2 * m)
            out["resolution_err"][i] = res * np.sqrt(max(rel2, 0.0))
    out["edges"] = edges
    out["fit"] = _fit_resolution(out["e_mean"] / 1e3, out["resolution"], out["resolution_err"])
    return out


def _fit_resolution(e_gev: np.ndarray, res: np.ndarray, err: np.ndarray) -> dict:
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    nan = {"a": np.nan, "a_err": np.nan, "b": np.nan, "b_err": np.nan, "chi2": np.nan, "ndof": 0}
    ok = np.isfinite(res) & np.isfinite(err) & (err > 0) & np.isfinite(e_gev)
    if ok.sum() < 2:
        return nan
    x, y, s = e_gev[ok], res[ok], err[ok]
    # start: all of the resolution in the stochastic term, a small constant term (b = 0 is a
    # stationary point of √(a²/E + b²) in b, from which the fit could not move)
    p0 = (float(np.median(y * np.sqrt(x))), float(0.1 * y.min()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, pcov = curve_fit(resolution_model, x, y, p0=p0, sigma=s, absolute_sigma=True, maxfev=10_000)
    except (RuntimeError, ValueError):
        return nan
    a, b = np.abs(popt)
    errs = np.sqrt(np.clip(np.diag(pcov), 0.0, None)) if np.all(np.isfinite(pcov)) else (np.nan, np.nan)
    chi2 = float(np.sum(((y - resolution_model(x, *popt)) / s) ** 2))
    return {"a": float(a), "a_err": float(errs[0]), "b": float(b), "b_err": float(errs[1]),
            "chi2": chi2, "ndof": int(ok.sum() - 2)}


FEATURE_LABELS = {
    "E_tot_over_E_inc": r"$E_\mathrm{tot}/E_\mathrm{inc}$",
    "E_layer": "energy in layer {i} [MeV]",
    "EC_eta": r"centre of energy in $\eta$ (x), layer {i} [mm]",
    "EC_phi": r"centre of energy in $\phi$ (y), layer {i} [mm]",
    "EC_r": "centre of energy in r, layer {i} [mm]",
    "width_eta": r"width in $\eta$ (x), layer {i} [mm]",
    "width_phi": r"width in $\phi$ (y), layer {i} [mm]",
    "width_r": "width in r, layer {i} [mm]",
    "sparsity": "sparsity (fraction of hit voxels), layer {i}",
    "depth_weighted_energy": "depth-weighted energy Σ k·E_k [MeV]",
    "shower_depth": "shower depth (energy-weighted mean layer index)",
    "depth_width": "depth width (energy-weighted std of layer index)",
}

FEATURE_TITLES = {
    "E_tot_over_E_inc": "Energy response (deposited / incident)",
    "E_layer": "Energy per layer",
    "EC_eta": "Centre of energy in η (x = r cos α) per layer",
    "EC_phi": "Centre of energy in φ (y = r sin α) per layer",
    "EC_r": "Centre of energy in r per layer",
    "width_eta": "Shower width in η (x) per layer",
    "width_phi": "Shower width in φ (y) per layer",
    "width_r": "Shower width in r per layer",
    "sparsity": "Sparsity (fraction of voxels with energy) per layer",
    "depth_weighted_energy": "Depth-weighted energy",
    "shower_depth": "Shower depth",
    "depth_width": "Shower depth width",
}


def feature_stem(name: str) -> str:
    """Group of a feature key: ``E_layer_3`` → ``E_layer``; ``E_tot_over_E_inc`` → itself."""
    stem, _, idx = name.rpartition("_")
    return stem if idx.isdigit() and stem else name


def feature_label(name: str) -> str:
    """Axis label of a feature key, e.g. ``E_layer_3`` → ``energy in layer 3 [MeV]``."""
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    stem, _, idx = name.rpartition("_")
    return FEATURE_LABELS.get(stem, name).format(i=idx)


def feature_title(stem: str) -> str:
    """Title of a feature group (see :func:`feature_stem`)."""
    return FEATURE_TITLES.get(stem, stem)
