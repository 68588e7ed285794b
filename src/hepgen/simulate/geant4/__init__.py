"""Geant4 full simulation of calorimeter showers (optional extra ``hepgen[geant4]``).

:func:`simulate_geant4` writes CaloChallenge HDF5 files of e±/γ showers simulated by
Geant4 11.4 (through ``geant4-pybind``) in the calorimeter presets of
:mod:`hepgen.simulate.geant4.presets`; :func:`get_engine` gives the process's
:class:`Geant4Engine` for direct use.  Importing this package works without the extra;
calling the engine then raises ``ImportError`` saying how to install it.  See
``docs/geant4.md`` and the docstring of :mod:`hepgen.simulate.geant4.engine` (physics list
and its deviations from Geant4's standard one).

Example:
    >>> from hepgen.simulate.geant4 import PRESETS
    >>> sorted(PRESETS)
    ['3dgan', 'calogan', 'demo', 'ds1-photon', 'ds2', 'hgcal']
"""

from hepgen.simulate.geant4.engine import (
    DATA_SETS,
    PARTICLES,
    PHYSICS_DEVIATIONS,
    PHYSICS_LIST,
    PHYSICS_LISTS,
    Geant4Engine,
    build_library,
    check_data_sets,
    cache_dir,
    geant4_version,
    get_engine,
    simulate_geant4,
)
from hepgen.simulate.geant4.presets import PRESETS, CalorimeterSpec, Slab, get_preset

__all__ = [
    "DATA_SETS",
    "PARTICLES",
    "PHYSICS_DEVIATIONS",
    "PHYSICS_LIST",
    "PHYSICS_LISTS",
    "PRESETS",
    "CalorimeterSpec",
    "Geant4Engine",
    "Slab",
    "build_library",
    "cache_dir",
    "check_data_sets",
    "geant4_version",
    "get_engine",
    "get_preset",
    "simulate_geant4",
]
