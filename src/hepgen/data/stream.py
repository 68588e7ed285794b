"""Streamed, resumable writing of any number of showers to a CaloChallenge HDF5 file.

:func:`stream_showers` asks a ``sample_chunk(energies, conditions, chunk_index)``
callable for one chunk of showers at a time and appends it to resizable, chunked HDF5
datasets, so memory stays flat whatever N is.  The job writes to ``<output>.partial``
and renames it to ``<output>`` when all N showers are in; an interrupted job leaves the
``.partial`` file, and a rerun with ``resume=True`` continues it:

* after every chunk the data are flushed *before* the attribute ``hepgen_n_done`` is
  advanced, so ``hepgen_n_done`` never counts showers that are not on disk; on resume,
  rows beyond it (a chunk cut short by the interruption) are truncated away;
* the conditions and the sampler's random numbers of chunk ``i`` are derived from
  ``(seed, i)`` only (:func:`chunk_seed`), so a resumed job writes exactly the showers
  that an uninterrupted one would have written — no event duplicated or lost;
* the job description (N, chunk size, seed, conditions, checkpoint hash …) is stored in
  the attribute ``hepgen_job``; resuming a different job is refused;
* a full disk (or quota) is a one-line ``ValueError`` naming the output; the finished chunks
  stay in the ``.partial`` file for a resume.  The file is opened without an HDF5 chunk cache
  so that a failed write raises inside the call that makes it (:func:`_write_chunk`);
* memory: one chunk at a time, and freed C-heap pages are returned to the system after
  every chunk (:func:`hepgen._io.release_freed_memory`), so the resident size does not grow
  with N.

Provenance attributes of the final file: ``hepgen_checkpoint_sha256``, ``hepgen_seed``,
``hepgen_version``, ``hepgen_conditions`` (JSON: how the conditions were chosen),
``hepgen_created`` (UTC, ISO 8601, start of the job), ``hepgen_n_done`` and
``hepgen_chunk_size``, plus what the caller passes in ``attrs``.

This module is model-agnostic (pure numpy + h5py); :func:`hepgen.domains.showers.generator.sample_to_file`
connects it to a trained generator.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from hepgen._version import __version__
from hepgen._io import disk_full_error, provenance, release_freed_memory
from hepgen.data.formats import (
    CONDITION_KEYS,
    GEOMETRY_ATTR,
    KIND_ATTR,
    ShowerData,
    require_hdf5,
    validate_showers,
)

__all__ = [
    "ConditionSource",
    "DataConditions",
    "EnergyListConditions",
    "EnergyRangeConditions",
    "FileConditions",
    "chunk_seed",
    "file_sha256",
    "partial_path",
    "stream_showers",
]

log = logging.getLogger(__name__)

_STREAM_CONDITIONS, _STREAM_NOISE = 0, 1


def chunk_seed(seed: int, chunk_index: int, stream: int = _STREAM_NOISE) -> int:
    """A 63-bit seed for chunk ``chunk_index`` of a job seeded with ``seed``.

    Arguments:
        seed: the job's seed (>= 0).
        chunk_index: the chunk number (>= 0).
        stream: separates independent uses (0: conditions, 1: sampler noise).

    Independent of how many chunks came before it was asked for: the basis of resuming.
    """
    state = np.random.SeedSequence([int(seed), int(stream), int(chunk_index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in blocks of ``block`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`stream_showers` writes until the job is complete: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


# --- where the conditions come from ----------------------------------------------------------
class ConditionSource:
    """Conditions for chunk ``i`` of a job, a deterministic function of ``(seed, i)``.

    Subclasses implement :meth:`chunk` and :meth:`describe` (JSON-able, stored as
    ``hepgen_conditions``).  ``n_available`` caps N (``None``: unlimited).
    """

    n_available: int | None = None

    def chunk(self, start: int, stop: int, chunk_index: int) -> tuple[np.ndarray, dict]:
        """``(energies (m,) MeV, {name: (m, k)})`` for showers ``start:stop`` of the job."""
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able description of how the conditions are chosen."""
        raise NotImplementedError


def _check_ranges(condition_ranges: dict | None) -> dict:
    out = {}
    for name, (lo, hi) in (condition_ranges or {}).items():
        lo, hi = np.atleast_1d(np.asarray(lo, dtype=float)), np.atleast_1d(np.asarray(hi, dtype=float))
        if lo.shape != hi.shape or np.any(hi < lo):
            raise ValueError(f"condition range {name!r}: expected LO <= HI of equal length, found {lo} {hi}")
        out[name] = (lo, hi)
    return out


class _RandomConditions(ConditionSource):
    def __init__(self, seed: int, condition_ranges: dict | None) -> None:
        self.seed = int(seed)
        self.condition_ranges = _check_ranges(condition_ranges)

    def _rng(self, chunk_index: int) -> np.random.Generator:
        return np.random.default_rng(chunk_seed(self.seed, chunk_index, _STREAM_CONDITIONS))

    def _extra(self, rng: np.random.Generator, m: int) -> dict:
        return {name: rng.uniform(lo, hi, size=(m, lo.size)) for name, (lo, hi) in self.condition_ranges.items()}

    def _describe_extra(self) -> dict:
        return {k: [lo.tolist(), hi.tolist()] for k, (lo, hi) in self.condition_ranges.items()}


class EnergyRangeConditions(_RandomConditions):
    """Incident energies log-uniform in ``[lo, hi]`` MeV; extra conditions uniform in their ranges.

    Arguments:
        lo, hi: energy range in MeV, ``0 < lo <= hi``.
        seed: the job's seed.
        condition_ranges: ``{name: (lo, hi)}`` for extra conditions (arrays for k > 1).
    """

    def __init__(self, lo: float, hi: float, seed: int, condition_ranges: dict | None = None) -> None:
        super().__init__(seed, condition_ranges)
        if not 0 < lo <= hi:
            raise ValueError(f"energy range: expected 0 < LO <= HI (MeV), found {lo} {hi}")
        self.lo, self.hi = float(lo), float(hi)

    def chunk(self, start, stop, chunk_index):
        rng = self._rng(chunk_index)
        m = stop - start
        e = np.exp(rng.uniform(np.log(self.lo), np.log(self.hi), size=m))
        return e, self._extra(rng, m)

    def describe(self):
        return {"mode": "energy_range", "energy_range_mev": [self.lo, self.hi], "distribution": "log-uniform",
                "condition_ranges": self._describe_extra()}


class EnergyListConditions(_RandomConditions):
    """Incident energies drawn uniformly from a list of values (MeV).

    Arguments:
        energies: the allowed energies in MeV (> 0).
        seed: the job's seed.
        condition_ranges: ``{name: (lo, hi)}`` for extra conditions.
    """

    def __init__(self, energies, seed: int, condition_ranges: dict | None = None) -> None:
        super().__init__(seed, condition_ranges)
        self.energies = np.asarray(energies, dtype=float).reshape(-1)
        if self.energies.size == 0 or not np.all(np.isfinite(self.energies)) or np.any(self.energies <= 0):
            raise ValueError(f"energies: expected a non-empty list of finite values > 0 MeV, found {self.energies}")

    def chunk(self, start, stop, chunk_index):
        rng = self._rng(chunk_index)
        m = stop - start
        e = rng.choice(self.energies, size=m)
        return e, self._extra(rng, m)

    def describe(self):
        return {"mode": "energy_list", "energies_mev": self.energies.tolist(),
                "condition_ranges": self._describe_extra()}


class FileConditions(ConditionSource):
    """The incident energies and extra conditions of an HDF5 file, row by row (read lazily).

    Arguments:
        path: a CaloChallenge HDF5 file with ``incident_energies`` ``(N, 1)`` or ``(N,)``.
        names: the extra condition datasets to take (each ``(N, k)``).
        hash_file: record the file's SHA-256 in the description (reads the file once).
    """

    def __init__(self, path: str | os.PathLike, names=(), hash_file: bool = True) -> None:
        self.path = Path(path)
        self.names = list(names)
        require_hdf5(self.path, "CaloChallenge layout")
        try:
            with h5py.File(self.path, "r") as f:
                for key in ("incident_energies", *self.names):
                    if key not in f or not isinstance(f[key], h5py.Dataset):
                        raise ValueError(f"{self.path}: missing dataset {key!r}; found keys {sorted(f.keys())}")
                n = f["incident_energies"].shape[0] if f["incident_energies"].shape else 0
                # the showers too, when the file has them: a file whose counts differ is broken
                for key in (*self.names, *(["showers"] if "showers" in f else [])):
                    if not f[key].shape or f[key].shape[0] != n:
                        raise ValueError(f"{self.path}: key {key!r}: expected {n} rows like 'incident_energies', "
                                         f"found shape {f[key].shape}")
        except OSError as err:  # truncated or corrupt files: h5py raises OSError
            raise ValueError(f"{self.path}: could not read HDF5 file ({str(err).splitlines()[0]})") from None
        if n == 0:
            raise ValueError(f"{self.path}: key 'incident_energies': expected at least one row, found 0")
        self.n_available = int(n)
        self.sha256 = file_sha256(self.path) if hash_file else None

    def chunk(self, start, stop, chunk_index):
        with h5py.File(self.path, "r") as f:
            e = np.asarray(f["incident_energies"][start:stop], dtype=np.float64).reshape(-1)
            conds = {k: np.asarray(f[k][start:stop], dtype=np.float64).reshape(stop - start, -1) for k in self.names}
        bad = ~np.isfinite(e) | (e <= 0)
        if bad.any():
            raise ValueError(f"{self.path}: key 'incident_energies': expected finite energies > 0 MeV, "
                             f"found {float(e[bad][0])!r} at row {start + int(np.flatnonzero(bad)[0])}")
        return e, conds

    def describe(self):
        return {"mode": "file", "path": str(self.path.resolve()), "sha256": self.sha256, "conditions": self.names}


class DataConditions(ConditionSource):
    """The incident energies and extra conditions of an in-memory :class:`~hepgen.data.formats.ShowerData`,
    row by row (the in-memory twin of :class:`FileConditions`).

    Arguments:
        data: the showers whose conditions are taken (their voxels are not used).
        names: the extra conditions to take (each ``(N, k)`` in ``data.conditions``).

    >>> d = ShowerData(np.zeros((3, 2)), np.array([[1e3], [2e3], [4e3]]))
    >>> DataConditions(d).chunk(1, 3, 0)
    (array([2000., 4000.]), {})
    """

    def __init__(self, data: ShowerData, names=()) -> None:
        self.names = list(names)
        missing = [k for k in self.names if k not in data.conditions]
        if missing:
            raise ValueError(f"conditions: the showers lack {missing}; found {sorted(data.conditions)}")
        if len(data) == 0:
            raise ValueError("conditions: expected at least one shower to take conditions from, found 0")
        self.energies = np.asarray(data.incident_energies, dtype=np.float64).reshape(-1)
        bad = ~np.isfinite(self.energies) | (self.energies <= 0)
        if bad.any():
            raise ValueError(f"incident_energies: expected finite energies > 0 MeV, found "
                             f"{float(self.energies[bad][0])!r} at row {int(np.flatnonzero(bad)[0])}")
        self.conditions = {k: np.asarray(data.conditions[k], dtype=np.float64).reshape(len(data), -1)
                           for k in self.names}
        self.n_available = len(data)

    def chunk(self, start, stop, chunk_index):
        return self.energies[start:stop], {k: v[start:stop] for k, v in self.conditions.items()}

    def describe(self):
        digest = hashlib.sha256(self.energies.tobytes())
        for k in self.names:
            digest.update(self.conditions[k].tobytes())
        return {"mode": "data", "n": self.n_available, "sha256": digest.hexdigest(), "conditions": self.names}


# --- the writer -------------------------------------------------------------------------------
def _json_attr(value):
    if isinstance(value, (str, bool, int, float, np.number)):
        return value
    return json.dumps(value, sort_keys=True)


def _open_partial(tmp: Path, job: dict, resume: bool) -> int:
    """Check an existing ``.partial`` file against ``job``; truncate it to its complete rows.

    Returns the number of complete showers in it.
    """
    if not resume:
        raise ValueError(f"{tmp}: an interrupted sampling job left this file; pass resume "
                         "(hepgen sample --resume) to continue it, or delete it to start over")
    try:
        with h5py.File(tmp, "r+") as f:
            stored = json.loads(f.attrs["hepgen_job"])
            if stored != job:
                diff = sorted(k for k in set(stored) | set(job) if stored.get(k) != job.get(k))
                raise ValueError(f"{tmp}: belongs to a different job (differs in {diff}: found "
                                 f"{ {k: stored.get(k) for k in diff} }, expected { {k: job.get(k) for k in diff} }); "
                                 "delete it to start over")
            n_done = int(f.attrs["hepgen_n_done"])
            for key in f:
                if f[key].shape[0] > n_done:  # a chunk cut short by the interruption
                    f[key].resize(n_done, axis=0)
            return n_done
    except (OSError, KeyError) as err:
        raise ValueError(f"{tmp}: cannot resume from this file ({type(err).__name__}: {err}); "
                         "delete it to start over") from None


def _create_partial(tmp: Path, job: dict, n_voxels: int, condition_widths: dict, attrs: dict,
                    compression: str | None) -> None:
    cap = max(1, min(job["chunk_size"], (1 << 20) // (4 * max(n_voxels, 1))))  # HDF5 chunks of <= 1 MiB
    # rows per HDF5 chunk: a divisor of the job's chunk size where one is near the cap, so that the
    # job's writes cover whole HDF5 chunks (the file is written without a chunk cache: see stream_showers)
    rows = next((d for d in range(cap, cap // 2, -1) if job["chunk_size"] % d == 0), cap)
    with h5py.File(tmp, "w") as f:
        f.create_dataset("showers", shape=(0, n_voxels), maxshape=(None, n_voxels), dtype=np.float32,
                         chunks=(rows, n_voxels), compression=compression)
        f.create_dataset("incident_energies", shape=(0, 1), maxshape=(None, 1), dtype=np.float64,
                         chunks=(max(rows, 1024), 1))
        for key, k in condition_widths.items():
            f.create_dataset(key, shape=(0, k), maxshape=(None, k), dtype=np.float64, chunks=(max(rows, 1024), k))
        f.attrs.update({k: _json_attr(v) for k, v in attrs.items() if v is not None})
        f.attrs[KIND_ATTR] = "showers"
        f.attrs["hepgen_job"] = json.dumps(job, sort_keys=True)
        f.attrs["hepgen_n_done"] = 0


def _write_chunk(f: h5py.File, start: int, stop: int, arrays: dict) -> None:
    """Append rows ``start:stop`` of every dataset in ``arrays`` to the open file ``f`` and flush them.

    Each dataset is flushed explicitly, so a write error (a full disk) surfaces as an exception
    of this call, not later while a handle is closed (h5py reports errors met there only
    through ``sys.unraisablehook``, and the job would go on).  Tests replace this function to
    simulate a full disk.
    """
    for key, arr in arrays.items():
        ds = f[key]
        ds.resize(stop, axis=0)
        ds[start:stop] = arr
        ds.id.flush()  # H5Dflush: cached chunks are written now, errors raised here
    f.flush()


def stream_showers(
    path: str | os.PathLike,
    n: int,
    sample_chunk: Callable[[np.ndarray, dict, int], np.ndarray],
    conditions: ConditionSource,
    n_voxels: int,
    seed: int,
    chunk_size: int = 10_000,
    geometry=None,
    job: dict | None = None,
    attrs: dict | None = None,
    resume: bool = False,
    progress: bool = False,
    compression: str | None = "gzip",
    resume_hint: str = "rerun with --resume",
) -> dict:
    """Write ``n`` showers to ``path`` chunk by chunk; resumable (see the module docstring).

    Arguments:
        path: the final HDF5 file (written as ``<path>.partial`` until complete).
        n: number of showers (capped at ``conditions.n_available``).
        sample_chunk: ``(energies (m,) MeV, {name: (m, k)}, chunk_index) → (m, n_voxels)``
            showers in MeV; must be a deterministic function of its arguments (seed its
            randomness with :func:`chunk_seed`).
        conditions: where the incident energies and extra conditions come from.
        n_voxels: the width of the showers.
        seed: the job's seed (recorded; ``conditions`` and ``sample_chunk`` use it).
        chunk_size: showers per chunk (memory ~ chunk_size · n_voxels · 20 B).
        geometry: stored as the ``hepgen_geometry`` attribute if given.
        job: extra facts that identify the job (e.g. the checkpoint hash); resuming
            requires the same facts.
        attrs: extra provenance attributes (JSON-able values).
        resume: continue ``<path>.partial`` if it exists (else an existing one is an error).
        progress: show a progress bar.
        compression: HDF5 compression of the showers (``"gzip"``, ``"lzf"`` or None).
        resume_hint: how to continue, for the message of a full disk (a one-line ``ValueError``
            naming ``path``; the finished chunks stay in ``<path>.partial``).

    Returns:
        ``{"n": ..., "n_resumed_from": ..., "path": ...}``.
    """
    path = Path(path)
    n, chunk_size = int(n), int(chunk_size)
    if n < 0 or chunk_size < 1:
        raise ValueError(f"expected n >= 0 and chunk_size >= 1, found n={n}, chunk_size={chunk_size}")
    if conditions.n_available is not None:
        n = min(n, conditions.n_available)
    tmp = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    description = conditions.describe()
    job = {**(job or {}), "n": n, "chunk_size": chunk_size, "seed": int(seed), "conditions": description,
           "n_voxels": int(n_voxels)}
    if tmp.exists():
        n_done = _open_partial(tmp, job, resume)
        log.info("resuming %s at %d of %d showers", tmp, n_done, n)
    else:
        e0, c0 = conditions.chunk(0, min(1, n), 0) if n else (np.zeros(0), {})
        unknown = [k for k in c0 if k not in CONDITION_KEYS]
        if unknown:
            raise ValueError(f"{path}: conditions {unknown}: expected names from {CONDITION_KEYS}")
        widths = {k: int(np.asarray(v).reshape(len(e0), -1).shape[1]) for k, v in c0.items()} if n else {}
        base = {
            "hepgen_version": __version__,
            "hepgen_seed": int(seed),
            "hepgen_conditions": description,
            "hepgen_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hepgen_chunk_size": chunk_size,
            "hepgen_provenance": json.dumps(provenance(int(seed))),
            GEOMETRY_ATTR: geometry.to_dict() if geometry is not None else None,
        }
        n_done = 0
        try:
            _create_partial(tmp, job, int(n_voxels), widths, {**base, **(attrs or {})}, compression)
        except (OSError, RuntimeError) as err:
            full = disk_full_error(err, path, f"delete {tmp} and free some space")
            if full is None:
                raise
            raise full from None
    resumed_from = n_done
    try:
        # no chunk cache (rdcc_nbytes=0): every write reaches the file inside the call that makes it, so a
        # full disk raises there, cleanly; with a cache, HDF5 fails later while closing a dataset, and
        # h5py 3.16 / HDF5 2.0 then crash (segmentation fault, seen on a full tmpfs)
        with h5py.File(tmp, "r+", rdcc_nbytes=0) as f, tqdm(total=n, initial=n_done, unit="shower", desc="sampling",
                                              disable=not progress) as bar:
            cond_keys = [k for k in f if k in CONDITION_KEYS]
            while n_done < n:
                index = n_done // chunk_size
                start, stop = index * chunk_size, min((index + 1) * chunk_size, n)
                if start != n_done:  # cannot happen with complete chunks; guards the invariant
                    raise RuntimeError(f"{tmp}: {n_done} showers done is not a multiple of the chunk size {chunk_size}")
                energies, conds = conditions.chunk(start, stop, index)
                showers = np.asarray(sample_chunk(energies, conds, index), dtype=np.float32)
                e2 = np.asarray(energies, dtype=np.float64).reshape(-1, 1)
                validate_showers(ShowerData(showers, e2, conds), f"{tmp} (chunk {index})")
                arrays = {"showers": showers, "incident_energies": e2,
                          **{k: np.asarray(conds[k], dtype=np.float64).reshape(len(e2), -1) for k in cond_keys}}
                _write_chunk(f, start, stop, arrays)  # the data first, flushed ...
                del showers, arrays, energies, conds, e2
                f.attrs["hepgen_n_done"] = stop  # ... then the count that vouches for them
                f.flush()
                bar.update(stop - n_done)
                n_done = stop
                release_freed_memory()  # flat resident memory whatever N (see its docstring)
    except (OSError, RuntimeError) as err:
        full = disk_full_error(err, path, f"the {n_done} showers finished before are kept in {tmp}; free some "
                                          f"space and {resume_hint} to continue")
        if full is None:
            raise
        raise full from None
    os.replace(tmp, path)
    return {"n": n, "n_resumed_from": resumed_from, "path": str(path)}
