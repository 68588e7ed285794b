"""A trained shower generator: model + preprocessing + geometry, saved and loaded together."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch
from tqdm.auto import tqdm

from hepgen import __version__
from hepgen.data.geometry import Geometry, geometry_from_dict
from hepgen.data.transforms import ShowerPreprocessor
from hepgen.models import GenerativeModel, build_model
from hepgen.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["ShowerGenerator"]


class ShowerGenerator:
    """Samples showers in MeV from a trained conditional model.

    Arguments:
        model: a trained :class:`~hepgen.models.GenerativeModel` on preprocessed features.
        preprocessor: the fitted :class:`~hepgen.data.transforms.ShowerPreprocessor`.
        geometry: the voxel geometry of the training data.
        meta: JSON-able facts about training (energy range, condition ranges, config).
    """

    def __init__(self, model: GenerativeModel, preprocessor: ShowerPreprocessor, geometry: Geometry, meta=None):
        self.model = model
        self.preprocessor = preprocessor
        self.geometry = geometry
        self.meta = dict(meta or {})

    @property
    def condition_names(self) -> list[str]:
        return list(self.preprocessor.condition_names)

    @torch.no_grad()
    def sample(
        self,
        incident_energies: np.ndarray,
        conditions: dict | None = None,
        seed: int = 0,
        batch_size: int = 1_000,
        progress: bool = False,
    ) -> np.ndarray:
        """(N,) or (N, 1) incident energies in MeV → (N, n_voxels) float32 showers in MeV."""
        e = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
        if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
            raise ValueError("incident energies must be finite and > 0 MeV")
        c = self.preprocessor.transform_conditions(e, conditions)
        gen = torch.Generator().manual_seed(int(seed))
        self.model.eval()
        out = np.empty((len(e), self.preprocessor.n_voxels), dtype=np.float32)
        starts = range(0, len(e), batch_size)
        for s in tqdm(starts, desc="sampling", unit="batch", disable=not progress):
            ct = torch.from_numpy(c[s : s + batch_size])
            x = self.model.sample(ct, generator=gen).numpy()
            out[s : s + batch_size] = self.preprocessor.inverse(x, e[s : s + batch_size])
        return out

    def save(self, path: Union[str, os.PathLike], trainer_state: dict | None = None) -> None:
        save_checkpoint(
            path,
            {
                "hepgen_version": __version__,
                "family": self.model.family,
                "hparams": self.model.hparams,
                "model": self.model.state_dict(),
                "preprocessing": self.preprocessor.state_dict(),
                "geometry": self.geometry.to_dict(),
                "meta": self.meta,
                "trainer": trainer_state,
            },
        )

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "ShowerGenerator":
        payload = load_checkpoint(path)
        return cls.from_payload(payload, source=str(path))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> "ShowerGenerator":
        try:
            model = build_model(payload["family"], **payload["hparams"])
            model.load_state_dict(payload["model"])
            pre = ShowerPreprocessor.from_state(payload["preprocessing"])
            geometry = geometry_from_dict(payload["geometry"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"{source}: inconsistent checkpoint ({type(err).__name__}: {err})") from None
        model.eval()
        return cls(model, pre, geometry, payload.get("meta"))
