"""The GFlash reference simulator written chunk by chunk: flat memory, resumable (``hepgen simulate showers``).

:func:`simulate_to_file` runs :func:`hepgen.simulate.calorimeter.simulate_dataset` once per chunk
of ``chunk_size`` showers and appends each chunk to the output with
:func:`hepgen.data.stream.stream_showers` (``<output>.partial`` until complete; a rerun
continues an interrupted job; a full disk is a one-line error that keeps the finished chunks).
Memory holds one chunk whatever N.

Seeds: chunk 0 is ``simulate_dataset(m, seed=seed)`` itself, so a job of at most one chunk
writes exactly the showers ``simulate_dataset(n, seed=seed)`` returns (the file of the
in-memory simulator this replaces); chunk ``i >= 1`` uses the seed
:func:`hepgen.data.stream.chunk_seed` ``(seed, i)``, a function of ``(seed, i)`` only, so a
resumed job writes what an uninterrupted one would have.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hepgen.data.formats import read_showers
    >>> from hepgen.data.geometry import CylindricalBinning
    >>> g = CylindricalBinning.regular(2, [0, 5, 10], n_alpha=1)
    >>> out = Path(tempfile.mkdtemp()) / "sim.h5"
    >>> simulate_to_file(out, 25, geometry=g, seed=1, chunk_size=10)["n"]
    25
    >>> d = read_showers(out)
    >>> d.showers.shape, d.attrs["hepgen_chunk_size"]
    ((25, 4), 10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from hepgen.data.geometry import Geometry, default_binning
from hepgen.data.stream import ConditionSource, chunk_seed, partial_path, stream_showers
from hepgen.simulate import calorimeter as _calorimeter

__all__ = ["simulate_to_file"]


def _chunk_seed(seed: int, index: int) -> int:
    return int(seed) if index == 0 else chunk_seed(int(seed), index)


class _SimulatedChunks(ConditionSource):
    """Conditions *and* showers of chunk ``i``: one ``simulate_dataset`` call, kept until written.

    ``stream_showers`` asks a condition source for the energies and conditions of a chunk and
    then its ``sample_chunk`` for the showers; the GFlash simulator draws all three together,
    so this source runs the chunk's simulation and :meth:`showers` hands over its showers.
    """

    def __init__(self, seed: int, kwargs: dict) -> None:
        self.seed = int(seed)
        self.kwargs = kwargs
        self._held: tuple[int, int, np.ndarray] | None = None  # (chunk index, rows, showers)

    def simulate(self, m: int, index: int):
        return _calorimeter.simulate_dataset(m, seed=_chunk_seed(self.seed, index), **self.kwargs)

    def chunk(self, start, stop, chunk_index):
        data = self.simulate(stop - start, chunk_index)
        self._held = (chunk_index, stop - start, data.showers)
        return data.incident_energies[:, 0], dict(data.conditions)

    def showers(self, energies, conditions, chunk_index) -> np.ndarray:
        if self._held is None or self._held[:2] != (chunk_index, len(energies)):
            raise RuntimeError(f"chunk {chunk_index}: showers asked for before its conditions")  # a programming error
        showers = self._held[2]
        self._held = None  # one chunk in memory
        return showers

    def describe(self):
        k = self.kwargs
        return {"mode": "gflash", "energy_range_mev": list(k["energy_range"]),
                "energies_mev": None if k["energies"] is None else [float(e) for e in k["energies"]],
                "theta_range": None if k["theta_range"] is None else list(k["theta_range"]),
                "position_range": None if k["position_range"] is None else list(k["position_range"]),
                "chunk_seeds": "chunk 0: seed; chunk i >= 1: hepgen.data.stream.chunk_seed(seed, i)"}


def simulate_to_file(
    path: str | os.PathLike,
    n: int,
    geometry: Geometry | None = None,
    energy_range: tuple[float, float] = (1_000.0, 100_000.0),
    energies: Sequence[float] | None = None,
    theta_range: tuple[float, float] | None = None,
    position_range: tuple[float, float] | None = None,
    seed: int = 0,
    chunk_size: int = 10_000,
    resume: bool = True,
    progress: bool = False,
    compression: str | None = "gzip",
) -> dict:
    """Simulate ``n`` GFlash showers into a CaloChallenge HDF5 file, one chunk in memory at a time.

    Arguments:
        path: the output file (``<path>.partial`` while the job runs).
        n: number of showers (>= 1).
        geometry, energy_range, energies, theta_range, position_range: as
            :func:`hepgen.simulate.calorimeter.simulate_dataset` (MeV, rad, mm).
        seed: the job's seed (an int); chunk seeds derive from it (module docstring).
        chunk_size: showers per chunk (memory ~ chunk_size · n_voxels · 8 bytes plus the
            simulator's temporaries), the unit of resumption.
        resume: continue ``<path>.partial`` of the same job if there is one (one of another job is
            refused with a one-line error); False: delete it and start over.
        progress: show a progress bar.
        compression: HDF5 compression of the showers.

    Returns:
        ``{"n", "n_resumed_from", "path"}`` (:func:`hepgen.data.stream.stream_showers`).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n: expected a number of showers >= 1, found {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int, found {seed!r}")
    geometry = geometry if geometry is not None else default_binning()
    kwargs = {"geometry": geometry, "energy_range": tuple(float(v) for v in energy_range),
              "energies": None if energies is None else [float(e) for e in energies],
              "theta_range": None if theta_range is None else tuple(float(v) for v in theta_range),
              "position_range": None if position_range is None else tuple(float(v) for v in position_range)}
    source = _SimulatedChunks(int(seed), kwargs)
    if not resume:
        partial_path(path).unlink(missing_ok=True)
    # the simulator's own description (calorimeter constants, ranges) for the file's attributes,
    # from one shower (the seed attribute is the job's)
    attrs = {**source.simulate(1, 0).attrs, "seed": int(seed)}
    job = {"simulator": "hepgen.simulate.calorimeter (GFlash)", "geometry": geometry.to_dict()}
    return stream_showers(path, n, source.showers, source, n_voxels=geometry.n_voxels, seed=int(seed),
                          chunk_size=chunk_size, geometry=geometry, job=job, attrs=attrs, resume=resume,
                          progress=progress, compression=compression,
                          resume_hint="rerun the same command (it resumes unless --no-resume)")
