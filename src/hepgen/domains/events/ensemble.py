"""A mixture of independently trained event generators: each event comes from one member.

A GAN trained from another seed lands on another imperfect solution; on the interpolation grid of
``docs/events.md`` (run G) the members' errors at a held-out mass point differ in sign from seed
to seed (summed-jet-mass means of ten seeds from −13.3 % to +0.4 %, jet pT too hard in one, too
soft in another), so a sample drawn event by event from a few good members can be closer to Pythia
than each of them alone; whether it is depends on which members are mixed (run G).  This is
the sample-space ensemble of Wang et al., "Ensembles of Generative Adversarial Networks",
arXiv:1612.00991 (their "self-ensemble" / seed ensemble), not an average of weights: averaging
the weights of one GAN's trajectory (EMA) made the generator much worse here (run G's controls).

The mixture weights are equal: event ``i`` is drawn by member ``k_i``, the ``k_i`` uniform and
independent from ``numpy.random.default_rng(seed)``; member ``k`` samples its events with seed
``seed + 1_000_003 · (k + 1)``.  So a sample is a function of ``seed`` alone, like a single
generator's, and a sample of N events holds ~N/K of each member's.

Example (two untrained 16 × 16 members; shapes and the member draw only):
    >>> from hepgen.domains.events.preprocessing import EventPreprocessor
    >>> from hepgen.models import build_model
    >>> pre = EventPreprocessor.from_state({"condition_names": ["m_gluino", "m_neutralino"], "scale": 1.0,
    ...     "e_max": 100.0, "image_shape": [1, 16, 16], "cond_lo": [1000.0, 400.0], "cond_hi": [1400.0, 400.0]})
    >>> mk = lambda: EventGenerator(build_model("dcgan", n_features=256, n_conditions=2, image_shape=[1, 16, 16],
    ...                                         noise_dim=8, filters=4), pre)
    >>> ens = EventEnsemble([mk(), mk()])
    >>> out = ens.sample(np.tile([1200.0, 400.0, 0.0], (5, 1)), seed=3)
    >>> out.images.shape, ens.model.family, len(ens)
    ((5, 1, 16, 16), 'ensemble', 2)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.data.events import KIND, PROCESSES, EventImages
from hepgen.domains.base import check_kind
from hepgen.domains.events.calibration import PixelQuantileMap
from hepgen.domains.events.generator import EventGenerator

__all__ = ["ENSEMBLE_FAMILY", "EventEnsemble", "select_members"]

ENSEMBLE_FAMILY = "ensemble"  # the checkpoint's ``family`` key for a mixture of members

_MEMBER_SEED_STRIDE = 1_000_003  # member k samples with seed + stride · (k + 1): streams far apart


class _Members(torch.nn.Module):
    """The members' networks as one module, so ``gen.model.to(device)`` moves all of them."""

    family = ENSEMBLE_FAMILY

    def __init__(self, models: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(models)
        self.hparams = {"members": [getattr(m, "family", type(m).__name__) for m in models]}


class EventEnsemble:
    """Equal-weight mixture of :class:`EventGenerator` members of the same image geometry.

    Arguments:
        members: one or more generators; their image shapes and ``eta_max`` must agree. One set of
            physical conditions is given to all; each member scales it with its own preprocessing.
        meta: JSON-able facts; default: the first member's with ``ensemble_size`` added.
        calibration: an optional :class:`~hepgen.domains.events.calibration.PixelQuantileMap` of the
            mixture, applied after the members' own (``hepgen calibrate`` on an ensemble checkpoint).
    """

    kind = KIND

    def __init__(self, members: list[EventGenerator], meta: dict | None = None,
                 calibration: PixelQuantileMap | None = None) -> None:
        members = list(members)
        if not members:
            raise ValueError("EventEnsemble: expected at least one member generator, found none")
        ref = members[0]
        for i, m in enumerate(members[1:], 1):
            if tuple(m.preprocessor.image_shape) != tuple(ref.preprocessor.image_shape):
                raise ValueError(f"EventEnsemble: member {i}: image shape {tuple(m.preprocessor.image_shape)}, "
                                 f"expected member 0's {tuple(ref.preprocessor.image_shape)}")
            eta, eta0 = float(m.meta.get("eta_max", 2.5)), float(ref.meta.get("eta_max", 2.5))
            if eta != eta0:
                raise ValueError(f"EventEnsemble: member {i}: eta_max {eta}, expected member 0's {eta0}")
        self.members = members
        self.model = _Members([m.model for m in members])
        self.preprocessor = ref.preprocessor
        self.meta = dict(meta) if meta is not None else {**ref.meta, "ensemble_size": len(members)}
        self.calibration = calibration

    def __len__(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def sample(self, conditions: np.ndarray, seed: int = 0, batch_size: int = 256, path: str = "fp32",
               calibrated: bool = True) -> EventImages:
        """Images at physical ``conditions`` ``(N, 3)`` [m_gluino GeV, m_neutralino GeV, mu], each
        from one member drawn uniformly (see the module docstring for the seeds); ``calibrated``:
        apply the mixture's :attr:`calibration` (if any) after the members' own.

        Returns:
            :class:`EventImages` with ``(N, C, H, W)`` float32 GeV images, rows in the order of
            ``conditions``.
        """
        conditions = np.asarray(conditions, np.float32).reshape(-1, 3)
        who = np.random.default_rng(int(seed)).integers(0, len(self.members), len(conditions))
        images = np.zeros((len(conditions), *self.preprocessor.image_shape), np.float32)
        for k, m in enumerate(self.members):
            idx = np.flatnonzero(who == k)
            if idx.size:
                images[idx] = m.sample(conditions[idx], seed=int(seed) + _MEMBER_SEED_STRIDE * (k + 1),
                                       batch_size=batch_size, path=path).images
        cal = self.calibration if calibrated else None
        if cal is not None:
            images = cal(images)
        families = ",".join(self.model.hparams["members"])
        attrs = {"generator": f"hepgen ensemble of {len(self.members)} ({families})",
                 "eta_max": float(self.meta.get("eta_max", 2.5)), "seed": int(seed)}
        if path != "fp32":
            attrs["sampling_path"] = path
        if cal is not None:
            attrs["calibration"] = "pixel quantile map"
        return EventImages(images, conditions, None, np.full(len(images), PROCESSES.index("generated"), np.int8),
                           attrs)

    def sample_like(self, data: EventImages, seed: int = 0, path: str = "fp32", calibrated: bool = True) -> EventImages:
        """A generated sample at ``data``'s conditions (one image per event)."""
        return self.sample(data.conditions, seed=seed, path=path, calibrated=calibrated)

    def payload(self, trainer_state: dict | None = None) -> dict:
        # the checkpoint format's required keys: "model" is empty (the weights are the members'),
        # "preprocessing" member 0's (the members agree on the geometry, checked in __init__)
        return {"kind": KIND, "family": ENSEMBLE_FAMILY, "hparams": dict(self.model.hparams), "model": {},
                "preprocessing": self.preprocessor.state_dict(), "members": [m.payload() for m in self.members],
                "meta": dict(self.meta), "trainer": trainer_state,
                "calibration": None if self.calibration is None else self.calibration.state_dict()}

    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        """Write one checkpoint (atomically) holding every member's weights and preprocessing."""
        save_checkpoint(path, self.payload(trainer_state))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> EventEnsemble:
        check_kind(payload.get("kind"), KIND, source)
        members = payload.get("members")
        if not isinstance(members, list) or not members:
            raise ValueError(f"{source}: key 'members': expected a non-empty list of member checkpoints, "
                             f"found {type(members).__name__}")
        cal = payload.get("calibration")
        return cls([EventGenerator.from_payload(m, f"{source} (member {i})") for i, m in enumerate(members)],
                   payload.get("meta"), None if cal is None else PixelQuantileMap.from_state(cal, source))

    @classmethod
    def from_checkpoints(cls, paths: list[str | os.PathLike]) -> EventEnsemble:
        """The mixture of the generators saved in ``paths`` (``best.pt`` of separate trainings)."""
        gens = []
        for p in paths:
            payload = load_checkpoint(p)
            if payload.get("family") == ENSEMBLE_FAMILY:
                raise ValueError(f"{p}: key 'family': expected a single generator, found an ensemble")
            gens.append(EventGenerator.from_payload(payload, str(p)))
        return cls(gens)


def select_members(n: int, score: Callable[[Sequence[int]], float]) -> tuple[list[int], list[tuple[list[int], float]]]:
    """Greedy forward selection of ensemble members (Caruana et al., "Ensemble selection from
    libraries of models", ICML 2004), without replacement: start from the member with the lowest
    ``score([k])``, then repeatedly add the member whose addition lowers ``score`` of the mixture
    most; stop when no addition lowers it.  ``score`` sees member indices (0 … n − 1) and is
    computed on validation data only (e.g. the KS selection score of the equal-weight mixture).

    Returns the chosen indices in the order chosen and the history [(members, score)] of every
    evaluation.

    Members with errors 0.6, −0.4, 3.0, 0.2 and a mixture's error their mean: the best single is
    member 3 (0.2); adding 0, 1, 2 gives 0.4, 0.1, 1.6, so 1 joins (0.1); adding 0 or 2 then gives
    0.13 and 0.93, neither lower, so the selection stops after 4 + 3 + 2 evaluations:

    >>> bias = [0.6, -0.4, 3.0, 0.2]
    >>> chosen, hist = select_members(4, lambda ks: abs(sum(bias[k] for k in ks) / len(ks)))
    >>> chosen, len(hist), round(hist[-1][1], 2)
    ([3, 1], 9, 0.93)
    """
    if n < 1:
        raise ValueError(f"select_members: expected at least one member, found {n}")
    history: list[tuple[list[int], float]] = []

    def ev(ks: list[int]) -> float:
        v = float(score(ks))
        history.append((list(ks), v))
        return v

    singles = [ev([k]) for k in range(n)]
    chosen, best = [int(np.argmin(singles))], float(np.min(singles))
    while len(chosen) < n:
        cand = [(ev(chosen + [k]), k) for k in range(n) if k not in chosen]
        v, k = min(cand)
        if v >= best:
            break
        chosen, best = chosen + [k], v
    return chosen, history
