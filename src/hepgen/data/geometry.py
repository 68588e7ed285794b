"""Voxel geometries of a calorimeter: CaloChallenge cylindrical binning, Cartesian grids, hexagons.

Four geometries are supported, behind the same small interface (``n_voxels``,
``n_layers``, ``layer_slices``, ``voxel_index``, ``voxel_xy`` …) so that the
simulator, the data layer and the metrics never need to know which one they hold.

* :class:`CylindricalBinning` — the CaloChallenge binning: per layer, radial edges
  ``r_edges`` (mm) and ``n_bin_alpha`` equal angular bins over (-π, π].  Voxel order
  is radial-fastest, then angular, then layer, exactly as in the CaloChallenge files:
  ``index = layer_offset + i_alpha * n_r + i_r``.  Layers whose ``r_edges`` has fewer
  than two edges (``r_edges="0"``) are inactive and hold no voxels.
* :class:`CartesianGrid` — ``nz`` layers of ``ny × nx`` square cells (3DGAN / HGCAL
  studies).  Voxel order is x-fastest, then y, then layer (C order of ``(nz, ny, nx)``).
* :class:`~hepgen.data.geometry_layers.LayeredCartesianGrid` — layers of rectangular
  cells, each layer with its own ``(ny, nx)`` and cell size (CaloGAN); layer-major, C order
  of ``(ny, nx)`` inside a layer (:mod:`hepgen.data.geometry_layers`).
* :class:`~hepgen.data.geometry_hex.HexagonalGrid` — layers of hexagonal cells in axial
  coordinates (HGCAL prototype-like; :mod:`hepgen.data.geometry_hex`).

The CaloChallenge XML describes cylindrical binnings only; every geometry is written and
read as JSON (``to_dict`` / :func:`geometry_from_dict`), which is also how shower files
carry their geometry (the HDF5 attribute ``hepgen_geometry``).

Coordinates are in mm, in the plane transverse to the shower axis, with the axis at
the origin.  Following the CaloChallenge evaluation code, the transverse coordinates of
a voxel are ``x = r cos α`` (the "η" direction) and ``y = r sin α`` (the "φ" direction),
evaluated at the bin centres.

References:
    CaloChallenge 2022 data sets and binning files,
    https://calochallenge.github.io/homepage/ (Krause, Faucci Giannelli, Kasieczka,
    Nachman, Salamani, Shih, Zaborowska, arXiv:2410.21611).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from hepgen._io import atomic_path
from hepgen.data._planar import PlanarVoxels
from hepgen.data.geometry_hex import HexagonalGrid
from hepgen.data.geometry_layers import CartesianLayer, LayeredCartesianGrid

__all__ = [
    "LayerBinning",
    "CylindricalBinning",
    "CartesianGrid",
    "CartesianLayer",
    "LayeredCartesianGrid",
    "HexagonalGrid",
    "GEOMETRY_KINDS",
    "Geometry",
    "load_geometry",
    "save_geometry",
    "geometry_from_dict",
    "default_binning",
]


@dataclass(frozen=True)
class LayerBinning:
    """Binning of one calorimeter layer.

    Arguments:
        layer_id: the layer number in the XML (``id`` attribute).
        r_edges: radial bin edges in mm, increasing; fewer than two edges means inactive.
        n_alpha: number of equal angular bins over (-π, π].
    """

    layer_id: int
    r_edges: tuple[float, ...]
    n_alpha: int = 1

    def __post_init__(self) -> None:
        edges = np.asarray(self.r_edges, dtype=float)
        if edges.size >= 2 and np.any(np.diff(edges) <= 0):
            raise ValueError(
                f"layer {self.layer_id}: r_edges must be strictly increasing, found {edges.tolist()}"
            )
        if self.n_alpha < 1:
            raise ValueError(f"layer {self.layer_id}: n_bin_alpha must be >= 1, found {self.n_alpha}")

    @property
    def active(self) -> bool:
        return len(self.r_edges) >= 2

    @property
    def n_r(self) -> int:
        return max(len(self.r_edges) - 1, 0)

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha if self.active else 0

    @property
    def alpha_edges(self) -> np.ndarray:
        return np.linspace(-np.pi, np.pi, self.n_alpha + 1)


@dataclass(frozen=True)
class CylindricalBinning:
    """CaloChallenge-style cylindrical binning (layers × angular × radial).

    Arguments:
        layers: every layer of the XML, active or not, in depth order.
        particle: particle name of the ``<Bin>`` element (``photon``, ``electron``, ``pion``).
        pid: PDG id of that particle.

    Example:
        >>> b = CylindricalBinning.regular(n_layers=3, r_edges=[0, 5, 10, 20], n_alpha=4)
        >>> b.n_voxels
        36
    """

    layers: tuple[LayerBinning, ...]
    particle: str = "photon"
    pid: int = 22
    kind: str = field(default="cylindrical", init=False)

    def __post_init__(self) -> None:
        if not any(layer.active for layer in self.layers):
            raise ValueError("binning has no active layer (every layer has r_edges='0')")

    # --- construction -----------------------------------------------------------------
    @classmethod
    def regular(
        cls, n_layers: int, r_edges, n_alpha: int = 1, particle: str = "photon", pid: int = 22
    ) -> "CylindricalBinning":
        """All layers active with the same radial edges (mm) and angular bins."""
        edges = tuple(float(e) for e in r_edges)
        return cls(tuple(LayerBinning(i, edges, n_alpha) for i in range(n_layers)), particle, pid)

    @classmethod
    def from_xml(cls, path: Union[str, os.PathLike], particle: str | None = None) -> "CylindricalBinning":
        """Parse a CaloChallenge binning XML (``<Bins><Bin name pid><Layer .../></Bin></Bins>``).

        ``particle`` selects the ``<Bin>`` by its ``name``; by default the first one.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: binning XML not found")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise ValueError(f"{path}: not a valid XML file ({err})") from None
        bins = [b for b in root if b.tag in ("Bin", "Particle")]
        if not bins:
            raise ValueError(f"{path}: expected <Bin> elements under <{root.tag}>, found none")
        if particle is not None:
            chosen = [b for b in bins if b.attrib.get("name") == particle]
            if not chosen:
                names = [b.attrib.get("name") for b in bins]
                raise ValueError(f"{path}: no <Bin name={particle!r}>, found names {names}")
            node = chosen[0]
        else:
            node = bins[0]
        layers = []
        for el in node.findall("Layer"):
            try:
                layer_id = int(el.attrib["id"])
                edges_txt = el.attrib["r_edges"]
                n_alpha = int(el.attrib.get("n_bin_alpha", "1"))
            except KeyError as err:
                raise ValueError(f"{path}: <Layer> is missing attribute {err.args[0]!r}") from None
            except ValueError:
                raise ValueError(f"{path}: <Layer {el.attrib}> has a non-integer id or n_bin_alpha") from None
            try:
                edges = tuple(float(x) for x in edges_txt.split(",") if x.strip())
            except ValueError:
                raise ValueError(
                    f"{path}: layer {layer_id}: r_edges must be comma-separated numbers, found {edges_txt!r}"
                ) from None
            if len(edges) < 2:
                edges = ()
            try:
                layers.append(LayerBinning(layer_id, edges, n_alpha))
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
        if not layers:
            raise ValueError(f"{path}: <Bin> has no <Layer> elements")
        try:
            pid = int(node.attrib.get("pid", 0))
            return cls(tuple(layers), node.attrib.get("name", "unknown"), pid)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def to_xml(self, path: Union[str, os.PathLike]) -> None:
        """Write the binning as CaloChallenge XML (atomically)."""
        root = ET.Element("Bins")
        node = ET.SubElement(root, "Bin", pid=str(self.pid), name=self.particle)
        for layer in self.layers:
            edges = ",".join(_fmt(e) for e in layer.r_edges) if layer.active else "0"
            ET.SubElement(node, "Layer", id=str(layer.layer_id), r_edges=edges, n_bin_alpha=str(layer.n_alpha))
        ET.indent(root)
        with atomic_path(path) as tmp:
            ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)

    # --- the common geometry interface ----------------------------------------------------
    @property
    def active_layers(self) -> tuple[LayerBinning, ...]:
        return tuple(layer for layer in self.layers if layer.active)

    @property
    def n_layers(self) -> int:
        """Number of *active* layers (the layers that hold voxels)."""
        return len(self.active_layers)

    @property
    def n_voxels(self) -> int:
        return sum(layer.n_voxels for layer in self.layers)

    @property
    def layer_slices(self) -> list[slice]:
        """Slice of the flat voxel vector for each active layer, in depth order."""
        out, start = [], 0
        for layer in self.active_layers:
            out.append(slice(start, start + layer.n_voxels))
            start += layer.n_voxels
        return out

    @property
    def max_radius(self) -> float:
        return max(layer.r_edges[-1] for layer in self.active_layers)

    def voxel_layer(self) -> np.ndarray:
        """(n_voxels,) int: active-layer position (0 … n_layers-1) of each voxel."""
        return np.concatenate([np.full(l.n_voxels, i) for i, l in enumerate(self.active_layers)])

    def voxel_r(self) -> np.ndarray:
        """(n_voxels,) float: radial bin centre (mm) of each voxel."""
        parts = []
        for layer in self.active_layers:
            e = np.asarray(layer.r_edges)
            parts.append(np.tile(0.5 * (e[:-1] + e[1:]), layer.n_alpha))
        return np.concatenate(parts)

    def voxel_alpha(self) -> np.ndarray:
        """(n_voxels,) float: angular bin centre (rad) of each voxel (0 for one angular bin)."""
        parts = []
        for layer in self.active_layers:
            if layer.n_alpha == 1:
                parts.append(np.zeros(layer.n_r))
            else:
                a = layer.alpha_edges
                parts.append(np.repeat(0.5 * (a[:-1] + a[1:]), layer.n_r))
        return np.concatenate(parts)

    def voxel_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Transverse coordinates (mm) of each voxel centre: ``x = r cos α``, ``y = r sin α``."""
        r, a = self.voxel_r(), self.voxel_alpha()
        return r * np.cos(a), r * np.sin(a)

    def voxel_area(self) -> np.ndarray:
        """(n_voxels,) float: transverse area (mm²) of each voxel."""
        parts = []
        for layer in self.active_layers:
            e = np.asarray(layer.r_edges)
            ring = np.pi * (e[1:] ** 2 - e[:-1] ** 2) / layer.n_alpha
            parts.append(np.tile(ring, layer.n_alpha))
        return np.concatenate(parts)

    def voxel_index(self, layer: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat voxel index of points at active-layer position ``layer`` and transverse (x, y) mm.

        Returns -1 for points outside the binning (beyond the last radial edge, or in no layer).
        """
        layer = np.asarray(layer, dtype=np.int64)
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        r = np.hypot(x, y)
        alpha = np.arctan2(y, x)  # (-π, π]
        out = np.full(layer.shape, -1, dtype=np.int64)
        offset = 0
        for i, lb in enumerate(self.active_layers):
            sel = layer == i
            if np.any(sel):
                edges = np.asarray(lb.r_edges)
                ir = np.searchsorted(edges, r[sel], side="right") - 1
                ia = np.floor((alpha[sel] + np.pi) / (2 * np.pi) * lb.n_alpha).astype(np.int64)
                ia = np.clip(ia, 0, lb.n_alpha - 1)
                inside = (ir >= 0) & (ir < lb.n_r)
                out[np.flatnonzero(sel)[inside]] = offset + ia[inside] * lb.n_r + ir[inside]
            offset += lb.n_voxels
        return out

    def orientations(self, reflections: bool = True) -> np.ndarray:
        """The voxel permutations of the binning's azimuthal symmetry group.

        A shower whose distribution does not depend on its orientation about the axis (a
        particle along the axis, no magnetic field: GFlash, CaloChallenge data sets 2 and 3)
        is as likely as any copy of it rotated by a multiple of ``2π / m`` and, with
        ``reflections``, mirrored ``α → −α``; ``m`` is the greatest common divisor of the
        layers' angular bin counts (layers with one angular bin are unchanged by every
        element).  Row ``g`` is the permutation ``p`` of element ``g``: the rotated shower is
        ``showers[:, p]``; row 0 is the identity; rows ``j`` (``j < m``) rotate by ``j`` steps
        of ``2π / m``; with ``reflections``, row ``m + j`` is the mirror image of row ``j``
        (turned by ``j`` steps, then ``α → −α``).

        Returns:
            ``(G, n_voxels)`` int64, ``G = m`` or ``2 m`` (1 when no layer has angular bins).

        Example:
            >>> b = CylindricalBinning.regular(n_layers=1, r_edges=[0, 5, 10], n_alpha=4)
            >>> b.orientations()[[0, 1, 4]].tolist()      # identity, 90°, mirror; voxel = 2 α + r
            [[0, 1, 2, 3, 4, 5, 6, 7], [6, 7, 0, 1, 2, 3, 4, 5], [6, 7, 4, 5, 2, 3, 0, 1]]
        """
        counts = [l.n_alpha for l in self.active_layers if l.n_alpha > 1]
        m = int(np.gcd.reduce(counts)) if counts else 1
        rows = []
        for mirror in ((False, True) if reflections and counts else (False,)):
            for j in range(m):
                parts, offset = [], 0
                for l in self.active_layers:
                    i_alpha = np.arange(l.n_alpha)
                    if mirror:  # bin i covers [−π + 2πi/n, −π + 2π(i+1)/n]: α → −α sends it to n − 1 − i
                        i_alpha = l.n_alpha - 1 - i_alpha
                    source = (i_alpha - j * (l.n_alpha // m)) % l.n_alpha  # rotated by j steps of 2π/m
                    parts.append(offset + (source[:, None] * l.n_r + np.arange(l.n_r)[None, :]).reshape(-1))
                    offset += l.n_voxels
                rows.append(np.concatenate(parts))
        return np.stack(rows).astype(np.int64)

    def to_dict(self) -> dict:
        return {
            "kind": "cylindrical",
            "particle": self.particle,
            "pid": self.pid,
            "layers": [
                {"id": l.layer_id, "r_edges": list(l.r_edges), "n_alpha": l.n_alpha} for l in self.layers
            ],
        }


@dataclass(frozen=True)
class CartesianGrid(PlanarVoxels):
    """Regular Cartesian voxel grid: ``nz`` layers of ``ny × nx`` cells of ``cell_size`` mm.

    The shower axis passes through the centre of the grid.  Voxel order is x-fastest,
    then y, then layer: ``index = (iz * ny + iy) * nx + ix``.

    Example:
        >>> g = CartesianGrid(nx=5, ny=5, nz=4, cell_size=10.0)
        >>> g.n_voxels
        100
    """

    nx: int
    ny: int
    nz: int
    cell_size: float = 5.0
    kind: str = field(default="cartesian", init=False)

    def __post_init__(self) -> None:
        for name in ("nx", "ny", "nz"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CartesianGrid: {name} must be >= 1, found {getattr(self, name)}")
        if self.cell_size <= 0:
            raise ValueError(f"CartesianGrid: cell_size must be > 0 mm, found {self.cell_size}")

    @property
    def n_layers(self) -> int:
        return self.nz

    @property
    def n_voxels(self) -> int:
        return self.nx * self.ny * self.nz

    @property
    def layer_slices(self) -> list[slice]:
        n = self.nx * self.ny
        return [slice(i * n, (i + 1) * n) for i in range(self.nz)]

    @property
    def max_radius(self) -> float:
        return 0.5 * min(self.nx, self.ny) * self.cell_size

    def _centres(self, n: int) -> np.ndarray:
        return (np.arange(n) - 0.5 * (n - 1)) * self.cell_size

    def voxel_layer(self) -> np.ndarray:
        return np.repeat(np.arange(self.nz), self.nx * self.ny)

    def voxel_xy(self) -> tuple[np.ndarray, np.ndarray]:
        xx, yy = np.meshgrid(self._centres(self.nx), self._centres(self.ny))  # (ny, nx)
        return np.tile(xx.ravel(), self.nz), np.tile(yy.ravel(), self.nz)

    def voxel_area(self) -> np.ndarray:
        return np.full(self.n_voxels, self.cell_size**2)

    def voxel_index(self, layer: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        layer = np.asarray(layer, dtype=np.int64)
        ix = np.floor(np.asarray(x) / self.cell_size + 0.5 * self.nx).astype(np.int64)
        iy = np.floor(np.asarray(y) / self.cell_size + 0.5 * self.ny).astype(np.int64)
        inside = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny) & (layer >= 0) & (layer < self.nz)
        return np.where(inside, (layer * self.ny + iy) * self.nx + ix, -1)

    def to_dict(self) -> dict:
        return {"kind": "cartesian", "nx": self.nx, "ny": self.ny, "nz": self.nz, "cell_size": self.cell_size}


Geometry = Union[CylindricalBinning, CartesianGrid, LayeredCartesianGrid, HexagonalGrid]

#: The ``kind`` of each geometry class (the key ``kind`` of its JSON).
GEOMETRY_KINDS = ("cylindrical", "cartesian", "layered-cartesian", "hexagonal")


def geometry_from_dict(d: dict) -> Geometry:
    """Inverse of ``geometry.to_dict()``.

    >>> geometry_from_dict(HexagonalGrid(2, 1, 10.0).to_dict()) == HexagonalGrid(2, 1, 10.0)
    True
    """
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind == "cylindrical":
        layers = tuple(LayerBinning(int(l["id"]), tuple(l["r_edges"]), int(l["n_alpha"])) for l in d["layers"])
        return CylindricalBinning(layers, d.get("particle", "photon"), int(d.get("pid", 22)))
    if kind == "cartesian":
        return CartesianGrid(int(d["nx"]), int(d["ny"]), int(d["nz"]), float(d["cell_size"]))
    if kind == "layered-cartesian":
        return LayeredCartesianGrid.from_dict(d)
    if kind == "hexagonal":
        return HexagonalGrid.from_dict(d)
    raise ValueError(f"geometry kind must be one of {', '.join(repr(k) for k in GEOMETRY_KINDS)}, found {kind!r}")


#: ``TrainConfig.symmetry`` values: no symmetry, azimuthal rotations, rotations and reflections.
SYMMETRIES = ("none", "rotations", "dihedral")


def orientation_permutations(geometry: Geometry, symmetry: str) -> np.ndarray | None:
    """``geometry``'s voxel permutations for ``symmetry`` (:data:`SYMMETRIES`), None for ``"none"``.

    ``"rotations"`` and ``"dihedral"`` (rotations and mirror images) are
    :meth:`CylindricalBinning.orientations`; other geometries have no angular bins and raise.

    >>> orientation_permutations(default_binning(), "dihedral").shape
    (12, 384)
    """
    if symmetry not in SYMMETRIES:
        raise ValueError(f"symmetry: expected one of {', '.join(repr(s) for s in SYMMETRIES)}, found {symmetry!r}")
    if symmetry == "none":
        return None
    if not isinstance(geometry, CylindricalBinning):
        raise ValueError(f"symmetry {symmetry!r} permutes angular bins: it needs a cylindrical binning, "
                         f"found a {geometry.kind!r} geometry")
    return geometry.orientations(reflections=symmetry == "dihedral")


def load_geometry(path: Union[str, os.PathLike], particle: str | None = None) -> Geometry:
    """Load a geometry: CaloChallenge ``.xml`` binning, or a ``.json`` written by ``save_geometry``."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return CylindricalBinning.from_xml(path, particle)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: geometry file not found")
        try:
            return geometry_from_dict(json.loads(path.read_text()))
        except ValueError as err:
            if isinstance(err, json.JSONDecodeError):
                raise ValueError(f"{path}: not a hepgen geometry JSON ({err!r})") from None
            raise ValueError(f"{path}: {err}") from None
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a hepgen geometry JSON ({err!r})") from None
    raise ValueError(f"{path}: geometry must be a CaloChallenge .xml binning or a .json geometry, "
                     f"found suffix {path.suffix!r}")


def save_geometry(geometry: Geometry, path: Union[str, os.PathLike]) -> None:
    """Write a geometry: cylindrical binnings as CaloChallenge XML when ``path`` ends in .xml,
    any geometry as JSON otherwise (``to_dict``; read back by :func:`load_geometry`)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        if not isinstance(geometry, CylindricalBinning):
            raise ValueError(f"{path}: only cylindrical binnings can be written as XML; use .json")
        geometry.to_xml(path)
        return
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(geometry.to_dict(), indent=2))


def default_binning() -> CylindricalBinning:
    """The built-in demo binning: 8 layers × 6 angular × 8 radial bins = 384 voxels.

    Radial edges (mm) are finer in the core, as in the CaloChallenge data sets, and reach
    about 3 Molière radii of the default lead/scintillator calorimeter.
    """
    return CylindricalBinning.regular(
        n_layers=8, r_edges=[0.0, 4.0, 8.0, 13.0, 20.0, 30.0, 45.0, 70.0, 110.0], n_alpha=6
    )


def _fmt(x: float) -> str:
    return f"{x:g}"
