"""Voxel coordinates derived from cell centres, shared by the planar geometries.

>>> class Two(PlanarVoxels):
...     def voxel_xy(self):
...         return np.array([3.0, 0.0]), np.array([4.0, -2.0])
>>> Two().voxel_r().tolist(), (Two().voxel_alpha() / np.pi).tolist()
([5.0, 2.0], [0.2951672353008665, -0.5])
"""

from __future__ import annotations

import numpy as np

__all__ = ["PlanarVoxels"]


class PlanarVoxels:
    """``voxel_r`` and ``voxel_alpha`` of a geometry that defines ``voxel_xy()`` (cell centres, mm)."""

    def voxel_r(self) -> np.ndarray:
        """(n_voxels,) distance of each cell centre from the shower axis, mm."""
        return np.hypot(*self.voxel_xy())

    def voxel_alpha(self) -> np.ndarray:
        """(n_voxels,) azimuth of each cell centre, rad in (-π, π]."""
        x, y = self.voxel_xy()
        return np.arctan2(y, x)
