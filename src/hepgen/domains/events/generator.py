"""A trained event-image model with its preprocessing: sampling in GeV, saving, loading."""

from __future__ import annotations

import os

import numpy as np
import torch

from hepgen.checkpoint import save_checkpoint
from hepgen.data.events import KIND, PROCESSES, EventImages
from hepgen.domains.base import check_kind
from hepgen.domains.events.calibration import PixelQuantileMap
from hepgen.domains.events.inference import EVENT_SAMPLING_PATHS, EventSampler, prepare_event_path
from hepgen.domains.events.preprocessing import EventPreprocessor
from hepgen.models import build_model

__all__ = ["EventGenerator"]


class EventGenerator:
    """Model + :class:`EventPreprocessor` + meta; samples :class:`~hepgen.data.events.EventImages`.

    Arguments:
        model: a :class:`hepgen.models.GenerativeModel` of ``data_kind = "events"``.
        preprocessor: the fitted :class:`EventPreprocessor`.
        meta: JSON-able training facts (image shape, eta_max, condition ranges, …).
        calibration: an optional :class:`~hepgen.domains.events.calibration.PixelQuantileMap`
            applied to every sample (``hepgen calibrate``); ``None``: the network's images as they are.
    """

    kind = KIND

    def __init__(self, model, preprocessor: EventPreprocessor, meta: dict | None = None,
                 calibration: PixelQuantileMap | None = None) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.meta = dict(meta or {})
        self.calibration = calibration

    @torch.no_grad()
    def sample(self, conditions: np.ndarray, seed: int = 0, batch_size: int = 256, path: str = "fp32",
               module: torch.nn.Module | None = None, calibrated: bool = True) -> EventImages:
        """Images at physical ``conditions`` ``(N, 3)`` [m_gluino, m_neutralino, mu].

        Arguments:
            conditions: ``(N, 3)`` GeV, GeV, —.
            seed: seeds the noise: batch ``i`` (starting at row ``i``) draws ``(B, noise_dim)``
                standard normals from ``torch.Generator().manual_seed(seed + i)``, the same
                noise for every path.
            batch_size: images per network call (256 or 512 were the fastest here; see
                ``docs/events.md``).
            path: a sampling path of :data:`~hepgen.domains.events.inference.EVENT_SAMPLING_PATHS`
                (``fp32``, ``channels_last``, ``bf16``, ``compile``, ``bf16-compile``).
            module: ``prepare_event_path(self.sampler(), path)`` built (and for the compiled
                paths already called) by the caller, to reuse it across calls.
            calibrated: apply :attr:`calibration` (if any); ``False``: the network's images.

        Returns:
            :class:`EventImages` with ``(N, C, H, W)`` float32 GeV images.
        """
        if path not in EVENT_SAMPLING_PATHS:
            raise ValueError(f"sampling path: expected one of {EVENT_SAMPLING_PATHS}, found {path!r}")
        conditions = np.asarray(conditions, np.float32).reshape(-1, 3)
        c = torch.from_numpy(self.preprocessor.transform_conditions(conditions))
        g = torch.Generator().manual_seed(int(seed))
        self.model.eval()
        dev = next(self.model.parameters()).device
        if getattr(self.model, "noise_dim", None) is None:  # no noise map: the model's own sampler, fp32
            if path != "fp32":
                raise ValueError(f"sampling path {path!r}: family {self.model.family!r} has no noise map; use fp32")
            parts = [self.model.sample(c[i:i + batch_size].to(dev), g.manual_seed(int(seed) + i)).cpu().numpy()
                     for i in range(0, len(c), batch_size)]
            x = np.concatenate(parts) if parts else np.zeros((0, self.preprocessor.n_features), np.float32)
            images = self.preprocessor.inverse(x)
        else:
            module = prepare_event_path(self.sampler(), path) if module is None else module
            images = np.empty((len(c), *self.preprocessor.image_shape), np.float32)
            for i in range(0, len(c), batch_size):
                ci = c[i:i + batch_size].to(dev)
                # the noise of model.sample: one draw per batch from the re-seeded generator
                z = torch.randn(len(ci), self.model.noise_dim, generator=g.manual_seed(int(seed) + i)).to(dev)
                images[i:i + batch_size] = module(ci, z).cpu().numpy()
        cal = self.calibration if calibrated else None
        if cal is not None:
            images = cal(images)
        attrs = {"generator": f"hepgen {self.model.family}", "eta_max": float(self.meta.get("eta_max", 2.5)),
                 "seed": int(seed)}
        if path != "fp32":
            attrs["sampling_path"] = path
        if cal is not None:
            attrs["calibration"] = "pixel quantile map"
        return EventImages(images, conditions, None, np.full(len(images), PROCESSES.index("generated"), np.int8),
                           attrs)

    def sampler(self) -> EventSampler:
        """The float32 :class:`~hepgen.domains.events.inference.EventSampler` of this generator."""
        return EventSampler(self.model, self.preprocessor)

    def sample_like(self, data: EventImages, seed: int = 0, path: str = "fp32", calibrated: bool = True) -> EventImages:
        """A generated sample at ``data``'s conditions (one image per event)."""
        return self.sample(data.conditions, seed=seed, path=path, calibrated=calibrated)

    def payload(self, trainer_state: dict | None = None) -> dict:
        return {"kind": KIND, "family": self.model.family, "hparams": dict(self.model.hparams),
                "model": self.model.state_dict(), "preprocessing": self.preprocessor.state_dict(),
                "meta": dict(self.meta), "trainer": trainer_state,
                "calibration": None if self.calibration is None else self.calibration.state_dict()}

    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        """Write a weights-only checkpoint (atomically) with ``kind = "events"``."""
        save_checkpoint(path, self.payload(trainer_state))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> EventGenerator:
        check_kind(payload.get("kind"), KIND, source)
        model = build_model(payload["family"], **payload["hparams"])
        model.load_state_dict(payload["model"])
        model.eval()
        cal = payload.get("calibration")
        return cls(model, EventPreprocessor.from_state(payload["preprocessing"]), payload.get("meta") or {},
                   None if cal is None else PixelQuantileMap.from_state(cal, source))
