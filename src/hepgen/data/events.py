"""Whole collision events as calorimeter images: the container and its HDF5 files.

An event-image file (attribute ``kind = "events"``) holds

* ``images`` — ``(N, C, H, W)`` float32, tower energies in **GeV** on an (η, φ) grid
  (rows η from −eta_max to +eta_max, columns φ from −π to π; ``C`` = 1 for the total
  calorimeter energy, 2 for ECAL and HCAL; hepgen's detector makes 64 × 64,
  :mod:`hepgen.simulate.detector`);
* ``conditions`` — ``(N, 3)`` float32 ``[m_gluino, m_neutralino, mu]``: the theory masses
  in GeV (0 for events without SUSY particles) and the pile-up μ overlaid on the image
  (0 for none);
* ``truth_jets`` — ``(N, J, 4)`` float32 ``[pt, eta, phi, mass]`` (GeV) of the ``J``
  leading anti-kT particle-level jets, zero rows (pt = 0) as padding; may be absent
  (generated files);
* ``process`` — ``(N,)`` int8 index into :data:`PROCESSES`.

File attributes: ``kind``, ``eta_max``, ``channel_names`` (JSON list), provenance
(generator, seed, settings). Reads are validated (``ValueError`` naming the file and key;
``FileNotFoundError`` for a missing file); writes are atomic.

Example:
    >>> import numpy as np, tempfile, os
    >>> d = EventImages(np.ones((3, 1, 4, 4), np.float32), np.tile([[1400., 400., 0.]], (3, 1)))
    >>> len(d), d.subset([0, 2]).images.shape
    (3, (2, 1, 4, 4))
    >>> path = os.path.join(tempfile.mkdtemp(), "e.h5")
    >>> write_events(path, d); is_event_file(path), len(read_events(path))
    (True, 3)
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
from hepgen.data.formats import check_file_kind, hdf5_attr_value, hdf5_attrs, is_file_of_kind

__all__ = ["CONDITION_NAMES", "KIND", "PROCESSES", "EventImages", "event_file_header", "is_event_file",
           "read_events", "validate_events", "write_events"]

KIND = "events"
CONDITION_NAMES = ("m_gluino", "m_neutralino", "mu")
PROCESSES = ("signal", "qcd", "minbias", "pileup", "generated")


@dataclass
class EventImages:
    """Calorimeter images of whole events with their conditions (see the module docstring).

    Arguments:
        images: ``(N, C, H, W)`` float32 tower energies in GeV.
        conditions: ``(N, 3)`` float32 ``[m_gluino, m_neutralino, mu]`` (GeV, GeV, —).
        truth_jets: ``(N, J, 4)`` float32 ``[pt, eta, phi, mass]`` or None.
        process: ``(N,)`` int8 index into :data:`PROCESSES` (default: all ``generated``).
        attrs: JSON-able provenance; ``eta_max`` (default 2.5) gives the η range of the rows.
    """

    images: np.ndarray
    conditions: np.ndarray
    truth_jets: np.ndarray | None = None
    process: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.conditions = np.asarray(self.conditions, dtype=np.float32)
        if self.process is None:
            self.process = np.full(len(self.images), PROCESSES.index("generated"), np.int8)
        self.process = np.asarray(self.process, dtype=np.int8)
        if self.truth_jets is not None:
            self.truth_jets = np.asarray(self.truth_jets, dtype=np.float32)
        self.attrs = dict(self.attrs)
        self.attrs.setdefault("eta_max", 2.5)
        validate_events(self, "<EventImages>")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def eta_max(self) -> float:
        return float(self.attrs["eta_max"])

    def subset(self, indices) -> EventImages:
        """The events at ``indices`` (an index array, a boolean mask or a slice)."""
        idx = indices if isinstance(indices, slice) else np.asarray(indices)
        return EventImages(self.images[idx], self.conditions[idx],
                           None if self.truth_jets is None else self.truth_jets[idx],
                           self.process[idx], dict(self.attrs))

    def total(self) -> np.ndarray:
        """``(N, H, W)``: the images summed over channels (total calorimeter energy)."""
        return self.images.sum(axis=1)

    @staticmethod
    def concatenate(parts: Sequence[EventImages], attrs: dict | None = None) -> EventImages:
        """One container from several of the same image shape (truth jets padded to the widest)."""
        if not parts:
            raise ValueError("EventImages.concatenate: expected at least one part, found none")
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"EventImages.concatenate: expected one image shape, found {sorted(shapes)}")
        tj = None
        if all(p.truth_jets is not None for p in parts):
            width = max(p.truth_jets.shape[1] for p in parts)
            tj = np.concatenate([np.pad(p.truth_jets, ((0, 0), (0, width - p.truth_jets.shape[1]), (0, 0)))
                                 for p in parts])
        return EventImages(np.concatenate([p.images for p in parts]),
                           np.concatenate([p.conditions for p in parts]), tj,
                           np.concatenate([p.process for p in parts]),
                           dict(parts[0].attrs) if attrs is None else attrs)


def validate_events(data: EventImages, source: str = "<EventImages>") -> None:
    """Check shapes, finiteness and ranges; ``ValueError`` naming ``source`` and the key."""
    im, co = data.images, data.conditions
    if im.ndim != 4 or min(im.shape[1:]) < 1:
        raise ValueError(f"{source}: key 'images': expected shape (N, C, H, W), found {im.shape}")
    n = im.shape[0]
    if co.shape != (n, len(CONDITION_NAMES)):
        raise ValueError(f"{source}: key 'conditions': expected shape ({n}, {len(CONDITION_NAMES)}) "
                         f"[{', '.join(CONDITION_NAMES)}], found {co.shape}")
    if not np.isfinite(im).all() or (im < 0).any():
        raise ValueError(f"{source}: key 'images': expected finite energies >= 0 GeV, "
                         f"found min {np.nanmin(im) if im.size else 0}, {int((~np.isfinite(im)).sum())} non-finite")
    if not np.isfinite(co).all() or (co < 0).any():
        raise ValueError(f"{source}: key 'conditions': expected finite values >= 0, found min "
                         f"{np.nanmin(co) if co.size else 0}")
    if data.process.shape != (n,) or (n and (data.process.min() < 0 or data.process.max() >= len(PROCESSES))):
        raise ValueError(f"{source}: key 'process': expected ({n},) indices into {list(PROCESSES)}, "
                         f"found shape {data.process.shape}")
    tj = data.truth_jets
    if tj is not None and (tj.ndim != 3 or tj.shape[0] != n or tj.shape[2] != 4):
        raise ValueError(f"{source}: key 'truth_jets': expected shape ({n}, J, 4) [pt, eta, phi, mass], "
                         f"found {tj.shape}")
    eta_max = data.attrs.get("eta_max", 2.5)
    if not (isinstance(eta_max, (int, float, np.number)) and float(eta_max) > 0):
        raise ValueError(f"{source}: attribute 'eta_max': expected a number > 0, found {eta_max!r}")


def is_event_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with ``kind = "events"`` and an ``images`` dataset (cheap)."""
    return is_file_of_kind(path, KIND, "images")


def write_events(path: str | os.PathLike, data: EventImages, compression: str | None = "gzip") -> None:
    """Write ``data`` to ``path`` atomically (attribute ``kind = "events"``)."""
    path = Path(path)
    attrs = hdf5_attrs({**data.attrs, "kind": KIND, "condition_names": list(CONDITION_NAMES),
                        "process_names": list(PROCESSES)}, path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=data.images, compression=compression,
                         chunks=(1, *data.images.shape[1:]) if len(data) else None)
        f.create_dataset("conditions", data=data.conditions)
        f.create_dataset("process", data=data.process)
        if data.truth_jets is not None:
            f.create_dataset("truth_jets", data=data.truth_jets)
        for k, v in attrs.items():
            f.attrs[k] = v


def _open_events(path: Path) -> h5py.File:
    """``path`` opened for reading, checked to be an event-image file (kind, ``images``, ``conditions``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: event-image file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 file ({err})") from None
    try:
        check_file_kind(f, path, KIND, required=True)
        for key in ("images", "conditions"):
            if key not in f:
                raise ValueError(f"{path}: key {key!r}: missing (expected an event-image file)")
    except ValueError:
        f.close()
        raise
    return f


def _file_attrs(f: h5py.File) -> dict:
    attrs = {k: hdf5_attr_value(v) for k, v in f.attrs.items() if k not in ("kind", "condition_names", "process_names")}
    names = attrs.get("channel_names")
    if isinstance(names, str):
        try:
            attrs["channel_names"] = json.loads(names)
        except json.JSONDecodeError:
            pass
    return attrs


def event_file_header(path: str | os.PathLike) -> tuple[int, dict]:
    """The number of events and the file attributes of an event-image file, without reading the
    images (for reading it in slices with ``read_events(path, rows=...)``).

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "e.h5")
    >>> write_events(path, EventImages(np.ones((5, 1, 4, 4), np.float32), np.zeros((5, 3)), attrs={"eta_max": 3.0}))
    >>> n, attrs = event_file_header(path)
    >>> n, attrs["eta_max"]
    (5, 3.0)
    """
    path = Path(path)
    with _open_events(path) as f:
        return int(f["images"].shape[0]), _file_attrs(f)


def read_events(path: str | os.PathLike, rows: slice | None = None) -> EventImages:
    """Read and validate an event-image file; with ``rows`` (a slice of event indices, step 1) only
    those events are read from disk (an HDF5 hyperslab of every per-event dataset, so a large file
    can be read in chunks of bounded memory), the attributes in full.

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "e.h5")
    >>> write_events(path, EventImages(np.arange(5.0).reshape(5, 1, 1, 1), np.zeros((5, 3))))
    >>> read_events(path, rows=slice(1, 3)).images.ravel().tolist()
    [1.0, 2.0]
    """
    path = Path(path)
    if rows is not None and (not isinstance(rows, slice) or rows.step not in (None, 1)):
        raise ValueError(f"{path}: rows: expected a slice of step 1, found {rows!r}")
    sel = slice(None) if rows is None else rows
    with _open_events(path) as f:
        images, conditions = f["images"][sel], f["conditions"][sel]
        process = f["process"][sel] if "process" in f else None
        truth = f["truth_jets"][sel] if "truth_jets" in f else None
        attrs = _file_attrs(f)
    try:
        return EventImages(images, conditions, truth, process, attrs)
    except ValueError as err:
        raise ValueError(str(err).replace("<EventImages>", str(path))) from None
