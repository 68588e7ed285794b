"""Typed configurations with YAML load/dump: the one home of hepgen's defaults."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from hepgen._io import atomic_path

__all__ = ["TrainConfig", "DemoConfig", "load_config", "dump_config"]


@dataclass
class TrainConfig:
    """How to train a model.

    Arguments:
        family: model family (see ``hepgen.models.MODEL_FAMILIES``).
        model: family hyper-parameters (constructor keyword arguments).
        conditions: extra condition datasets to condition on besides the incident energy.
        epochs: number of passes over the training set (the LR schedule spans them).
        max_minutes: stop after this much wall-clock training time (None: no limit).
        batch_size, lr, weight_decay, grad_clip: optimiser settings (AdamW, cosine LR).
        val_fraction: held-out fraction for the validation loss and best-checkpoint choice.
        seed: seeds the split, initialisation, dequantisation noise and batch order.
        threads: torch CPU threads (None: torch default).
    """

    family: str = "flow"
    model: dict[str, Any] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    epochs: int = 60
    max_minutes: float | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None
    noise_level: float = 1e-3
    threshold: float = 1e-2


@dataclass
class DemoConfig:
    """The ``hepgen demo`` job: simulate → train → sample → evaluate → report."""

    n_train: int = 60_000
    n_test: int = 10_000
    energy_range: tuple[float, float] = (1_000.0, 100_000.0)
    seed: int = 1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, max_minutes=8.0))


def _from_dict(cls, data: dict, source: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} keys {unknown}; known: {sorted(names)}")
    kwargs = dict(data)
    if cls is DemoConfig and isinstance(kwargs.get("train"), dict):
        kwargs["train"] = _from_dict(TrainConfig, kwargs["train"], source)
    if "energy_range" in kwargs:
        kwargs["energy_range"] = tuple(float(x) for x in kwargs["energy_range"])
    return cls(**kwargs)


def load_config(path: Union[str, os.PathLike], cls=TrainConfig):
    """Read a YAML file into ``cls``; unknown keys are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {cls.__name__} keys, found {type(data).__name__}")
    return _from_dict(cls, data, str(path))


def dump_config(config, path: Union[str, os.PathLike]) -> None:
    data = dataclasses.asdict(config)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False))
