"""What the trainer needs to know about a kind of data: showers or jets.

:func:`hepgen.train.trainer.train` is one loop for every model family and every kind of
data; the data-specific steps — checking the input, fitting the preprocessing, building the
model with data-derived hyper-parameters, turning a sample into model tensors, wrapping the
model for saving and sampling, and the physics metric used to select checkpoints — live in a
*domain* object chosen from the data's type by :func:`domain_for`.
"""

from __future__ import annotations

import numpy as np

from hepgen.config import TrainConfig
from hepgen.data.formats import ShowerData
from hepgen.data.jets import JetData

__all__ = ["JetDomain", "ShowerDomain", "domain_for", "generator_from_payload", "jet_physics_score"]


def _check_kind(config: TrainConfig, kind: str) -> None:
    from hepgen.models import MODEL_FAMILIES

    cls = MODEL_FAMILIES.get(config.family)
    if cls is not None and cls.data_kind != kind:
        fams = sorted(f for f, c in MODEL_FAMILIES.items() if c.data_kind == kind)
        raise ValueError(f"TrainConfig: key 'family': {config.family!r} generates {cls.data_kind}, the data are "
                         f"{kind}; families for {kind}: {fams}")


class ShowerDomain:
    """Calorimeter showers (:class:`~hepgen.data.formats.ShowerData`)."""

    kind = "showers"

    def check(self, data: ShowerData, config: TrainConfig) -> None:
        _check_kind(config, self.kind)
        if data.geometry is None:
            raise ValueError("training data has no geometry: pass a binning XML / geometry JSON")
        if len(data) < 2:
            raise ValueError(f"need at least 2 training showers, found {len(data)}")

    def fit_preprocessor(self, train_data: ShowerData, config: TrainConfig):
        from hepgen.data.transforms import ShowerPreprocessor
        from hepgen.train.trainer import layer_sizes

        return ShowerPreprocessor(
            layer_sizes(train_data.geometry), config.conditions, noise_level=config.noise_level,
            threshold=config.threshold,
        ).fit(train_data.showers, train_data.incident_energies, train_data.conditions, seed=config.seed)

    def preprocessor_from_state(self, state: dict):
        from hepgen.data.transforms import ShowerPreprocessor

        return ShowerPreprocessor.from_state(state)

    def build_model(self, config: TrainConfig, data: ShowerData, pre):
        from hepgen.models import build_model
        from hepgen.train.trainer import model_hparams

        n_cond = 1 + sum(np.asarray(data.conditions[k]).reshape(len(data), -1).shape[1] for k in config.conditions)
        return build_model(config.family, n_features=pre.n_features, n_conditions=n_cond,
                           **model_hparams(config, data.geometry))

    def meta(self, data: ShowerData, config: TrainConfig) -> dict:
        e_inc = data.incident_energies.reshape(-1)
        return {
            "energy_range": [float(e_inc.min()), float(e_inc.max())],
            "condition_ranges": {
                k: [np.asarray(v).min(axis=0).tolist(), np.asarray(v).max(axis=0).tolist()]
                for k, v in data.conditions.items() if k in config.conditions
            },
        }

    def generator(self, model, pre, data: ShowerData, meta: dict):
        from hepgen.pipeline import ShowerGenerator

        return ShowerGenerator(model, pre, data.geometry, meta)

    def from_payload(self, payload: dict, source: str):
        from hepgen.pipeline import ShowerGenerator

        return ShowerGenerator.from_payload(payload, source=source)

    def features(self, pre, data: ShowerData, rng: np.random.Generator) -> np.ndarray:
        return pre.transform(data.showers, data.incident_energies, rng)

    def conditions(self, pre, data: ShowerData) -> np.ndarray:
        return pre.transform_conditions(data.incident_energies, data.conditions)

    def physics_score(self, generator, data: ShowerData, seed: int) -> float:
        from hepgen.train.trainer import physics_score

        return physics_score(generator, data, seed=seed)


def jet_physics_score(generator, real: JetData, seed: int = 0) -> float:
    """Checkpoint-selection metric for jets (lower is better, 0 = identical samples).

    Jets are generated at ``real``'s types, kinematics and multiplicities; the score is the
    mean of the 1-Wasserstein distances of the relative jet mass and of the three particle
    features (over real particles), each divided by the reference's standard deviation so
    the four terms weigh alike.  Cheap (no EFPs, no N-subjettiness): it runs every
    ``eval_every`` epochs.  The full JetNet metrics are :func:`hepgen.evaluate_jets.evaluate_jets`.
    """
    from scipy.stats import wasserstein_distance

    from hepgen.metrics.jets import jet_mass

    fake = generator.sample_like(real, seed=seed)
    terms = []
    a, b = jet_mass(real.particle_features), jet_mass(fake.particle_features)
    terms.append(wasserstein_distance(a, b) / (a.std() or 1.0))
    ma, mb = real.mask, fake.mask
    for k in range(3):
        a, b = real.particles[..., k][ma], fake.particles[..., k][mb]
        terms.append(wasserstein_distance(a, b) / (a.std() or 1.0))
    return float(np.mean(terms))


class JetDomain:
    """Jets as particle clouds (:class:`~hepgen.data.jets.JetData`)."""

    kind = "jets"

    def check(self, data: JetData, config: TrainConfig) -> None:
        _check_kind(config, self.kind)
        if len(data) < 2:
            raise ValueError(f"need at least 2 training jets, found {len(data)}")

    def fit_preprocessor(self, train_data: JetData, config: TrainConfig):
        from hepgen.data.jet_transforms import JetPreprocessor

        conds = config.conditions or ["type", "pt", "eta"]
        return JetPreprocessor(train_data.n_particles, conds).fit(train_data)

    def preprocessor_from_state(self, state: dict):
        from hepgen.data.jet_transforms import JetPreprocessor

        return JetPreprocessor.from_state(state)

    def build_model(self, config: TrainConfig, data: JetData, pre):
        from hepgen.models import build_model
        from hepgen.train.trainer import with_derived_hparams

        hparams = with_derived_hparams(config, {"n_particles": pre.n_particles})
        return build_model(config.family, n_features=pre.n_features, n_conditions=pre.n_conditions, **hparams)

    def meta(self, data: JetData, config: TrainConfig) -> dict:
        out: dict = {"jet_types": [t for t in data.types_present if t != "unknown"],
                     "n_particles": data.n_particles}
        if data.jet_features is not None:
            out["pt_range"] = [float(data.jet_features[:, 0].min()), float(data.jet_features[:, 0].max())]
            out["eta_range"] = [float(data.jet_features[:, 1].min()), float(data.jet_features[:, 1].max())]
        return out

    def generator(self, model, pre, data: JetData, meta: dict):
        from hepgen.jet_pipeline import JetGenerator

        return JetGenerator(model, pre, meta)

    def from_payload(self, payload: dict, source: str):
        from hepgen.jet_pipeline import JetGenerator

        return JetGenerator.from_payload(payload, source=source)

    def features(self, pre, data: JetData, rng: np.random.Generator) -> np.ndarray:
        return pre.transform(data, rng)

    def conditions(self, pre, data: JetData) -> np.ndarray:
        return pre.conditions_of(data)

    def physics_score(self, generator, data: JetData, seed: int) -> float:
        return jet_physics_score(generator, data, seed=seed)


def domain_for(data) -> ShowerDomain | JetDomain:
    """The domain of a training sample: :class:`ShowerDomain` or :class:`JetDomain`."""
    if isinstance(data, JetData):
        return JetDomain()
    if isinstance(data, ShowerData):
        return ShowerDomain()
    raise TypeError(f"train: expected ShowerData or JetData, found {type(data).__name__}")


def generator_from_payload(payload: dict, source: str = "<checkpoint>"):
    """A :class:`~hepgen.pipeline.ShowerGenerator` or :class:`~hepgen.jet_pipeline.JetGenerator`
    for a loaded checkpoint, by its ``kind``."""
    domain = JetDomain() if payload.get("kind") == "jets" else ShowerDomain()
    return domain.from_payload(payload, source)
