"""Drawing one layer of a hexagonal geometry (matplotlib ``PolyCollection``).

Example:
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from hepgen.data.geometry import HexagonalGrid
    >>> g = HexagonalGrid(n_layers=1, radius=2, pitch_mm=10.0)
    >>> ax = Figure().add_subplot()
    >>> coll = draw_hexagonal_layer(ax, g, np.arange(g.n_cells, dtype=float))
    >>> len(coll.get_paths()), ax.get_aspect()
    (19, 1.0)
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PolyCollection

__all__ = ["draw_hexagonal_layer"]


def draw_hexagonal_layer(ax, geometry, values, norm=None, cmap: str = "viridis", edgecolor="none",
                         linewidth: float = 0.3) -> PolyCollection:
    """Draw the cells of one layer of ``geometry`` coloured by ``values`` on the axes ``ax``.

    Arguments:
        ax: a matplotlib ``Axes``.
        geometry: a :class:`hepgen.data.geometry.HexagonalGrid` (anything with
            ``cell_vertices()`` returning (n_cells, k, 2) mm).
        values: (n_cells,) value per cell in the geometry's cell order (one layer's slice
            of a shower, ``showers[i, geometry.layer_slices[k]]``).
        norm, cmap: colour normalisation and map (``matplotlib.colors.LogNorm`` etc.).
        edgecolor, linewidth: cell outlines.

    Returns:
        the ``PolyCollection`` (pass it to ``fig.colorbar``).  Axes limits are set to the
        cells' extent with equal aspect, x and y in mm.
    """
    verts = np.asarray(geometry.cell_vertices(), dtype=float)
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.shape[0] != verts.shape[0]:
        raise ValueError(f"values: expected {verts.shape[0]} cells (one layer of the geometry), found {values.shape[0]}")
    coll = PolyCollection(verts, array=values, cmap=cmap, norm=norm, edgecolors=edgecolor, linewidths=linewidth)
    ax.add_collection(coll)
    lo, hi = verts.reshape(-1, 2).min(axis=0), verts.reshape(-1, 2).max(axis=0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    return coll
