"""Targets of the quantum GAN: the mean longitudinal energy profile of hepgen showers.

The talk's qGAN learns "a simplified 3DGAN": the 25×25×25 shower reduced to an 8-bin
longitudinal shape, read as a *probability distribution over depth*.  Here the showers
come from hepgen's GFlash simulator (:mod:`hepgen.simulate.calorimeter`) on the default
binning (:func:`hepgen.data.geometry.default_binning`), whose 8 read-out layers are the 8
bins directly: equal slabs of the default lead/scintillator stack, so no regrouping is
needed (a 3DGAN-like 25-layer stack cannot be split into 8 equal groups; other layer
counts are grouped into contiguous, nearly equal blocks by :func:`longitudinal_profile`).

Target distribution: ``q(k) = ⟨E_k / E_vis⟩`` — the fraction of the visible energy in
bin ``k`` for each shower, averaged over showers (incident energies log-uniform in
1–100 GeV by default, hepgen's default data set).  Samples are bin indices ``k`` drawn
from ``q``; the talk's evaluation uses 1,000 of them.  What a qGAN can learn is therefore
the *average* profile; shower-to-shower fluctuations (the shape of each shower around it)
are integrated out by construction.

Example (pure numpy):
    >>> showers = np.array([[1.0, 3.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
    >>> longitudinal_profile(showers, [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 4)])
    array([0.125, 0.625, 0.25 , 0.   ])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hepgen.data.geometry import default_binning
from hepgen.simulate.calorimeter import simulate_dataset

__all__ = ["longitudinal_profile", "sample_bins", "shower_image_profile", "shower_profile"]


def longitudinal_profile(showers: np.ndarray, layer_slices: Sequence[slice], n_bins: int | None = None
                         ) -> np.ndarray:
    """Mean per-shower fraction of visible energy in each (group of) layer(s).

    Arguments:
        showers: ``(N, n_voxels)`` energies (any unit).
        layer_slices: voxel slice of each layer, front to back (``geometry.layer_slices``).
        n_bins: group the layers into this many contiguous blocks (``np.array_split``
            sizes); default one bin per layer.

    Returns:
        ``(n_bins,)`` float64, sums to 1.  Showers with no visible energy are skipped.
    """
    showers = np.asarray(showers, dtype=np.float64)
    if showers.ndim != 2:
        raise ValueError(f"showers must have shape (N, n_voxels), found {showers.shape}")
    per_layer = np.stack([showers[:, s].sum(axis=1) for s in layer_slices], axis=1)
    n_layers = per_layer.shape[1]
    n_bins = n_layers if n_bins is None else int(n_bins)
    if not 1 <= n_bins <= n_layers:
        raise ValueError(f"n_bins must be in [1, {n_layers}] (the number of layers), found {n_bins}")
    groups = np.array_split(np.arange(n_layers), n_bins)
    binned = np.stack([per_layer[:, g].sum(axis=1) for g in groups], axis=1)
    tot = binned.sum(axis=1)
    ok = tot > 0
    if not ok.any():
        raise ValueError("longitudinal_profile: every shower has zero visible energy")
    return (binned[ok] / tot[ok, None]).mean(axis=0)


def shower_profile(n_showers: int = 5000, energy_range: tuple[float, float] = (1_000.0, 100_000.0),
                   energies: Sequence[float] | None = None, n_bins: int = 8, seed: int = 0) -> np.ndarray:
    """The qGAN target: mean 8-bin longitudinal profile of GFlash showers on the default binning.

    Arguments:
        n_showers: showers simulated (5,000 take about 3 s).
        energy_range: (lo, hi) MeV, log-uniform; or ``energies``: a list of energies (MeV).
        n_bins: bins of the profile (the default binning has 8 layers).
        seed: simulation seed.

    Returns:
        ``(n_bins,)`` float64 probabilities (mean fraction of energy per bin).
    """
    geo = default_binning()
    data = simulate_dataset(int(n_showers), geometry=geo, energy_range=energy_range,
                            energies=energies, seed=seed)
    return longitudinal_profile(data.showers, geo.layer_slices, n_bins)


def shower_image_profile(n_showers: int = 5000, energy_range: tuple[float, float] = (1_000.0, 100_000.0),
                         seed: int = 0) -> np.ndarray:
    """The 6-qubit target: mean fraction of energy per (layer, radial bin), an 8×8 image.

    The default binning has 8 layers × 8 radial bins (× 6 angular bins, summed here).

    Returns:
        ``(8, 8)`` float64 ``[layer, radial bin]``, sums to 1; flattened row-major it is the
        64-bin distribution over basis states (layer = 3 most significant qubits).
    """
    geo = default_binning()
    data = simulate_dataset(int(n_showers), geometry=geo, energy_range=energy_range, seed=seed)
    layer = geo.voxel_layer()
    r = geo.voxel_r()
    r_bins = np.unique(np.round(r, 9))
    r_idx = np.searchsorted(r_bins, np.round(r, 9))
    if geo.n_layers != 8 or r_bins.size != 8:
        raise ValueError(f"shower_image_profile needs 8 layers x 8 radial bins, found {geo.n_layers} x {r_bins.size}")
    flat = layer * 8 + r_idx
    s = np.asarray(data.showers, dtype=np.float64)
    img = np.stack([s[:, flat == k].sum(axis=1) for k in range(64)], axis=1)
    tot = img.sum(axis=1)
    img = img[tot > 0] / tot[tot > 0, None]
    return img.mean(axis=0).reshape(8, 8)


def sample_bins(probs: np.ndarray, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Draw ``n`` bin indices from ``probs`` (the protocol of the talk: 1,000 samples).

    Drawing ``n`` indices from the Born probabilities is exactly what ``n`` measurement
    shots of the generator circuit return.

    Example:
        >>> sample_bins(np.array([0.0, 1.0, 0.0]), 3, seed=1)
        array([1, 1, 1])
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"probs must be a 1-d probability vector, found shape {p.shape}, sum {p.sum():.6g}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.choice(p.size, size=int(n), p=p / p.sum())
