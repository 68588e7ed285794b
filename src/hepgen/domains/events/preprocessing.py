"""Log scaling of event images into [0, 1] and min–max scaling of the conditions.

A tower energy E (GeV) becomes ``f = log(1 + E/scale) / log(1 + e_max/scale)`` clipped to
[0, 1] (empty towers stay 0, which the DCGAN's thresholded sigmoid reproduces exactly); the
inverse is ``E = scale · (exp(f · log(1 + e_max/scale)) − 1)``.  ``e_max`` is the largest tower
energy of the training images; ``scale`` (default 1 GeV) sets where the log starts.  The
conditions named in ``condition_names`` (columns of ``EventImages.conditions``) are mapped
to [0, 1] by the training min and max (a constant column becomes 0).

Example:
    >>> import numpy as np
    >>> from hepgen.data.events import EventImages
    >>> d = EventImages(np.array([[[[0.0, 1.0], [10.0, 100.0]]]]), [[1000.0, 300.0, 0.0]])
    >>> pre = EventPreprocessor(["m_gluino"]).fit(d)
    >>> x = pre.transform(d.images); round(float(x.max()), 6), float(x.min())
    (1.0, 0.0)
    >>> np.allclose(pre.inverse(x), d.images, rtol=1e-5)
    True
"""

from __future__ import annotations

import numpy as np

from hepgen.data.events import CONDITION_NAMES, EventImages

__all__ = ["EventPreprocessor"]


class EventPreprocessor:
    """Images ↔ ``(N, C·H·W)`` features in [0, 1]; physical conditions ↔ ``(N, K)`` in [0, 1].

    Arguments:
        condition_names: columns of ``EventImages.conditions`` the model is conditioned on.
        scale: GeV where the log scaling turns from linear to logarithmic.
    """

    def __init__(self, condition_names=("m_gluino", "m_neutralino"), scale: float = 1.0) -> None:
        names = list(condition_names)
        unknown = [n for n in names if n not in CONDITION_NAMES]
        if unknown:
            raise ValueError(f"conditions: expected names from {list(CONDITION_NAMES)}, found {unknown}")
        if not float(scale) > 0:
            raise ValueError(f"scale: expected > 0 GeV, found {scale}")
        self.condition_names = names
        self.scale = float(scale)
        self.e_max = 1.0
        self.image_shape: list[int] = []
        self.cond_lo = [0.0] * len(names)
        self.cond_hi = [1.0] * len(names)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.image_shape)) if self.image_shape else 0

    @property
    def n_conditions(self) -> int:
        return len(self.condition_names)

    def fit(self, data: EventImages) -> EventPreprocessor:
        self.image_shape = list(data.shape)
        self.e_max = float(max(data.images.max(), self.scale)) if len(data) else 1.0
        cols = self._columns(data.conditions)
        self.cond_lo = cols.min(axis=0).tolist() if len(data) else self.cond_lo
        self.cond_hi = cols.max(axis=0).tolist() if len(data) else self.cond_hi
        return self

    def _columns(self, conditions: np.ndarray) -> np.ndarray:
        idx = [CONDITION_NAMES.index(n) for n in self.condition_names]
        return np.asarray(conditions, np.float64)[:, idx]

    @property
    def log_range(self) -> float:
        """``L = log(1 + e_max/scale)``: a tower of energy E has the feature ``log(1 + E/scale) / L``."""
        return float(np.log1p(self.e_max / self.scale))

    def transform(self, images: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` GeV → ``(N, C·H·W)`` float32 in [0, 1]."""
        x = np.log1p(np.asarray(images, np.float64) / self.scale) / self.log_range
        return np.clip(x, 0.0, 1.0).reshape(len(x), -1).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` features → ``(N, C, H, W)`` float32 GeV."""
        x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
        e = self.scale * np.expm1(x * self.log_range)
        return e.reshape(len(e), *self.image_shape).astype(np.float32)

    def transform_conditions(self, conditions: np.ndarray) -> np.ndarray:
        """``(N, 3)`` physical conditions → ``(N, K)`` float32 (training range → [0, 1])."""
        cols = self._columns(conditions)
        lo, hi = np.asarray(self.cond_lo), np.asarray(self.cond_hi)
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((cols - lo) / span).astype(np.float32)

    def state_dict(self) -> dict:
        return {"condition_names": list(self.condition_names), "scale": self.scale, "e_max": self.e_max,
                "image_shape": list(self.image_shape), "cond_lo": list(self.cond_lo), "cond_hi": list(self.cond_hi)}

    @classmethod
    def from_state(cls, state: dict) -> EventPreprocessor:
        pre = cls(state["condition_names"], state["scale"])
        pre.e_max = float(state["e_max"])
        pre.image_shape = [int(s) for s in state["image_shape"]]
        pre.cond_lo, pre.cond_hi = [float(v) for v in state["cond_lo"]], [float(v) for v in state["cond_hi"]]
        return pre
