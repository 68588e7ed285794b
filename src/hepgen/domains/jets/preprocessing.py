"""Preprocessing between JetNet-layout particle clouds and the tensors jet models see.

Features (per real particle): ``eta_rel`` and ``phi_rel`` standardised, ``log pt_rel``
standardised (``pt_rel`` spans four orders of magnitude; its logarithm is close to normal
and keeps generated ``pt_rel`` positive).  Padding slots are 0 in model space.  The cloud is
flattened slot-major to ``(N, P·3)``, the layout :mod:`hepgen.models.epic` documents.

Conditions, in this column order:

1. the multiplicity ``n`` = number of real particles among the ``P`` slots (a whole number;
   the models derive the mask from it — it must stay column 0);
2. ``type``: one-hot over the jet types of the training sample (JetNet order);
3. ``pt``: ``log pT`` standardised; ``eta``: standardised; ``mass`` (optional): ``log m``
   standardised — in the order given in ``conditions``.

The inverse (:meth:`JetPreprocessor.inverse`) undoes the standardisation, sorts the real
particles by ``pt_rel`` (the generators are permutation equivariant, so their output order
means nothing; JetNet files are pT-ordered), and writes the mask column.

Momentum closure.  A jet whose every constituent is stored (``n < P``) carries the jet's own
momentum: along the jet axis its constituents sum to it, ``Σ pt_rel · cos(phi_rel) = 1`` (Pythia 8
+ FastJet at 150 slots: 1.0000 to four digits for every such jet).  A generator does not know
this, and its sums spread by ±15 % (issue 21, docs/jets.md "150 constituents").  :meth:`fit`
checks the training jets (:func:`closure_holds`) and, where the relation holds, :meth:`inverse`
rescales each generated jet with ``n < P`` onto it (:func:`close_momentum`); jets that fill every
slot may have lost constituents and are left as generated.

For sampling without a given multiplicity, :meth:`JetPreprocessor.sample_multiplicity`
draws ``n`` from the training sample's distribution of ``n`` for the jet's type (pT
dependence neglected; pass the multiplicities explicitly to condition on them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hepgen.data.jets import JET_TYPES, JetData

__all__ = ["CLOSURE_TOLERANCE", "JET_CONDITIONS", "LOG_CONDITIONS", "LOG_PT_REL_MAX", "JetPreprocessor",
           "close_momentum", "closure_holds", "momentum_along_axis"]

#: the jet-level conditions a jet model may use (besides the multiplicity, always present)
JET_CONDITIONS = ("type", "pt", "eta", "mass")
_JF_COLUMN = {"pt": 0, "eta": 1, "mass": 2}
#: jet conditions standardised as log(value) (the others as they are)
LOG_CONDITIONS = {"pt": True, "eta": False, "mass": True}
#: cap of the generated log pt_rel in :meth:`JetPreprocessor.inverse` (pt_rel <= e^5: guards exp against a wild sample)
LOG_PT_REL_MAX = 5.0
_PT_FLOOR = 1e-8  # pt_rel of a real particle is > 0; guard log() against a stored 0
#: |Σ pt_rel cos(phi_rel) − 1| below which a stored jet counts as closed (:func:`closure_holds`)
CLOSURE_TOLERANCE = 1e-3


def _kept_every_constituent(p: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the jet has fewer real particles than slots, so none was dropped."""
    return (p[..., 3] > 0.5).sum(axis=1) < p.shape[1]


def momentum_along_axis(particles: np.ndarray) -> np.ndarray:
    """``Σ_i pt_rel_i · cos(phi_rel_i)`` over the real particles: ``(N, P, 4)`` JetNet features →
    ``(N,)``, the constituents' transverse momentum along the jet axis in units of the jet's pT.

    >>> momentum_along_axis(np.array([[[0.0, 0.0, 0.6, 1], [0.1, np.pi / 3, 0.8, 1], [0, 0, 9.0, 0]]]))
    array([1.])
    """
    p = np.asarray(particles, dtype=np.float64)
    return (p[..., 2] * np.cos(p[..., 1]) * (p[..., 3] > 0.5)).sum(axis=1)


def closure_holds(particles: np.ndarray, min_fraction: float = 0.99) -> bool:
    """Whether the jets that kept every constituent (fewer real particles than slots) close:
    ``|Σ pt_rel cos(phi_rel) − 1| < CLOSURE_TOLERANCE`` for at least ``min_fraction`` of them
    (False when fewer than 10 such jets).

    >>> p = np.zeros((10, 3, 4)); p[:, :2, 3] = 1; p[:, :2, 2] = [0.7, 0.3]
    >>> closure_holds(p), closure_holds(p * [1, 1, 0.9, 1])
    (True, False)
    """
    p = np.asarray(particles)
    complete = _kept_every_constituent(p)
    if complete.sum() < 10:
        return False
    closed = np.abs(momentum_along_axis(p[complete]) - 1.0) < CLOSURE_TOLERANCE
    return bool(closed.mean() >= min_fraction)


def close_momentum(particles: np.ndarray) -> np.ndarray:
    """Rescale the ``pt_rel`` of every jet with fewer real particles than slots so that
    ``Σ pt_rel cos(phi_rel) = 1`` (a new array; angles, mask, order and jets filling every slot
    unchanged; a jet whose sum is not positive is left as it is).

    Shapes: ``(N, P, 4)`` JetNet features → ``(N, P, 4)``.

    >>> p = np.array([[[0.0, 0.0, 0.5, 1], [0.0, 0.0, 0.3, 1], [0, 0, 0, 0]]])
    >>> close_momentum(p)[0, :, 2].tolist()
    [0.625, 0.375, 0.0]
    """
    p = np.array(particles, copy=True)
    along = momentum_along_axis(p)
    complete = _kept_every_constituent(p)
    scale = np.where(complete & (along > 0), 1.0 / np.where(along > 0, along, 1.0), 1.0)
    p[..., 2] = p[..., 2] * scale[:, None].astype(p.dtype)
    return p


class JetPreprocessor:
    """Fit on training jets; transform jets and their conditions to model space and back.

    Arguments:
        n_particles: particle slots ``P`` of the data.
        conditions: jet-level conditions (subset of :data:`JET_CONDITIONS`, in this order in
            ``c`` after the multiplicity); default ``("type", "pt", "eta")``.
    """

    def __init__(self, n_particles: int, conditions: Sequence[str] = ("type", "pt", "eta")) -> None:
        conditions = tuple(conditions)
        bad = [k for k in conditions if k not in JET_CONDITIONS]
        if bad or len(set(conditions)) != len(conditions):
            raise ValueError(f"jet conditions: expected distinct names from {list(JET_CONDITIONS)}, found {list(conditions)}")
        self.n_particles = int(n_particles)
        self.condition_names = conditions
        self.types: list[int] = []
        self.feature_mean = np.zeros(3)
        self.feature_std = np.ones(3)
        self.cond_mean: dict[str, float] = {}
        self.cond_std: dict[str, float] = {}
        self.multiplicity: dict[int, list[float]] = {}  # type index → P(n = 1 … P)
        #: rescale generated jets with n < P onto Σ pt_rel cos(phi_rel) = 1 (set by fit: closure_holds)
        self.momentum_closure = False
        self.fitted = False

    # --- sizes -----------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return 3 * self.n_particles

    @property
    def n_conditions(self) -> int:
        n = 1
        for k in self.condition_names:
            n += len(self.types) if k == "type" else 1
        return n

    # --- fitting ---------------------------------------------------------------------
    def _check(self, data: JetData, source: str) -> None:
        if data.n_particles != self.n_particles:
            raise ValueError(f"{source}: expected jets with {self.n_particles} particle slots, found {data.n_particles}")
        needs_jf = [k for k in self.condition_names if k in _JF_COLUMN]
        if needs_jf and data.jet_features is None:
            raise ValueError(f"{source}: key 'jet_features': the conditions {needs_jf} need the jet features "
                             "[pt, eta, mass, num_particles], found none")
        if "type" in self.condition_names and np.any(data.jet_type < 0):
            raise ValueError(f"{source}: key 'jet_type': conditioning on the jet type needs it for every jet, found "
                             f"{int(np.sum(data.jet_type < 0))} of unknown type (read public files with jet_type=...)")
        if len(data) and np.any(data.mask.sum(axis=1) < 1):
            raise ValueError(f"{source}: key 'particle_features': expected at least one particle per jet, found "
                             f"{int(np.sum(data.mask.sum(axis=1) < 1))} empty jet(s)")

    def _cond_raw(self, name: str, jet_features: np.ndarray) -> np.ndarray:
        v = np.asarray(jet_features[:, _JF_COLUMN[name]], dtype=np.float64)
        return np.log(np.maximum(v, 1e-6)) if LOG_CONDITIONS[name] else v

    def fit(self, data: JetData, source: str = "training jets") -> JetPreprocessor:
        """Learn the standardisations, the jet types and the multiplicity distributions."""
        self._check(data, source)
        if len(data) < 2:
            raise ValueError(f"{source}: need at least 2 jets to fit the preprocessing, found {len(data)}")
        m = data.mask
        f = self._features(data.particles)[m]
        self.feature_mean = f.mean(axis=0)
        self.feature_std = np.where(f.std(axis=0) > 0, f.std(axis=0), 1.0)
        self.types = sorted(int(t) for t in np.unique(data.jet_type) if t >= 0) if "type" in self.condition_names else []
        for k in self.condition_names:
            if k in _JF_COLUMN:
                v = self._cond_raw(k, data.jet_features)
                self.cond_mean[k], self.cond_std[k] = float(v.mean()), float(v.std() or 1.0)
        n = m.sum(axis=1)
        for t in np.unique(data.jet_type):
            counts = np.bincount(n[data.jet_type == t], minlength=self.n_particles + 1)[1:]
            self.multiplicity[int(t)] = (counts / counts.sum()).tolist()
        self.momentum_closure = closure_holds(data.particle_features)
        self.fitted = True
        return self

    @staticmethod
    def _features(p: np.ndarray) -> np.ndarray:
        out = np.asarray(p, dtype=np.float64).copy()
        out[..., 2] = np.log(np.maximum(out[..., 2], _PT_FLOOR))
        return out

    # --- forward -----------------------------------------------------------------------
    def transform(self, data: JetData, rng: np.random.Generator | None = None) -> np.ndarray:
        """``(N, P·3)`` float32 model-space particles (padding 0).  ``rng`` is unused (no
        dequantisation for jets); accepted for the trainer's common call."""
        self._check(data, "jets")
        m = data.mask
        z = (self._features(data.particles) - self.feature_mean) / self.feature_std
        z[~m] = 0.0
        return z.reshape(len(data), -1).astype(np.float32)

    def transform_conditions(self, n: np.ndarray, jet_type: np.ndarray | None = None,
                             jet_features: np.ndarray | None = None) -> np.ndarray:
        """``(N, C)`` float32 conditions from multiplicities, types and jet features.

        Arguments:
            n: ``(N,)`` real particles per jet (1 … P).
            jet_type: ``(N,)`` JetNet type indices (needed with the ``type`` condition).
            jet_features: ``(N, ≥3)`` ``[pt, eta, mass, ...]`` (needed with pt/eta/mass).
        """
        n = np.asarray(n).reshape(-1)
        if n.size and (np.any(n != np.round(n)) or n.min() < 1 or n.max() > self.n_particles):
            raise ValueError(f"jet multiplicity: expected whole numbers 1 … {self.n_particles}, found "
                             f"{n.min()} … {n.max()}")
        cols = [n.astype(np.float64)[:, None]]
        for k in self.condition_names:
            if k == "type":
                jt = np.asarray(jet_type).reshape(-1)
                unknown = sorted(set(jt.tolist()) - set(self.types))
                if unknown:
                    raise ValueError(f"jet type: the model was trained on {[JET_TYPES[t] for t in self.types]}, "
                                     f"asked for type index {unknown}")
                cols.append((jt[:, None] == np.asarray(self.types)[None, :]).astype(np.float64))
            else:
                if jet_features is None:
                    raise ValueError(f"jet condition {k!r}: expected jet features [pt, eta, mass], found none")
                v = self._cond_raw(k, np.asarray(jet_features, dtype=np.float64))
                cols.append(((v - self.cond_mean[k]) / self.cond_std[k])[:, None])
        return np.concatenate(cols, axis=1).astype(np.float32)

    def conditions_of(self, data: JetData) -> np.ndarray:
        """The conditions of ``data``'s own jets (multiplicity from the mask)."""
        self._check(data, "jets")
        return self.transform_conditions(data.mask.sum(axis=1), data.jet_type, data.jet_features)

    # --- inverse -----------------------------------------------------------------------
    def inverse(self, x: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Model-space ``(N, P·3)`` + multiplicities → ``(N, P, 4)`` JetNet particle features.

        Real particles are sorted by decreasing ``pt_rel``; padding is all zero.  With
        ``momentum_closure`` (learnt by :meth:`fit`) the jets with ``n < P`` are put onto
        ``Σ pt_rel cos(phi_rel) = 1`` (:func:`close_momentum`).
        """
        n = np.asarray(n).reshape(-1).astype(np.int64)
        z = np.asarray(x, dtype=np.float64).reshape(len(n), self.n_particles, 3)
        f = z * self.feature_std + self.feature_mean
        f[..., 2] = np.exp(np.minimum(f[..., 2], LOG_PT_REL_MAX))
        mask = np.arange(self.n_particles)[None, :] < n[:, None]
        key = np.where(mask, -f[..., 2], np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        f = np.take_along_axis(f, order[..., None], axis=1)
        out = np.concatenate([f, mask[..., None].astype(np.float64)], axis=2)
        out[~mask] = 0.0
        return (close_momentum(out) if self.momentum_closure else out).astype(np.float32)

    def particles_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model-space ``(B, P·3)`` → ``eta_rel, phi_rel, pt_rel``, ``(B, P)`` each, differentiable:
        the standardisation of :meth:`inverse` undone in torch (same ``LOG_PT_REL_MAX`` cap; no
        sorting, padding slots left as they are — mask them), for training losses on observables.

        >>> pre = JetPreprocessor(1)                              # unfitted: identity standardisation
        >>> [round(v.item(), 6) for v in pre.particles_torch(torch.tensor([[0.1, -0.2, 0.0]]))]
        [0.1, -0.2, 1.0]
        """
        f = (x.reshape(x.shape[0], self.n_particles, 3) * torch.as_tensor(self.feature_std, dtype=x.dtype)
             + torch.as_tensor(self.feature_mean, dtype=x.dtype))
        return f[..., 0], f[..., 1], torch.exp(f[..., 2].clamp_max(LOG_PT_REL_MAX))

    def sample_multiplicity(self, jet_type: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Multiplicities drawn from the training distribution of each jet's type."""
        jet_type = np.asarray(jet_type).reshape(-1)
        out = np.empty(len(jet_type), dtype=np.int64)
        for t in np.unique(jet_type):
            key = int(t) if int(t) in self.multiplicity else None
            if key is None:
                if len(self.multiplicity) != 1:
                    raise ValueError(f"jet type index {int(t)}: no multiplicity distribution (trained on "
                                     f"{sorted(self.multiplicity)}); pass the multiplicities")
                key = next(iter(self.multiplicity))
            sel = jet_type == t
            out[sel] = rng.choice(np.arange(1, self.n_particles + 1), size=int(sel.sum()), p=self.multiplicity[key])
        return out

    # --- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "kind": "jets",
            "n_particles": self.n_particles,
            "conditions": list(self.condition_names),
            "types": list(self.types),
            "feature_mean": [float(v) for v in self.feature_mean],
            "feature_std": [float(v) for v in self.feature_std],
            "cond_mean": dict(self.cond_mean),
            "cond_std": dict(self.cond_std),
            "multiplicity": {str(k): list(v) for k, v in self.multiplicity.items()},
            "momentum_closure": bool(self.momentum_closure),
        }

    @classmethod
    def from_state(cls, state: dict) -> JetPreprocessor:
        pre = cls(state["n_particles"], state["conditions"])
        pre.types = [int(t) for t in state["types"]]
        pre.feature_mean = np.asarray(state["feature_mean"], dtype=np.float64)
        pre.feature_std = np.asarray(state["feature_std"], dtype=np.float64)
        pre.cond_mean = {k: float(v) for k, v in state["cond_mean"].items()}
        pre.cond_std = {k: float(v) for k, v in state["cond_std"].items()}
        pre.multiplicity = {int(k): [float(p) for p in v] for k, v in state["multiplicity"].items()}
        # checkpoints written before the closure existed sample as they did
        pre.momentum_closure = bool(state.get("momentum_closure", False))
        pre.fitted = True
        return pre
