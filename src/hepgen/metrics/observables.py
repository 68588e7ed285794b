"""Physics observables of calorimeter showers (CaloChallenge high-level features).

All functions are pure numpy on ``showers: (N, n_voxels)`` in MeV and a geometry from
:mod:`hepgen.data.geometry`; they score a Geant4 file and a model's output alike.

Definitions follow the CaloChallenge evaluation code: per layer, the energy, the
energy-weighted centre of the transverse coordinates x = r cos α ("η" direction) and
y = r sin α ("φ" direction) at voxel centres, and the energy-weighted standard deviations
(widths); a layer without energy has centre and width 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FEATURE_LABELS",
    "FEATURE_TITLES",
    "feature_label",
    "feature_stem",
    "feature_title",
    "high_level_features",
    "layer_energies",
    "longitudinal_profile",
    "radial_profile",
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
    ``cell_size`` in the voxel-centre radius ``voxel_r``, starting at 0.

    Returns:
        ``(r_centres, energies)``: ``r_centres`` (n_r,) mm and ``energies`` (N, n_r) MeV;
        the rows of ``energies`` sum to the shower energies.
    """
    showers = _check_showers(showers, geometry)
    r = geometry.voxel_r()
    if getattr(geometry, "kind", "") == "cartesian":
        width = float(geometry.cell_size)
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
    if getattr(geometry, "kind", "") == "cartesian":
        keep = onehot.sum(axis=0) > 0  # rings holding no voxel centre
        centres, out = centres[keep], out[:, keep]
    return centres, out


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
