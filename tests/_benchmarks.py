"""The scripts of ``benchmarks/`` loaded as modules, for the tests of their helper functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["BENCHMARKS", "load_benchmark"]

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as module ``name`` (registered in ``sys.modules``: dataclasses and
    pickling look their module up there). Loaded once: a second test file gets the same module, so that
    ``inspect.getmodule`` (doctest's finder, pickling) sees the functions' own module."""
    path = BENCHMARKS / f"{name}.py"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    # the scripts import their siblings by name (as `python benchmarks/x.py` finds them): the folder
    # is on the path while one loads, so a sibling not loaded yet is imported from it
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return mod
