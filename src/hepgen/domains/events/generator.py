"""A trained event-image model with its preprocessing: sampling in GeV, saving, loading."""

from __future__ import annotations

import os

import numpy as np
import torch

from hepgen.checkpoint import save_checkpoint
from hepgen.data.events import KIND, PROCESSES, EventImages
from hepgen.domains.base import check_kind
from hepgen.domains.events.preprocessing import EventPreprocessor
from hepgen.models import build_model

__all__ = ["EventGenerator"]


class EventGenerator:
    """Model + :class:`EventPreprocessor` + meta; samples :class:`~hepgen.data.events.EventImages`.

    Arguments:
        model: a :class:`hepgen.models.GenerativeModel` of ``data_kind = "events"``.
        preprocessor: the fitted :class:`EventPreprocessor`.
        meta: JSON-able training facts (image shape, eta_max, condition ranges, …).
    """

    kind = KIND

    def __init__(self, model, preprocessor: EventPreprocessor, meta: dict | None = None) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.meta = dict(meta or {})

    @torch.no_grad()
    def sample(self, conditions: np.ndarray, seed: int = 0, batch_size: int = 256) -> EventImages:
        """Images at physical ``conditions`` ``(N, 3)`` [m_gluino, m_neutralino, mu]."""
        conditions = np.asarray(conditions, np.float32).reshape(-1, 3)
        c = torch.from_numpy(self.preprocessor.transform_conditions(conditions))
        g = torch.Generator().manual_seed(int(seed))
        self.model.eval()
        dev = next(self.model.parameters()).device
        parts = [self.model.sample(c[i:i + batch_size].to(dev), g.manual_seed(int(seed) + i)).cpu().numpy()
                 for i in range(0, len(c), batch_size)]
        x = np.concatenate(parts) if parts else np.zeros((0, self.preprocessor.n_features), np.float32)
        attrs = {"generator": f"hepgen {self.model.family}", "eta_max": float(self.meta.get("eta_max", 2.5)),
                 "seed": int(seed)}
        return EventImages(self.preprocessor.inverse(x), conditions, None,
                           np.full(len(x), PROCESSES.index("generated"), np.int8), attrs)

    def sample_like(self, data: EventImages, seed: int = 0) -> EventImages:
        """A generated sample at ``data``'s conditions (one image per event)."""
        return self.sample(data.conditions, seed=seed)

    def payload(self, trainer_state: dict | None = None) -> dict:
        return {"kind": KIND, "family": self.model.family, "hparams": dict(self.model.hparams),
                "model": self.model.state_dict(), "preprocessing": self.preprocessor.state_dict(),
                "meta": dict(self.meta), "trainer": trainer_state}

    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        """Write a weights-only checkpoint (atomically) with ``kind = "events"``."""
        save_checkpoint(path, self.payload(trainer_state))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> EventGenerator:
        check_kind(payload.get("kind"), KIND, source)
        model = build_model(payload["family"], **payload["hparams"])
        model.load_state_dict(payload["model"])
        model.eval()
        return cls(model, EventPreprocessor.from_state(payload["preprocessing"]), payload.get("meta") or {})
