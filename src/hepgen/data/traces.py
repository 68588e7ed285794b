"""Surface-detector time traces: a container and its HDF5 layout (``kind = "traces"``).

An event is a footprint of ``n_x × n_y`` stations on a square grid, each with a time trace
of ``n_t`` bins (signal in VEM per bin, the vertical-equivalent-muon unit of water-Cherenkov
detectors).  Used by the Auger-like toy of :mod:`hepgen.simulate.auger_toy` and by the
refiner of :mod:`hepgen.refine`.

HDF5 layout:

* ``traces`` — ``(N, n_x, n_y, n_t)`` float32, VEM per time bin (may be slightly negative
  where baseline noise is recorded);
* ``energy`` — ``(N, 1)`` float64, primary energy in EeV (10^18 eV);
* ``zenith`` — ``(N, 1)`` float64, zenith angle in rad;
* file attributes: ``kind = "traces"``, ``spacing_m`` (station spacing, m), ``bin_ns``
  (time-bin width, ns) and provenance strings.

Reads are validated; bad input raises ``ValueError`` (``FileNotFoundError`` for a missing
file) naming the file and the key.  Writes are atomic.

Example:
    >>> import numpy as np
    >>> d = TraceData(np.zeros((2, 9, 9, 80), np.float32), energy=[[3.0], [10.0]], zenith=[[0.1], [0.5]])
    >>> len(d), d.grid_shape, d.n_t
    (2, (9, 9), 80)
    >>> d.subset([1]).energy.ravel().tolist()
    [10.0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hepgen._io import atomic_path
from hepgen.data.formats import require_hdf5

__all__ = ["LABEL_KEYS", "TraceData", "is_traces_file", "kind", "read_traces", "validate_traces", "write_traces"]

#: the kind of data this module serves (stored as the file attribute ``kind``)
kind = "traces"
#: per-event labels stored beside the traces, each ``(N, 1)``
LABEL_KEYS = ("energy", "zenith")


@dataclass
class TraceData:
    """Surface-detector events.

    Arguments:
        traces: ``(N, n_x, n_y, n_t)`` float32, VEM per time bin.
        energy: ``(N, 1)`` primary energy, EeV.
        zenith: ``(N, 1)`` zenith angle, rad.
        spacing_m: station spacing, m.
        bin_ns: time-bin width, ns.
        attrs: provenance (JSON-able scalars and strings).
    """

    traces: np.ndarray
    energy: np.ndarray
    zenith: np.ndarray
    spacing_m: float = 1500.0
    bin_ns: float = 25.0
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.traces = np.asarray(self.traces, dtype=np.float32)
        self.energy = np.asarray(self.energy, dtype=np.float64).reshape(-1, 1)
        self.zenith = np.asarray(self.zenith, dtype=np.float64).reshape(-1, 1)

    def __len__(self) -> int:
        return int(self.traces.shape[0])

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(n_x, n_y)`` stations."""
        return tuple(int(v) for v in self.traces.shape[1:3])

    @property
    def n_t(self) -> int:
        """Time bins per trace."""
        return int(self.traces.shape[3])

    def layout(self) -> dict:
        """The detector layout two files must share to be compared (grid, bins, spacing)."""
        return {"grid": list(self.grid_shape), "n_t": self.n_t, "spacing_m": float(self.spacing_m),
                "bin_ns": float(self.bin_ns)}

    def subset(self, idx) -> TraceData:
        """The events selected by an index array, slice or boolean mask."""
        return TraceData(self.traces[idx], self.energy[idx], self.zenith[idx], self.spacing_m, self.bin_ns,
                         dict(self.attrs))


def validate_traces(data: TraceData, source: str = "<memory>") -> None:
    """Check shapes, counts and values; raise ``ValueError`` naming ``source`` and the key."""
    t = data.traces
    if t.ndim != 4:
        raise ValueError(f"{source}: key 'traces': expected a 4-d array (N, n_x, n_y, n_t), found shape {t.shape}")
    n = t.shape[0]
    for key in LABEL_KEYS:
        arr = getattr(data, key)
        if arr.shape != (n, 1):
            raise ValueError(f"{source}: key {key!r}: expected shape ({n}, 1) (one per event), found {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{source}: key {key!r}: expected finite values, found NaN/Inf")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{source}: key 'traces': expected finite values, found NaN/Inf")
    if n and data.energy.min() <= 0:
        raise ValueError(f"{source}: key 'energy': expected energies > 0 EeV, found minimum {data.energy.min():.6g}")
    if n and (data.zenith.min() < 0 or data.zenith.max() >= np.pi / 2):
        raise ValueError(f"{source}: key 'zenith': expected angles in [0, pi/2) rad, found range "
                         f"[{data.zenith.min():.4g}, {data.zenith.max():.4g}]")
    for name in ("spacing_m", "bin_ns"):
        v = getattr(data, name)
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{source}: attribute {name!r}: expected a positive number, found {v!r}")


def is_traces_file(path: str | os.PathLike) -> bool:
    """A cheap sniff: an HDF5 file with a ``traces`` dataset or the attribute ``kind = "traces"``."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            k = f.attrs.get("kind")
            k = k.decode() if isinstance(k, bytes) else k
            return k == kind or "traces" in f
    except OSError:
        return False


def read_traces(path: str | os.PathLike) -> TraceData:
    """Read and validate a traces HDF5 file (layout in the module docstring)."""
    path = Path(path)
    require_hdf5(path, "traces layout")
    try:
        with h5py.File(path, "r") as f:
            for key in ("traces", *LABEL_KEYS):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ValueError(f"{path}: missing dataset {key!r}; expected 'traces', 'energy' and "
                                     f"'zenith', found keys {sorted(f.keys())}")
                if f[key].dtype.kind not in "biuf":
                    raise ValueError(f"{path}: key {key!r}: expected a numeric dataset, found dtype {f[key].dtype}")
            traces = np.asarray(f["traces"][()], dtype=np.float32)
            energy = np.asarray(f["energy"][()], dtype=np.float64)
            zenith = np.asarray(f["zenith"][()], dtype=np.float64)
            attrs = {}
            for k, v in f.attrs.items():
                v = v.decode() if isinstance(v, bytes) else v
                attrs[k] = v.item() if isinstance(v, np.generic) else v
    except OSError as err:
        raise ValueError(f"{path}: could not read HDF5 file ({err})") from None
    if energy.ndim == 1:
        energy = energy[:, None]
    if zenith.ndim == 1:
        zenith = zenith[:, None]
    found_kind = attrs.pop("kind", kind)
    if found_kind != kind:
        raise ValueError(f"{path}: attribute 'kind': expected {kind!r}, found {found_kind!r}")
    spacing = float(attrs.pop("spacing_m", 1500.0))
    bin_ns = float(attrs.pop("bin_ns", 25.0))
    if energy.shape[0] != traces.shape[0] or zenith.shape[0] != traces.shape[0]:
        raise ValueError(f"{path}: key 'traces' has {traces.shape[0]} events but 'energy' has {energy.shape[0]} "
                         f"and 'zenith' {zenith.shape[0]}; expected equal counts")
    data = TraceData(traces, energy, zenith, spacing, bin_ns, attrs)
    validate_traces(data, str(path))
    return data


def write_traces(path: str | os.PathLike, data: TraceData, compression: str | None = "gzip") -> None:
    """Validate ``data`` and write it (layout in the module docstring), atomically."""
    path = Path(path)
    validate_traces(data, str(path))
    attrs = {}
    for k, v in data.attrs.items():
        if v is None or k in ("kind", "spacing_m", "bin_ns"):
            continue
        if not isinstance(v, (int, float, str, bool, np.number)):
            raise ValueError(f"{path}: attribute {k!r}: expected a scalar or string, found {type(v).__name__}")
        attrs[k] = v
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n = len(data)
            chunks = (max(1, min(n, 256)), *data.traces.shape[1:]) if n else None
            f.create_dataset("traces", data=data.traces, compression=compression if n else None, chunks=chunks)
            f.create_dataset("energy", data=data.energy)
            f.create_dataset("zenith", data=data.zenith)
            f.attrs.update(attrs)
            f.attrs["kind"] = kind
            f.attrs["spacing_m"] = float(data.spacing_m)
            f.attrs["bin_ns"] = float(data.bin_ns)
