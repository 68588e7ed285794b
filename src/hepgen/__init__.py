"""hepgen: deep generative surrogates for particle-physics simulation.

Train a conditional generative model on calorimeter showers (from Geant4, the
CaloChallenge, or hepgen's built-in reference simulator), jets and other kinds of data,
sample new events and validate them with physics observables and statistical tests.

The Python API (:mod:`hepgen.api`) is available from here: ``hepgen.simulate_showers``,
``hepgen.read``, ``hepgen.write``, ``hepgen.train_generator``, ``hepgen.load_generator``,
``hepgen.sample``, ``hepgen.evaluate``, ``hepgen.simulate_jets``, ``hepgen.TrainConfig``,
``hepgen.preset``.  They are imported on first use (PEP 562 module ``__getattr__``), so
``import hepgen`` stays instant (no torch, no matplotlib) and changes no global state.

>>> import hepgen
>>> hepgen.evaluate.__module__
'hepgen.api'
>>> hepgen.no_such_name
Traceback (most recent call last):
    ...
AttributeError: module 'hepgen' has no attribute 'no_such_name'
"""

import importlib

from hepgen._version import __version__

_API = ("TrainConfig", "evaluate", "load_generator", "preset", "read", "sample", "simulate_jets", "simulate_showers",
        "train_generator", "write")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported from :mod:`hepgen.api` the first time one is used (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module("hepgen.api"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'hepgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
