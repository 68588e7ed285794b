"""Trigger-level (Level-1) events in the ADC2021 layout: 19 objects × (pT, η, φ), zero-padded.

The layout of the public "LHC physics dataset for unsupervised New Physics detection at
40 MHz" (Govorkova et al., Sci. Data 9 (2022) 118, arXiv:2107.02157; the ADC2021 anomaly
detection data challenge) — each event is 19 physics objects, each ``(pT [GeV], η, φ)``:

====== ======== ==================================================================
slot   object   content
====== ======== ==================================================================
0      MET      missing transverse momentum: ``(|MET|, 0, φ_MET)`` (η is always 0)
1–4    e/γ      the 4 leading electrons/photons by pT
5–8    μ        the 4 leading muons by pT
9–18   jets     the 10 leading jets by pT
====== ======== ==================================================================

Missing objects are zero-padded: a slot with ``pT = 0`` has ``η = φ = 0`` too (the
validator refuses anything else), so the flat 57-feature view ``features`` (``(N, 57)``,
object-major: ``[pT₀, η₀, φ₀, pT₁, …]``) is exactly the public data set's ``Particles``
array reshaped.

HDF5 file (written by :func:`write_l1`, read by :func:`read_l1`):

* ``objects`` — ``(N, 19, 3)`` float32;
* ``process`` — ``(N,)`` int16, index into the attribute ``processes``;
* attributes ``kind = "l1"``, ``processes`` (JSON list of names) and the free-form
  ``attrs`` of the container (numbers and strings).

Example:
    >>> ev = layout_event(met=(30.0, 1.0), electrons=[(25.0, 0.5, 0.1)], muons=[],
    ...                   jets=[(20.0, -1.0, 2.0), (40.0, 0.2, -1.0)])
    >>> ev.shape
    (19, 3)
    >>> ev[0].tolist(), ev[1].tolist(), ev[9].tolist(), ev[10].tolist()
    ([30.0, 0.0, 1.0], [25.0, 0.5, 0.10000000149011612], [40.0, 0.20000000298023224, -1.0], [20.0, -1.0, 2.0])
    >>> data = L1Events(ev[None], np.array([0]), ("W_lnu",))
    >>> data.features.shape, len(data)
    ((1, 57), 1)
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
from hepgen.data.formats import check_file_kind, is_file_of_kind

__all__ = [
    "KIND",
    "N_FEATURES",
    "N_OBJECTS",
    "OBJECT_SLOTS",
    "OBJECT_TYPES",
    "L1Events",
    "is_l1_file",
    "layout_event",
    "object_type_of_slot",
    "one_lepton_preselection",
    "read_l1",
    "validate_l1",
    "write_l1",
]

KIND = "l1"
#: object type → slice of the 19 slots (ADC2021 order).
OBJECT_SLOTS: dict[str, slice] = {"met": slice(0, 1), "egamma": slice(1, 5), "muon": slice(5, 9),
                                  "jet": slice(9, 19)}
OBJECT_TYPES = tuple(OBJECT_SLOTS)
N_OBJECTS = 19
N_FEATURES = 3 * N_OBJECTS  # 57


def object_type_of_slot() -> np.ndarray:
    """``(19,)`` int: the index into :data:`OBJECT_TYPES` of each slot (0 MET, 1 e/γ, 2 μ, 3 jet).

    >>> object_type_of_slot().tolist()
    [0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]
    """
    out = np.empty(N_OBJECTS, dtype=np.int64)
    for i, sl in enumerate(OBJECT_SLOTS.values()):
        out[sl] = i
    return out


def _fill(out: np.ndarray, sl: slice, objects, name: str) -> None:
    objs = np.asarray(objects, dtype=np.float64).reshape(-1, 3) if len(objects) else np.zeros((0, 3))
    if objs.size and (not np.all(np.isfinite(objs)) or np.any(objs[:, 0] <= 0)):
        raise ValueError(f"layout_event: {name}: expected finite (pT > 0, eta, phi) triples, found {objs.tolist()}")
    order = np.argsort(-objs[:, 0], kind="stable")[: sl.stop - sl.start]
    out[sl.start: sl.start + order.size] = objs[order]


def layout_event(met: tuple[float, float] | None, electrons: Sequence, muons: Sequence, jets: Sequence) -> np.ndarray:
    """Put one event's objects into the ADC2021 slots: ``(19, 3)`` float32, zero-padded.

    Arguments:
        met: ``(|MET| [GeV], φ)`` or None (no MET: slot 0 stays zero).
        electrons, muons, jets: sequences of ``(pT [GeV], η, φ)`` (any order; pT > 0); each
            type is sorted by decreasing pT and the leading 4 / 4 / 10 are kept.

    Returns:
        ``(19, 3)`` float32 (see the module docstring for the slots).
    """
    out = np.zeros((N_OBJECTS, 3), dtype=np.float64)
    if met is not None:
        m, phi = (float(v) for v in met)
        if not (np.isfinite(m) and np.isfinite(phi) and m >= 0):
            raise ValueError(f"layout_event: met: expected (|MET| >= 0, phi), found {met!r}")
        out[0] = (m, 0.0, phi if m > 0 else 0.0)
    _fill(out, OBJECT_SLOTS["egamma"], electrons, "electrons")
    _fill(out, OBJECT_SLOTS["muon"], muons, "muons")
    _fill(out, OBJECT_SLOTS["jet"], jets, "jets")
    return out.astype(np.float32)


def one_lepton_preselection(objects: np.ndarray, pt_min: float = 23.0, max_abs_eta_e: float = 3.0,
                            max_abs_eta_mu: float = 2.1) -> np.ndarray:
    """The ADC2021 one-lepton pre-selection: at least one e/γ with pT > ``pt_min`` and
    ``|η| < max_abs_eta_e``, or one muon with pT > ``pt_min`` and ``|η| < max_abs_eta_mu``.

    The thresholds are those of Govorkova et al. (arXiv:2107.02157, section "Methods": events
    with one electron or muon of pT > 23 GeV, within |η| < 3 and 2.1 respectively, mimicking a
    single-lepton trigger).

    Arguments:
        objects: ``(N, 19, 3)`` events (or one ``(19, 3)`` event).

    Returns:
        ``(N,)`` bool (a 0-d bool for one event).

    >>> ev = layout_event(None, [(24.0, 2.9, 0.0)], [(30.0, 2.2, 0.0)], [])
    >>> bool(one_lepton_preselection(ev)), bool(one_lepton_preselection(ev, pt_min=25.0))
    (True, False)
    """
    obj = np.asarray(objects, dtype=np.float64)
    if obj.shape[-2:] != (N_OBJECTS, 3):
        raise ValueError(f"one_lepton_preselection: expected shape (N, {N_OBJECTS}, 3), found {obj.shape}")
    e, mu = obj[..., OBJECT_SLOTS["egamma"], :], obj[..., OBJECT_SLOTS["muon"], :]
    has_e = np.any((e[..., 0] > pt_min) & (np.abs(e[..., 1]) < max_abs_eta_e), axis=-1)
    has_mu = np.any((mu[..., 0] > pt_min) & (np.abs(mu[..., 1]) < max_abs_eta_mu), axis=-1)
    return has_e | has_mu


@dataclass
class L1Events:
    """Trigger-level events in the ADC2021 layout.

    Arguments:
        objects: ``(N, 19, 3)`` float32, ``(pT [GeV], η, φ)`` per slot, zero-padded.
        process: ``(N,)`` int, index into ``processes`` (the generating process).
        processes: process names, e.g. ``("W_lnu", "QCD", "Z_ll", "ttbar", "A_4l")``.
        attrs: free-form JSON-able facts (generator, seeds, cross-section fractions, …).
    """

    objects: np.ndarray
    process: np.ndarray
    processes: tuple[str, ...] = ("unknown",)
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.objects = np.asarray(self.objects, dtype=np.float32)
        self.process = np.asarray(self.process).astype(np.int16).reshape(-1)
        self.processes = tuple(str(p) for p in self.processes)

    def __len__(self) -> int:
        return int(self.objects.shape[0])

    @property
    def features(self) -> np.ndarray:
        """``(N, 57)`` float32: the flat ADC2021 view ``[pT₀, η₀, φ₀, pT₁, η₁, φ₁, …]``."""
        return self.objects.reshape(len(self), N_FEATURES)

    @property
    def mask(self) -> np.ndarray:
        """``(N, 19)`` bool: slots that hold an object (pT > 0)."""
        return self.objects[..., 0] > 0

    @property
    def process_names(self) -> np.ndarray:
        """``(N,)`` str: the process name of each event."""
        return np.asarray(self.processes, dtype=object)[self.process]

    def subset(self, idx) -> L1Events:
        """The events ``idx`` (indices or a boolean mask) as a new container (same processes/attrs)."""
        return L1Events(self.objects[idx], self.process[idx], self.processes, dict(self.attrs))

    def of_process(self, name: str) -> L1Events:
        """The events of process ``name``; an unknown name is a ``ValueError`` listing the known ones."""
        if name not in self.processes:
            raise ValueError(f"process {name!r} not in this sample; known: {list(self.processes)}")
        return self.subset(self.process == self.processes.index(name))

    @staticmethod
    def concatenate(parts: Sequence[L1Events], attrs: dict | None = None) -> L1Events:
        """Join samples; process indices are re-mapped onto the union of the names (first-seen order)."""
        if not parts:
            raise ValueError("L1Events.concatenate: expected at least one sample, found none")
        names: list[str] = []
        for p in parts:
            names += [n for n in p.processes if n not in names]
        procs = [np.asarray([names.index(n) for n in p.processes], dtype=np.int16)[p.process] if len(p) else
                 np.zeros(0, np.int16) for p in parts]
        return L1Events(np.concatenate([p.objects for p in parts]), np.concatenate(procs), tuple(names),
                        dict(attrs if attrs is not None else parts[0].attrs))


def validate_l1(data: L1Events, source: str = "<memory>") -> None:
    """Check shapes, finiteness, padding and process indices; one-line ``ValueError`` naming ``source``.

    >>> bad = L1Events(np.zeros((1, 19, 3)), np.array([0]), ("x",))
    >>> bad.objects[0, 3] = (0.0, 1.0, 0.0)  # a padded slot with eta != 0
    >>> validate_l1(bad, "f.h5")
    Traceback (most recent call last):
        ...
    ValueError: f.h5: key 'objects': expected zero padding (pT = 0 → eta = phi = 0), found event 0 slot 3 = [0.0, 1.0, 0.0]
    """
    obj = data.objects
    if obj.ndim != 3 or obj.shape[1:] != (N_OBJECTS, 3):
        raise ValueError(f"{source}: key 'objects': expected shape (N, {N_OBJECTS}, 3), found {obj.shape}")
    if data.process.shape != (len(data),):
        raise ValueError(f"{source}: key 'process': expected shape ({len(data)},), found {data.process.shape}")
    if not np.all(np.isfinite(obj)):
        ev, slot = np.argwhere(~np.isfinite(obj))[0][:2]
        raise ValueError(f"{source}: key 'objects': expected finite values, found event {ev} slot {slot} = "
                         f"{obj[ev, slot].tolist()}")
    if np.any(obj[..., 0] < 0):
        ev, slot = np.argwhere(obj[..., 0] < 0)[0]
        raise ValueError(f"{source}: key 'objects': expected pT >= 0, found event {ev} slot {slot} = "
                         f"{obj[ev, slot].tolist()}")
    pad = (obj[..., 0] == 0) & np.any(obj[..., 1:] != 0, axis=-1)
    if pad.any():
        ev, slot = np.argwhere(pad)[0]
        raise ValueError(f"{source}: key 'objects': expected zero padding (pT = 0 → eta = phi = 0), found "
                         f"event {ev} slot {slot} = {obj[ev, slot].tolist()}")
    if np.any(obj[:, 0, 1] != 0):
        ev = int(np.flatnonzero(obj[:, 0, 1] != 0)[0])
        raise ValueError(f"{source}: key 'objects': expected eta = 0 in the MET slot 0, found event {ev}: "
                         f"{obj[ev, 0].tolist()}")
    if len(data) and (data.process.min() < 0 or data.process.max() >= len(data.processes)):
        raise ValueError(f"{source}: key 'process': expected indices 0 … {len(data.processes) - 1} into "
                         f"{list(data.processes)}, found {int(data.process.min())} … {int(data.process.max())}")


def is_l1_file(path: str | os.PathLike) -> bool:
    """A cheap sniff: an HDF5 file with the attribute ``kind = "l1"`` and an ``objects`` dataset."""
    return is_file_of_kind(path, KIND, "objects")


def read_l1(path: str | os.PathLike, process: str | None = None) -> L1Events:
    """Read and validate an L1 events file (see the module docstring); optionally one process only.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, another kind, a missing key, a bad shape or padding.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: L1 events file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        check_file_kind(f, path, KIND, required=True)
        for key in ("objects", "process"):
            if key not in f:
                raise ValueError(f"{path}: key {key!r}: missing (found keys {sorted(f.keys())})")
        try:
            processes = tuple(json.loads(f.attrs.get("processes", '["unknown"]')))
        except (TypeError, json.JSONDecodeError):
            raise ValueError(f"{path}: attribute 'processes': expected a JSON list of names, "
                             f"found {f.attrs.get('processes')!r}") from None
        attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                 for k, v in f.attrs.items() if k not in ("kind", "processes")}
        data = L1Events(f["objects"][...], f["process"][...], processes, attrs)
    validate_l1(data, str(path))
    return data.of_process(process) if process is not None else data


def write_l1(path: str | os.PathLike, data: L1Events, compression: str | None = "gzip") -> None:
    """Validate and write ``data`` atomically (``kind = "l1"``)."""
    validate_l1(data, str(path))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("objects", data=data.objects, compression=compression)
        f.create_dataset("process", data=data.process.astype(np.int16), compression=compression)
        f.attrs["kind"] = KIND
        f.attrs["processes"] = json.dumps(list(data.processes))
        for k, v in data.attrs.items():
            f.attrs[k] = v if isinstance(v, (int, float, str, np.integer, np.floating)) else json.dumps(v)
