"""Hexagonal cells (CMS HGCAL prototype-like silicon sensors).

:class:`HexagonalGrid`: ``n_layers`` identical layers, each a large hexagon of small
hexagonal cells.  The cells of a layer are addressed by *axial* coordinates ``(q, r)``
(Red Blob Games, "Hexagonal Grids", https://www.redblobgames.com/grids/hexagons/; the
third cube coordinate is ``s = -q - r``); a hexagon of radius ``R`` (in cells) holds every
cell with ``max(|q|, |r|, |q + r|) <= R``, ``3R(R + 1) + 1`` cells (R = 1: 7, R = 6: 127,
about the 128 full cells of the 6-inch HGCAL prototype sensor).

Geometry of one cell (``pitch`` p = centre-to-centre distance of neighbours = the cell's
flat-to-flat width; side a = p/√3; area (√3/2) p²):

* ``orientation="pointy"`` (default, "pointy-top": a vertex points along +y, two sides
  are vertical): centre ``x = p (q + r/2)``, ``y = p (√3/2) r``; neighbours of one row
  (same r) lie along x.
* ``orientation="flat"`` ("flat-top": two sides horizontal): centre
  ``x = p (√3/2) q``, ``y = p (r + q/2)`` — the pointy grid mirrored in the line y = x.

Voxel order (documented contract): layer-major; inside a layer the cells sorted by ``r``
then ``q`` (both increasing), i.e. for the pointy grid row by row from the bottom, left
to right, ``index = layer * n_cells + cell``.

The class offers the geometry interface of :mod:`hepgen.data.geometry` (``n_voxels``,
``n_layers``, ``layer_slices``, ``voxel_layer``, ``voxel_xy``, ``voxel_r``,
``voxel_alpha``, ``voxel_area``, ``voxel_index``, ``max_radius``, ``to_dict``) and
hexagon-specific helpers: ``cell_qr``, ``cell_centres``, ``cell_vertices``,
``cell_at`` (position → cell), ``neighbours`` / ``neighbour_table``.  Saved as JSON by
:func:`hepgen.data.geometry.save_geometry`; drawn by
:func:`hepgen.report.hexagons.draw_hexagonal_layer`.

Example:
    >>> g = HexagonalGrid(n_layers=2, radius=1, pitch_mm=10.0)
    >>> g.n_cells, g.n_voxels
    (7, 14)
    >>> g.cell_qr()[3].tolist(), g.neighbours(3)          # the centre cell and its six neighbours
    ([0, 0], [0, 1, 2, 4, 5, 6])
    >>> g.cell_at([0.0, 9.0], [0.0, 0.0]).tolist()        # the centre, and the cell to its right
    [3, 4]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hepgen.data._planar import PlanarVoxels

__all__ = ["HEX_DIRECTIONS", "HexagonalGrid"]

#: The six axial neighbour offsets (dq, dr), counter-clockwise from +q (pointy: from +x).
HEX_DIRECTIONS = ((1, 0), (0, 1), (-1, 1), (-1, 0), (0, -1), (1, -1))

_SQ3 = float(np.sqrt(3.0))


@dataclass(frozen=True)
class HexagonalGrid(PlanarVoxels):
    """``n_layers`` layers of a hexagon of ``radius`` rings of hexagonal cells of ``pitch_mm``.

    Arguments:
        n_layers: number of readout layers (>= 1).
        radius: rings of cells around the central one (>= 0); 3R(R+1)+1 cells per layer.
        pitch_mm: centre-to-centre distance of neighbouring cells = flat-to-flat width, mm.
        orientation: ``"pointy"`` (a vertex along +y) or ``"flat"`` (a side along x).
    """

    n_layers: int
    radius: int
    pitch_mm: float
    orientation: str = "pointy"
    kind: str = field(default="hexagonal", init=False)

    def __post_init__(self) -> None:
        for name, lo in (("n_layers", 1), ("radius", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < lo:
                raise ValueError(f"HexagonalGrid: {name} must be an integer >= {lo}, found {v!r}")
        if not (np.isfinite(self.pitch_mm) and self.pitch_mm > 0):
            raise ValueError(f"HexagonalGrid: pitch_mm must be > 0 mm, found {self.pitch_mm!r}")
        if self.orientation not in ("pointy", "flat"):
            raise ValueError(f"HexagonalGrid: orientation must be 'pointy' or 'flat', found {self.orientation!r}")

    @classmethod
    def from_cell_area(cls, n_layers: int, radius: int, area_mm2: float, orientation: str = "pointy"):
        """The grid whose cells have area ``area_mm2`` (pitch = √(2 A / √3)).

        >>> round(HexagonalGrid.from_cell_area(1, 6, 110.0).pitch_mm, 2)   # 1.1 cm² HGCAL cells
        11.27
        """
        return cls(n_layers, radius, float(np.sqrt(2.0 * area_mm2 / _SQ3)), orientation)

    # --- cells of one layer ---------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        """Cells per layer: 3R(R+1) + 1."""
        return 3 * self.radius * (self.radius + 1) + 1

    @property
    def side_mm(self) -> float:
        """Side of a cell (= circumradius), mm: pitch / √3."""
        return self.pitch_mm / _SQ3

    @property
    def cell_area_mm2(self) -> float:
        return 0.5 * _SQ3 * self.pitch_mm**2

    def cell_qr(self) -> np.ndarray:
        """(n_cells, 2) int axial coordinates (q, r) of the cells of a layer, in voxel order."""
        R = self.radius
        rows = [(q, r) for r in range(-R, R + 1) for q in range(max(-R, -R - r), min(R, R - r) + 1)]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def _table(self) -> np.ndarray:
        """(2R+1, 2R+1) int: local cell index at [r + R, q + R], -1 off the hexagon."""
        R = self.radius
        t = np.full((2 * R + 1, 2 * R + 1), -1, dtype=np.int64)
        qr = self.cell_qr()
        t[qr[:, 1] + R, qr[:, 0] + R] = np.arange(len(qr))
        return t

    def _to_xy(self, q, r) -> tuple[np.ndarray, np.ndarray]:
        q, r = np.asarray(q, dtype=float), np.asarray(r, dtype=float)
        p = self.pitch_mm
        if self.orientation == "pointy":
            return p * (q + 0.5 * r), p * 0.5 * _SQ3 * r
        return p * 0.5 * _SQ3 * q, p * (r + 0.5 * q)

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre (x, y) of one layer, each (n_cells,), mm, in voxel order."""
        qr = self.cell_qr()
        return self._to_xy(qr[:, 0], qr[:, 1])

    def cell_vertices(self) -> np.ndarray:
        """(n_cells, 6, 2) vertices (mm) of every cell of a layer, counter-clockwise.

        Pointy: vertices at angles 30° + 60° k from the centre; flat: at 60° k.
        """
        x, y = self.cell_centres()
        start = np.pi / 6 if self.orientation == "pointy" else 0.0
        ang = start + np.arange(6) * np.pi / 3
        return np.stack([x[:, None] + self.side_mm * np.cos(ang), y[:, None] + self.side_mm * np.sin(ang)], axis=2)

    def cell_at(self, x, y) -> np.ndarray:
        """Local cell index (0 … n_cells-1) of the points (x, y) mm; -1 off the hexagon.

        Fractional axial coordinates rounded to the nearest cell centre by cube rounding
        (Red Blob Games, "Hexagonal Grids", section "Rounding"): the cell whose hexagon
        contains the point.  Points on a shared edge go to one of the two cells.
        """
        x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        if self.orientation == "flat":  # mirror into the pointy frame (swaps q and r)
            x, y = y, x
        rf = y / (0.5 * _SQ3 * self.pitch_mm)
        qf = x / self.pitch_mm - 0.5 * rf
        sf = -qf - rf
        q, r, s = np.round(qf), np.round(rf), np.round(sf)
        dq, dr, ds = np.abs(q - qf), np.abs(r - rf), np.abs(s - sf)
        fix_q = (dq > dr) & (dq > ds)
        fix_r = ~fix_q & (dr > ds)
        q = np.where(fix_q, -r - s, q)
        r = np.where(fix_r, -q - s, r)
        if self.orientation == "flat":
            q, r = r, q
        R = self.radius
        inside = (np.abs(q) <= R) & (np.abs(r) <= R) & (np.abs(q + r) <= R) & np.isfinite(qf + rf)
        qi = np.where(inside, q, 0).astype(np.int64) + R
        ri = np.where(inside, r, 0).astype(np.int64) + R
        return np.where(inside, self._table()[ri, qi], -1)

    def neighbour_table(self) -> np.ndarray:
        """(n_cells, 6) int: local index of each cell's neighbour in each of :data:`HEX_DIRECTIONS`, -1 off the hexagon."""
        R = self.radius
        qr = self.cell_qr()
        t = self._table()
        out = np.full((len(qr), 6), -1, dtype=np.int64)
        for k, (dq, dr) in enumerate(HEX_DIRECTIONS):
            q, r = qr[:, 0] + dq, qr[:, 1] + dr
            ok = (np.abs(q) <= R) & (np.abs(r) <= R) & (np.abs(q + r) <= R)
            out[ok, k] = t[r[ok] + R, q[ok] + R]
        return out

    def neighbours(self, cell: int) -> list[int]:
        """Sorted local indices of the cells sharing a side with ``cell`` (6 inside, 3 or 4 on the edge)."""
        if not 0 <= int(cell) < self.n_cells:
            raise ValueError(f"HexagonalGrid: cell must be in 0 … {self.n_cells - 1}, found {cell!r}")
        row = self.neighbour_table()[int(cell)]
        return sorted(int(c) for c in row if c >= 0)

    # --- the common geometry interface ----------------------------------------------------
    @property
    def n_voxels(self) -> int:
        return self.n_layers * self.n_cells

    @property
    def layer_slices(self) -> list[slice]:
        n = self.n_cells
        return [slice(i * n, (i + 1) * n) for i in range(self.n_layers)]

    def layer_image_shape(self, k: int) -> None:
        """None: a hexagonal layer is no rectangular image (no SSIM, no imshow)."""
        return None

    @property
    def max_radius(self) -> float:
        """Half the side of the smallest axis-centred square holding every cell, mm."""
        v = self.cell_vertices()
        return float(np.abs(v).max())

    @property
    def ring_width_mm(self) -> float:
        """Ring width (mm) of the radial profile: the pitch."""
        return float(self.pitch_mm)

    def voxel_layer(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_layers), self.n_cells)

    def voxel_xy(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.cell_centres()
        return np.tile(x, self.n_layers), np.tile(y, self.n_layers)

    def voxel_area(self) -> np.ndarray:
        return np.full(self.n_voxels, self.cell_area_mm2)

    def voxel_index(self, layer, x, y) -> np.ndarray:
        """Flat voxel index of points in layer ``layer`` at transverse (x, y) mm; -1 outside."""
        layer, x, y = np.broadcast_arrays(np.asarray(layer, dtype=np.int64), np.asarray(x, dtype=float),
                                          np.asarray(y, dtype=float))
        cell = self.cell_at(x, y)
        ok = (cell >= 0) & (layer >= 0) & (layer < self.n_layers)
        return np.where(ok, layer * self.n_cells + cell, -1)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "n_layers": int(self.n_layers), "radius": int(self.radius),
                "pitch_mm": float(self.pitch_mm), "orientation": self.orientation}

    @classmethod
    def from_dict(cls, d: dict) -> "HexagonalGrid":
        """Inverse of :meth:`to_dict`; a missing key raises ``KeyError``."""
        return cls(int(d["n_layers"]), int(d["radius"]), float(d["pitch_mm"]), str(d.get("orientation", "pointy")))
