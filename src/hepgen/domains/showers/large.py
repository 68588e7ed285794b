"""Evaluating shower files larger than memory: features streamed over every row, voxels on a bounded sample.

``hepgen evaluate`` reads a file whole when ``N × n_voxels × BYTES_PER_VOXEL`` bytes fit the
memory budget (:func:`hepgen.data.chunked.fits_in_memory`, default 4 GB).  A larger file is
opened as a :class:`~hepgen.data.chunked.ShowerFileSet` and

* its per-shower high-level features (the CaloChallenge set of
  :func:`~hepgen.metrics.observables.high_level_features` and the depth observables) are
  computed chunk by chunk over **every** row (:func:`streamed_features`; ``n_features`` float64
  per shower in memory) — the separation powers and KS tests of ``separation_power_all_rows``;
* everything that needs voxels (the metric groups, the classifier, the figures) runs on a
  seeded sample of at most :func:`evaluation_cap` rows (:func:`evaluation_sample`: rows drawn
  without replacement by ``default_rng([seed, 0x5A3])``, read in file order, chunk by chunk).

The cap: the evaluation holds the voxels of every sample several times (the arrays, their
features and the classifier's inputs); ``cap = budget / (n_samples × n_voxels × 16 bytes)``,
so 3,086 showers per file for CaloChallenge dataset 3 (40,500 voxels) under 4 GB with two files.
"""

from __future__ import annotations

import numpy as np

from hepgen.data.chunked import (
    BYTES_PER_VOXEL,
    ShowerFileSet,
    fits_in_memory,
    memory_budget_bytes,
    showers_shape,
)
from hepgen.data.formats import ShowerData, read_showers
from hepgen.metrics.observables import depth_observables, high_level_features

__all__ = ["streamed_features", "evaluation_cap", "evaluation_sample", "features_of", "open_for_evaluation"]


def features_of(showers: np.ndarray, incident_energies: np.ndarray, geometry) -> dict[str, np.ndarray]:
    """The per-shower features of the evaluation: high-level features and depth observables, each ``(N,)``."""
    out = high_level_features(showers, incident_energies, geometry)
    out.update(depth_observables(showers, geometry))
    return out


def streamed_features(files: ShowerFileSet, geometry=None) -> dict[str, np.ndarray]:
    """:func:`features_of` of every selected row of ``files``, computed chunk by chunk (file order).

    Every feature is a function of one shower, so the result equals the in-memory computation
    (tested equal to the last bit on a small file).

    Example:
        >>> import os, tempfile
        >>> from hepgen.data.formats import write_showers
        >>> from hepgen.data.geometry import CartesianGrid
        >>> rng = np.random.default_rng(0)
        >>> e = rng.uniform(1e3, 1e4, (9, 1))
        >>> d = ShowerData(rng.uniform(0, 1, (9, 4)) * e / 8, e, geometry=CartesianGrid(nx=2, ny=1, nz=2))
        >>> path = os.path.join(tempfile.mkdtemp(), "s.h5"); write_showers(path, d)
        >>> f = streamed_features(ShowerFileSet([path], chunk_rows=4))
        >>> bool(np.array_equal(f["E_layer_1"], features_of(d.showers.astype(np.float32), e, d.geometry)["E_layer_1"]))
        True
    """
    geometry = geometry or files.geometry
    parts: dict[str, list] = {}
    for chunk in files.iter_chunks():
        for k, v in features_of(chunk.showers, chunk.incident_energies, geometry).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def evaluation_cap(n_voxels: int, n_samples: int = 2, budget_gb: float | None = None) -> int:
    """Rows of each sample evaluated with their voxels (see the module docstring).

    >>> evaluation_cap(40_500)
    3086
    """
    return max(1, int(memory_budget_bytes(budget_gb) // (n_samples * n_voxels * BYTES_PER_VOXEL)))


def evaluation_sample(files: ShowerFileSet, cap: int, seed: int = 0) -> ShowerData:
    """At most ``cap`` rows of ``files`` (all of them when there are fewer), seeded, in memory."""
    if len(files) <= cap:
        return files.load()
    rows = np.random.default_rng([int(seed), 0x5A3]).choice(len(files), int(cap), replace=False)
    return files.subset(np.sort(rows)).load()


def open_for_evaluation(path, geometry=None, budget_gb: float | None = None, n_samples: int = 2,
                        seed: int = 0) -> tuple[ShowerData, ShowerFileSet | None]:
    """``(in-memory data, None)`` for a file that fits the budget (read whole, as
    :func:`~hepgen.data.formats.read_showers`), else ``(seeded sample of at most evaluation_cap
    rows, the file set)``."""
    shape = showers_shape(path)
    if shape is None or fits_in_memory(shape[0], shape[1], budget_gb):
        return read_showers(path, geometry), None  # (None: the reader says what is wrong)
    files = ShowerFileSet([path], geometry=geometry, memory_budget_gb=budget_gb)
    return evaluation_sample(files, evaluation_cap(files.n_voxels, n_samples, budget_gb), seed), files

