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
    "high_level_features",
    "layer_energies",
    "longitudinal_profile",
    "radial_profile",
    "feature_label",
    "FEATURE_LABELS",
]


def layer_energies(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, n_layers) energy per active layer, MeV."""
    showers = np.asarray(showers, dtype=np.float64)
    return np.stack([showers[:, s].sum(axis=1) for s in geometry.layer_slices], axis=1)


def longitudinal_profile(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, n_layers) fraction of each shower's energy per layer (0 for empty showers)."""
    e = layer_energies(showers, geometry)
    tot = e.sum(axis=1, keepdims=True)
    return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)


def radial_profile(showers: np.ndarray, geometry) -> tuple[np.ndarray, np.ndarray]:
    """Energy (MeV) per radial bin summed over layers and angles.

    Returns ``(r_centres, energies)`` with ``energies`` of shape ``(N, n_r)``: the distinct
    voxel-centre radii (mm) and the energy deposited at each.
    """
    r = np.round(geometry.voxel_r(), 6)
    centres, inverse = np.unique(r, return_inverse=True)
    showers = np.asarray(showers, dtype=np.float64)
    out = np.zeros((showers.shape[0], centres.size))
    np.add.at(out.T, inverse, showers.T)
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
    showers = np.asarray(showers, dtype=np.float64)
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
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
    "E_layer": "E in layer {i} [MeV]",
    "EC_eta": r"centre of energy in $\eta$ (x), layer {i} [mm]",
    "EC_phi": r"centre of energy in $\phi$ (y), layer {i} [mm]",
    "EC_r": "centre of energy in r, layer {i} [mm]",
    "width_eta": r"width in $\eta$ (x), layer {i} [mm]",
    "width_phi": r"width in $\phi$ (y), layer {i} [mm]",
    "width_r": "width in r, layer {i} [mm]",
    "sparsity": "sparsity, layer {i}",
}


def feature_label(name: str) -> str:
    """Axis label of a feature key, e.g. ``E_layer_3`` → ``E in layer 3 [MeV]``."""
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    stem, _, idx = name.rpartition("_")
    return FEATURE_LABELS.get(stem, name).format(i=idx)
