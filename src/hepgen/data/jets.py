"""Jets as particle clouds: read, write and validate HDF5 files in the JetNet layout.

Layout of the public JetNet files (Kansal et al., arXiv:2106.11535; Zenodo records 6975118
for 30 particles and 6975117 for 150; one file per jet type, e.g. ``t.hdf5``, ``g150.hdf5``):

* ``particle_features`` — ``(N, P, 4)`` float: ``[eta_rel, phi_rel, pt_rel, mask]`` of the
  ``P`` leading constituents by pT, zero-padded (``mask`` = 0) when a jet has fewer;
* ``jet_features`` — ``(N, 4)`` float: ``[pt, eta, mass, num_particles]`` of the whole jet
  (pT and mass in GeV; ``num_particles`` counts all constituents, so it may exceed ``P``).

The jet type is not stored in the public files (it is the file name); hepgen adds a
``jet_type`` dataset ``(N,)`` int8 with JetNet's class index (``g, q, t, w, z`` → 0…4),
which readers of the public layout ignore.  :func:`read_jets` also accepts the 5-column
``jet_features`` that ``jetnet.datasets.JetNet.getData`` returns
(``[type, pt, eta, mass, num_particles]``) and ``(N, P, 3)`` particle features without the
mask (the mask is then "any feature non-zero", the jetnet convention for zero padding).

Every read is validated; bad input raises ``ValueError`` (``FileNotFoundError`` for a
missing file) naming the file, the key, what was expected and what was found.  Writes are
atomic.  Units: GeV (the JetNet convention, unlike the MeV of the shower files).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hepgen._io import atomic_path
from hepgen.data.formats import KIND_ATTR, check_file_kind, hdf5_attr_value, hdf5_attrs, require_hdf5

__all__ = [
    "JET_FEATURES",
    "JET_TYPES",
    "PARTICLE_FEATURES",
    "JetData",
    "is_jet_file",
    "jet_type_index",
    "merge_jet_files",
    "read_jets",
    "validate_jets",
    "write_jets",
]

JET_TYPES = ("g", "q", "t", "w", "z")  # JetNet's class order: index = jetnet's "type" jet feature
PARTICLE_FEATURES = ("eta_rel", "phi_rel", "pt_rel", "mask")
JET_FEATURES = ("pt", "eta", "mass", "num_particles")
_ALIASES = {
    "g": "g", "gluon": "g",
    "q": "q", "quark": "q", "light": "q", "light_quark": "q",
    "t": "t", "top": "t",
    "w": "w", "wboson": "w",
    "z": "z", "zboson": "z",
}
_PUBLIC_NAME = re.compile(r"^([gqtwz])(150)?$")


def jet_type_index(name: str) -> int:
    """JetNet class index of a jet type name (``g``/``gluon`` → 0, ``q``/``quark`` → 1,
    ``t``/``top`` → 2, ``w``/``W`` → 3, ``z``/``Z`` → 4); ``ValueError`` for anything else."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _ALIASES:
        raise ValueError(f"jet type {name!r}: expected one of {list(JET_TYPES)} "
                         "(or gluon, quark, top, W, Z)")
    return JET_TYPES.index(_ALIASES[key])


@dataclass
class JetData:
    """Jets as zero-padded particle clouds with jet-level features.

    Arguments:
        particle_features: ``(N, P, 4)`` float32 ``[eta_rel, phi_rel, pt_rel, mask]``, the
            ``P`` leading constituents by pT; padded entries are all zero.
        jet_features: ``(N, 4)`` float ``[pt (GeV), eta, mass (GeV), num_particles]`` of the
            whole jet, or None (e.g. a generative model's output of particles only).
        jet_type: ``(N,)`` int, JetNet class index into :data:`JET_TYPES`; -1 = unknown.
        attrs: file attributes (provenance): JSON-able scalars and strings.
    """

    particle_features: np.ndarray
    jet_features: np.ndarray | None = None
    jet_type: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.particle_features = np.asarray(self.particle_features, dtype=np.float32)
        if self.jet_features is not None:
            self.jet_features = np.asarray(self.jet_features, dtype=np.float64)
        n = self.particle_features.shape[0] if self.particle_features.ndim else 0
        if self.jet_type is None:
            self.jet_type = np.full(n, -1, dtype=np.int8)
        self.jet_type = np.asarray(self.jet_type).astype(np.int8).reshape(-1)

    def __len__(self) -> int:
        return int(self.particle_features.shape[0])

    @property
    def n_particles(self) -> int:
        """``P``, the number of constituent slots per jet."""
        return int(self.particle_features.shape[1])

    @property
    def particles(self) -> np.ndarray:
        """``(N, P, 3)`` float32 ``[eta_rel, phi_rel, pt_rel]`` (a view)."""
        return self.particle_features[..., :3]

    @property
    def mask(self) -> np.ndarray:
        """``(N, P)`` bool, True for real (not padded) constituents."""
        return self.particle_features[..., 3] > 0.5

    @property
    def types_present(self) -> list[str]:
        """Names of the jet types in the sample, in JetNet order (``"unknown"`` for -1)."""
        out = [JET_TYPES[i] for i in range(len(JET_TYPES)) if np.any(self.jet_type == i)]
        return out + (["unknown"] if np.any(self.jet_type < 0) else [])

    def subset(self, idx) -> JetData:
        """The jets selected by an index array, slice or boolean mask."""
        jf = None if self.jet_features is None else self.jet_features[idx]
        return JetData(self.particle_features[idx], jf, self.jet_type[idx], dict(self.attrs))

    def of_type(self, name: str) -> JetData:
        """The jets of one type (a name accepted by :func:`jet_type_index`)."""
        return self.subset(self.jet_type == jet_type_index(name))

    @staticmethod
    def concatenate(parts: Sequence[JetData], attrs: dict | None = None) -> JetData:
        """Join samples with the same ``P``; jet features are kept only if every part has them."""
        parts = list(parts)
        if not parts:
            raise ValueError("JetData.concatenate: expected at least one sample, found none")
        sizes = {p.n_particles for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"JetData.concatenate: expected one number of particles per jet, found {sorted(sizes)}")
        has_jf = all(p.jet_features is not None for p in parts)
        return JetData(
            np.concatenate([p.particle_features for p in parts]),
            np.concatenate([p.jet_features for p in parts]) if has_jf else None,
            np.concatenate([p.jet_type for p in parts]),
            dict(parts[0].attrs if attrs is None else attrs),
        )


def _first_bad(bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    return f"{rows.size} jet(s), first at row {rows[0]}"


def validate_jets(data: JetData, source: str = "<memory>") -> None:
    """Check shapes and values of ``data``; raise ``ValueError`` naming ``source`` and the key.

    Checks: ``particle_features`` is ``(N, P, 4)`` and finite, ``mask`` is 0 or 1, padded
    entries are all zero, ``pt_rel >= 0``; ``jet_features`` (if any) is ``(N, 4)``, finite,
    with ``pt >= 0``, ``mass >= 0`` and ``num_particles`` a whole number ≥ the number of
    unmasked constituents; ``jet_type`` is ``(N,)`` with values in -1…4.
    """
    pf = data.particle_features
    if pf.ndim != 3 or pf.shape[2] != 4:
        raise ValueError(f"{source}: key 'particle_features': expected shape (N, n_particles, 4) "
                         f"[eta_rel, phi_rel, pt_rel, mask], found {pf.shape}")
    n = pf.shape[0]
    finite = np.isfinite(pf).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(f"{source}: key 'particle_features': expected finite values, found NaN/Inf in {_first_bad(~finite)}")
    m = pf[..., 3]
    bad = ((m != 0) & (m != 1)).any(axis=1)
    if bad.any():
        raise ValueError(f"{source}: key 'particle_features': expected mask (feature 3) 0 or 1, found "
                         f"{np.unique(m[(m != 0) & (m != 1)])[:5].tolist()} in {_first_bad(bad)}")
    bad = ((m == 0)[..., None] & (pf[..., :3] != 0)).any(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{source}: key 'particle_features': expected all-zero features where mask = 0 "
                         f"(zero padding), found non-zero values in {_first_bad(bad)}")
    bad = (pf[..., 2] < 0).any(axis=1)
    if bad.any():
        raise ValueError(f"{source}: key 'particle_features': expected pt_rel >= 0, found minimum "
                         f"{pf[..., 2].min():.6g} in {_first_bad(bad)}")
    jt = np.asarray(data.jet_type)
    if jt.shape != (n,):
        raise ValueError(f"{source}: key 'jet_type': expected shape ({n},), found {jt.shape}")
    bad = (jt < -1) | (jt >= len(JET_TYPES))
    if bad.any():
        raise ValueError(f"{source}: key 'jet_type': expected -1 (unknown) or 0…{len(JET_TYPES) - 1} "
                         f"({', '.join(JET_TYPES)}), found {np.unique(jt[bad])[:5].tolist()} in {_first_bad(bad)}")
    jf = data.jet_features
    if jf is None:
        return
    if jf.ndim != 2 or jf.shape != (n, 4):
        raise ValueError(f"{source}: key 'jet_features': expected shape ({n}, 4) "
                         f"[pt, eta, mass, num_particles], found {jf.shape}")
    finite = np.isfinite(jf).all(axis=1)
    if not finite.all():
        raise ValueError(f"{source}: key 'jet_features': expected finite values, found NaN/Inf in {_first_bad(~finite)}")
    for col, name in ((0, "pt"), (2, "mass")):
        bad = jf[:, col] < 0
        if bad.any():
            raise ValueError(f"{source}: key 'jet_features': expected {name} >= 0, found minimum "
                             f"{jf[:, col].min():.6g} in {_first_bad(bad)}")
    k = jf[:, 3]
    bad = (k != np.round(k)) | (k < (m > 0.5).sum(axis=1))
    if bad.any():
        raise ValueError(f"{source}: key 'jet_features': expected num_particles (column 3) a whole number "
                         f">= the unmasked constituents, found {k[bad][:3].tolist()} in {_first_bad(bad)}")


def is_jet_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file with a ``particle_features`` dataset (JetNet layout)."""
    try:
        with h5py.File(path, "r") as f:
            return "particle_features" in f
    except OSError:
        return False


def _read_array(f: h5py.File, path: Path, key: str) -> np.ndarray:
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: key {key!r}: expected a dataset, found a {type(obj).__name__}")
    if obj.dtype.kind not in "biuf":
        raise ValueError(f"{path}: key {key!r}: expected a numeric dataset, found dtype {obj.dtype}")
    return np.asarray(obj[()])


def read_jets(path: str | os.PathLike, jet_type: str | None = None,
              n_particles: int | None = None) -> JetData:
    """Read and validate a jet file in the JetNet layout (public JetNet files or hepgen's).

    Arguments:
        path: the HDF5 file.
        jet_type: the type of every jet when the file stores none (public JetNet files); by
            default taken from a public file name (``t.hdf5``, ``g150.hdf5``, …), else -1.
        n_particles: keep the leading ``n_particles`` constituents (as jetnet's
            ``num_particles``); the default keeps all.

    Returns:
        the :class:`JetData`; ``jet_features[:, 3]`` is the full multiplicity as stored.
    """
    path = Path(path)
    require_hdf5(path, "JetNet layout")
    try:
        with h5py.File(path, "r") as f:
            check_file_kind(f, path, "jets")
            if "particle_features" not in f:
                raise ValueError(f"{path}: missing dataset 'particle_features'; expected the JetNet layout "
                                 f"('particle_features', 'jet_features'), found keys {sorted(f.keys())}")
            pf = _read_array(f, path, "particle_features").astype(np.float32)
            jf = _read_array(f, path, "jet_features").astype(np.float64) if "jet_features" in f else None
            jt = _read_array(f, path, "jet_type") if "jet_type" in f else None
            attrs = {k: hdf5_attr_value(v) for k, v in f.attrs.items() if k != KIND_ATTR}
    except OSError as err:
        raise ValueError(f"{path}: could not read HDF5 file ({err})") from None
    if pf.ndim == 3 and pf.shape[2] == 3:  # no mask column: zero padding marks the absent particles
        pf = np.concatenate([pf, (pf != 0).any(axis=2, keepdims=True).astype(np.float32)], axis=2)
    if jf is not None and jf.ndim == 2 and jf.shape[1] == 5:  # jetnet getData order: type first
        if jt is None:
            jt = jf[:, 0]
        jf = jf[:, 1:]
    if jt is not None:
        jt = np.asarray(jt).reshape(-1)
        if jt.size and np.any(jt != np.round(jt)):
            raise ValueError(f"{path}: key 'jet_type': expected whole numbers (JetNet class index), "
                             f"found {jt[jt != np.round(jt)][:3].tolist()}")
    elif jet_type is not None:
        jt = np.full(pf.shape[0] if pf.ndim else 0, jet_type_index(jet_type))
    else:
        match = _PUBLIC_NAME.match(path.stem)
        jt = np.full(pf.shape[0] if pf.ndim else 0, JET_TYPES.index(match.group(1)) if match else -1)
    if n_particles is not None:
        if pf.ndim != 3 or not 1 <= int(n_particles) <= pf.shape[1]:
            raise ValueError(f"{path}: n_particles: expected 1 … {pf.shape[1] if pf.ndim == 3 else '?'} "
                             f"(the constituents stored), found {n_particles}")
        pf = pf[:, : int(n_particles)]
    data = JetData(pf, jf, np.asarray(jt, dtype=np.int64), attrs)
    validate_jets(data, str(path))
    return data


def write_jets(path: str | os.PathLike, data: JetData, compression: str | None = "gzip") -> None:
    """Validate ``data`` and write it in the JetNet layout (+ ``jet_type``), atomically.

    ``particle_features`` and ``jet_features`` are written as float32 (as in the public
    files), ``jet_type`` as int8; attributes record the feature and type names.
    """
    path = Path(path)
    validate_jets(data, str(path))
    attrs = hdf5_attrs(data.attrs, path)
    attrs.update(particle_feature_names=json.dumps(PARTICLE_FEATURES), jet_feature_names=json.dumps(JET_FEATURES),
                 jet_type_names=json.dumps(JET_TYPES), units="GeV", **{KIND_ATTR: "jets"})
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n = len(data)
            comp = compression if n else None
            f.create_dataset("particle_features", data=data.particle_features.astype(np.float32), compression=comp)
            if data.jet_features is not None:
                f.create_dataset("jet_features", data=data.jet_features.astype(np.float32), compression=comp)
            f.create_dataset("jet_type", data=data.jet_type.astype(np.int8))
            f.attrs.update(attrs)


def merge_jet_files(path: str | os.PathLike, parts: Sequence[str | os.PathLike], attrs,
                    compression: str | None = "gzip") -> dict:
    """Write the jets of the files ``parts``, in order, to ``path`` one part in memory at a time.

    The file is what :func:`write_jets` writes for ``JetData.concatenate([read_jets(p) for p in
    parts], attrs)`` — the same datasets, dtypes and attributes, with HDF5 chunked storage —
    but memory holds one part, not the whole sample (``hepgen simulate jets`` merges its chunk
    files this way).  Every part is read (and validated) by :func:`read_jets`; they must agree
    on the number of particles and on having jet features.  Written atomically.

    Arguments:
        path: the output HDF5 file (JetNet layout + ``jet_type``).
        parts: the input jet files, at least one.
        attrs: the output's attributes (JSON-able values), or a function of the list of the
            parts' attributes returning them (e.g. to add up per-part counts).
        compression: HDF5 compression of the feature datasets.

    Returns:
        ``{"n": jets written, "n_particles": P, "types_present": [names], "part_attrs": [attrs of each part]}``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> pf = np.zeros((2, 3, 4), np.float32); pf[:, 0] = [0.1, 0.2, 1.0, 1.0]
    >>> jf = np.tile([100.0, 0.1, 5.0, 1.0], (2, 1))
    >>> write_jets(d / "a.h5", JetData(pf, jf, np.array([0, 0])))
    >>> write_jets(d / "b.h5", JetData(pf, jf, np.array([2, 2])))
    >>> merge_jet_files(d / "ab.h5", [d / "a.h5", d / "b.h5"], {"seed": 1})["types_present"]
    ['g', 't']
    >>> len(read_jets(d / "ab.h5"))
    4
    """
    path = Path(path)
    parts = [Path(p) for p in parts]
    if not parts:
        raise ValueError(f"{path}: expected at least one jet file to merge, found none")
    n, n_particles, has_jf, types, part_attrs = 0, None, None, set(), []
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for part in parts:
                data = read_jets(part)
                if n_particles is None:
                    n_particles, has_jf = data.n_particles, data.jet_features is not None
                    rows = max(1, (1 << 20) // (16 * n_particles))  # HDF5 chunks of <= 1 MiB
                    f.create_dataset("particle_features", shape=(0, n_particles, 4), maxshape=(None, n_particles, 4),
                                     dtype=np.float32, chunks=(rows, n_particles, 4), compression=compression)
                    if has_jf:
                        f.create_dataset("jet_features", shape=(0, 4), maxshape=(None, 4), dtype=np.float32,
                                         chunks=(max(rows, 1024), 4), compression=compression)
                    f.create_dataset("jet_type", shape=(0,), maxshape=(None,), dtype=np.int8, chunks=(max(rows, 1024),))
                if data.n_particles != n_particles or (data.jet_features is not None) != has_jf:
                    raise ValueError(f"{part}: expected {n_particles} particles per jet and jet features "
                                     f"{'present' if has_jf else 'absent'} like {parts[0]}, found {data.n_particles} "
                                     f"and {'present' if data.jet_features is not None else 'absent'}")
                m = len(data)
                arrays = {"particle_features": data.particle_features.astype(np.float32),
                          "jet_type": data.jet_type.astype(np.int8)}
                if has_jf:
                    arrays["jet_features"] = data.jet_features.astype(np.float32)
                for key, arr in arrays.items():
                    f[key].resize(n + m, axis=0)
                    f[key][n:n + m] = arr
                n += m
                types.update(data.types_present)
                part_attrs.append(dict(data.attrs))
                del data, arrays
            out_attrs = hdf5_attrs(attrs(part_attrs) if callable(attrs) else attrs, path)
            out_attrs.update(particle_feature_names=json.dumps(PARTICLE_FEATURES),
                             jet_feature_names=json.dumps(JET_FEATURES), jet_type_names=json.dumps(JET_TYPES),
                             units="GeV", **{KIND_ATTR: "jets"})
            f.attrs.update(out_attrs)
    order = [*JET_TYPES, "unknown"]
    return {"n": n, "n_particles": int(n_particles), "types_present": sorted(types, key=order.index),
            "part_attrs": part_attrs}
