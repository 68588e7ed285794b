"""Input scaling of L1 events for the anomaly models: ``(N, 19, 3)`` objects ↔ ``(N, 57)`` features.

Per slot of object type ``t`` (MET, e/γ, μ, jet; :data:`hepgen.data.l1.OBJECT_TYPES`):

* ``pT′ = log(1 + pT / GeV) / m_t`` with ``m_t`` the mean of ``log(1 + pT)`` over the real
  (pT > 0) objects of type ``t`` in the training sample: the steeply falling pT spectra become
  O(1) numbers and the ratio between a 20 GeV and a 2 TeV object stays finite;
* ``η′ = η / η_t`` with the fixed acceptances ``η_t`` = 1 (MET: η ≡ 0), 3.0 (e/γ), 2.1 (μ),
  4.0 (jets) of :mod:`hepgen.simulate.l1`, so ``|η′| ≤ 1``;
* ``φ′ = φ / π`` ∈ [−1, 1].

Padding stays exactly 0 (a padded slot has pT = η = φ = 0, and every map above sends 0 to
0), while every real object has ``pT′ ≥ log(1 + 3) / m_t > 0``; so the network can tell
empty slots from objects.  No centring on purpose: the ADC2021 baseline standardises the
features with a batch-normalisation layer, which would move the padding away from 0.

Example:
    >>> from hepgen.data.l1 import layout_event
    >>> ev = layout_event((30.0, 0.0), [(25.0, 1.5, np.pi / 2)], [], [])[None]
    >>> pre = L1Scaler().fit(ev)
    >>> x = pre.transform(ev)
    >>> x.shape, x[0, :6].round(3).tolist()
    ((1, 57), [1.0, 0.0, 0.0, 1.0, 0.5, 0.5])
    >>> bool(np.abs(pre.inverse_transform(x) - ev).max() < 1e-4)
    True
"""

from __future__ import annotations

import numpy as np

from hepgen.data.l1 import N_FEATURES, N_OBJECTS, OBJECT_TYPES, object_type_of_slot

__all__ = ["ETA_SCALES", "L1Scaler"]

#: fixed η scales per object type (the acceptances of hepgen.simulate.l1).
ETA_SCALES = {"met": 1.0, "egamma": 3.0, "muon": 2.1, "jet": 4.0}


class L1Scaler:
    """The fitted scaling of the module docstring; ``state_dict()`` is JSON-able.

    Arguments:
        log_pt_mean: per object type, the mean ``log(1 + pT)`` (None: fit with :meth:`fit`).
        min_pt: in :meth:`inverse_transform`, slots with pT below this (GeV) become padding.
    """

    n_features = N_FEATURES

    def __init__(self, log_pt_mean: list[float] | None = None, min_pt: float = 1.0) -> None:
        self.log_pt_mean = None if log_pt_mean is None else [float(v) for v in log_pt_mean]
        self.min_pt = float(min_pt)

    def fit(self, objects: np.ndarray) -> L1Scaler:
        """Fit ``m_t`` on ``objects: (N, 19, 3)`` (a type never present gets ``m_t = 1``)."""
        obj = self._check(objects)
        types = object_type_of_slot()
        means = []
        for t in range(len(OBJECT_TYPES)):
            pt = obj[:, types == t, 0]
            pt = pt[pt > 0]
            means.append(float(np.log1p(pt).mean()) if pt.size else 1.0)
        self.log_pt_mean = means
        return self

    def _check(self, objects) -> np.ndarray:
        obj = np.asarray(objects, dtype=np.float64)
        if obj.ndim != 3 or obj.shape[1:] != (N_OBJECTS, 3):
            raise ValueError(f"L1Scaler: expected objects of shape (N, {N_OBJECTS}, 3), found {obj.shape}")
        return obj

    def _scales(self) -> tuple[np.ndarray, np.ndarray]:
        if self.log_pt_mean is None:
            raise ValueError("L1Scaler: not fitted; call fit(objects) first")
        types = object_type_of_slot()
        pt_scale = np.asarray(self.log_pt_mean)[types]
        eta_scale = np.asarray([ETA_SCALES[t] for t in OBJECT_TYPES])[types]
        return pt_scale, eta_scale

    def transform(self, objects: np.ndarray) -> np.ndarray:
        """``(N, 19, 3)`` objects → ``(N, 57)`` float32 features."""
        obj = self._check(objects)
        pt_scale, eta_scale = self._scales()
        out = np.empty_like(obj)
        out[..., 0] = np.log1p(obj[..., 0]) / pt_scale
        out[..., 1] = obj[..., 1] / eta_scale
        out[..., 2] = obj[..., 2] / np.pi
        return out.reshape(len(obj), N_FEATURES).astype(np.float32)

    def inverse_transform(self, features: np.ndarray) -> np.ndarray:
        """``(N, 57)`` features → ``(N, 19, 3)`` float32 objects; slots with pT < ``min_pt`` are zeroed,
        η is clipped to the acceptance, φ wrapped into [−π, π), and MET's η set to 0."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != N_FEATURES:
            raise ValueError(f"L1Scaler: expected features of shape (N, {N_FEATURES}), found {f.shape}")
        f = f.reshape(len(f), N_OBJECTS, 3)
        pt_scale, eta_scale = self._scales()
        out = np.empty_like(f)
        out[..., 0] = np.expm1(np.clip(f[..., 0] * pt_scale, 0.0, 20.0))
        out[..., 1] = np.clip(f[..., 1], -1.0, 1.0) * eta_scale
        phi = f[..., 2] * np.pi
        out[..., 2] = np.where(np.abs(phi) <= np.pi, phi, (phi + np.pi) % (2 * np.pi) - np.pi)
        out[:, 0, 1] = 0.0
        out[out[..., 0] < self.min_pt] = 0.0
        return out.astype(np.float32)

    def state_dict(self) -> dict:
        return {"log_pt_mean": self.log_pt_mean, "min_pt": self.min_pt}

    @classmethod
    def from_state(cls, state: dict) -> L1Scaler:
        """Rebuild from :meth:`state_dict`; a malformed state is a one-line ``ValueError``."""
        means = state.get("log_pt_mean") if isinstance(state, dict) else None
        if not isinstance(means, list) or len(means) != len(OBJECT_TYPES):
            raise ValueError(f"L1 preprocessing state: key 'log_pt_mean': expected a list of {len(OBJECT_TYPES)} "
                             f"numbers, found {means!r}")
        return cls(means, state.get("min_pt", 1.0))
