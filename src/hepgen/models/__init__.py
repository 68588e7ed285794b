"""Generative model families behind one interface (see :mod:`hepgen.models.base`)."""

from hepgen.models.base import MODEL_FAMILIES, GenerativeModel, build_model, register
from hepgen.models.flow import ConditionalFlow

__all__ = ["GenerativeModel", "ConditionalFlow", "MODEL_FAMILIES", "build_model", "register"]
