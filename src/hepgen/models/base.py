"""The interface every generative model family implements.

A model works in the *preprocessed* feature space (see
:class:`hepgen.data.transforms.ShowerPreprocessor`): it never sees MeV, files or
geometries, so one model class serves showers, jets or tabular data alike.  The
conversion to physical showers is done by :class:`hepgen.pipeline.ShowerGenerator`.

A family subclasses :class:`GenerativeModel`, registers itself with
:func:`register`, and implements

* ``loss(x, c)`` — the scalar training loss on a batch (features ``x: (B, D)``,
  conditions ``c: (B, C)``); adversarial families override ``training_step`` instead;
* ``sample(c, generator)`` — one sample per row of ``c``: ``(B, D)``;
* ``log_prob(x, c)`` — exact log-density ``(B,)`` where the family has one.

Constructor arguments must be JSON-able (``hparams``) so that a checkpoint can rebuild
the model with ``build_model(family, **hparams)`` without unpickling code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

__all__ = ["GenerativeModel", "register", "build_model", "MODEL_FAMILIES"]

MODEL_FAMILIES: dict[str, type["GenerativeModel"]] = {}


def register(cls: type["GenerativeModel"]) -> type["GenerativeModel"]:
    """Class decorator: make a family available to ``build_model`` under ``cls.family``."""
    MODEL_FAMILIES[cls.family] = cls
    return cls


def build_model(family: str, **hparams) -> "GenerativeModel":
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[family](**hparams)


class GenerativeModel(nn.Module):
    """Base class of conditional generative models on ``(B, n_features)`` tensors.

    Arguments:
        n_features: dimension D of the preprocessed data.
        n_conditions: dimension C of the preprocessed conditions.
    """

    family: ClassVar[str] = "base"
    has_log_prob: ClassVar[bool] = False

    def __init__(self, n_features: int, n_conditions: int) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_conditions = int(n_conditions)
        self.hparams: dict = {"n_features": self.n_features, "n_conditions": self.n_conditions}

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"model family {self.family!r} has no exact log-likelihood")
