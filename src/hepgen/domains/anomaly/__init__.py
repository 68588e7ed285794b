"""Trigger-level events (kind ``"l1"``): anomaly detection with auto-encoders.

The data are :class:`hepgen.data.l1.L1Events` (the ADC2021 layout, 19 objects × (pT, η, φ));
the models are :class:`hepgen.models.anomaly.DenseAutoencoder` (``l1_ae``) and
:class:`~hepgen.models.anomaly.DenseVAE` (``l1_vae``), trained on background only; the
scaling is :class:`~hepgen.domains.anomaly.preprocessing.L1Scaler`; the scores are in
:mod:`~hepgen.domains.anomaly.scores`, the figures of merit and the report in
:mod:`~hepgen.domains.anomaly.evaluate`, quantisation and ONNX in
:mod:`~hepgen.domains.anomaly.deploy`.  See ``docs/anomaly.md``.

Unlike the other kinds, "evaluate" here compares a background file with signal files
through a trained detector, not a generated sample with a real one:
``evaluate_files(background, signals, out_dir, checkpoint=...)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.l1 import KIND, N_FEATURES, L1Events, is_l1_file, read_l1, write_l1
from hepgen.domains.anomaly.evaluate import evaluate_detector
from hepgen.domains.anomaly.generator import L1Detector
from hepgen.domains.anomaly.preprocessing import L1Scaler
from hepgen.domains.base import register_domain
from hepgen.models import MODEL_FAMILIES, build_model, check_family_kind

__all__ = ["DOMAIN", "L1Detector", "L1Domain", "L1Scaler", "evaluate_anomaly", "load_detector"]


def load_detector(path: str | os.PathLike) -> L1Detector:
    """Load an ``l1`` checkpoint (another kind is a ``ValueError``)."""
    return L1Detector.from_payload(load_checkpoint(path), str(path))


def evaluate_anomaly(checkpoint: str | os.PathLike, background: str | os.PathLike, signals, out_dir,
                     **options) -> dict:
    """``hepgen evaluate-anomaly``: score a background file and signal files, write the report.

    Arguments:
        checkpoint: an ``l1`` checkpoint (``best.pt`` of ``hepgen train``).
        background: an L1 events file (all its events are background).
        signals: a list of L1 files, or one file; every process in them is one signal.
        out_dir: gets ``metrics.json`` and ``report.html``.
        options: passed to :func:`hepgen.domains.anomaly.evaluate.evaluate_detector`.
    """
    det = load_detector(checkpoint)
    bkg = read_l1(background)
    sig: dict[str, L1Events] = {}
    for path in [signals] if isinstance(signals, (str, os.PathLike)) else list(signals):
        data = read_l1(path)
        for name in data.processes:
            part = data.of_process(name)
            if len(part):
                sig[name if name not in sig else f"{name}@{Path(path).name}"] = part
    return evaluate_detector(det, bkg, sig, out_dir, **options)


class L1Domain:
    """The ``l1`` kind: see the package docstring; the protocol is :class:`hepgen.domains.base.Domain`."""

    kind = KIND
    data_type = L1Events
    default_family = "l1_vae"
    default_conditions: ClassVar[list] = []

    def accepts_file(self, path: str | os.PathLike) -> bool:
        return is_l1_file(path)

    def read(self, path: str | os.PathLike) -> L1Events:
        return read_l1(path)

    def write(self, path: str | os.PathLike, data: L1Events) -> None:
        write_l1(path, data)

    def check(self, data: L1Events, config) -> None:
        if config.family not in MODEL_FAMILIES:
            raise ValueError(f"TrainConfig: key 'family': unknown model family {config.family!r}")
        check_family_kind(config.family, KIND)
        if len(data) < 2:
            raise ValueError(f"need at least 2 training events, found {len(data)}")
        if getattr(config, "conditions", None):
            raise ValueError(f"TrainConfig: key 'conditions': the l1 models are unconditional, found "
                             f"{config.conditions!r}")

    def fit_preprocessor(self, data: L1Events, config) -> L1Scaler:
        return L1Scaler().fit(data.objects)

    def preprocessor_from_state(self, state: dict) -> L1Scaler:
        return L1Scaler.from_state(state)

    def build_model(self, config, data: L1Events, pre: L1Scaler):
        hp = {k: v for k, v in dict(config.model).items() if v is not None}
        return build_model(config.family, n_features=N_FEATURES, n_conditions=0, **hp)

    def meta(self, data: L1Events, config) -> dict:
        counts = np.bincount(data.process, minlength=len(data.processes))
        return {"n_events": len(data), "processes": {n: int(c) for n, c in zip(data.processes, counts)},
                "objects_per_event": float(data.mask.sum(axis=1).mean()) if len(data) else 0.0}

    def features(self, pre: L1Scaler, data: L1Events, rng) -> np.ndarray:
        return pre.transform(data.objects)

    def conditions(self, pre: L1Scaler, data: L1Events) -> np.ndarray:
        return np.zeros((len(data), 0), dtype=np.float32)

    def generator(self, model, pre: L1Scaler, data: L1Events, meta: dict) -> L1Detector:
        return L1Detector(model, pre, meta)

    def from_payload(self, payload: dict, source: str) -> L1Detector:
        return L1Detector.from_payload(payload, source)

    def selection_score(self, generator: L1Detector, data: L1Events, seed: int) -> float:
        """Mean reconstruction MSE of the (background) validation events: lower is better.

        An anomaly detector is not a sampler, so "distance of a generated sample to the real
        one" has no meaning here; the selection picks the checkpoint that reconstructs
        held-out background best (for the VAE, its decoder at z = μ).
        """
        return float(np.mean(generator.scores(data)["mse"]))

    def evaluate_files(self, real: str | os.PathLike, generated: str | os.PathLike, out_dir: str | os.PathLike,
                       checkpoint: str | os.PathLike | None = None, **options) -> dict:
        """``real`` = background file, ``generated`` = signal file(s); needs ``checkpoint``."""
        if checkpoint is None:
            raise ValueError("l1 files are evaluated against a trained detector: hepgen evaluate-anomaly CHECKPOINT "
                             "BACKGROUND.h5 SIGNALS.h5 -o DIR")
        return evaluate_anomaly(checkpoint, real, generated, out_dir, **options)

    def default_config(self) -> TrainConfig:
        """The dense VAE, unconditional (trained on background only)."""
        return TrainConfig(family=self.default_family)

    def headline(self, metrics: dict) -> dict:
        """Per score: the AUC of every signal."""
        return {s: {sig: r["auc"] for sig, r in e["signals"].items()} for s, e in metrics["scores"].items()}


DOMAIN = register_domain(L1Domain())
