"""Cartesian readout whose layers each have their own granularity (CaloGAN-like).

:class:`LayeredCartesianGrid` is a stack of layers, layer ``k`` holding ``ny_k × nx_k``
rectangular cells of ``dx_k × dy_k`` mm, every layer centred on the shower axis.  It is
the geometry of CaloGAN (Paganini, de Oliveira, Nachman, arXiv:1705.02355; PRD 97 (2018)
014021): three layers of 3 × 96, 12 × 12 and 12 × 6 cells over a 480 mm × 480 mm face.

Voxel order (documented contract, used by the data files and every metric):

* layer-major: all cells of layer 0, then of layer 1, …;
* inside a layer, C order of the ``(ny, nx)`` image: x fastest, then y, i.e.
  ``index = layer_offset[k] + iy * nx_k + ix``, with ``ix = 0`` at the most negative x
  and ``iy = 0`` at the most negative y (an image drawn with ``origin="lower"``).

A grid whose layers are all alike is the same voxel order as
:class:`hepgen.data.geometry.CartesianGrid` (``(iz * ny + iy) * nx + ix``).

Coordinates are in mm in the plane transverse to the shower axis, the axis at the origin;
``x`` plays the role of the CaloChallenge "η" direction and ``y`` of "φ" in the
high-level features (as for the other geometries).

The class offers the geometry interface of :mod:`hepgen.data.geometry` (``n_voxels``,
``n_layers``, ``layer_slices``, ``voxel_layer``, ``voxel_xy``, ``voxel_r``,
``voxel_alpha``, ``voxel_area``, ``voxel_index``, ``max_radius``, ``to_dict``) plus
``layer_image_shape(k)`` (the ``(ny, nx)`` image of a layer) and ``ring_width_mm`` (the
ring width of the radial profile: the finest cell side).  It is saved as JSON by
:func:`hepgen.data.geometry.save_geometry` (the CaloChallenge XML describes only
cylindrical binnings).

Example:
    >>> g = LayeredCartesianGrid.calogan()
    >>> [g.layer_image_shape(k) for k in range(g.n_layers)], g.n_voxels
    ([(3, 96), (12, 12), (12, 6)], 504)
    >>> g.voxel_index([1], [0.1], [-0.1]).tolist()   # layer 1, just right of and below the axis
    [354]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hepgen.data._planar import PlanarVoxels

__all__ = ["CartesianLayer", "LayeredCartesianGrid"]


@dataclass(frozen=True)
class CartesianLayer:
    """One layer of ``ny × nx`` rectangular cells of ``dx × dy`` mm, centred on the axis.

    Arguments:
        nx, ny: number of cells along x and y (>= 1).
        dx, dy: cell width along x and height along y, mm (> 0).
    """

    nx: int
    ny: int
    dx: float
    dy: float

    def __post_init__(self) -> None:
        for name in ("nx", "ny"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"CartesianLayer: {name} must be an integer >= 1, found {v!r}")
        for name in ("dx", "dy"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"CartesianLayer: {name} must be a cell size > 0 mm, found {v!r}")

    @property
    def n_cells(self) -> int:
        return int(self.nx) * int(self.ny)

    def x_centres(self) -> np.ndarray:
        """(nx,) cell-centre x, mm."""
        return (np.arange(self.nx) - 0.5 * (self.nx - 1)) * self.dx

    def y_centres(self) -> np.ndarray:
        """(ny,) cell-centre y, mm."""
        return (np.arange(self.ny) - 0.5 * (self.ny - 1)) * self.dy


@dataclass(frozen=True)
class LayeredCartesianGrid(PlanarVoxels):
    """Layers of rectangular cells, each layer with its own ``(ny, nx)`` and cell size.

    Arguments:
        layers: the layers front to back (at least one).

    Example:
        >>> g = LayeredCartesianGrid((CartesianLayer(2, 1, 10.0, 10.0), CartesianLayer(1, 1, 20.0, 20.0)))
        >>> g.n_voxels, [s.stop - s.start for s in g.layer_slices]
        (3, [2, 1])
        >>> x, y = g.voxel_xy()
        >>> x.tolist(), y.tolist()
        ([-5.0, 5.0, 0.0], [0.0, 0.0, 0.0])
    """

    layers: tuple[CartesianLayer, ...]
    kind: str = field(default="layered-cartesian", init=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("LayeredCartesianGrid: expected at least one layer, found none")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, CartesianLayer):
                raise ValueError(f"LayeredCartesianGrid: layer {i}: expected a CartesianLayer, "
                                 f"found {type(layer).__name__}")

    @classmethod
    def calogan(cls) -> "LayeredCartesianGrid":
        """The CaloGAN readout: 480 mm × 480 mm layers of 3 × 96, 12 × 12 and 12 × 6 cells.

        Cell sizes (mm, x × y): 5 × 160, 40 × 40, 80 × 40 (arXiv:1705.02355, table I; the
        binning of ``generation/convert_to_cells_v2.py`` in github.com/hep-lbdl/CaloGAN).
        The images have the shapes of the CaloGAN files, ``(3, 96)``, ``(12, 12)``,
        ``(12, 6)``, read as ``(ny, nx)``: hepgen's x is the direction of the 5 mm strips.
        """
        return cls((CartesianLayer(96, 3, 5.0, 160.0), CartesianLayer(12, 12, 40.0, 40.0),
                    CartesianLayer(6, 12, 80.0, 40.0)))

    # --- the common geometry interface ----------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_voxels(self) -> int:
        return sum(layer.n_cells for layer in self.layers)

    @property
    def layer_offsets(self) -> np.ndarray:
        """(n_layers + 1,) int: first voxel index of each layer, then n_voxels."""
        return np.concatenate([[0], np.cumsum([layer.n_cells for layer in self.layers])]).astype(np.int64)

    @property
    def layer_slices(self) -> list[slice]:
        o = self.layer_offsets
        return [slice(int(o[i]), int(o[i + 1])) for i in range(self.n_layers)]

    def layer_image_shape(self, k: int) -> tuple[int, int]:
        """``(ny, nx)`` of layer ``k``: ``showers[:, layer_slices[k]].reshape(N, ny, nx)``."""
        layer = self.layers[k]
        return int(layer.ny), int(layer.nx)

    @property
    def max_radius(self) -> float:
        """Half the side of the smallest axis-centred square holding every cell, mm."""
        return float(max(max(l.nx * l.dx, l.ny * l.dy) for l in self.layers) / 2)

    @property
    def ring_width_mm(self) -> float:
        """Ring width (mm) of the radial profile: the finest cell side of any layer."""
        return float(min(min(l.dx, l.dy) for l in self.layers))

    def voxel_layer(self) -> np.ndarray:
        """(n_voxels,) int: layer of each voxel."""
        return np.concatenate([np.full(l.n_cells, i) for i, l in enumerate(self.layers)])

    def voxel_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates (mm), each (n_voxels,), in voxel order."""
        xs, ys = [], []
        for layer in self.layers:
            xx, yy = np.meshgrid(layer.x_centres(), layer.y_centres())  # (ny, nx): x fastest when raveled
            xs.append(xx.ravel())
            ys.append(yy.ravel())
        return np.concatenate(xs), np.concatenate(ys)

    def voxel_area(self) -> np.ndarray:
        """(n_voxels,) cell area, mm²."""
        return np.concatenate([np.full(l.n_cells, l.dx * l.dy) for l in self.layers])

    def voxel_index(self, layer, x, y) -> np.ndarray:
        """Flat voxel index of points in layer ``layer`` at transverse (x, y) mm; -1 outside.

        A point on a cell edge belongs to the cell on its +x (+y) side.
        """
        layer = np.asarray(layer, dtype=np.int64)
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        layer, x, y = np.broadcast_arrays(layer, x, y)
        out = np.full(layer.shape, -1, dtype=np.int64)
        offsets = self.layer_offsets
        for k, lay in enumerate(self.layers):
            sel = layer == k
            if not np.any(sel):
                continue
            ix = np.floor(x[sel] / lay.dx + 0.5 * lay.nx).astype(np.int64)
            iy = np.floor(y[sel] / lay.dy + 0.5 * lay.ny).astype(np.int64)
            inside = (ix >= 0) & (ix < lay.nx) & (iy >= 0) & (iy < lay.ny)
            out[np.flatnonzero(sel)[inside]] = offsets[k] + iy[inside] * lay.nx + ix[inside]
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind,
                "layers": [{"nx": int(l.nx), "ny": int(l.ny), "dx": float(l.dx), "dy": float(l.dy)}
                           for l in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "LayeredCartesianGrid":
        """Inverse of :meth:`to_dict`; a missing key raises ``KeyError``."""
        return cls(tuple(CartesianLayer(int(l["nx"]), int(l["ny"]), float(l["dx"]), float(l["dy"]))
                         for l in d["layers"]))
