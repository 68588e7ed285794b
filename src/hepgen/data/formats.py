"""Read, write and validate calorimeter showers in the CaloChallenge HDF5 layout.

Layout (as the CaloChallenge data sets use it):

* ``incident_energies`` — ``(N, 1)`` float, MeV;
* ``showers`` — ``(N, n_voxels)`` float, MeV, voxel order radial-fastest, then angular,
  then layer (the order of :mod:`hepgen.data.geometry`);
* optional extra conditions, each ``(N, k)``: ``incident_theta`` (rad),
  ``incident_phi`` (rad), ``impact_position`` (mm, x and y);
* file attributes: ``hepgen_geometry`` (the geometry as JSON) and provenance strings.

Every read is validated; bad input raises ``ValueError`` (``FileNotFoundError`` for a
missing file) with a message naming the file, the key, what was expected and what was
found.  Writes are atomic.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import h5py
import numpy as np

from hepgen._io import atomic_path, provenance
from hepgen.data.geometry import Geometry, geometry_from_dict, load_geometry

__all__ = ["ShowerData", "read_showers", "write_showers", "validate_showers", "hdf5_attrs", "hdf5_attr_value",
           "check_file_kind", "is_file_of_kind", "CONDITION_KEYS", "GEOMETRY_ATTR", "KIND_ATTR"]

CONDITION_KEYS = ("incident_theta", "incident_phi", "impact_position")
GEOMETRY_ATTR = "hepgen_geometry"
KIND_ATTR = "kind"  # the kind of data a hepgen file holds ("showers", "jets", ...); files from elsewhere have none


def require_hdf5(path, layout: str) -> None:
    """One-line errors for a path that is not a file (``FileNotFoundError``) or not HDF5 (``ValueError``).

    ``layout`` names what the file should hold, e.g. ``"CaloChallenge layout"``.

    >>> require_hdf5("no/such.h5", "CaloChallenge layout")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such.h5: file not found
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path}: expected an HDF5 file ({layout}), found something else")


def check_file_kind(f: h5py.File, path, expected: str, required: bool = False) -> None:
    """Refuse an open HDF5 file whose ``kind`` attribute names another kind of data.

    A file without the attribute is accepted unless ``required`` (kinds whose files only
    hepgen writes; showers and jets also come from the CaloChallenge and JetNet, without it).
    """
    found = f.attrs.get(KIND_ATTR)
    found = None if found is None else hdf5_attr_value(found)
    if found != expected and (found is not None or required):
        raise ValueError(f"{path}: attribute {KIND_ATTR!r}: expected {expected!r}, found {found!r}")


def is_file_of_kind(path, expected: str, dataset: str) -> bool:
    """A cheap sniff: an HDF5 file with the attribute ``kind = expected`` and a ``dataset``."""
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get(KIND_ATTR)
            return found is not None and hdf5_attr_value(found) == expected and dataset in f
    except (OSError, ValueError):
        return False


@dataclass
class ShowerData:
    """Showers with their conditions.

    Arguments:
        showers: ``(N, n_voxels)`` float32 voxel energies, MeV.
        incident_energies: ``(N, 1)`` incident energies, MeV.
        conditions: extra conditions, each ``(N, k)`` (keys from ``CONDITION_KEYS``).
        geometry: the voxel geometry, if known.
        attrs: file attributes (provenance): JSON-able scalars and strings.
    """

    showers: np.ndarray
    incident_energies: np.ndarray
    conditions: dict = field(default_factory=dict)
    geometry: Geometry | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.showers = np.asarray(self.showers)
        self.incident_energies = np.asarray(self.incident_energies)
        self.conditions = {k: np.asarray(v) for k, v in self.conditions.items()}

    def __len__(self) -> int:
        return int(self.showers.shape[0])

    def subset(self, idx) -> "ShowerData":
        """The showers selected by an index array, slice or boolean mask."""
        return ShowerData(
            self.showers[idx],
            self.incident_energies[idx],
            {k: v[idx] for k, v in self.conditions.items()},
            self.geometry,
            dict(self.attrs),
        )

    def condition_matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """``(N, 1 + k)`` float64: incident energy (MeV) then the named conditions, raw."""
        names = list(self.conditions) if names is None else list(names)
        missing = [n for n in names if n not in self.conditions]
        if missing:
            raise ValueError(f"conditions {missing} requested, found only {sorted(self.conditions)}")
        cols = [np.asarray(self.incident_energies, dtype=np.float64).reshape(len(self), 1)]
        cols += [np.asarray(self.conditions[n], dtype=np.float64).reshape(len(self), -1) for n in names]
        return np.concatenate(cols, axis=1)


log = logging.getLogger(__name__)

# a calorimeter cannot record more energy than came in; a sum far above it means wrong units or
# a broken file (the sampling fraction keeps real ratios below 1, CaloChallenge's at most ~1.1)
MAX_RESPONSE = 2.0


def _first_bad_row(bad_rows: np.ndarray) -> str:
    rows = np.flatnonzero(bad_rows)
    return f"{rows.size} row(s), first at row {rows[0]}"


def validate_showers(data: ShowerData, source: str = "<memory>", geometry: Geometry | None = None,
                     geometry_source: str | None = None) -> None:
    """Check shapes, counts and values of ``data``; raise ``ValueError`` naming ``source`` and the key.

    Non-finite values, negative deposits and incident energies <= 0 are errors.  Showers
    depositing more than ``MAX_RESPONSE`` (k = 2) × their incident energy are physically
    impossible (a sampling calorimeter records a fraction of the incident energy; CaloChallenge's
    E_dep / E_inc stays below ~1.1) but readable: one warning gives their count and the first such
    row (index, E_dep / E_inc, E_dep and E_inc in MeV).  ``hepgen train`` and ``hepgen evaluate``
    read through here (:func:`read_showers`), so both warn."""
    s, e = np.asarray(data.showers), np.asarray(data.incident_energies)
    if s.ndim != 2:
        raise ValueError(f"{source}: key 'showers': expected a 2-d array (N, n_voxels), found shape {s.shape}")
    if e.ndim != 2 or e.shape[1] != 1:
        raise ValueError(f"{source}: key 'incident_energies': expected shape (N, 1), found {e.shape}")
    if s.shape[0] != e.shape[0]:
        raise ValueError(
            f"{source}: key 'showers' has {s.shape[0]} showers but key 'incident_energies' has "
            f"{e.shape[0]} energies; expected equal counts"
        )
    geometry = geometry if geometry is not None else data.geometry
    if geometry is not None and s.shape[1] != geometry.n_voxels:
        where = f" to match binning {geometry_source!r}" if geometry_source else " to match the geometry"
        raise ValueError(
            f"{source}: key 'showers': expected shape (N, {geometry.n_voxels}){where}, found {s.shape}"
        )
    for key, arr in (("showers", s), ("incident_energies", e)):
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{source}: key {key!r}: expected numbers, found dtype {arr.dtype}")
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            raise ValueError(f"{source}: key {key!r}: expected finite values, found NaN/Inf in {_first_bad_row(~finite)}")
    if s.size and s.min() < 0:
        neg = (s < 0).any(axis=1)
        raise ValueError(
            f"{source}: key 'showers': expected energies >= 0 MeV, found minimum {s.min():.6g} MeV "
            f"in {_first_bad_row(neg)}"
        )
    if e.size and e.min() <= 0:
        raise ValueError(
            f"{source}: key 'incident_energies': expected energies > 0 MeV, found minimum {e.min():.6g} "
            f"in {_first_bad_row(e[:, 0] <= 0)}"
        )
    if s.size:
        ratio = s.sum(axis=1, dtype=np.float64) / e[:, 0]
        high = ratio > MAX_RESPONSE
        if high.any():
            first = int(np.flatnonzero(high)[0])
            log.warning("%s: key 'showers': %d of %d showers deposit more than %g x their incident energy "
                        "(first at row %d: E_dep / E_inc = %.4g, E_dep = %.6g MeV, E_inc = %.6g MeV); check the "
                        "units of 'showers' and 'incident_energies'", source, int(high.sum()), len(ratio),
                        MAX_RESPONSE, first, ratio[first], float(s[first].sum(dtype=np.float64)), float(e[first, 0]))
    for key, arr in data.conditions.items():
        arr = np.asarray(arr)
        if arr.ndim == 0 or arr.shape[0] != s.shape[0]:
            raise ValueError(f"{source}: key {key!r}: expected first dimension {s.shape[0]} "
                             f"(one row per shower), found shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{source}: key {key!r}: expected numbers, found dtype {arr.dtype}")
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{source}: key {key!r}: expected finite values, found NaN/Inf in {_first_bad_row(bad)}")


def _read_array(f: h5py.File, path: Path, key: str, dtype) -> np.ndarray:
    """Read dataset ``key`` as ``dtype``; a group or non-numeric data is a ``ValueError``."""
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: key {key!r}: expected a dataset, found a {type(obj).__name__}")
    if obj.dtype.kind not in "biuf":
        raise ValueError(f"{path}: key {key!r}: expected a numeric dataset, found dtype {obj.dtype}")
    return np.asarray(obj[()], dtype=dtype)


def hdf5_attr_value(v):
    """An HDF5 attribute as a plain Python value: bytes decoded, size-1 arrays and numpy
    scalars unwrapped, other arrays as lists."""
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size != 1 else hdf5_attr_value(v.reshape(()).item())
    return v.item() if isinstance(v, np.generic) else v


def _resolve_geometry(geometry, particle) -> tuple[Geometry | None, str | None]:
    if geometry is None:
        return None, None
    if isinstance(geometry, (str, os.PathLike)):
        return load_geometry(geometry, particle), Path(geometry).name
    return geometry, None


def read_showers(path: Union[str, os.PathLike], geometry=None, particle: str | None = None) -> ShowerData:
    """Read and validate a CaloChallenge HDF5 file.

    Arguments:
        path: the HDF5 file.
        geometry: a geometry object, or the path of a binning XML / geometry JSON; by default
            the geometry stored in the file by hepgen (``None`` if it has none).
        particle: the ``<Bin name>`` to use from a binning XML with several.
    """
    path = Path(path)
    geometry, geometry_source = _resolve_geometry(geometry, particle)
    require_hdf5(path, "CaloChallenge layout")
    try:
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            check_file_kind(f, path, "showers")
            for key in ("showers", "incident_energies"):
                if key not in f:
                    raise ValueError(f"{path}: missing dataset {key!r}; expected 'showers' and "
                                     f"'incident_energies', found keys {keys}")
            showers = _read_array(f, path, "showers", np.float32)
            energies = _read_array(f, path, "incident_energies", np.float64)
            conditions = {k: _read_array(f, path, k, np.float64) for k in CONDITION_KEYS if k in f}
            attrs = {k: hdf5_attr_value(v) for k, v in f.attrs.items()}
    except OSError as err:
        raise ValueError(f"{path}: could not read HDF5 file ({err})") from None
    if energies.ndim == 1:
        energies = energies.reshape(-1, 1)
    for key, arr in list(conditions.items()):
        if arr.ndim == 1:
            conditions[key] = arr.reshape(-1, 1)
    attrs.pop(KIND_ATTR, None)  # the container type says it
    stored = attrs.pop(GEOMETRY_ATTR, None)
    if geometry is None and stored is not None:
        try:
            geometry = geometry_from_dict(json.loads(stored))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: attribute {GEOMETRY_ATTR!r}: expected a hepgen geometry JSON ({err})") from None
        geometry_source = f"{path.name}:{GEOMETRY_ATTR}"
    data = ShowerData(showers, energies, conditions, geometry, attrs)
    validate_showers(data, str(path), geometry, geometry_source)
    return data


def hdf5_attrs(attrs: dict, path, skip=()) -> dict:
    """File attributes as HDF5 stores them: scalars and strings as they are, arrays as lists,
    anything else as JSON.  ``None`` values and the keys in ``skip`` are left out; a value
    that is not JSON-able is a ValueError naming ``path`` and the key.  ``hepgen_provenance``
    (JSON of :func:`hepgen._io.provenance` with the attributes' ``seed``) records who writes the file."""
    out = {}
    for key, value in attrs.items():
        if value is None or key in skip:
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, (int, float, str, bool, np.number)):
            try:
                value = json.dumps(value)
            except TypeError:
                raise ValueError(f"{path}: attribute {key!r}: expected a JSON-able value, "
                                 f"found {type(value).__name__}") from None
        out[key] = value
    out["hepgen_provenance"] = json.dumps(provenance(attrs.get("seed")))  # this writer's, not a source file's
    return out


def write_showers(path: Union[str, os.PathLike], data: ShowerData, compression: str | None = "gzip") -> None:
    """Validate ``data`` and write it in the CaloChallenge layout, atomically."""
    path = Path(path)
    validate_showers(data, str(path))
    unknown = [k for k in data.conditions if k not in CONDITION_KEYS]
    if unknown:
        raise ValueError(f"{path}: conditions {unknown}: expected names from {CONDITION_KEYS} "
                         "(other datasets are not read back)")
    attrs = hdf5_attrs(data.attrs, path, skip=(GEOMETRY_ATTR,))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n, v = data.showers.shape
            chunks = (max(1, min(n, 1024)), v) if n else None
            f.create_dataset("showers", data=np.asarray(data.showers, dtype=np.float32),
                             compression=compression if n else None, chunks=chunks)
            f.create_dataset("incident_energies", data=np.asarray(data.incident_energies, dtype=np.float64))
            for key, arr in data.conditions.items():
                f.create_dataset(key, data=np.asarray(arr, dtype=np.float64))
            if data.geometry is not None:
                f.attrs[GEOMETRY_ATTR] = json.dumps(data.geometry.to_dict())
            f.attrs.update(attrs)
            f.attrs[KIND_ATTR] = "showers"
