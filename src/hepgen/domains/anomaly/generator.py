"""A trained anomaly detector: an L1 model with its input scaling, scores, save/load.

:class:`L1Detector` is the L1 domain's ``TrainedGenerator``: it wraps a
:class:`hepgen.models.anomaly.DenseAutoencoder` or :class:`~hepgen.models.anomaly.DenseVAE`
and the fitted :class:`~hepgen.domains.anomaly.preprocessing.L1Scaler`, and turns
:class:`hepgen.data.l1.L1Events` into the per-event scores of
:mod:`hepgen.domains.anomaly.scores`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from hepgen.checkpoint import save_checkpoint
from hepgen.data.l1 import KIND, L1Events
from hepgen.domains.anomaly.preprocessing import L1Scaler
from hepgen.domains.anomaly.scores import combined_score, kl_score, latent_norm_score, mse_score
from hepgen.domains.base import check_kind
from hepgen.models import build_model

__all__ = ["L1Detector"]


class L1Detector:
    """Model + scaling + scores.

    Arguments:
        model: an ``l1_ae`` or ``l1_vae`` model (``anomaly_outputs(x, c)``).
        preprocessor: the fitted :class:`L1Scaler`.
        meta: JSON-able facts (training sample, epoch, …).
    """

    kind = KIND

    def __init__(self, model, preprocessor: L1Scaler, meta: dict | None = None) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.meta = dict(meta or {})

    @torch.no_grad()
    def outputs(self, data: L1Events, batch_size: int = 8192) -> dict[str, np.ndarray | None]:
        """``{"x": (N, 57), "recon": (N, 57), "mu": (N, K), "logvar": (N, K) or None}`` (numpy)."""
        x = self.preprocessor.transform(data.objects)
        self.model.eval()
        parts: dict[str, list] = {"recon": [], "mu": [], "logvar": []}
        for i in range(0, len(x), int(batch_size)):
            xb = torch.from_numpy(x[i:i + int(batch_size)])
            out = self.model.anomaly_outputs(xb, xb.new_zeros(len(xb), 0))
            for k, acc in parts.items():
                if out[k] is not None:
                    acc.append(out[k].cpu().numpy())
        res: dict = {"x": x}
        for k, v in parts.items():
            res[k] = np.concatenate(v) if v else None
        return res

    def scores(self, data: L1Events, references: dict | None = None) -> dict[str, np.ndarray]:
        """Per-event scores ``(N,)``: ``mse``, ``mu2`` (latent-mean norm), ``kl`` (VAE only) and,
        if ``references`` (score name → positive number) is given, ``combined`` of those scores."""
        out = self.outputs(data)
        s = {"mse": mse_score(out["x"], out["recon"]), "mu2": latent_norm_score(out["mu"])}
        if out["logvar"] is not None:
            s["kl"] = kl_score(out["mu"], out["logvar"])
        if references:
            s["combined"] = combined_score(s, references)
        return s

    def sample_like(self, data: L1Events, seed: int = 0) -> L1Events:
        """As many events as ``data``: decoded prior draws for a VAE; reconstructions for an AE
        (it has no prior).  Process label ``"generated"``."""
        if getattr(self.model, "family", "") == "l1_vae":
            g = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                feats = self.model.sample(torch.zeros(len(data), 0), g).numpy()
        else:
            feats = self.outputs(data)["recon"]
        objs = self.preprocessor.inverse_transform(feats)
        return L1Events(objs, np.zeros(len(data), np.int16), ("generated",), {"kind_of_sample": self.model.family})

    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        """Write a weights-only checkpoint with ``kind = "l1"`` atomically."""
        save_checkpoint(path, {"kind": KIND, "family": self.model.family, "hparams": dict(self.model.hparams),
                               "model": self.model.state_dict(), "preprocessing": self.preprocessor.state_dict(),
                               "meta": dict(self.meta), "trainer": trainer_state})

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> L1Detector:
        """Rebuild from a loaded checkpoint payload; another kind is refused."""
        check_kind(payload.get("kind"), KIND, source)
        model = build_model(payload["family"], **payload["hparams"])
        model.load_state_dict(payload["model"])
        model.eval()
        return cls(model, L1Scaler.from_state(payload["preprocessing"]), payload.get("meta") or {})
