"""Tabular event data: named float columns per event, with units and a process label.

The container of hepgen's ``"tabular"`` kind of data (event-level analysis variables such as
the ttH-vs-ttbb high-level variables of :mod:`hepgen.simulate.tth_variables`).

HDF5 layout (one file, written atomically by :func:`write_tabular`):

==================  ==========================================================================
``values``          ``(N, V)`` float64 dataset: one row per event, one column per variable
``process``         ``(N,)`` int64 dataset: index into ``process_names``
attr ``kind``       ``"tabular"`` (what :func:`is_tabular_file` sniffs)
attr ``columns``    JSON list of the V column names (unique)
attr ``units``      JSON list of the V units (``"GeV"``, ``""`` for dimensionless, …)
attr ``process_names``  JSON list of the process names (e.g. ``["tth", "ttbb"]``)
other attrs         provenance (generator, seed, settings), JSON-able scalars or strings
==================  ==========================================================================

Every read is validated; bad input raises a one-line ``ValueError`` (``FileNotFoundError`` for
a missing file) naming the file, the key, what was expected and what was found.

Example:
    >>> import numpy as np
    >>> d = TabularData(np.arange(6.0).reshape(3, 2), ["a", "b"], ["GeV", ""], np.array([0, 1, 0]),
    ...                 ["tth", "ttbb"])
    >>> len(d), d.column("b").tolist(), len(d.of_process("tth"))
    (3, [1.0, 3.0, 5.0], 2)
    >>> TabularData.concatenate([d, d.subset([0])]).values.shape
    (4, 2)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hepgen._io import atomic_path
from hepgen.data.formats import check_file_kind, is_file_of_kind, require_hdf5

__all__ = ["COST_KEY", "KIND", "TabularData", "combined_attrs", "is_tabular_file", "merge_tabular_files",
           "read_tabular", "simulation_cost", "validate_tabular", "write_tabular"]

KIND = "tabular"
"""The value of the ``kind`` attribute of tabular files."""


@dataclass
class TabularData:
    """A table of events.

    Arguments:
        values: ``(N, V)`` float64 event variables (physical units, see ``units``).
        columns: the V column names (unique).
        units: the V units (``"GeV"``, ``"rad"``, ``""`` for dimensionless).
        process: ``(N,)`` int64 process labels, indices into ``process_names``.
        process_names: names of the processes (e.g. ``["tth", "ttbb"]``).
        attrs: JSON-able provenance (generator, seed, settings, timing).
    """

    values: np.ndarray
    columns: list[str]
    units: list[str]
    process: np.ndarray
    process_names: list[str]
    attrs: dict = field(default_factory=dict)
    kind = KIND

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.process = np.asarray(self.process).astype(np.int64, copy=False)
        self.columns = [str(c) for c in self.columns]
        self.units = [str(u) for u in self.units]
        self.process_names = [str(p) for p in self.process_names]
        validate_tabular(self)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_columns(self) -> int:
        """V, the number of variables."""
        return int(self.values.shape[1])

    def column(self, name: str) -> np.ndarray:
        """``(N,)`` values of column ``name`` (a ``ValueError`` lists the known ones)."""
        return self.values[:, self._index(name)]

    def _index(self, name: str) -> int:
        if name not in self.columns:
            raise ValueError(f"TabularData: key 'columns': expected one of {self.columns}, found {name!r}")
        return self.columns.index(name)

    def select_columns(self, names: Sequence[str]) -> TabularData:
        """The same events with only the columns ``names`` (in that order)."""
        idx = [self._index(n) for n in names]
        return TabularData(self.values[:, idx], [self.columns[i] for i in idx], [self.units[i] for i in idx],
                           self.process, self.process_names, dict(self.attrs))

    def subset(self, indices) -> TabularData:
        """The events ``indices`` (integer indices or a boolean mask), same columns and processes."""
        attrs = dict(self.attrs)
        if COST_KEY not in attrs:  # the file's totals no longer match the rows: keep the cost per event
            cost = simulation_cost(self)
            if cost:
                attrs[COST_KEY] = json.dumps(cost)
        return TabularData(self.values[indices], self.columns, self.units, self.process[indices],
                           self.process_names, attrs)

    def process_index(self, name: str) -> int:
        """Index of process ``name`` (a ``ValueError`` lists the known ones)."""
        if name not in self.process_names:
            raise ValueError(f"TabularData: key 'process': expected one of {self.process_names}, found {name!r}")
        return self.process_names.index(name)

    def of_process(self, name: str) -> TabularData:
        """The events of process ``name``."""
        return self.subset(self.process == self.process_index(name))

    @staticmethod
    def concatenate(parts: Sequence[TabularData], attrs: dict | None = None) -> TabularData:
        """Stack samples with the same columns; process labels are re-indexed into the union of
        the process names (in order of first appearance).  ``attrs`` default to
        :func:`combined_attrs` (the first part's provenance, summed timing and counts, the
        simulation cost per event and process)."""
        parts = list(parts)
        if not parts:
            raise ValueError("TabularData.concatenate: expected at least one sample, found none")
        cols = parts[0].columns
        for p in parts[1:]:
            if p.columns != cols:
                raise ValueError(f"TabularData.concatenate: key 'columns': expected {cols}, found {p.columns}")
        names: list[str] = []
        for p in parts:
            names += [n for n in p.process_names if n not in names]
        proc = [np.asarray([names.index(p.process_names[i]) for i in p.process], dtype=np.int64).reshape(-1)
                for p in parts]
        return TabularData(np.concatenate([p.values for p in parts]), cols, parts[0].units, np.concatenate(proc),
                           names, combined_attrs(parts) if attrs is None else dict(attrs))


#: attrs key of the simulation cost per selected event, per process (a JSON string):
#: ``{"tth": {"wall": s, "cpu": s, "events": n}, ...}``
COST_KEY = "cost_per_event"
#: attrs that :func:`combined_attrs` sums over the parts
_SUMMED = ("cpu_seconds", "process_seconds", "n_generated", "n_vetoed")


def simulation_cost(data: TabularData) -> dict:
    """Seconds of simulation per selected event, per process: ``{name: {"wall", "cpu", "events"}}``.

    From ``attrs["cost_per_event"]`` when present (merged files, concatenations and subsets
    carry it); otherwise from a whole single-process file's totals: ``wall`` = ``cpu_seconds``
    (the simulation workers' wall clock; ``seconds`` in a chunk file) and ``cpu`` =
    ``process_seconds`` (their CPU time),
    each over the number of rows (None where the total is missing).  A table of several
    processes without the record, or with no timing, gives ``{}`` (unknown).

    >>> d = TabularData(np.zeros((4, 1)), ["x"], [""], np.zeros(4), ["tth"], {"cpu_seconds": 2.0})
    >>> simulation_cost(d)
    {'tth': {'wall': 0.5, 'cpu': None, 'events': 4}}
    >>> simulation_cost(d.subset([0]))["tth"]["wall"]  # a subset keeps the cost per event
    0.5
    """
    if COST_KEY in data.attrs:
        return json.loads(data.attrs[COST_KEY])
    wall, cpu = data.attrs.get("cpu_seconds", data.attrs.get("seconds")), data.attrs.get("process_seconds")
    present = np.unique(data.process)
    if (wall is None and cpu is None) or len(present) != 1 or len(data) == 0:
        return {}
    n = len(data)
    return {data.process_names[int(present[0])]: {"wall": float(wall) / n if wall is not None else None,
                                                   "cpu": float(cpu) / n if cpu is not None else None, "events": n}}


def combined_attrs(parts: Sequence[TabularData]) -> dict:
    """The attrs of a concatenation: the first part's provenance, the sums of ``cpu_seconds``,
    ``process_seconds``, ``n_generated``, ``n_vetoed`` (where any part has them) and, when every
    part's :func:`simulation_cost` is known, the combined cost per event and process (total
    seconds over total events of that process)."""
    attrs = dict(parts[0].attrs)
    for key in _SUMMED:
        if any(key in p.attrs for p in parts):
            total = sum(p.attrs.get(key, 0) for p in parts)
            attrs[key] = int(total) if key.startswith("n_") else float(total)
    costs = [simulation_cost(p) for p in parts]
    attrs.pop(COST_KEY, None)
    if costs and all(costs):
        merged: dict = {}
        for cost in costs:
            for name, c in cost.items():
                m = merged.setdefault(name, {"wall": 0.0, "cpu": 0.0, "events": 0})
                for k in ("wall", "cpu"):
                    m[k] = None if m[k] is None or c.get(k) is None else m[k] + c[k] * c["events"]
                m["events"] += int(c["events"])
        for m in merged.values():
            for k in ("wall", "cpu"):
                m[k] = None if m[k] is None else m[k] / m["events"]
        attrs[COST_KEY] = json.dumps(merged)
    return attrs


def validate_tabular(data: TabularData, source: str = "<memory>") -> None:
    """Check shapes, names and values; raise a one-line ``ValueError`` naming ``source`` and the key.

    >>> TabularData(np.array([[np.nan]]), ["x"], [""], np.array([0]), ["tth"])
    Traceback (most recent call last):
        ...
    ValueError: <memory>: key 'values': expected finite values, found NaN/Inf in column 'x' (row 0)
    """
    v = data.values
    if v.ndim != 2:
        raise ValueError(f"{source}: key 'values': expected shape (N, V), found {v.shape}")
    n, k = v.shape
    if len(data.columns) != k:
        raise ValueError(f"{source}: key 'columns': expected {k} names (one per column of 'values'), "
                         f"found {len(data.columns)}")
    if len(set(data.columns)) != k:
        dup = sorted({c for c in data.columns if data.columns.count(c) > 1})
        raise ValueError(f"{source}: key 'columns': expected unique names, found duplicates {dup}")
    if len(data.units) != k:
        raise ValueError(f"{source}: key 'units': expected {k} units (one per column), found {len(data.units)}")
    bad = ~np.isfinite(v)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{source}: key 'values': expected finite values, found NaN/Inf in column "
                         f"{data.columns[col]!r} (row {row})")
    if data.process.shape != (n,):
        raise ValueError(f"{source}: key 'process': expected shape ({n},), found {data.process.shape}")
    if not data.process_names or len(set(data.process_names)) != len(data.process_names):
        raise ValueError(f"{source}: key 'process_names': expected unique names, found {data.process_names}")
    out = (data.process < 0) | (data.process >= len(data.process_names))
    if out.any():
        raise ValueError(f"{source}: key 'process': expected labels 0…{len(data.process_names) - 1} "
                         f"({data.process_names}), found unknown process {int(data.process[out][0])}")


def is_tabular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with the attribute ``kind = "tabular"`` (a cheap sniff)."""
    return is_file_of_kind(path, KIND, "values")


def _json_attr(f: h5py.File, path: Path, key: str) -> list[str]:
    if key not in f.attrs:
        raise ValueError(f"{path}: key {key!r}: expected a JSON list attribute, found none")
    raw = f.attrs[key]
    try:
        out = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError:
        out = None
    if not isinstance(out, list):
        raise ValueError(f"{path}: key {key!r}: expected a JSON list attribute, found {raw!r}")  # noqa: TRY004 (bad file content: ValueError by convention)
    return [str(x) for x in out]


def read_tabular(path: str | os.PathLike, columns: Sequence[str] | None = None,
                 processes: Sequence[str] | None = None) -> TabularData:
    """Read and validate a tabular file.

    Arguments:
        path: the HDF5 file (layout in the module docstring).
        columns: keep only these columns, in this order (``None``: all); a missing one is a
            ``ValueError`` naming it.
        processes: keep only the events of these processes (``None``: all); an unknown one is a
            ``ValueError``.
    """
    path = Path(path)
    require_hdf5(path, "tabular layout")
    try:
        with h5py.File(path, "r") as f:
            check_file_kind(f, path, KIND, required=True)
            for key in ("values", "process"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ValueError(f"{path}: key {key!r}: expected a dataset, found none")
                if not np.issubdtype(f[key].dtype, np.number):
                    raise ValueError(f"{path}: key {key!r}: expected a numeric dataset, found dtype {f[key].dtype}")
            values, process = f["values"][()], f["process"][()]
            cols, units, names = (_json_attr(f, path, k) for k in ("columns", "units", "process_names"))
            attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                     for k, v in f.attrs.items() if k not in ("kind", "columns", "units", "process_names")}
    except OSError as err:
        raise ValueError(f"{path}: could not read HDF5 file ({err})") from None
    if not np.all(np.equal(np.mod(process, 1), 0)):
        raise ValueError(f"{path}: key 'process': expected whole numbers (process index), found fractions")
    # built without __post_init__ so that the validation names the file, not "<memory>"
    data = TabularData.__new__(TabularData)
    data.values, data.columns, data.units = np.asarray(values, np.float64), cols, units
    data.process, data.process_names, data.attrs = np.asarray(process).astype(np.int64), names, attrs
    validate_tabular(data, str(path))
    if columns is not None:
        missing = [c for c in columns if c not in cols]
        if missing:
            raise ValueError(f"{path}: key 'columns': expected columns {list(columns)}, missing {missing} "
                             f"(found {cols})")
        data = data.select_columns(columns)
    if processes is not None:
        unknown = [p for p in processes if p not in names]
        if unknown:
            raise ValueError(f"{path}: key 'process': expected processes among {names}, found unknown {unknown}")
        data = data.subset(np.isin(data.process, [names.index(p) for p in processes]))
    return data


def write_tabular(path: str | os.PathLike, data: TabularData, compression: str | None = "gzip") -> None:
    """Validate ``data`` and write it (layout in the module docstring) atomically."""
    validate_tabular(data, str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("values", data=data.values, compression=compression)
        f.create_dataset("process", data=data.process, compression=compression)
        f.attrs["kind"] = KIND
        f.attrs["columns"] = json.dumps(data.columns)
        f.attrs["units"] = json.dumps(data.units)
        f.attrs["process_names"] = json.dumps(data.process_names)
        for k, v in data.attrs.items():
            if k in ("kind", "columns", "units", "process_names"):
                continue
            f.attrs[k] = v if isinstance(v, (int, float, str, bool, np.integer, np.floating)) else json.dumps(v)


def merge_tabular_files(paths: Sequence[str | os.PathLike], output: str | os.PathLike) -> TabularData:
    """Concatenate tabular files with the same columns (e.g. a ttH and a ttbb file) into ``output``.

    Process labels are re-indexed into the union of the process names; ``attrs`` of the output
    record the inputs, the summed ``cpu_seconds`` / ``process_seconds`` / ``n_generated`` /
    ``n_vetoed`` and the simulation cost per event and process (``cost_per_event``, see
    :func:`simulation_cost`; speed-up bookkeeping).
    """
    parts = [read_tabular(p) for p in paths]
    attrs = {k: v for k, v in combined_attrs(parts).items() if k in (*_SUMMED, COST_KEY)}
    attrs["merged_from"] = json.dumps([str(p) for p in paths])
    data = TabularData.concatenate(parts, attrs)
    write_tabular(output, data)
    return data
