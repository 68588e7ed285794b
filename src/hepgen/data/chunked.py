"""Showers larger than memory: one data set in one or more CaloChallenge HDF5 files, read chunk by chunk.

:class:`ShowerFileSet` is a lazy view of the rows of several files of one geometry.  The small
per-shower arrays (``incident_energies`` and the extra conditions, 8 bytes per value) are read
into memory when the set is opened; the voxels (``showers``, ``n_voxels`` float32 per row) are
read only in *chunks* of contiguous rows of one file (h5py slicing), so peak memory is bounded
by the chunk and buffer sizes, not by the number of showers.

Training order (:meth:`ShowerFileSet.batches`) for epoch ``e`` of a run with seed ``s``:

1. the chunks holding selected rows are put in the order ``default_rng([s, e, 0]).permutation``
   (the same on every process);
2. process ``r`` of ``W`` takes the chunks at positions ``r, r + W, …`` of that order
   (each rank reads only its shard of the files);
3. a process's chunks are grouped, in that order, into *buffers* of ``buffer_chunks`` chunks;
   the rows of buffer ``j`` are shuffled with ``default_rng([s, e, 1, r, j])`` and their model
   features are computed with the noise generator ``default_rng([s, e, 2, r, j])``;
4. batches are consecutive runs of ``batch_size`` rows of the concatenated buffers (a batch
   may span two buffers).  Processes with fewer rows than the largest shard wrap around to
   their first rows (``DistributedSampler``'s padding), so every process takes the same number
   of optimiser steps.

The order is a function of ``(seed, epoch, rank, world_size)`` only, so batch ``b`` of an
epoch can be produced without reading the buffers before it: a run stopped inside an epoch
resumes at its next batch exactly.  Rows are shuffled within a buffer of a few chunks, not
across the whole data set (the usual trade of streamed training; the chunk order is fully
shuffled).  Reading runs in a background thread one buffer ahead of the computation.

When to stream (:func:`fits_in_memory`): in-memory training holds about
``BYTES_PER_VOXEL = 16`` bytes per voxel and shower (the float32 showers, the float32 copy of
the training rows, the float32 model features, and room for the transients of the
preprocessing); a data set is read into memory when ``N × n_voxels × 16`` bytes fit the memory
budget (default ``DEFAULT_MEMORY_BUDGET_GB`` = 4 GB) and streamed otherwise.  A streamed read
keeps a buffer of about ``budget / 16`` bytes of raw float32 voxels, clipped to [16 MB, 1 GB]
(:func:`default_chunk_rows`), its model features, and the next buffer being read.

Voxel values are validated (:func:`~hepgen.data.formats.validate_showers`: finite, non-negative,
the response warning) chunk by chunk the first time they are read, with the file and rows in
the message (so the warning comes once per chunk, not once per epoch).

Example:
    >>> import tempfile, os
    >>> from hepgen.data.formats import ShowerData, write_showers
    >>> from hepgen.data.geometry import CartesianGrid
    >>> g = CartesianGrid(nx=2, ny=1, nz=2)
    >>> rng = np.random.default_rng(0)
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.h5", "b.h5"):
    ...     e = rng.uniform(1e3, 1e4, (5, 1))
    ...     write_showers(os.path.join(d, name), ShowerData(rng.uniform(0, 1, (5, 4)) * e / 8, e, geometry=g))
    >>> s = ShowerFileSet([os.path.join(d, "a.h5"), os.path.join(d, "b.h5")], chunk_rows=3)
    >>> len(s), s.n_voxels, [c.stop - c.start for c in s.chunks()]
    (10, 4, [3, 2, 3, 2])
    >>> n, it = s.batches(lambda data, rng: (data.showers, data.incident_energies), seed=0, epoch=0, batch_size=4)
    >>> n, [len(x) for x, _ in it]
    (3, [4, 4, 2])
"""

from __future__ import annotations

import glob
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hepgen.data.formats import (
    CONDITION_KEYS,
    GEOMETRY_ATTR,
    KIND_ATTR,
    ShowerData,
    _resolve_geometry,
    check_file_kind,
    hdf5_attr_value,
    require_hdf5,
    validate_showers,
)
from hepgen.data.geometry import geometry_from_dict

__all__ = ["ShowerFileSet", "Chunk", "default_chunk_rows", "expand_paths", "showers_shape", "fits_in_memory", "memory_budget_bytes",
           "BYTES_PER_VOXEL", "DEFAULT_MEMORY_BUDGET_GB", "epoch_chunk_order"]

BYTES_PER_VOXEL = 16
DEFAULT_MEMORY_BUDGET_GB = 4.0
_GB = 1e9


def memory_budget_bytes(budget_gb: float | None) -> float:
    """The budget in bytes (``None``: the default); a negative or NaN budget is a ValueError."""
    gb = DEFAULT_MEMORY_BUDGET_GB if budget_gb is None else float(budget_gb)
    if not gb >= 0:
        raise ValueError(f"--memory-budget-gb: expected a number >= 0, found {budget_gb}")
    return gb * _GB


def fits_in_memory(n_showers: int, n_voxels: int, budget_gb: float | None = None) -> bool:
    """Whether ``n_showers`` showers of ``n_voxels`` voxels are trained in memory under the budget.

    >>> fits_in_memory(100_000, 40_500)           # CaloChallenge dataset 3: 65 GB > 4 GB
    False
    >>> fits_in_memory(100_000, 368)              # dataset 1 photons: 0.59 GB
    True
    """
    return n_showers * n_voxels * BYTES_PER_VOXEL <= memory_budget_bytes(budget_gb)


def showers_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(N, n_voxels)`` of a file's ``showers`` dataset without reading it; None when the file has
    no readable 2-d one (its reader then says what is wrong)."""
    try:
        with h5py.File(path, "r") as f:
            obj = f.get("showers")
            return tuple(obj.shape) if isinstance(obj, h5py.Dataset) and obj.ndim == 2 else None
    except (OSError, ValueError):
        return None


def expand_paths(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """File names with shell-style globs expanded (sorted); a glob that matches nothing is a ValueError.

    A name that is not a glob is kept as it is (a missing file is reported by the reader)."""
    out: list[Path] = []
    for p in patterns:
        p = str(p)
        if glob.has_magic(p):
            found = sorted(glob.glob(p))
            if not found:
                raise ValueError(f"{p}: the pattern matches no file")
            out += [Path(f) for f in found]
        else:
            out.append(Path(p))
    if not out:
        raise ValueError("expected at least one input file, found none")
    return out


def default_chunk_rows(n_showers: int, n_voxels: int, buffer_chunks: int = 8, budget_gb: float | None = None) -> int:
    """Rows per chunk: a buffer of ``buffer_chunks`` chunks holds ``budget / BYTES_PER_VOXEL`` bytes
    of float32 voxels, clipped to [16 MB, 1 GB]; at most ``ceil(N / 64)`` rows, so that a data set
    has at least 64 chunks to shuffle and share between processes.

    >>> default_chunk_rows(100_000, 40_500)     # DS3, 4 GB: 250 MB buffers of 8 chunks
    192
    >>> default_chunk_rows(1000, 18)            # a small file: 64 chunks
    16
    """
    buffer = min(max(memory_budget_bytes(budget_gb) / BYTES_PER_VOXEL, 16e6), 1e9)
    rows = int(buffer // (int(buffer_chunks) * int(n_voxels) * 4))
    return max(1, min(rows, -(-int(n_showers) // 64)))


@dataclass(frozen=True)
class Chunk:
    """Contiguous rows ``[start, stop)`` of file ``file`` and the selected global rows among them."""

    file: int
    start: int
    stop: int
    rows: np.ndarray  # global row numbers (sorted), all in [offset + start, offset + stop)


def epoch_chunk_order(n_chunks: int, seed: int, epoch: int) -> np.ndarray:
    """Step 1 of the module docstring: the chunk order of an epoch (identical on every process)."""
    return np.random.default_rng([int(seed), int(epoch), 0]).permutation(n_chunks)


class ShowerFileSet:
    """The showers of one or more CaloChallenge HDF5 files of one geometry, read chunk by chunk.

    Arguments:
        paths: the files (rows in the given order: file 0's rows first).
        geometry: a geometry or the path of a binning XML / geometry JSON; default: the geometry
            the files store (each file's must be the same).
        particle: the ``<Bin name>`` of a binning XML with several.
        chunk_rows: rows per chunk (contiguous, within one file); default from the memory budget.
        buffer_chunks: chunks per shuffle buffer.
        memory_budget_gb: sets the default ``chunk_rows`` so that a buffer of raw float32 voxels
            takes about ``budget / BYTES_PER_VOXEL`` bytes.

    Attributes:
        incident_energies: ``(N, 1)`` float64 MeV of the selected rows (in memory).
        conditions: extra conditions, each ``(N, k)`` float64 (in memory).
        geometry, attrs: as :class:`~hepgen.data.formats.ShowerData` (attributes of the first file).
        rows: ``(N,)`` sorted global row numbers of this view (``subset`` narrows it).

    Raises:
        ValueError: one line naming the file and key: a file that is not a shower file,
            voxel counts, geometries or condition names that differ from the first file's,
            bad incident energies or conditions.  Voxel values are validated as they are read.
    """

    streamed = True  # the trainer's sign of a container read in chunks

    def __init__(self, paths: Sequence[str | os.PathLike], geometry=None, particle: str | None = None,
                 chunk_rows: int | None = None, buffer_chunks: int = 8, memory_budget_gb: float | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("expected at least one shower file, found none")
        geometry, geometry_source = _resolve_geometry(geometry, particle)
        energies, conditions, sizes, self.attrs = [], None, [], {}
        n_voxels = None
        for path in self.paths:
            e, cond, n, v, stored, attrs = _read_header(path)
            if n_voxels is None:
                n_voxels, first_cond, first_stored, self.attrs = v, sorted(cond), stored, attrs
                conditions = {k: [] for k in cond}
            elif v != n_voxels:
                raise ValueError(f"{path}: key 'showers': expected {n_voxels} voxels per shower as in "
                                 f"{self.paths[0]}, found {v}")
            elif sorted(cond) != first_cond:
                raise ValueError(f"{path}: conditions: expected {first_cond} as in {self.paths[0]}, found {sorted(cond)}")
            elif geometry is None and _parsed(stored) != _parsed(first_stored):
                raise ValueError(f"{path}: attribute {GEOMETRY_ATTR!r}: the geometry differs from "
                                 f"{self.paths[0]}'s; every file of a data set needs the same geometry")
            energies.append(e)
            for k in cond:
                conditions[k].append(cond[k])
            sizes.append(n)
        if geometry is None and first_stored is not None:
            try:
                geometry = geometry_from_dict(json.loads(first_stored))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{self.paths[0]}: attribute {GEOMETRY_ATTR!r}: expected a hepgen geometry "
                                 f"JSON ({err})") from None
            geometry_source = f"{self.paths[0].name}:{GEOMETRY_ATTR}"
        if geometry is not None and geometry.n_voxels != n_voxels:
            where = f"binning {geometry_source!r}" if geometry_source else "the geometry"
            raise ValueError(f"{self.paths[0]}: key 'showers': expected shape (N, {geometry.n_voxels}) to match "
                             f"{where}, found (N, {n_voxels})")
        self.geometry = geometry
        self.n_voxels = int(n_voxels)
        self.file_sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.file_sizes)])
        self._energies = np.concatenate(energies).reshape(-1, 1)
        self._conditions = {k: np.concatenate(v) for k, v in conditions.items()}
        self.rows = np.arange(int(self.offsets[-1]), dtype=np.int64)
        self._checked: set = set()  # chunks whose voxels passed validation (shared with subset views)
        self.buffer_chunks = int(buffer_chunks)
        if self.buffer_chunks < 1:
            raise ValueError(f"buffer_chunks: expected an integer >= 1, found {buffer_chunks}")
        if chunk_rows is None:
            chunk_rows = default_chunk_rows(len(self), self.n_voxels, self.buffer_chunks, memory_budget_gb)
        self.chunk_rows = int(chunk_rows)
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows: expected an integer >= 1, found {chunk_rows}")

    # --- the in-memory per-shower arrays -------------------------------------------------
    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def incident_energies(self) -> np.ndarray:
        return self._energies[self.rows]

    @property
    def conditions(self) -> dict:
        return {k: v[self.rows] for k, v in self._conditions.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of the selected showers' voxels as float32."""
        return len(self) * self.n_voxels * 4

    def subset(self, idx) -> "ShowerFileSet":
        """The view of the rows selected by an index array, slice or mask (always in file order)."""
        view = object.__new__(ShowerFileSet)
        view.__dict__.update(self.__dict__)
        view.rows = np.unique(self.rows[idx])
        return view

    # --- chunks ----------------------------------------------------------------------------
    def chunks(self) -> list[Chunk]:
        """The chunks holding selected rows, in file order."""
        out = []
        for f, n in enumerate(self.file_sizes):
            off = int(self.offsets[f])
            lo, hi = np.searchsorted(self.rows, [off, off + n])
            rows = self.rows[lo:hi]
            if not rows.size:
                continue
            block = (rows - off) // self.chunk_rows
            bounds = np.flatnonzero(np.diff(block)) + 1
            for part in np.split(rows, bounds):
                start = int((part[0] - off) // self.chunk_rows * self.chunk_rows)
                out.append(Chunk(f, start, int(min(start + self.chunk_rows, n)), part))
        return out

    def _read_chunk(self, files: dict, chunk: Chunk) -> np.ndarray:
        """``(len(chunk.rows), n_voxels)`` float32 voxels of the chunk's selected rows."""
        path = self.paths[chunk.file]
        if chunk.file not in files:
            files[chunk.file] = h5py.File(path, "r")
        try:
            block = np.asarray(files[chunk.file]["showers"][chunk.start:chunk.stop], dtype=np.float32)
        except OSError as err:
            raise ValueError(f"{path}: key 'showers': could not read rows {chunk.start}-{chunk.stop} ({err})") from None
        local = chunk.rows - self.offsets[chunk.file] - chunk.start
        return block if local.size == block.shape[0] else block[local]

    def _data(self, rows: np.ndarray, showers: np.ndarray) -> ShowerData:
        return ShowerData(showers, self._energies[rows], {k: v[rows] for k, v in self._conditions.items()},
                          self.geometry, dict(self.attrs))

    def _check(self, chunk: Chunk, showers: np.ndarray) -> None:
        """Validate a chunk's voxels the first time its rows are read (a warning once, not every epoch)."""
        key = (chunk.file, chunk.start, chunk.rows.size, int(chunk.rows[0]), int(chunk.rows[-1]))
        if key not in self._checked:
            validate_showers(self._data(chunk.rows, showers),
                             f"{self.paths[chunk.file]} (rows {chunk.start}-{chunk.stop})", self.geometry)
            self._checked.add(key)

    def _validated(self, chunk: Chunk, showers: np.ndarray) -> ShowerData:
        self._check(chunk, showers)
        return self._data(chunk.rows, showers)

    def iter_chunks(self, prefetch: bool = True) -> Iterator[ShowerData]:
        """The selected rows chunk by chunk, in file order, as validated in-memory ShowerData."""
        chunks = self.chunks()
        reads = _prefetched(self._reader(chunks), enabled=prefetch)
        try:
            for chunk, showers in zip(chunks, reads):
                yield self._validated(chunk, showers)
        finally:
            reads.close()  # stops the reading thread when the consumer stops early

    def _reader(self, chunks: Iterable[Chunk]) -> Iterator[np.ndarray]:
        files: dict = {}
        try:
            for chunk in chunks:
                yield self._read_chunk(files, chunk)
        finally:
            for f in files.values():
                f.close()

    def load(self) -> ShowerData:
        """All selected rows in memory, validated as :func:`~hepgen.data.formats.read_showers` does."""
        parts = list(self._reader(self.chunks()))
        showers = np.concatenate(parts) if parts else np.zeros((0, self.n_voxels), np.float32)
        data = self._data(self.rows, showers)
        validate_showers(data, ", ".join(map(str, self.paths)), self.geometry)
        return data

    # --- training batches ------------------------------------------------------------------
    def _buffers(self, seed: int, epoch: int, rank: int, world: int) -> tuple[list[list[Chunk]], int]:
        """This process's buffers (lists of chunks) and the row count of the largest shard."""
        chunks = self.chunks()
        if len(chunks) < world:
            raise ValueError(f"{len(chunks)} chunks of {self.chunk_rows} rows cannot be shared by {world} "
                             "processes; use a smaller chunk size or fewer processes")
        order = epoch_chunk_order(len(chunks), seed, epoch)
        sizes = np.array([c.rows.size for c in chunks])
        longest = max(int(sizes[order[r::world]].sum()) for r in range(world))
        mine = [chunks[i] for i in order[rank::world]]
        return [mine[i:i + self.buffer_chunks] for i in range(0, len(mine), self.buffer_chunks)], longest

    def batches(self, tensors: Callable[[ShowerData, np.random.Generator], tuple], seed: int, epoch: int,
                batch_size: int, rank: int = 0, world: int = 1, start_batch: int = 0,
                prefetch: bool = True) -> tuple[int, Iterator[tuple]]:
        """The epoch's batches of this process (see the module docstring for the order).

        Arguments:
            tensors: ``f(buffer, rng) -> (x, c, …)`` arrays with one row per shower of the
                in-memory ShowerData ``buffer`` (rows in training order); ``rng`` is the buffer's
                noise generator.
            seed, epoch, rank, world: the run's seed, the epoch, this process and their number.
            batch_size: rows per batch (the last batch of the epoch may be smaller).
            start_batch: the first batch to produce (resume inside an epoch).

        Returns:
            ``(n_batches, iterator)``: the epoch's number of batches (equal on every process) and
            the batches ``start_batch … n_batches - 1`` as tuples of arrays.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size}")
        buffers, longest = self._buffers(seed, epoch, rank, world)
        n_batches = -(-longest // batch_size)
        lengths = np.array([sum(c.rows.size for c in b) for b in buffers])
        ends = np.cumsum(lengths)
        # (buffer, first row, rows) pieces covering positions [start, longest) of the cyclic stream
        pieces, p = [], int(start_batch) * batch_size
        while p < longest:
            q = p % int(ends[-1])
            j = int(np.searchsorted(ends, q, side="right"))
            off = q - int(ends[j] - lengths[j])
            take = min(int(lengths[j]) - off, longest - p)
            pieces.append((j, off, take))
            p += take

        def read(js):
            files: dict = {}
            try:
                for j in js:
                    yield [self._read_chunk(files, c) for c in buffers[j]]
            finally:
                for f in files.values():
                    f.close()

        def produce():
            raw = _prefetched(read([j for j, _, _ in pieces]), enabled=prefetch)
            try:
                yield from batch(raw)
            finally:
                raw.close()  # stops the reading thread when the consumer stops early

        def batch(raw):
            pending: list = []
            n_pending = 0
            for (j, off, take), parts in zip(pieces, raw):
                data = self._buffer(buffers[j], parts, np.random.default_rng([int(seed), int(epoch), 1, int(rank), j]))
                del parts
                arrays = tensors(data, np.random.default_rng([int(seed), int(epoch), 2, int(rank), j]))
                del data
                arrays = [a[off:off + take] for a in arrays]
                while arrays[0].shape[0]:
                    need = batch_size - n_pending
                    pending.append([a[:need] for a in arrays])
                    n_pending += pending[-1][0].shape[0]
                    arrays = [a[need:] for a in arrays]
                    if n_pending == batch_size:
                        yield _join(pending)
                        pending, n_pending = [], 0
                # a batch left open: copy its rows, so that this buffer's arrays can be freed
                pending = [[np.array(a) for a in cols] for cols in pending]
                del arrays
            if pending:
                yield _join(pending)

        return n_batches, produce()

    def _buffer(self, chunks: list[Chunk], parts: list[np.ndarray], rng: np.random.Generator) -> ShowerData:
        """The validated rows of a buffer's chunks, shuffled by ``rng`` (``parts`` is emptied:
        at most two copies of the buffer's voxels exist at a time)."""
        for chunk, showers in zip(chunks, parts):
            self._check(chunk, showers)
        rows = np.concatenate([c.rows for c in chunks])
        showers = np.concatenate(parts)
        parts.clear()
        perm = rng.permutation(len(rows))
        return self._data(rows[perm], showers[perm])


def _parsed(stored: str | None):
    """A stored geometry JSON as a Python value, for comparison (the text itself if it is not JSON:
    the reader of the first file reports that)."""
    try:
        return None if stored is None else json.loads(stored)
    except ValueError:
        return stored


def _join(pending: list[list[np.ndarray]]) -> tuple:
    return tuple(np.concatenate(cols) if len(cols) > 1 else cols[0] for cols in zip(*pending))


def _read_header(path: Path):
    """``(energies, conditions, n, n_voxels, stored geometry JSON, attrs)`` of one file, without its voxels."""
    require_hdf5(path, "CaloChallenge layout")
    try:
        with h5py.File(path, "r") as f:
            check_file_kind(f, path, "showers")
            for key in ("showers", "incident_energies"):
                if key not in f:
                    raise ValueError(f"{path}: missing dataset {key!r}; expected 'showers' and "
                                     f"'incident_energies', found keys {sorted(f.keys())}")
            arrays = {}
            for key in ("showers", "incident_energies", *[k for k in CONDITION_KEYS if k in f]):
                obj = f[key]
                if not isinstance(obj, h5py.Dataset):
                    raise ValueError(f"{path}: key {key!r}: expected a dataset, found a {type(obj).__name__}")
                if obj.dtype.kind not in "biuf":
                    raise ValueError(f"{path}: key {key!r}: expected a numeric dataset, found dtype {obj.dtype}")
                arrays[key] = obj
            shape = arrays["showers"].shape
            if len(shape) != 2:
                raise ValueError(f"{path}: key 'showers': expected a 2-d array (N, n_voxels), found shape {shape}")
            energies = np.asarray(arrays.pop("incident_energies")[()], dtype=np.float64)
            arrays.pop("showers")
            conditions = {k: np.asarray(v[()], dtype=np.float64) for k, v in arrays.items()}
            attrs = {k: hdf5_attr_value(v) for k, v in f.attrs.items()}
    except OSError as err:
        raise ValueError(f"{path}: could not read HDF5 file ({err})") from None
    energies = energies.reshape(-1, 1) if energies.ndim == 1 else energies
    conditions = {k: v.reshape(-1, 1) if v.ndim == 1 else v for k, v in conditions.items()}
    attrs.pop(KIND_ATTR, None)
    stored = attrs.pop(GEOMETRY_ATTR, None)
    # counts, shapes and values of the per-shower arrays (the voxels are checked as they are read)
    validate_showers(ShowerData(np.zeros((shape[0], 0), np.float32), energies, conditions), str(path))
    return energies, conditions, int(shape[0]), int(shape[1]), stored, attrs


def _prefetched(items: Iterator, enabled: bool = True, depth: int = 1) -> Iterator:
    """``items`` produced by a background thread, at most ``depth`` ahead of the one the consumer
    holds (h5py releases the GIL while HDF5 does I/O); an exception in the thread is raised here;
    closing the consumer stops the thread."""
    if not enabled:
        yield from items
        return
    box: queue.Queue = queue.Queue()
    slots = threading.Semaphore(depth)  # released when the consumer takes an item
    stop = threading.Event()
    done = object()

    def work():
        try:
            it = iter(items)
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(it)
                except StopIteration:
                    box.put((True, done))
                    return
                box.put((True, item))
        except BaseException as err:  # handed to the consumer
            box.put((False, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="hepgen-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                raise item
            if item is done:
                return
            slots.release()
            yield item
            del item
    finally:
        stop.set()
        thread.join()
