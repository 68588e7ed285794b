"""Optional extras: which packages each ``pip install 'hepgen[EXTRA]'`` brings, and the one-line
error when one is missing.

The core install (``pip install hepgen``) is what calorimeter showers need.  Everything else is
an extra (``pyproject.toml``, ``[project.optional-dependencies]``); a module that needs one imports
it where it is used (a documented lazy import: the layer rules allow it for optional extras only)
inside :func:`needs_extra`, so that ``import hepgen.cli`` and every shower command work without it
and a command that needs it stops with one line naming the extra and the pip command::

    with needs_extra("jets", "jet clustering (FastJet)"):
        import awkward as ak
        import fastjet

The message has the form of the older, per-extra ones (``hepgen.quantum``, the Geant4 engine):

>>> missing_extra_message("hepgen tune", "tune")
"hepgen tune needs the optional extra: pip install 'hepgen[tune]'"
>>> with needs_extra("tune", "hepgen tune"):
...     raise ModuleNotFoundError("No module named 'optuna'", name="optuna")  # as when it is not installed
Traceback (most recent call last):
    ...
hepgen._extras.MissingExtraError: hepgen tune needs the optional extra: pip install 'hepgen[tune]'
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

__all__ = ["EXTRAS", "MissingExtraError", "have", "missing_extra_message", "needs_extra", "require_extra"]

#: extra → the top-level modules it provides (import names, not pip names); mirrors pyproject.toml.
EXTRAS: dict[str, tuple[str, ...]] = {
    "jets": ("pythia8mc", "fastjet", "awkward", "energyflow", "wasserstein"),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "tune": ("optuna", "sqlalchemy"),
    "tensorboard": ("tensorboard",),
    "root": ("uproot",),
    "geant4": ("geant4_pybind",),
    "quantum": ("pennylane",),
    "anomaly": ("hls4ml",),
}


class MissingExtraError(ImportError):
    """An optional extra's package is not installed (the message names the extra and the pip command)."""


def missing_extra_message(what: str, extra: str) -> str:
    """``"<what> needs the optional extra: pip install 'hepgen[<extra>]'"``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
    return f"{what} needs the optional extra: pip install 'hepgen[{extra}]'"


def have(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it).

    >>> have("numpy"), have("no_such_module_anywhere")
    (True, False)
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless ``modules`` (default: all of ``extra``'s) are importable.

    For a check before work starts (e.g. before worker processes are spawned); nothing is imported.

    >>> require_extra("root", "ROOT output", modules=("json",))
    >>> require_extra("root", "ROOT output", modules=("no_such_module_anywhere",))
    Traceback (most recent call last):
        ...
    hepgen._extras.MissingExtraError: ROOT output needs the optional extra: pip install 'hepgen[root]'
    """
    message = missing_extra_message(what, extra)
    if not all(have(m) for m in (EXTRAS[extra] if modules is None else modules)):
        raise MissingExtraError(message)


@contextlib.contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Turn a failed import of ``extra``'s packages inside the block into :class:`MissingExtraError`.

    An ``ImportError`` about any other module (a broken installation, a missing module of hepgen's
    own) passes through unchanged, so that its real cause is not hidden behind the pip hint.
    """
    message = missing_extra_message(what, extra)  # checks the extra's name before the block runs
    try:
        yield
    except MissingExtraError:
        raise
    except ImportError as err:
        top = (err.name or "").partition(".")[0]
        if top and top not in EXTRAS[extra]:
            raise
        raise MissingExtraError(message) from None
