"""How a kind of data becomes refiner arrays and back: one adapter per kind.

The refiner (:mod:`hepgen.refine.refiner`) works on ``x: (N, D) float32`` feature arrays
and ``y: (N, L) float32`` event labels.  An *adapter* knows one kind of data hepgen reads
and provides:

* ``read(path)`` — read and validate a file, refusing an empty one;
* ``layout(data)`` — a JSON-able description of the detector layout; sim and data must
  share it (:func:`check_pair`);
* ``fit(data) -> state`` and ``to_arrays(data, state) -> (x, y)`` — the forward map;
* ``from_arrays(x, template, state) -> data`` — the inverse map, which takes the labels and
  conditions of every event from ``template`` unchanged and clips to the physical range;
* ``clip_min`` — lower bound of the features (``None`` = none), applied inside the refiner;
* ``group_size(state)`` — features per group sharing one refiner network (``None`` = one group);
* ``keep_mask(data, state=None)`` — ``(N, D)`` bool of features the refiner must not change, or ``None``;
* ``architecture(state)`` — ``None`` (the generic residual MLP) or a dict naming a refiner/critic
  pair of :mod:`hepgen.refine.stations` for data of that structure;
* ``azimuthal_grid(state)`` — ``(L, A, R)`` when the features are L layers × A azimuthal × R
  radial bins in that order (radial fastest), else ``None``: the residual MLP may then share one
  network over the A azimuthal slices (``RefinerConfig.azimuthal_slices``);
* ``summaries(data)`` — high-level features ``{name: (N,)}`` for per-feature separation power;
* ``regression_inputs(data, state)`` — ``(N, k)`` inputs of the downstream regression network;
* ``targets(data)`` — regression targets ``{name: (N,)}`` for the downstream proof;
* ``write(path, data)``.

Adding a kind of data = one adapter class plus :func:`register_adapter`; nothing else in
:mod:`hepgen.refine` changes.

Example:
    >>> import numpy as np
    >>> from hepgen.data.formats import ShowerData
    >>> d = ShowerData(np.array([[0.0, 9.0], [3.0, 1.0]], np.float32), [[10.0], [20.0]])
    >>> a = get_adapter("showers")
    >>> st = a.fit(d)
    >>> x, y = a.to_arrays(d, st)
    >>> x.shape, y.shape
    ((2, 2), (2, 1))
    >>> np.allclose(a.from_arrays(x, d, st).showers, d.showers, atol=1e-5)
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning, geometry_from_dict
from hepgen.data.traces import TraceData, is_traces_file, read_traces, write_traces
from hepgen.metrics.observables import depth_observables, high_level_features
from hepgen.refine.options import NETWORK_OPTIONS

__all__ = [
    "ShowerAdapter",
    "TraceAdapter",
    "adapter_kinds",
    "check_pair",
    "get_adapter",
    "kind_of_file",
    "read_kind",
    "read_pair",
    "register_adapter",
]

_ADAPTERS: dict[str, object] = {}


def register_adapter(adapter):
    """Make ``adapter`` known under ``adapter.kind`` (a second one of the same kind is refused)."""
    kind = getattr(adapter, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"register_adapter: expected an object with a non-empty str 'kind', found {kind!r}")
    if kind in _ADAPTERS:
        raise ValueError(f"refiner adapter for kind {kind!r} is already registered")
    _ADAPTERS[kind] = adapter
    return adapter


def adapter_kinds() -> list[str]:
    """Kinds the refiner can work on."""
    return list(_ADAPTERS)


def get_adapter(kind: str):
    """The adapter of ``kind``; an unknown kind is a ``ValueError`` listing the known ones."""
    if kind not in _ADAPTERS:
        raise ValueError(f"key 'kind': the refiner knows kinds {adapter_kinds()}, found {kind!r}")
    return _ADAPTERS[kind]


def kind_of_file(path: str | os.PathLike) -> str:
    """Sniff the kind of an HDF5 file: the first registered adapter whose ``accepts(path)`` is true."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path}: expected an HDF5 file, found something else")
    for kind, adapter in _ADAPTERS.items():
        if adapter.accepts(path):
            return kind
    raise ValueError(f"{path}: not a file of a kind the refiner knows {adapter_kinds()}")


def _nonempty(data, path) -> None:
    if len(data) == 0:
        raise ValueError(f"{path}: expected at least 1 event, found an empty file (0 events)")


def check_pair(sim, data, kind: str, sim_source: str = "sim", data_source: str = "data") -> None:
    """Refuse a sim/data pair of different detector layouts or without events (one-line ``ValueError``)."""
    adapter = get_adapter(kind)
    _nonempty(sim, sim_source)
    _nonempty(data, data_source)
    a, b = adapter.layout(sim), adapter.layout(data)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(f"{data_source}: detector layout differs from {sim_source} in {diff}: expected "
                         f"{ {k: a.get(k) for k in diff} }, found { {k: b.get(k) for k in diff} }")
    la, lb = adapter.label_names(sim), adapter.label_names(data)
    if la != lb:
        raise ValueError(f"{data_source}: event labels/conditions differ from {sim_source}: expected {la}, found {lb}")


def read_kind(path, kind: str, owner: str):
    """Read ``path`` with the adapter of ``kind``; a file of another kind is refused in one line
    (``owner`` says whose kind it must be, e.g. "the refiner's")."""
    found = kind_of_file(path)
    if found != kind:
        raise ValueError(f"{path}: key 'kind': expected {kind!r} ({owner}), found {found!r}")
    return get_adapter(kind).read(path)


def read_pair(sim_path, data_path) -> tuple[str, object, object]:
    """Read a sim and a data file of the same kind and layout: ``(kind, sim, data)``."""
    k_sim, k_data = kind_of_file(sim_path), kind_of_file(data_path)
    if k_sim != k_data:
        raise ValueError(f"{data_path}: key 'kind': expected {k_sim!r} (the kind of {sim_path}), found {k_data!r}")
    adapter = get_adapter(k_sim)
    sim, data = adapter.read(sim_path), adapter.read(data_path)
    check_pair(sim, data, k_sim, str(sim_path), str(data_path))
    return k_sim, sim, data


class ShowerAdapter:
    """Calorimeter showers (CaloChallenge layout, :mod:`hepgen.data.formats`).

    Features: ``x = log(1 + E/scale)`` per voxel (``E`` in MeV), ``scale`` = 1 MeV by default
    (fit() keeps it; it is stored in the refiner checkpoint).  Inverse:
    ``E = scale · (exp(max(x, 0)) − 1)``, so refined voxel energies are ≥ 0.
    Labels: ``ln(E_inc/MeV)`` then every condition column of the file (θ, impact x/y), kept
    unchanged in the refined file.
    """

    kind = "showers"
    #: lower bound of the features: log(1 + 0) (energies >= 0)
    clip_min = 0.0

    def __init__(self, scale_mev: float = 1.0) -> None:
        if not scale_mev > 0:
            raise ValueError(f"scale_mev: expected > 0, found {scale_mev!r}")
        self.scale_mev = float(scale_mev)

    def accepts(self, path) -> bool:
        with h5py.File(path, "r") as f:
            return "showers" in f and "incident_energies" in f

    def read(self, path) -> ShowerData:
        data = read_showers(path)
        _nonempty(data, path)
        return data

    def write(self, path, data: ShowerData) -> None:
        write_showers(path, data)

    def layout(self, data: ShowerData) -> dict:
        if data.geometry is not None:
            return {"n_voxels": int(data.showers.shape[1]), "geometry": json.dumps(data.geometry.to_dict(), sort_keys=True)}
        return {"n_voxels": int(data.showers.shape[1])}

    def label_names(self, data: ShowerData) -> list[str]:
        return ["log_E_inc"] + [f"{k}_{j}" for k in sorted(data.conditions)
                                for j in range(np.asarray(data.conditions[k]).reshape(len(data), -1).shape[1])]

    def fit(self, data: ShowerData) -> dict:
        return {"kind": self.kind, "scale_mev": self.scale_mev, "layout": self.layout(data),
                "labels": self.label_names(data)}

    def to_arrays(self, data: ShowerData, state: dict) -> tuple[np.ndarray, np.ndarray]:
        x = np.log1p(np.asarray(data.showers, np.float64) / state["scale_mev"]).astype(np.float32)
        y = data.condition_matrix(sorted(data.conditions))
        y[:, 0] = np.log(y[:, 0])
        return x, y.astype(np.float32)

    def from_arrays(self, x: np.ndarray, template: ShowerData, state: dict, attrs: dict | None = None) -> ShowerData:
        x = np.asarray(x, np.float64)
        if x.shape != template.showers.shape:
            raise ValueError(f"refined arrays: expected shape {template.showers.shape}, found {x.shape}")
        showers = (state["scale_mev"] * np.expm1(np.clip(x, 0.0, None))).astype(np.float32)
        return ShowerData(showers, template.incident_energies.copy(),
                          {k: v.copy() for k, v in template.conditions.items()}, template.geometry,
                          {**template.attrs, **(attrs or {})})

    def group_size(self, state: dict) -> None:
        """Voxels are not groups of a shared kind: one network sees the whole shower."""
        return

    def architecture(self, state: dict) -> None:
        """The refiner's network: the generic residual MLP."""
        return

    def keep_mask(self, data: ShowerData, state: dict | None = None) -> None:
        """Features the refiner must leave unchanged: none for showers."""
        return

    def azimuthal_grid(self, state: dict) -> tuple[int, int, int] | None:
        """``(L, A, R)`` of a cylindrical binning whose active layers all have A angular and R
        radial bins (CaloChallenge order: radial fastest, then angular, then layer), else ``None``
        (no geometry, Cartesian grids, layers of different binning).

        Example:
            >>> from hepgen.data.geometry import CylindricalBinning
            >>> geo = CylindricalBinning.regular(3, [0.0, 5.0, 20.0, 50.0], n_alpha=4)
            >>> d = ShowerData(np.zeros((2, 36), np.float32), [[1e3], [2e3]], geometry=geo)
            >>> get_adapter("showers").azimuthal_grid(get_adapter("showers").fit(d))
            (3, 4, 3)
        """
        geo = state.get("layout", {}).get("geometry")
        geo = None if geo is None else geometry_from_dict(json.loads(geo))
        if not isinstance(geo, CylindricalBinning):
            return None
        shapes = {(layer.n_alpha, layer.n_r) for layer in geo.active_layers}
        if len(shapes) != 1:
            return None
        (a, r), = shapes
        return geo.n_layers, a, r

    def sum_groups(self, data: ShowerData) -> np.ndarray:
        """``(n_layers + 1, n_voxels)`` 0/1: the voxels of each layer, then all voxels (the energy
        sums a critic may see, :mod:`hepgen.refine.critic_sums`); all voxels only without a geometry."""
        d = data.showers.shape[1]
        slices = [] if data.geometry is None else data.geometry.layer_slices
        rows = [np.isin(np.arange(d), np.arange(d)[s]) for s in slices]
        return np.array(rows + [np.ones(d, bool)], np.float32)

    def summaries(self, data: ShowerData) -> dict[str, np.ndarray]:
        if data.geometry is None:
            return {"E_tot_over_E_inc": data.showers.sum(axis=1) / data.incident_energies[:, 0]}
        f = high_level_features(data.showers, data.incident_energies, data.geometry)
        f.update(depth_observables(data.showers, data.geometry))
        return {k: np.asarray(v, np.float64) for k, v in f.items()}

    def regression_inputs(self, data: ShowerData, state: dict) -> np.ndarray:
        """``(N, n_voxels)`` inputs of the downstream regression network: the refiner features."""
        return self.to_arrays(data, state)[0]

    def targets(self, data: ShowerData) -> dict[str, np.ndarray]:
        return {"log_E_inc": np.log(np.asarray(data.incident_energies, np.float64)[:, 0])}


class TraceAdapter:
    """Surface-detector traces (:mod:`hepgen.data.traces`).

    Features: ``x = asinh(S/scale)`` per station and time bin (``S`` in VEM, ``scale`` =
    0.1 VEM by default), flattened to ``D = n_x · n_y · n_t``; ``asinh`` keeps the sign of
    baseline noise and compresses large signals like a logarithm.  Inverse:
    ``S = scale · sinh(x)``.  Labels: ``log10(E/EeV)`` and ``sec θ``, kept unchanged.

    ``trigger_vem`` (VEM, ``None`` = unknown): the detector's trigger rule (a station whose
    recorded total is below it reads all zeros), applied to refined events by the refiner and
    again by :meth:`from_arrays`.  ``fill_silent``: the station refiner may turn silent
    stations on (it needs ``trigger_vem``); otherwise untriggered stations stay zero.  Both are
    attributes set before :meth:`fit`, which records them in the state (and the checkpoint).
    """

    kind = "traces"
    #: traces carry baseline noise of either sign: no bound
    clip_min = None

    def __init__(self, scale_vem: float = 0.1, critic_min_vem: float = 0.0) -> None:
        if not scale_vem > 0:
            raise ValueError(f"scale_vem: expected > 0, found {scale_vem!r}")
        if not critic_min_vem >= 0:
            raise ValueError(f"critic_min_vem: expected >= 0, found {critic_min_vem!r}")
        self.scale_vem, self.critic_min_vem = float(scale_vem), float(critic_min_vem)
        #: noise (VEM per bin) the station refiner adds instead of learning it (None = learn)
        self.noise_vem: float | None = None
        #: trigger threshold of a station's total signal, VEM (None = no rule applied)
        self.trigger_vem: float | None = None
        #: let the station refiner turn silent stations on (needs trigger_vem)
        self.fill_silent: bool = False

    def accepts(self, path) -> bool:
        return is_traces_file(path)

    def read(self, path) -> TraceData:
        data = read_traces(path)
        _nonempty(data, path)
        return data

    def write(self, path, data: TraceData) -> None:
        write_traces(path, data)

    def layout(self, data: TraceData) -> dict:
        return data.layout()

    def label_names(self, data: TraceData) -> list[str]:
        return ["log10_energy", "sec_zenith"]

    def fit(self, data: TraceData) -> dict:
        if self.fill_silent and not (self.trigger_vem is not None and self.trigger_vem > 0):
            raise ValueError(f"trigger_vem: fill_silent needs the trigger threshold (> 0 VEM), found {self.trigger_vem!r}")
        extra = {"trigger_vem": float(self.trigger_vem), "fill_silent": bool(self.fill_silent)} \
            if (self.fill_silent or self.trigger_vem is not None) else {}
        return {"kind": self.kind, "scale_vem": self.scale_vem, "critic_min_vem": self.critic_min_vem,
                "noise_vem": self.noise_vem, **extra,
                "layout": self.layout(data), "labels": self.label_names(data)}

    def to_arrays(self, data: TraceData, state: dict) -> tuple[np.ndarray, np.ndarray]:
        x = np.arcsinh(data.traces.reshape(len(data), -1) / state["scale_vem"]).astype(np.float32)
        y = np.concatenate([np.log10(data.energy), 1.0 / np.cos(data.zenith)], axis=1)
        return x, y.astype(np.float32)

    def from_arrays(self, x: np.ndarray, template: TraceData, state: dict, attrs: dict | None = None) -> TraceData:
        x = np.asarray(x, np.float64)
        if x.shape != (len(template), template.traces[0].size):
            raise ValueError(f"refined arrays: expected shape {(len(template), template.traces[0].size)}, found {x.shape}")
        traces = (state["scale_vem"] * np.sinh(x)).reshape(template.traces.shape)
        if not state.get("fill_silent", False):
            # an untriggered station reads all zeros in the source: keep it so; triggered
            # stations are refined
            traces = np.where(np.any(template.traces != 0, axis=-1, keepdims=True), traces, 0.0)
        if state.get("trigger_vem") is not None:
            # the detector's trigger rule: a refined station below threshold reads all zeros
            traces = np.where(traces.sum(axis=-1, keepdims=True) >= state["trigger_vem"], traces, 0.0)
        return TraceData(traces.astype(np.float32), template.energy.copy(), template.zenith.copy(),
                         template.spacing_m, template.bin_ns, {**template.attrs, **(attrs or {})})

    def group_size(self, state: dict) -> int:
        """One group per station: its ``n_t`` time bins (refiner and critic share a network over stations)."""
        return int(state["layout"]["n_t"])

    def azimuthal_grid(self, state: dict) -> None:
        """Stations are not azimuthal bins: ``None``."""
        return

    def architecture(self, state: dict) -> dict:
        """The per-station refiner and grid critic of :mod:`hepgen.refine.stations` (corrections as
        a bounded gain, a time-shape convolution and additive noise in VEM, per triggered station)."""
        lay = state["layout"]
        arch = {"name": "stations", "grid": [int(v) for v in lay["grid"]], "n_t": int(lay["n_t"]),
                "scale": float(state["scale_vem"]), "critic_min_vem": float(state.get("critic_min_vem", 0.0)),
                "noise_vem": state.get("noise_vem")}
        if "trigger_vem" in state:
            arch.update(trigger_vem=state["trigger_vem"], fill_silent=bool(state.get("fill_silent", False)))
        # options of issue #17's third and fourth rounds: only when set (checkpoints of before keep their hparams)
        for key in NETWORK_OPTIONS:
            if state.get(key):
                arch[key] = state[key]
        return arch

    def keep_mask(self, data: TraceData, state: dict | None = None) -> np.ndarray | None:
        """``(N, D)`` bool: the bins of untriggered stations (all zeros), which stay zero;
        ``None`` with ``fill_silent`` (of ``state`` if given, else of the adapter): the refiner
        then acts on every station."""
        if (state or {}).get("fill_silent", self.fill_silent if state is None else False):
            return None
        dead = ~np.any(data.traces != 0, axis=-1, keepdims=True)
        return np.broadcast_to(dead, data.traces.shape).reshape(len(data), -1).copy()

    def summaries(self, data: TraceData) -> dict[str, np.ndarray]:
        t = data.traces.astype(np.float64)
        station = t.sum(axis=-1)  # (N, nx, ny) VEM
        total = station.sum(axis=(1, 2))
        big = station.reshape(len(data), -1).max(axis=1)
        cum = np.cumsum(t, axis=-1)
        # rise time t10→t50 (bins) of the brightest station, the study's muon-sensitive observable
        idx = station.reshape(len(data), -1).argmax(axis=1)
        c = cum.reshape(len(data), -1, data.n_t)[np.arange(len(data)), idx]
        c = c / np.maximum(c[:, -1:], 1e-9)
        t10, t50 = (c < 0.1).sum(axis=1), (c < 0.5).sum(axis=1)
        peak = t.reshape(len(data), -1, data.n_t)[np.arange(len(data)), idx].max(axis=1)
        return {"log10_total_signal": np.log10(np.maximum(total, 1e-3)),
                "log10_max_station": np.log10(np.maximum(big, 1e-3)),
                "n_triggered": (station != 0).sum(axis=(1, 2)).astype(np.float64),
                "risetime_10_50": (t50 - t10).astype(np.float64),
                "peak_over_signal": peak / np.maximum(big, 1e-9)}

    def regression_inputs(self, data: TraceData, state: dict) -> np.ndarray:
        """``(N, 2 n_x n_y)`` inputs of the downstream reconstruction network, per station:
        ``log10(1 + S/VEM)`` of the integrated signal and the share of it in the first 4
        bins (100 ns; muon-sensitive).  An untriggered station gives (0, 0)."""
        s = data.traces.astype(np.float64).reshape(len(data), -1, data.n_t)
        tot = s.sum(axis=-1)
        early = np.where(tot > 0, s[..., :4].sum(axis=-1) / np.where(tot > 0, tot, 1.0), 0.0)
        return np.hstack([np.log10(1.0 + np.clip(tot, 0.0, None)), early]).astype(np.float32)

    def targets(self, data: TraceData) -> dict[str, np.ndarray]:
        return {"log10_energy": np.log10(data.energy[:, 0]), "zenith": data.zenith[:, 0]}


register_adapter(ShowerAdapter())
register_adapter(TraceAdapter())
