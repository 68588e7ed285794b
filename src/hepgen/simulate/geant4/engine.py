"""Geant4 full simulation of e±/γ showers in a sampling calorimeter, through geant4-pybind.

This is hepgen's *reference* simulator: real Geant4 (11.4, the ``geant4-pybind==0.1.3``
wheel) tracking every particle of the shower down to the production cut, in the stacks of
:mod:`hepgen.simulate.geant4.presets`, scored into CaloChallenge voxels and written as
CaloChallenge HDF5.  GFlash (:mod:`hepgen.simulate.calorimeter`) stays the fast built-in
source; this engine is what a surrogate's speed and fidelity should be measured against.

**Runs without the Geant4 data sets.**  The wheel cannot download them here, and every
stock EM constructor (``G4EmStandardPhysics`` …) reads G4EMLOW (Seltzer-Berger
bremsstrahlung tables, Livermore photo-effect and Rayleigh data).  The engine therefore
builds its own EM physics list from models that need no data file (see below), and sets
two environment variables *with* ``os.environ.setdefault`` *before* ``geant4_pybind`` is
imported, unless the user has set ``GEANT4_DATA_DIR``: ``GEANT4_DATA_DIR`` (pointing at
the cache folder; without it the import stops at an interactive download prompt) and
``G4ENSDFSTATEDATA`` (a folder holding an empty ``ENSDFSTATE.dat``: every run manager builds
the nuclide table, and an empty file reads as "no states").

**C++ part.**  geant4-pybind binds no process or model classes, so ``_g4processes.cpp``
(shipped beside this file) constructs them through the symbols that the wheel's extension
module exports.  It is compiled at first use with the system ``g++`` (or ``$CXX``) into
``$HEPGEN_CACHE/geant4/`` (default ``~/.cache/hepgen``), under a file lock and with an
atomic rename, the file name keyed by a hash of the source and of the geant4-pybind
version; it is loaded after ``geant4_pybind`` has been made ``RTLD_GLOBAL``.

**Physics list** (production cut 0.7 mm for γ, e⁻, e⁺, serial run manager) and how it
differs from Geant4's standard ``G4EmStandardPhysics`` (option 0):

====================  =========================================  ==========================================
particle / process    this engine                                G4EmStandardPhysics (11.x)
====================  =========================================  ==========================================
γ photo-effect        G4PEEffectFluoModel (Sandia parametrisation) G4LivermorePhotoElectricModel (G4EMLOW)
γ Compton             G4KleinNishinaCompton                      same
γ conversion          G4PairProductionRelModel at all energies   G4BetheHeitler5DModel below 80 GeV
γ Rayleigh            none                                       G4LivermoreRayleighModel (G4EMLOW)
e± multiple scatt.    G4UrbanMscModel at all energies            Urban < 100 MeV, WentzelVI + single
                                                                 Coulomb scattering above
e± ionisation         G4eIonisation (Møller-Bhabha)              same
e± bremsstrahlung     G4eBremsstrahlungRelModel at all energies  G4SeltzerBergerModel below 1 GeV (G4EMLOW)
e± pair production    none                                       G4ePairProduction
e⁺ annihilation       G4eplusAnnihilation                        same
fluorescence, Auger   off                                        off (option 0)
hadronic (γ/e-nuclear) none                                      in FTFP_BERT etc. via G4EmExtraPhysics
====================  =========================================  ==========================================

**Stock lists with real data sets.**  ``physics_list="standard"`` (Geant4's
``G4EmStandardPhysics``) or ``"option4"`` (``G4EmStandardPhysics_option4``, the most
precise standard EM list) registers that stock constructor, bound by geant4-pybind, in a
``G4VModularPhysicsList`` (EM physics only: no hadronic or decay physics) with the same
production cut.  They read Geant4 data sets (G4EMLOW, PhotonEvaporation, G4ENSDFSTATE),
which this engine checks before any run (:func:`check_data_sets`: ``$G4LEDATA``, or
``$GEANT4_DATA_DIR/G4EMLOW8.8`` as Geant4 11 finds it, must be a folder with ``brem_SB/``
and ``livermore/``, and so on); otherwise a one-line ``ValueError`` names the variable and
the folder.  The list's name is recorded in every
file (``physics_list_name``).  Without the data sets (this machine) only ``data-free`` runs.

Measured effect (issue 13, docs/geant4.md): the relativistic bremsstrahlung model below
1 GeV gives a radiative dE/dx of 0.65–0.94 of NIST ESTAR between 1 and 10 MeV and
0.98–1.04 from 20 MeV to 1 GeV in lead; collision dE/dx agrees with ESTAR within 0.1 %.
Not measured (no reference list runs here without the data sets), expected to be small
at voxel scale: the missing Rayleigh scattering and fluorescence move keV-scale energy
by millimetres; without photo-nuclear processes the small fraction of a real shower's
energy that goes into nuclear binding and neutrons is deposited electromagnetically.

**Scoring** without per-step Python: every voxel of the binning is a Geant4 volume (an
r–α segment of a cylinder, a box — of its layer's size for a per-layer Cartesian grid —
or a hexagonal prism, ``G4ExtrudedSolid``) whose copy number is its hepgen voxel index, and a
``G4MultiFunctionalDetector`` with a ``G4PSEnergyDeposit`` primitive scorer (Geant4's own
C++ scoring) sums the deposits of each event; Python reads the event's hit map once per
event (a few hundred entries).  The slab volumes around the voxels and the absorbers are
scored too (indices after the voxels), giving the active energy outside the binning and
the energy deposited in the absorbers, for the energy-conservation and sampling-fraction
checks.

References:
    S. Agostinelli et al., "Geant4 — a simulation toolkit", NIM A 506 (2003) 250;
    J. Allison et al., NIM A 835 (2016) 186.  Geant4 Physics Reference Manual (11.x),
    chapters "Standard electromagnetic physics".  geant4-pybind,
    https://github.com/HaarigerHarald/geant4_pybind.  CaloChallenge 2022, arXiv:2410.21611.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hepgen._extras import MissingExtraError, missing_extra_message
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import HexagonalGrid, save_geometry
from hepgen.simulate.chunks import chunk_dir_for, chunk_seed, finish_chunks, run_chunks
from hepgen.simulate.geant4.presets import CalorimeterSpec, get_preset

__all__ = [
    "PARTICLES",
    "PHYSICS_DEVIATIONS",
    "PHYSICS_LIST",
    "PHYSICS_LISTS",
    "DATA_SETS",
    "check_data_sets",
    "Geant4Engine",
    "build_library",
    "cache_dir",
    "geant4_version",
    "get_engine",
    "simulate_geant4",
]

log = logging.getLogger(__name__)

INSTALL_HINT = missing_extra_message("the Geant4 engine", "geant4")

#: Particle names accepted → Geant4 particle names.
PARTICLES = {"gamma": "gamma", "photon": "gamma", "e-": "e-", "electron": "e-", "e+": "e+", "positron": "e+"}

PHYSICS_LIST = ("hepgen data-free EM list: G4PhotoElectricEffect+G4PEEffectFluoModel, G4ComptonScattering+"
                "G4KleinNishinaCompton, G4GammaConversion+G4PairProductionRelModel; e+-: G4eMultipleScattering+"
                "G4UrbanMscModel, G4eIonisation, G4eBremsstrahlung+G4eBremsstrahlungRelModel (all energies); "
                "e+: G4eplusAnnihilation; transportation; serial run manager")
PHYSICS_DEVIATIONS = ("vs G4EmStandardPhysics: no Seltzer-Berger bremsstrahlung below 1 GeV (relativistic model "
                      "instead), Sandia photo-effect instead of Livermore, no Rayleigh scattering, no fluorescence "
                      "or Auger, Urban msc at all energies (no WentzelVI/single scattering), Bethe-Heitler-LPM "
                      "conversion at all energies (no 5D model), no e+- pair production, no hadronic "
                      "(photo-/electro-nuclear) physics")

#: Physics-list names → (description, deviations from G4EmStandardPhysics) recorded in the files.
PHYSICS_LISTS = {
    "data-free": (PHYSICS_LIST, PHYSICS_DEVIATIONS),
    "standard": ("Geant4 G4EmStandardPhysics (stock constructor, G4EMLOW data) in a G4VModularPhysicsList; "
                 "serial run manager",
                 "EM list as G4EmStandardPhysics; no hadronic (photo-/electro-nuclear) or decay physics"),
    "option4": ("Geant4 G4EmStandardPhysics_option4 (stock constructor, G4EMLOW data) in a G4VModularPhysicsList; "
                "serial run manager",
                "EM list G4EmStandardPhysics_option4 (not option 0); no hadronic (photo-/electro-nuclear) or decay "
                "physics"),
}
_STOCK_CONSTRUCTORS = {"standard": "G4EmStandardPhysics", "option4": "G4EmStandardPhysics_option4"}
#: The data sets the stock lists read: variable → (folder name of the Geant4 release inside
#: geant4-pybind 0.1.3, Geant4 11.4, looked for under ``GEANT4_DATA_DIR`` when the variable is
#: not set; entries the folder must hold).
DATA_SETS = {
    "G4LEDATA": ("G4EMLOW8.8", ("brem_SB", "livermore")),
    "G4LEVELGAMMADATA": ("PhotonEvaporation6.1.2", ()),
    "G4ENSDFSTATEDATA": ("G4ENSDFSTATE3.0", ("ENSDFSTATE.dat",)),
}

_ABI = 1
_NUDGE_MM = 1e-3
_SOURCE = Path(__file__).with_name("_g4processes.cpp")


def cache_dir() -> Path:
    """hepgen's per-user cache folder: ``$HEPGEN_CACHE``, default ``~/.cache/hepgen``."""
    env = os.environ.get("HEPGEN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hepgen"


#: the GEANT4_DATA_DIR this module set for the data-free list (None: the user's, or none)
_DATA_DIR_SET_BY_HEPGEN: str | None = None


def _prepare_environment() -> None:
    """Let Geant4 start without its data sets, unless the user points ``GEANT4_DATA_DIR`` at real ones."""
    if "GEANT4_DATA_DIR" in os.environ or importlib.util.find_spec("geant4_pybind") is None:
        return
    data = cache_dir() / "geant4" / "data"
    try:
        data.mkdir(parents=True, exist_ok=True)
        (data / "ENSDFSTATE.dat").touch(exist_ok=True)
    except OSError:  # read-only home: the import will then ask for the data sets
        return
    os.environ.setdefault("GEANT4_DATA_DIR", str(data))
    os.environ.setdefault("G4ENSDFSTATEDATA", str(data))
    global _DATA_DIR_SET_BY_HEPGEN
    _DATA_DIR_SET_BY_HEPGEN = str(data)


_prepare_environment()
try:
    import geant4_pybind as g4
except ImportError:  # the optional extra is missing: calling the engine raises INSTALL_HINT
    g4 = None


def _data_folder(var: str, dirname: str) -> tuple[Path | None, str]:
    """Where Geant4 11 looks for a data set (``G4FindDataDir``): ``$var``, else
    ``$GEANT4_DATA_DIR/dirname``; and how to say so."""
    if os.environ.get(var):
        return Path(os.environ[var]), f"{var}={os.environ[var]}"
    base = os.environ.get("GEANT4_DATA_DIR")
    if not base:
        return None, f"neither {var} nor GEANT4_DATA_DIR is set"
    by = " (set by hepgen for the data-free list)" if base == _DATA_DIR_SET_BY_HEPGEN else ""
    return Path(base) / dirname, f"{var} is not set and GEANT4_DATA_DIR={base}{by}: {dirname}/"


def check_data_sets(physics_list: str) -> dict:
    """Check, before any run, that ``physics_list`` can find the Geant4 data sets it reads.

    ``data-free`` needs none.  ``standard`` and ``option4`` read :data:`DATA_SETS`: G4EMLOW
    (``G4LEDATA``: Seltzer-Berger bremsstrahlung, Livermore photo-effect and Rayleigh tables;
    must hold ``brem_SB/`` and ``livermore/``), PhotonEvaporation (``G4LEVELGAMMADATA``: the
    stock constructors build the ion tables, which need it; measured here, without it
    Geant4 stops while constructing particles) and G4ENSDFSTATE (``G4ENSDFSTATEDATA``:
    ``ENSDFSTATE.dat``).  Each folder is ``$VARIABLE``, else ``$GEANT4_DATA_DIR/<name><version>``
    (Geant4 11's ``G4FindDataDir`` rule).

    Returns:
        ``{variable: folder}`` of the data sets used (recorded in the files' provenance).

    Raises:
        ValueError: one line naming the physics list, the variable and the missing folder.

    >>> check_data_sets("data-free")
    {}
    """
    if physics_list not in PHYSICS_LISTS:
        raise ValueError(f"physics_list: expected one of {sorted(PHYSICS_LISTS)}, found {physics_list!r}")
    if physics_list == "data-free":
        return {}
    used = {}
    for var, (dirname, needed) in DATA_SETS.items():
        folder, where = _data_folder(var, dirname)
        need = (f"physics list {physics_list!r} ({_STOCK_CONSTRUCTORS[physics_list]}) needs Geant4's {dirname} "
                f"data set")
        hint = f"set {var} to its folder, or GEANT4_DATA_DIR to the folder that holds {dirname}/"
        if folder is None:
            raise ValueError(f"{need}: {where}; {hint}")
        if not folder.is_dir():
            raise ValueError(f"{need}: {where} is not a folder; {hint}")
        missing = [n for n in needed if not (folder / n).exists()]
        if missing:
            raise ValueError(f"{need}: {where} has no {', '.join(missing)} (not a {dirname} folder); {hint}")
        used[var] = str(folder)
    return used


def _require_g4() -> None:
    if g4 is None:
        raise MissingExtraError(INSTALL_HINT)


def geant4_version() -> str:
    """The Geant4 release inside geant4-pybind, e.g. ``geant4-11-04-patch-01``."""
    _require_g4()
    return str(g4.G4Version).replace("$Name:", "").replace("$", "").replace("[MT]", "").strip()


def _library_path() -> Path:
    key = hashlib.sha256(_SOURCE.read_bytes())
    key.update(importlib.metadata.version("geant4-pybind").encode())
    key.update(str(_ABI).encode())
    return cache_dir() / "geant4" / f"libhepgen_g4_{key.hexdigest()[:16]}.so"


def build_library(force: bool = False) -> Path:
    """Compile ``_g4processes.cpp`` into the cache folder (once) and return the library's path.

    Concurrent callers (parallel workers, two users of one cache) wait on a file lock; the
    library is compiled to a temporary name and renamed into place, so no process ever
    loads a half-written file.
    """
    _require_g4()
    path = _library_path()
    if path.is_file() and not force:
        return path
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise RuntimeError("the Geant4 engine compiles a small C++ library at first use and needs a C++ "
                           "compiler: install g++ (e.g. apt-get install g++) or set CXX")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file() and not force:
            return path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=".so")
        os.close(fd)
        try:
            res = subprocess.run([cxx, "-O2", "-std=c++17", "-shared", "-fPIC", str(_SOURCE), "-o", tmp],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["no message"])[-1]
                raise RuntimeError(f"compiling {_SOURCE.name} with {cxx} failed: {last}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    log.info("compiled %s", path)
    return path


_LIB = None


def _load_library():
    global _LIB
    if _LIB is None:
        path = build_library()
        # make the wheel's Geant4 symbols visible to the library (Python loaded it RTLD_LOCAL)
        ctypes.CDLL(g4.__file__, mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
        lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
        if lib.hepgen_g4_abi() != _ABI:
            raise RuntimeError(f"{path}: interface version {lib.hepgen_g4_abi()}, expected {_ABI}; delete it")
        _LIB = lib
    return _LIB


@contextlib.contextmanager
def _quiet(enabled: bool = True):
    """Send Geant4's banner and tables (file descriptor 1) to the debug log."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
            if text.strip():
                log.debug("Geant4 output:\n%s", text)


def _cell_shape(geo, k: int) -> tuple:
    """The solid of every cell of readout layer ``k`` of a non-cylindrical geometry.

    ``("box", half_x, half_y)`` (mm) for the Cartesian grids (one size per layer for
    :class:`~hepgen.data.geometry_layers.LayeredCartesianGrid`); for hexagonal cells
    ``("polygon", x0, y0, …)``, the six vertices about the centre in clockwise order.
    """
    if geo.kind == "cartesian":
        return ("box", geo.cell_size / 2, geo.cell_size / 2)
    if geo.kind == "layered-cartesian":
        return ("box", geo.layers[k].dx / 2, geo.layers[k].dy / 2)
    if geo.kind == "hexagonal":
        one = HexagonalGrid(1, 0, geo.pitch_mm, geo.orientation).cell_vertices()[0][::-1]  # centred, clockwise
        return ("polygon",) + tuple(float(c) for c in np.round(one, 12).ravel())
    raise ValueError(f"geometry kind {geo.kind!r}: the Geant4 engine scores cylindrical, cartesian, "
                     "layered-cartesian and hexagonal geometries")


if g4 is not None:
    class _PhysicsList(g4.G4VUserPhysicsList):
        """γ, e⁻, e⁺ with the data-free EM processes of ``_g4processes.cpp``."""

        def __init__(self, cut_mm: float):
            super().__init__()
            self.cut = float(cut_mm) * g4.mm

        def ConstructParticle(self):
            g4.G4Gamma.GammaDefinition()
            g4.G4Electron.ElectronDefinition()
            g4.G4Positron.PositronDefinition()

        def ConstructProcess(self):
            n = _load_library().hepgen_g4_construct_em()
            if n != 10:
                raise RuntimeError(f"registered {n} EM processes, expected 10")

        def SetCuts(self):  # must be overridden in Python (the base one is not reachable)
            for name in ("gamma", "e-", "e+", "proton"):
                self.SetCutValue(self.cut, name)

    def _stock_physics_list(name: str, cut_mm: float):
        """A modular list holding one stock EM constructor (``standard`` / ``option4``), cut ``cut_mm``."""
        physics = g4.G4VModularPhysicsList()
        physics.SetDefaultCutValue(float(cut_mm) * g4.mm)
        physics.RegisterPhysics(getattr(g4, _STOCK_CONSTRUCTORS[name])())
        return physics

    class _Detector(g4.G4VUserDetectorConstruction):
        """Slabs along z from z = 0; active slabs hold one volume per voxel (copy number = index)."""

        def __init__(self, spec: CalorimeterSpec, scoring: str):
            super().__init__()
            self.spec, self.scoring = spec, scoring
            self.keep: list = []
            self.active_lvs: list = []
            self.passive_lvs: list = []
            self.sd = None

        def Construct(self):
            spec, geo = self.spec, self.spec.geometry
            nist = g4.G4NistManager.Instance()
            mats = {name: nist.FindOrBuildMaterial(name) for name in {s.material for s in spec.slabs}}
            vacuum = nist.FindOrBuildMaterial("G4_Galactic")
            length, radius = spec.total_thickness_mm, spec.radius_mm
            world_s = g4.G4Box("world", radius + 10.0, radius + 10.0, length / 2 + 100.0)
            world_lv = g4.G4LogicalVolume(world_s, vacuum, "world")
            world = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "world", None, False, 0)
            self.keep += [world_s, world_lv, world]
            cylindrical = geo.kind == "cylindrical"
            n_vox, n_layers = geo.n_voxels, geo.n_layers
            cell_x, cell_y = (None, None) if cylindrical else geo.voxel_xy()
            offsets = np.concatenate([[0], np.cumsum([s.stop - s.start for s in geo.layer_slices])])
            slab_lvs: dict = {}
            voxel_lvs: dict = {}

            def solid(name, half_z, r0=None, r1=None, phi0=0.0, dphi=2 * np.pi, box=None):
                if box is not None:
                    return g4.G4Box(name, box[0], box[1], half_z)
                return g4.G4Tubs(name, r0, r1, half_z, phi0, dphi)

            def cell_solid(half_z, shape):
                """A non-cylindrical cell: ("box", half_x, half_y) or ("polygon", x0, y0, x1, y1, …)
                (vertices about the cell centre, clockwise, as G4ExtrudedSolid wants them)."""
                if shape[0] == "box":
                    return g4.G4Box("voxel", shape[1], shape[2], half_z)
                poly = g4.G4TwoVectorVector()
                for i in range(1, len(shape), 2):
                    poly.append(g4.G4TwoVector(shape[i], shape[i + 1]))
                hexagon = g4.G4ExtrudedSolid("voxel", poly, half_z, g4.G4TwoVector(0, 0), 1.0,
                                             g4.G4TwoVector(0, 0), 1.0)
                # A G4ExtrudedSolid that Python still holds at interpreter exit is destroyed after
                # Geant4's own statics and crashes the process (SIGSEGV, exit 139; geant4-pybind
                # 0.1.3, measured here; G4Box/G4Tubs are not affected).  One extra reference, never
                # released, keeps Python from ever destroying it: a few small solids are leaked.
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(hexagon))
                return hexagon

            def voxel_lv(material, t, *shape):
                key = (material, t) + shape
                if key not in voxel_lvs:
                    s = solid("voxel", t / 2, *shape[:4]) if cylindrical else cell_solid(t / 2, shape)
                    lv = g4.G4LogicalVolume(s, mats[material], "voxel")
                    self.keep += [s, lv]
                    self.active_lvs.append(lv)
                    voxel_lvs[key] = lv
                return voxel_lvs[key]

            def slab_lv(slab):
                key = (slab.material, slab.thickness_mm, slab.readout)
                if key in slab_lvs:
                    return slab_lvs[key]
                t = slab.thickness_mm
                s = (solid("slab", t / 2, 0.0, radius) if cylindrical else solid("slab", t / 2, box=(radius, radius)))
                lv = g4.G4LogicalVolume(s, mats[slab.material], "active" if slab.readout is not None else "passive")
                self.keep += [s, lv]
                if slab.readout is None:
                    self.passive_lvs.append(lv)
                elif self.scoring == "bare":
                    pass  # plain slabs, no voxel volumes: the cost of Geant4 alone
                else:
                    self.active_lvs.append(lv)
                    k = slab.readout
                    index = int(offsets[k])
                    if cylindrical:
                        lb = geo.active_layers[k]
                        edges, n_a = lb.r_edges, lb.n_alpha
                        dphi = 2 * np.pi / n_a
                        for ia in range(n_a):
                            phi0 = -np.pi + ia * dphi if n_a > 1 else 0.0
                            for ir in range(lb.n_r):
                                v = voxel_lv(slab.material, t, edges[ir], edges[ir + 1], phi0, dphi)
                                pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), v, "voxel", lv, False, index)
                                self.keep.append(pv)
                                index += 1
                    else:  # one volume per cell, at the geometry's cell centres, in voxel order
                        v = voxel_lv(slab.material, t, *_cell_shape(geo, k))
                        sl = geo.layer_slices[k]
                        for x, y in zip(cell_x[sl], cell_y[sl]):
                            pv = g4.G4PVPlacement(None, g4.G4ThreeVector(float(x), float(y), 0.0), v, "voxel",
                                                  lv, False, index)
                            self.keep.append(pv)
                            index += 1
                slab_lvs[key] = lv
                return lv

            z = -length / 2
            for slab in spec.slabs:
                lv = slab_lv(slab)
                copy = n_vox + n_layers if slab.readout is None else n_vox + slab.readout
                pv = g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + slab.thickness_mm / 2), lv,
                                      lv.GetName(), world_lv, False, copy)
                self.keep.append(pv)
                z += slab.thickness_mm
            self.front_z = -length / 2
            return world

        def ConstructSDandField(self):
            if self.scoring in ("none", "bare"):
                return
            sdm = g4.G4SDManager.GetSDMpointer()
            if self.scoring == "primitive":
                mfd = g4.G4MultiFunctionalDetector("hepgen_calo")
                sdm.AddNewDetector(mfd)
                ps = g4.G4PSEnergyDeposit("edep", 0)
                mfd.RegisterPrimitive(ps)
                self.keep += [mfd, ps]
                self.sd = mfd
            else:
                self.sd = _PythonSD("hepgen_calo", self.spec.geometry.n_voxels + self.spec.geometry.n_layers + 1)
                sdm.AddNewDetector(self.sd)
            for lv in self.active_lvs + self.passive_lvs:
                self.SetSensitiveDetector(lv, self.sd)

    class _PythonSD(g4.G4VSensitiveDetector):
        """Per-step Python scoring (for the cost comparison only)."""

        def __init__(self, name: str, size: int):
            super().__init__(name)
            self.buf = np.zeros(size)

        def ProcessHits(self, step, history):
            edep = step.GetTotalEnergyDeposit()
            if edep > 0:
                self.buf[step.GetPreStepPoint().GetTouchable().GetCopyNumber(0)] += edep
            return True

    class _Gun(g4.G4VUserPrimaryGeneratorAction):
        """One primary per event, with the energy, direction and position of the event's row."""

        def __init__(self):
            super().__init__()
            self.gun = g4.G4ParticleGun(1)
            self.rows = None

        def GeneratePrimaries(self, event):
            e, pos, direction = self.rows[event.GetEventID()]
            self.gun.SetParticleEnergy(e)
            self.gun.SetParticlePosition(g4.G4ThreeVector(*pos))
            self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(*direction))
            self.gun.GeneratePrimaryVertex(event)

    class _EventAction(g4.G4UserEventAction):
        """Reads the event's hit map (or the Python buffer) into one row of ``self.out``."""

        def __init__(self, det: _Detector, size: int):
            super().__init__()
            self.det, self.size, self.hc_id = det, size, -1
            self.out = None

        def EndOfEventAction(self, event):
            row = self.out[event.GetEventID()]
            if self.det.scoring == "primitive":
                if self.hc_id < 0:
                    self.hc_id = g4.G4SDManager.GetSDMpointer().GetCollectionID("hepgen_calo/edep")
                for k, v in event.GetHCofThisEvent().GetHC(self.hc_id):
                    row[k] = v
            elif self.det.scoring == "python":
                row[:] = self.det.sd.buf
                self.det.sd.buf[:] = 0.0


_ENGINE: Geant4Engine | None = None


class Geant4Engine:
    """A Geant4 run manager with a calorimeter preset; **one per process** (Geant4's rule).

    Use :func:`get_engine`, which returns the process's engine (built on first use) and
    refuses a second one with other settings.

    Arguments:
        spec: the calorimeter (:func:`hepgen.simulate.geant4.presets.get_preset`).
        cut_mm: production cut (range, mm) for γ, e⁻, e⁺.
        scoring: ``"primitive"`` (Geant4 primitive scorer, default), ``"python"`` (a Python
            sensitive detector called at every step: slow, for comparison), ``"none"`` (voxel
            volumes but no scoring) or ``"bare"`` (plain slabs, no voxel volumes, no scoring:
            the time of Geant4 alone); the last two return zeros.
        quiet: send Geant4's banner and tables to the debug log.
        physics_list: ``data-free`` (default: the models above, no data files), ``standard``
            (``G4EmStandardPhysics``) or ``option4`` (``G4EmStandardPhysics_option4``); the
            last two need the G4EMLOW data set (:func:`check_data_sets`, checked here).
    """

    def __init__(self, spec: CalorimeterSpec, cut_mm: float = 0.7, scoring: str = "primitive", quiet: bool = True,
                 physics_list: str = "data-free"):
        _require_g4()
        self.data_sets = check_data_sets(physics_list)
        self.physics_list = physics_list
        if scoring not in ("primitive", "python", "none", "bare"):
            raise ValueError(f"scoring: expected 'primitive', 'python', 'none' or 'bare', found {scoring!r}")
        if not cut_mm > 0:
            raise ValueError(f"cut_mm: expected a production cut > 0 mm, found {cut_mm!r}")
        self.spec, self.cut_mm, self.scoring = spec, float(cut_mm), scoring
        geo = spec.geometry
        self.n_voxels, self.n_layers = geo.n_voxels, geo.n_layers
        self.size = self.n_voxels + self.n_layers + 1
        with _quiet(quiet):
            _load_library()
            self.rm = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
            ui = g4.G4UImanager.GetUIpointer()
            for cmd in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0"):
                ui.ApplyCommand(cmd)
            g4.G4EmParameters.Instance().SetVerbose(0)
            self.det = _Detector(spec, scoring)
            self.physics = (_PhysicsList(cut_mm) if physics_list == "data-free"
                            else _stock_physics_list(physics_list, cut_mm))
            self.rm.SetUserInitialization(self.det)
            self.rm.SetUserInitialization(self.physics)
            self.gun = _Gun()
            self.events = _EventAction(self.det, self.size)
            self.rm.SetUserAction(self.gun)
            self.rm.SetUserAction(self.events)
            self.rm.Initialize()
            self.rm.BeamOn(0)  # builds the physics tables now, not inside the first timed run
        self.quiet = quiet

    @property
    def settings(self) -> tuple:
        return (json.dumps(self.spec.to_dict(), sort_keys=True), self.cut_mm, self.scoring, self.physics_list)

    def simulate(self, energies_mev, particle: str = "gamma", theta=None, phi=None, impact_position=None,
                 seed: int = 1) -> dict:
        """Simulate one shower per energy.

        Arguments:
            energies_mev: (N,) incident kinetic energies, MeV.
            particle: ``gamma``, ``e-`` or ``e+`` (or ``photon``, ``electron``, ``positron``).
            theta, phi: optional (N,) incident polar angle to the calorimeter axis and its
                azimuth (rad); default along +z.
            impact_position: optional (N, 2) x, y (mm) where the primary's line crosses the
                front face; default the origin (the binning's axis).
            seed: Geant4's random seed for these showers (1 … 2³¹-1); the same seed and inputs
                give the same showers.

        Returns:
            dict of ``showers`` (N, n_voxels) float32 MeV (visible energy per voxel),
            ``outside`` (N, n_layers) float64 MeV (active energy outside the binning, per
            layer), ``absorber`` (N,) float64 MeV (energy deposited in passive slabs) and
            ``seconds`` (wall time of the event loop).
        """
        if particle not in PARTICLES:
            raise ValueError(f"particle: expected one of {sorted(PARTICLES)}, found {particle!r}")
        e = np.asarray(energies_mev, dtype=float).reshape(-1)
        n = e.size
        if n and not (np.all(np.isfinite(e)) and e.min() > 0):
            raise ValueError("energies_mev: expected finite energies > 0 MeV")
        th = np.zeros(n) if theta is None else np.asarray(theta, dtype=float).reshape(n)
        ph = np.zeros(n) if phi is None else np.asarray(phi, dtype=float).reshape(n)
        xy = np.zeros((n, 2)) if impact_position is None else np.asarray(impact_position, dtype=float).reshape(n, 2)
        if n and not (np.all(np.isfinite(th)) and np.abs(th).max() < np.pi / 2):
            raise ValueError("theta: expected finite incident angles within (-pi/2, pi/2) rad")
        direction = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=1)
        d = 1.0  # mm: the primary starts 1 mm in front of the calorimeter, aimed at the impact point
        front = self.det.front_z
        # + 1 µm in x and y: a primary exactly on the axis, where the α segments of the binning
        # meet in one line, makes Geant4's navigator report stuck tracks (GeomNav1002)
        start = np.stack([xy[:, 0] + _NUDGE_MM - d * direction[:, 0] / direction[:, 2],
                          xy[:, 1] + _NUDGE_MM - d * direction[:, 1] / direction[:, 2], np.full(n, front - d)], axis=1)
        self.gun.gun.SetParticleDefinition(g4.G4ParticleTable.GetParticleTable().FindParticle(PARTICLES[particle]))
        self.gun.rows = [(float(e[i]) * g4.MeV, tuple(start[i]), tuple(direction[i])) for i in range(n)]
        out = np.zeros((n, self.size))
        self.events.out = out
        if not 1 <= int(seed) <= 2**31 - 1:
            raise ValueError(f"seed: expected 1 … 2**31-1, found {seed}")
        g4.HepRandom.setTheSeed(int(seed))
        t0, c0 = time.perf_counter(), time.process_time()
        if n:
            self.rm.BeamOn(n)
        seconds, process_seconds = time.perf_counter() - t0, time.process_time() - c0
        return {"showers": out[:, :self.n_voxels].astype(np.float32),
                "outside": out[:, self.n_voxels:self.n_voxels + self.n_layers],
                "absorber": out[:, -1].copy(), "seconds": seconds, "process_seconds": process_seconds}


def get_engine(preset: str | CalorimeterSpec = "ds1-photon", cut_mm: float = 0.7, scoring: str = "primitive",
               quiet: bool = True, physics_list: str = "data-free") -> Geant4Engine:
    """This process's :class:`Geant4Engine`, built on first call.

    Geant4 allows one run manager per process, so a later call with another preset, cut,
    scoring or physics list raises ``RuntimeError`` (run it in another process:
    ``workers >= 2`` or a subprocess).
    """
    global _ENGINE
    _require_g4()
    spec = get_preset(preset) if isinstance(preset, str) else preset
    if _ENGINE is None:
        _ENGINE = Geant4Engine(spec, cut_mm, scoring, quiet, physics_list)
        return _ENGINE
    wanted = (json.dumps(spec.to_dict(), sort_keys=True), float(cut_mm), scoring, physics_list)
    if _ENGINE.settings != wanted:
        raise RuntimeError(f"this process already runs Geant4 with preset {_ENGINE.spec.name!r}, cut "
                           f"{_ENGINE.cut_mm} mm, scoring {_ENGINE.scoring!r}, physics list "
                           f"{_ENGINE.physics_list!r}; Geant4 allows one run manager per "
                           "process: use another process (workers >= 2) for other settings")
    return _ENGINE


# --- parallel, resumable generation ---------------------------------------------------------------
def _draw(task: dict) -> dict:
    """The incident energies, angles and impact points of one chunk, from the chunk's seed."""
    s = task["settings"]
    rng = np.random.default_rng(task["seed"])
    n = task["n"]
    if s["energies"] is not None:
        e = rng.choice(np.asarray(s["energies"], dtype=float), size=n)
    else:
        lo, hi = s["energy_range"]
        e = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    out = {"energies": e, "theta": None, "phi": None, "xy": None}
    if s["theta_range"] is not None:
        out["theta"] = rng.uniform(*s["theta_range"], n)
    if s["phi_range"] is not None:
        out["phi"] = rng.uniform(*s["phi_range"], n)
    if s["position_range"] is not None:
        out["xy"] = rng.uniform(*s["position_range"], (n, 2))
    return out


def _run_chunk(task: dict) -> dict:
    """Worker entry point: simulate one chunk and write it atomically to ``task['path']``."""
    s = task["settings"]
    engine = get_engine(s["preset"], s["cut_mm"], physics_list=s.get("physics_list", "data-free"))
    d = _draw(task)
    res = engine.simulate(d["energies"], s["particle"], d["theta"], d["phi"], d["xy"], seed=task["seed"])
    conditions = {}
    if d["theta"] is not None:
        conditions["incident_theta"] = d["theta"][:, None]
    if d["phi"] is not None:
        conditions["incident_phi"] = d["phi"][:, None]
    if d["xy"] is not None:
        conditions["impact_position"] = d["xy"]
    data = ShowerData(res["showers"], d["energies"][:, None], conditions, engine.spec.geometry,
                      {"seconds": res["seconds"], "process_seconds": res["process_seconds"], "g4_seed": task["seed"]})
    write_showers(task["path"], data, compression=None)
    return {"path": task["path"], "n": task["n"], "seconds": res["seconds"]}


def _chunk_ok(task: dict) -> bool:
    try:
        return len(read_showers(task["path"])) == task["n"]
    except (ValueError, OSError):
        return False


def _pair(value, name: str, positive: bool = False):
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (lo, hi) of numbers, found {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) or (positive and lo <= 0):
        raise ValueError(f"{name}: expected finite lo <= hi{' > 0' if positive else ''}, found {value!r}")
    return [lo, hi]


def simulate_geant4(output: str | os.PathLike, n: int, preset: str = "ds1-photon", particle: str = "gamma",
                    energy_range: tuple[float, float] = (1_000.0, 100_000.0), energies: Sequence[float] | None = None,
                    theta_range: tuple[float, float] | None = None, phi_range: tuple[float, float] | None = None,
                    position_range: tuple[float, float] | None = None, seed: int = 0, workers: int = 1,
                    chunk_size: int = 100, resume: bool = True, progress: bool = True, cut_mm: float = 0.7,
                    xml: str | os.PathLike | None = None, physics_list: str = "data-free") -> ShowerData:
    """Simulate ``n`` showers with Geant4 and write them to ``output`` (CaloChallenge HDF5).

    Work is split into chunks of ``chunk_size`` showers, each with its own seed
    (:func:`hepgen.simulate.chunks.chunk_seed`), run in ``workers`` processes (each holds
    one Geant4 run manager) and written atomically to ``.<output name>.chunks/``; an
    interrupted run keeps its finished chunks and the same call resumes from them (another
    call with other settings is refused).  The result does not depend on ``workers``.

    Arguments:
        output: the HDF5 file to write (atomically).
        n: number of showers (>= 1).
        preset: a calorimeter of :data:`hepgen.simulate.geant4.presets.PRESETS`.
        particle: ``gamma``, ``e-`` or ``e+``.
        energy_range: (lo, hi) MeV, log-uniform; ignored when ``energies`` is given.
        energies: discrete incident energies (MeV), drawn uniformly.
        theta_range, phi_range: optional (lo, hi) rad; uniform incident polar angle (< π/2)
            and azimuth, stored as ``incident_theta`` / ``incident_phi`` (N, 1).
        position_range: optional (lo, hi) mm; x and y of the impact point on the front face,
            uniform in the square, stored as ``impact_position`` (N, 2).
        seed: master seed.
        workers, chunk_size, resume, progress: as in :func:`hepgen.simulate.chunks.run_chunks`.
        cut_mm: production cut (mm).
        xml: also write the binning there (CaloChallenge XML for cylindrical presets, JSON
            for the Cartesian one).
        physics_list: ``data-free`` (default), ``standard`` or ``option4``
            (:data:`PHYSICS_LISTS`; the last two need the G4EMLOW data set, checked before any
            run by :func:`check_data_sets`).

    Returns:
        the :class:`ShowerData` written, with provenance attributes (engine, Geant4 version,
        physics list name, description and deviations, cut, seed, preset, CPU seconds).
    """
    _require_g4()
    data_sets = check_data_sets(physics_list)
    output = Path(output)
    spec = get_preset(preset)
    if particle not in PARTICLES:
        raise ValueError(f"particle: expected one of {sorted(PARTICLES)}, found {particle!r}")
    for name, v in (("n", n), ("chunk_size", chunk_size), ("workers", workers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an integer >= 1, found {v!r}")
    if energies is not None:
        energies = [float(x) for x in np.asarray(energies, dtype=float).ravel()]
        if not energies or not all(np.isfinite(x) and x > 0 for x in energies):
            raise ValueError(f"energies: expected one or more finite energies > 0 MeV, found {energies!r}")
        e_range = None
    else:
        e_range = _pair(energy_range, "energy_range", positive=True)
    theta = _pair(theta_range, "theta_range")
    if theta is not None and max(abs(theta[0]), abs(theta[1])) >= np.pi / 2:
        raise ValueError(f"theta_range: expected angles within (-pi/2, pi/2) rad, found {theta_range!r}")
    settings = {"preset": spec.name, "particle": PARTICLES[particle], "energy_range": e_range, "energies": energies,
                "theta_range": theta, "phi_range": _pair(phi_range, "phi_range"),
                "position_range": _pair(position_range, "position_range"), "cut_mm": float(cut_mm),
                "physics_list": physics_list}
    version = geant4_version()
    manifest = {"engine": "geant4", "geant4": version, "n": int(n), "seed": int(seed),
                "chunk_size": int(chunk_size), "settings": settings,
                "spec": hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:16]}
    chunk_dir = chunk_dir_for(output)
    tasks = [{"n": min(int(chunk_size), int(n) - start), "seed": chunk_seed(seed, c), "settings": settings,
              "path": str(chunk_dir / f"chunk_{c:05d}.h5")}
             for c, start in enumerate(range(0, int(n), int(chunk_size)))]
    if int(workers) == 1:
        build_library()
    run_chunks(chunk_dir, manifest, tasks, _run_chunk, _chunk_ok, workers=int(workers), resume=resume,
               progress=progress, desc=f"geant4 {spec.name}", unit="shower")
    parts = [read_showers(t["path"]) for t in tasks]
    conditions = {k: np.concatenate([p.conditions[k] for p in parts]) for k in parts[0].conditions}
    attrs = {"generator": "hepgen.simulate.geant4", "engine": "geant4", "geant4_version": version,
             "geant4_pybind_version": importlib.metadata.version("geant4-pybind"),
             "physics_list_name": physics_list, "physics_list": PHYSICS_LISTS[physics_list][0],
             "physics_deviations": PHYSICS_LISTS[physics_list][1],
             "production_cut_mm": float(cut_mm), "seed": int(seed), "preset": spec.name,
             "preset_description": spec.description, "calorimeter": json.dumps(spec.to_dict()["slabs"]),
             "particle": settings["particle"], "chunk_size": int(chunk_size),
             "cpu_seconds": float(sum(p.attrs.get("seconds", 0.0) for p in parts)),
             "process_seconds": float(sum(p.attrs.get("process_seconds", 0.0) for p in parts))}
    for key in ("energy_range", "energies", "theta_range", "phi_range", "position_range"):
        if settings[key] is not None:
            attrs[key] = settings[key]
    for var, folder in data_sets.items():
        attrs[f"data_set_{var}"] = folder
    data = ShowerData(np.concatenate([p.showers for p in parts]),
                      np.concatenate([p.incident_energies for p in parts]), conditions, spec.geometry, attrs)
    write_showers(output, data)
    if xml is not None:
        save_geometry(spec.geometry, xml)
    finish_chunks(chunk_dir)
    return data
