"""ROOT output: hepgen's HDF5 files as a ROOT TTree (``hepgen convert FILE.h5 -o FILE.root``).

One entry per shower (or jet); one branch per HDF5 dataset, with the same name and dtype:

* showers (CaloChallenge layout): ``incident_energies`` (MeV), ``showers`` as a fixed-size
  array branch ``showers[n_voxels]`` (float32, MeV), and every condition dataset
  (``incident_theta``, …);
* jets (JetNet layout): ``particle_features[P][4]``, ``jet_features[4]``, ``jet_type``.

A dataset of shape ``(N, 1)`` (``incident_energies``, the conditions) becomes a scalar branch,
so that ``tree->Draw("incident_energies")`` works; wider ones are fixed-size array branches.
The file's attributes (provenance, geometry JSON, …) are stored beside the tree as one JSON
string (a ``TObjString`` named ``hepgen_attrs``).

Writing goes through uproot (optional extra ``hepgen[root]``, pure Python: no ROOT install);
the file is written atomically (:func:`hepgen._io.atomic_path`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hepgen._extras import needs_extra, require_extra
from hepgen._io import atomic_path
from hepgen.data.formats import ShowerData
from hepgen.data.jets import JetData

__all__ = ["ATTRS_KEY", "TREE", "columns_of", "require_uproot", "write_root"]

#: the TTree's name
TREE = "events"
#: the TObjString holding the HDF5 file's attributes as JSON
ATTRS_KEY = "hepgen_attrs"
_WHAT = "ROOT output (uproot)"


def require_uproot() -> None:
    """Raise the one-line :class:`~hepgen._extras.MissingExtraError` unless uproot is installed."""
    require_extra("root", _WHAT)


def columns_of(data: ShowerData | JetData) -> dict[str, np.ndarray]:
    """The branches written for ``data``: ``{name: (N, ...) array}`` with ``(N, 1)`` squeezed to ``(N,)``.

    >>> d = ShowerData(np.ones((2, 3), np.float32), np.array([[1e3], [2e3]]), {"incident_theta": np.zeros((2, 1))})
    >>> {k: (v.shape, v.dtype.name) for k, v in columns_of(d).items()}
    {'incident_energies': ((2,), 'float64'), 'showers': ((2, 3), 'float32'), 'incident_theta': ((2,), 'float64')}
    """
    if isinstance(data, ShowerData):
        cols = {"incident_energies": np.asarray(data.incident_energies, np.float64),
                "showers": np.asarray(data.showers, np.float32),
                **{k: np.asarray(v, np.float64) for k, v in data.conditions.items()}}
    elif isinstance(data, JetData):
        # the dtypes of write_jets (the HDF5 file's)
        cols = {"particle_features": data.particle_features.astype(np.float32)}
        if data.jet_features is not None:
            cols["jet_features"] = data.jet_features.astype(np.float32)
        cols["jet_type"] = data.jet_type.astype(np.int8)
    else:
        raise ValueError(f"ROOT output: expected ShowerData or JetData, found {type(data).__name__}")
    return {k: v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v for k, v in cols.items()}


def write_root(path: str | os.PathLike, data: ShowerData | JetData, attrs: dict | None = None) -> Path:
    """Write ``data`` as the TTree :data:`TREE` of a new ROOT file at ``path``, atomically.

    Arguments:
        path: the ``.root`` file (replaced if it exists).
        data: showers or jets (:func:`columns_of` gives the branches).
        attrs: JSON-able file attributes stored as the ``TObjString`` :data:`ATTRS_KEY`
            (default: ``data.attrs``, plus ``kind`` and, for showers, the geometry's JSON).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingExtraError: uproot (``hepgen[root]``) is not installed.
    """
    require_uproot()  # before any work
    with needs_extra("root", _WHAT):  # lazy import of an optional extra
        import uproot

    path = Path(path)
    cols = columns_of(data)
    if attrs is None:
        attrs = {**data.attrs, "kind": "showers" if isinstance(data, ShowerData) else "jets"}
        geometry = getattr(data, "geometry", None)
        if geometry is not None:
            attrs["hepgen_geometry"] = json.dumps(geometry.to_dict())
    try:
        text = json.dumps(attrs, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else str(v))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: attributes: expected JSON-able values ({err})") from None
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            # branch types first, so that an empty file still has the tree and its branches
            f.mktree(TREE, {k: np.dtype((v.dtype, v.shape[1:])) if v.ndim > 1 else v.dtype for k, v in cols.items()},
                     title="hepgen")
            if len(next(iter(cols.values()))):
                f[TREE].extend(cols)
            f[ATTRS_KEY] = text
    return path
