"""The ``events`` kind of data: whole collision events as calorimeter images.

Container :class:`hepgen.data.events.EventImages` (``(N, C, 64, 64)`` GeV images with
``[m_gluino, m_neutralino, mu]`` conditions), preprocessing :class:`EventPreprocessor` (log
scaling to [0, 1]), model families of ``data_kind = "events"`` (``dcgan``,
``dcgan_wgan_gp``, ``events_fm``), checkpoint selection by the paper's Σ −log p of KS tests on jet
multiplicity, jet pT and summed jet mass, and evaluation with a self-contained report.

Example:
    >>> DOMAIN.kind, DOMAIN.default_family, DOMAIN.default_conditions
    ('events', 'dcgan', ['m_gluino', 'm_neutralino'])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from hepgen._io import write_metrics
from hepgen.config import TrainConfig
from hepgen.data.events import PROCESSES, EventImages, is_event_file, read_events, write_events
from hepgen.domains.base import register_domain
from hepgen.domains.events.calibration import PixelQuantileMap
from hepgen.domains.events.ensemble import ENSEMBLE_FAMILY, EventEnsemble
from hepgen.domains.events.evaluate import evaluate_events, overlay_shift
from hepgen.domains.events.generator import EventGenerator
from hepgen.domains.events.preprocessing import EventPreprocessor
from hepgen.domains.events.report import figures, write_event_report
from hepgen.metrics.event_jets import (
    PILEUP_SELECTION_OBSERVABLES,
    SELECTION_OBSERVABLES,
    event_observables,
    ks_selection_score,
)
from hepgen.models import MODEL_FAMILIES, build_model, check_family_kind

__all__ = ["DOMAIN", "EventDomain", "EventEnsemble", "EventGenerator", "EventPreprocessor", "PixelQuantileMap",
           "evaluate_events", "overlay_shift"]


class EventDomain:
    """What the trainer, the CLI and evaluation need for event images (see :mod:`hepgen.domains.base`)."""

    kind = "events"
    data_type = EventImages
    default_family = "dcgan"
    default_conditions: ClassVar[list] = ["m_gluino", "m_neutralino"]

    def accepts_file(self, path: str | os.PathLike) -> bool:
        return is_event_file(path)

    def read(self, path: str | os.PathLike) -> EventImages:
        return read_events(path)

    def write(self, path: str | os.PathLike, data: EventImages) -> None:
        write_events(path, data)

    def check(self, data: EventImages, config) -> None:
        if config.family not in MODEL_FAMILIES:
            raise ValueError(f"TrainConfig: key 'family': unknown model family {config.family!r}; "
                             f"known: {sorted(MODEL_FAMILIES)}")
        check_family_kind(config.family, self.kind)
        if len(data) < 2:
            raise ValueError(f"need at least 2 training events, found {len(data)}")

    def fit_preprocessor(self, data: EventImages, config) -> EventPreprocessor:
        return EventPreprocessor(config.conditions or self.default_conditions).fit(data)

    def preprocessor_from_state(self, state: dict) -> EventPreprocessor:
        return EventPreprocessor.from_state(state)

    def build_model(self, config, data: EventImages, pre: EventPreprocessor):
        hparams = dict(config.model)
        if hparams.get("image_shape") is None:  # data-derived
            hparams["image_shape"] = list(pre.image_shape)
        if hparams.get("critic_energy") == "auto":  # the DCGAN critic's total-energy channel, data-derived
            hparams["critic_energy"] = pre.log_range
        if hparams.get("critic_et") == "auto":  # its transverse-energy channel: the rows' eta range
            hparams["critic_et"] = float(data.eta_max)
        return build_model(config.family, n_features=pre.n_features, n_conditions=pre.n_conditions, **hparams)

    def meta(self, data: EventImages, config) -> dict:
        points = np.unique(data.conditions, axis=0)
        return {"image_shape": list(data.shape), "eta_max": data.eta_max, "n_events": len(data),
                "condition_points": points.tolist(),
                "condition_ranges": [data.conditions.min(0).tolist(), data.conditions.max(0).tolist()]}

    def features(self, pre: EventPreprocessor, data: EventImages, rng: np.random.Generator) -> np.ndarray:
        return pre.transform(data.images)

    def conditions(self, pre: EventPreprocessor, data: EventImages) -> np.ndarray:
        return pre.transform_conditions(data.conditions)

    def generator(self, model, pre: EventPreprocessor, data: EventImages, meta: dict) -> EventGenerator:
        return EventGenerator(model, pre, meta)

    def from_payload(self, payload: dict, source: str) -> EventGenerator | EventEnsemble:
        """The generator of a checkpoint: one model, or an :class:`EventEnsemble` of several."""
        if payload.get("family") == ENSEMBLE_FAMILY:
            return EventEnsemble.from_payload(payload, source)
        return EventGenerator.from_payload(payload, source)

    def ensemble(self, generators: list, sources: list[str] | None = None) -> EventEnsemble:
        """Optional domain method (``hepgen ensemble``): the equal-weight mixture of ``generators``
        (:class:`EventGenerator` each; ``sources`` name them in errors)."""
        sources = list(sources) if sources is not None else [f"generator {i}" for i in range(len(generators))]
        if len(generators) < 2:
            raise ValueError(f"hepgen ensemble: expected two or more checkpoints, found {len(generators)}")
        for g, src in zip(generators, sources):
            if not isinstance(g, EventGenerator):
                raise ValueError(f"{src}: key 'family': expected a single generator, found an ensemble")
        return EventEnsemble(generators)

    def calibrate(self, generator: EventGenerator | EventEnsemble, reference: EventImages, seed: int = 0,
                  n_quantiles: int = 2000) -> PixelQuantileMap:
        """Optional domain method (``hepgen calibrate``): fit a
        :class:`~hepgen.domains.events.calibration.PixelQuantileMap` that sends ``generator``'s
        pixel energies onto ``reference``'s (the training images, ``(N, C, H, W)`` GeV), from a
        sample of as many events at ``reference``'s conditions (``seed``; the generator's own
        calibration, if any, left out), and attach it to ``generator`` (replacing any earlier one).

        Returns the map (its ``summary``: lit pixels and energy per image, reference / generated /
        calibrated); the summary is also written to ``generator.meta["calibration"]``.
        """
        if tuple(reference.shape) != tuple(generator.preprocessor.image_shape):
            raise ValueError(f"hepgen calibrate: key 'images': expected images of shape "
                             f"{tuple(generator.preprocessor.image_shape)} as the generator's, found {reference.shape}")
        fake = generator.sample_like(reference, seed=seed, calibrated=False)
        cal = PixelQuantileMap.fit(reference.images, fake.images, n_quantiles=n_quantiles)
        cal.summary["seed"] = int(seed)
        generator.calibration = cal
        generator.meta["calibration"] = dict(cal.summary)
        return cal

    def selection_score(self, generator: EventGenerator, data: EventImages, seed: int) -> float:
        """Σ −log p of KS tests on jet multiplicity, jet pT and summed jet mass (lower is better).

        For pure pile-up images (every event labelled ``pileup``), which rarely hold a 200 GeV
        jet, the KS tests on the total image energy and the sparsity are added: the jet terms
        alone would be 0 for any generator that makes no jets.
        """
        fake = generator.sample_like(data, seed=seed)
        return ks_selection_score(event_observables(data.images, data.eta_max),
                                  event_observables(fake.images, fake.eta_max), self.selection_keys(data))

    def selection_keys(self, data: EventImages) -> tuple[str, ...]:
        """The :func:`event_observables` keys whose KS tests :meth:`selection_score` sums for ``data``:
        the paper's three, and for pure pile-up images also the total energy and the sparsity."""
        if len(data) and (data.process == PROCESSES.index("pileup")).all():
            return SELECTION_OBSERVABLES + PILEUP_SELECTION_OBSERVABLES
        return SELECTION_OBSERVABLES


    def evaluate_files(self, real: str | os.PathLike, generated: str | os.PathLike, out_dir: str | os.PathLike,
                       seed: int = 0, no_classifier: bool = False) -> dict:
        """``metrics.json`` + ``report.html`` in ``out_dir`` for a real and a generated event-image file."""
        r, g = read_events(real), read_events(generated)
        if r.shape != g.shape:
            raise ValueError(f"{generated}: key 'images': expected images of shape {r.shape} as in {real}, "
                             f"found {g.shape}")
        metrics, extras = evaluate_events(r, g, seed=seed, classifier=not no_classifier)
        metrics["real_file"], metrics["generated_file"] = str(real), str(generated)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_metrics(metrics, out_dir / "metrics.json")
        write_event_report(metrics, figures(r, g, extras, metrics), out_dir)
        return metrics

    def default_config(self) -> TrainConfig:
        """The paper's conditional DCGAN, conditioned on the two masses."""
        return TrainConfig(family=self.default_family, conditions=list(self.default_conditions))

    def headline(self, metrics: dict) -> dict:
        """The KS selection score beside its real-vs-real value, the classifier AUC and FPD."""
        return {k: metrics.get(k) for k in ("selection_score", "selection_score_floor", "classifier_auc", "fpd")}


DOMAIN = register_domain(EventDomain())
