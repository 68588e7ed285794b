"""Calorimeter presets of the Geant4 engine: a stack of slabs plus a voxel binning.

A preset is a :class:`CalorimeterSpec`: slabs of NIST materials (thicknesses in mm,
front to back, the beam along +z, the front face at z = 0) and the readout geometry
(:mod:`hepgen.data.geometry`).  Every active slab belongs to one *readout layer* (the
position of an active layer of the geometry, 0 … n_layers-1); the energy deposited in
all active slabs of a readout layer is summed voxel by voxel.  Passive slabs (absorber,
readout layer ``None``) are not scored.  Slabs are cylinders of radius ``radius_mm`` for
a cylindrical binning and square plates of side ``2 · radius_mm`` for a Cartesian grid;
energy outside the binning is lost, as in the CaloChallenge files.

The presets are *like* the data sets they are named after (same voxel binning, similar
depth in radiation lengths and sampling), not replicas of their detectors:

* ``ds1-photon`` — the binning of CaloChallenge data set 1 (photons), 368 voxels in five
  active layers (ids 0, 1, 2, 3, 12 of ``binning_dataset_1_photons.xml``), on an
  ATLAS-barrel-like stack: a 11 mm liquid-argon presampler behind 2 X0 of lead (the
  material in front of the ATLAS calorimeter is ≈ 2 X0 at η ≈ 0), then lead / liquid-argon
  sampling (1.5 mm Pb, 4.2 mm LAr, the ATLAS barrel accordion's thicknesses for |η| < 0.8,
  but flat plates instead of an accordion) in three readout layers of ≈ 4.3, 16 and 2 X0
  (strips, middle, back, as in ATLAS TDR 1996, CERN/LHCC 96-41), then an iron / scintillator
  "tile" layer (14 mm Fe, 3 mm polystyrene, the ATLAS TileCal period) read out as layer 12.
  The ATLAS cell sizes, η dependence, cryostat, electronics and liquid-argon response
  (charge collection, cross-talk) are not modelled.
* ``ds2`` — the binning of CaloChallenge data sets 2 (45 layers × 16 α × 9 r = 6,480 voxels,
  radial bins of 4.65 mm) on its own stack, as described in arXiv:2410.21611 and the
  Geant4 ``Par04`` example: 45 periods of 1.4 mm tungsten and 0.3 mm silicon, one readout
  layer per period.
* ``3dgan`` — a Cartesian 25 × 25 × 25 grid of 5.1 mm cells, like the CLIC electromagnetic
  calorimeter images of 3DGAN (Khattak et al., arXiv:1912.08398 and the CLIC data set of
  Pierini & Zhang): 25 periods of 2.8 mm tungsten (≈ 0.8 X0) and 0.5 mm silicon; the
  thicknesses are an approximation, not the CLIC detector model.
* ``calogan`` — the CaloGAN calorimeter (Paganini, de Oliveira, Nachman, arXiv:1705.02355):
  a 480 mm cube of 80 periods of 2 mm lead and 4 mm liquid argon (≈ 30.8 X0), read out in
  three layers 90, 347 and 43 mm deep with 3 × 96, 12 × 12 and 12 × 6 cells
  (:meth:`hepgen.data.geometry.LayeredCartesianGrid.calogan`).
* ``hgcal`` — a CMS HGCAL 2018 test-beam prototype-like electromagnetic section (CE-E):
  14 double-sided mini-modules, 28 silicon layers of 127 hexagonal 1.1 cm² cells
  (:class:`hepgen.data.geometry.HexagonalGrid`), Pb absorbers in steel, Cu cooling plates
  and CuW baseplates (≈ 25.2 X0); every thickness is an approximation (see :func:`hgcal`).
* ``demo`` — the Geant4 twin of ``hepgen demo``'s GFlash calorimeter
  (:func:`hepgen.simulate.calorimeter.default_calorimeter`, ``SamplingCalorimeter()``: 2 mm lead /
  4 mm polystyrene scintillator, 24 X0 deep, 8 readout layers of 3 X0) with the demo's binning
  (:func:`hepgen.data.geometry.default_binning`, 8 layers × 6 α × 8 r = 384 voxels), built by
  :func:`gflash_twin`: the readout-layer boundaries sit where the stack's depth in PDG
  radiation lengths equals GFlash's layer boundaries (slabs are split there), so the depth and
  every layer's extent in X0 are GFlash's; in mm they agree within one sampling period (6 mm).
  ``hepgen demo`` and ``hepgen bench`` time Geant4 in it for their speed-up against full simulation.

Example:
    >>> spec = PRESETS["ds1-photon"]()
    >>> spec.geometry.n_voxels, spec.geometry.n_layers
    (368, 5)
    >>> round(spec.depth_x0(), 1)
    31.8
    >>> twin = PRESETS["demo"]()
    >>> twin.geometry == default_binning(), round(twin.depth_x0(), 6)
    (True, 24.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hepgen.data.geometry import (
    CartesianGrid,
    CylindricalBinning,
    Geometry,
    HexagonalGrid,
    LayerBinning,
    LayeredCartesianGrid,
    default_binning,
)
from hepgen.simulate.calorimeter import LEAD, POLYSTYRENE, Material, SamplingCalorimeter, default_calorimeter

__all__ = [
    "PRESETS",
    "X0_MM",
    "CalorimeterSpec",
    "Slab",
    "calogan",
    "demo",
    "ds1_photon",
    "ds2",
    "gan3d",
    "get_preset",
    "gflash_calorimeter",
    "gflash_twin",
    "hgcal",
]

#: Radiation lengths (mm) of the NIST materials used here (PDG "Atomic and nuclear
#: properties of materials"); only for the depth bookkeeping of :meth:`CalorimeterSpec.depth_x0`
#: (Geant4 computes its own from the material definitions).
X0_MM = {"G4_Pb": 5.612, "G4_lAr": 140.0, "G4_Fe": 17.57, "G4_POLYSTYRENE": 413.1,
         "G4_W": 3.504, "G4_Si": 93.70, "G4_Cu": 14.36, "G4_Galactic": float("inf")}


@dataclass(frozen=True)
class Slab:
    """One flat slab of the stack.

    Arguments:
        material: a Geant4 NIST material name (``G4_Pb``, ``G4_lAr`` …).
        thickness_mm: thickness along the beam (mm).
        readout: the readout layer (position of an active layer of the geometry) whose voxels
            collect the energy deposited here, or ``None`` for a passive slab.
    """

    material: str
    thickness_mm: float
    readout: int | None = None


@dataclass(frozen=True)
class CalorimeterSpec:
    """A calorimeter for the Geant4 engine: slabs front to back plus the voxel geometry.

    Arguments:
        name: preset name (stored in the output's provenance).
        slabs: the stack, front to back.
        geometry: the readout binning; every active layer must be read out by some slab.
        radius_mm: transverse half-size of the slabs (cylinder radius, or half the side of a
            square plate for a Cartesian grid); must contain the binning.
        description: one line on what it models and how.
    """

    name: str
    slabs: tuple[Slab, ...]
    geometry: Geometry
    radius_mm: float
    description: str = ""

    def __post_init__(self) -> None:
        n = self.geometry.n_layers
        read = {s.readout for s in self.slabs if s.readout is not None}
        if read != set(range(n)):
            raise ValueError(f"preset {self.name!r}: slabs read out layers {sorted(read)}; expected "
                             f"every active layer 0 … {n - 1} of the geometry")
        for s in self.slabs:
            if not s.thickness_mm > 0:
                raise ValueError(f"preset {self.name!r}: slab thickness must be > 0 mm, found {s.thickness_mm}")
        if self.geometry.max_radius > self.radius_mm * (1 + 1e-9):
            raise ValueError(f"preset {self.name!r}: binning reaches {self.geometry.max_radius} mm, "
                             f"beyond the slab half-size {self.radius_mm} mm")

    @property
    def total_thickness_mm(self) -> float:
        return float(sum(s.thickness_mm for s in self.slabs))

    def depth_x0(self) -> float:
        """Depth of the whole stack in radiation lengths (PDG values of :data:`X0_MM`)."""
        return float(sum(s.thickness_mm / X0_MM[s.material] for s in self.slabs))

    def layer_depths_x0(self) -> list[tuple[float, float]]:
        """(start, end) depth in X0 of each readout layer (its first to its last active slab)."""
        out: dict[int, list[float]] = {}
        depth = 0.0
        for s in self.slabs:
            end = depth + s.thickness_mm / X0_MM[s.material]
            if s.readout is not None:
                lo, hi = out.get(s.readout, [depth, end])
                out[s.readout] = [min(lo, depth), max(hi, end)]
            depth = end
        return [tuple(out[k]) for k in sorted(out)]

    def to_dict(self) -> dict:
        return {"name": self.name, "radius_mm": self.radius_mm, "description": self.description,
                "slabs": [[s.material, s.thickness_mm, s.readout] for s in self.slabs],
                "geometry": self.geometry.to_dict()}


def _periods(absorber: str, d_abs: float, active: str, d_act: float, n: int, readout) -> list[Slab]:
    """``n`` absorber + active periods; ``readout`` an int (all to one layer) or ``i -> layer``."""
    out = []
    for i in range(n):
        layer = readout(i) if callable(readout) else readout
        out += [Slab(absorber, d_abs), Slab(active, d_act, layer)]
    return out


def ds1_photon() -> CalorimeterSpec:
    """CaloChallenge data set 1 (photons) binning on an ATLAS-barrel-like Pb/LAr + Fe/scintillator stack."""
    edges = {0: "0,5,10,30,50,100,200,400,600", 1: "0,2,4,6,8,10,12,15,20,30,40,50,70,90,120,150,200",
             2: "0,2,5,10,15,20,25,30,40,50,60,80,100,130,160,200,250,300,350,400", 3: "0,50,100,200,400,600",
             12: "0,100,200,400,1000,2000"}
    n_alpha = {1: 10, 2: 10}
    layers = tuple(LayerBinning(i, tuple(float(x) for x in edges[i].split(",")) if i in edges else (),
                                n_alpha.get(i, 1)) for i in range(24))
    geometry = CylindricalBinning(layers, "photon", 22)
    pb, lar = 1.5, 4.2  # mm: one accordion period of the ATLAS barrel, |eta| < 0.8
    slabs = [Slab("G4_Pb", 2.0 * X0_MM["G4_Pb"]), Slab("G4_lAr", 11.0, 0)]  # dead material, presampler
    slabs += _periods("G4_Pb", pb, "G4_lAr", lar, 14, 1)  # strips  ≈ 4.3 X0
    slabs += _periods("G4_Pb", pb, "G4_lAr", lar, 52, 2)  # middle  ≈ 16 X0
    slabs += _periods("G4_Pb", pb, "G4_lAr", lar, 7, 3)   # back    ≈ 2.1 X0
    slabs += _periods("G4_Fe", 14.0, "G4_POLYSTYRENE", 3.0, 10, 4)  # tile-like layer 12
    return CalorimeterSpec("ds1-photon", tuple(slabs), geometry, 2000.0,
                           "CaloChallenge DS1-photon binning on an ATLAS-barrel-like Pb/LAr sampling stack "
                           "(flat plates) with a Fe/scintillator tile layer")


def ds2() -> CalorimeterSpec:
    """CaloChallenge data set 2 binning on its W/Si stack (45 × (1.4 mm W + 0.3 mm Si))."""
    r_edges = [round(4.65 * i, 2) for i in range(10)]
    geometry = CylindricalBinning.regular(n_layers=45, r_edges=r_edges, n_alpha=16, particle="electron", pid=11)
    slabs = _periods("G4_W", 1.4, "G4_Si", 0.3, 45, lambda i: i)
    return CalorimeterSpec("ds2", tuple(slabs), geometry, 200.0,
                           "CaloChallenge DS2 binning on a W/Si stack of 45 x (1.4 mm W + 0.3 mm Si)")


def gan3d() -> CalorimeterSpec:
    """A 3DGAN-like Cartesian 25 × 25 × 25 grid of 5.1 mm cells on 25 × (2.8 mm W + 0.5 mm Si)."""
    geometry = CartesianGrid(nx=25, ny=25, nz=25, cell_size=5.1)
    slabs = _periods("G4_W", 2.8, "G4_Si", 0.5, 25, lambda i: i)
    return CalorimeterSpec("3dgan", tuple(slabs), geometry, 200.0,
                           "3DGAN/CLIC-like Cartesian 25x25x25 grid of 5.1 mm cells on 25 x (2.8 mm W + 0.5 mm Si)")


def calogan() -> CalorimeterSpec:
    """The CaloGAN calorimeter: 80 × (2 mm Pb + 4 mm LAr) in three readout layers of different granularity.

    Sources: Paganini, de Oliveira, Nachman, "CaloGAN", arXiv:1705.02355 (PRD 97 (2018)
    014021), section II and table I: a 480 mm × 480 mm × 480 mm lead / liquid-argon cube,
    layers 90, 347 and 43 mm deep, cells 5 × 160, 40 × 40 and 80 × 40 mm; the absorber and
    gap thicknesses (2 mm ``G4_Pb``, 4 mm liquid argon, 80 periods) from the paper's Geant4
    application (github.com/hep-lbdl/CaloGAN, ``generation/src/DetectorConstruction.cc``),
    and the layer boundaries at 90 and 437 mm from its cell conversion
    (``generation/convert_to_cells_v2.py``).  The 437 mm boundary cuts the liquid argon
    of period 73: its first 3 mm are read out by layer 1, its last 1 mm by layer 2 (two
    slabs), so the three layers are exactly 90, 347 and 43 mm deep.

    Approximations: ``G4_lAr`` (NIST, 1.396 g/cm³) instead of the application's
    1.390 g/cm³ argon; this engine's data-free EM physics list instead of the paper's
    (docs/geant4.md); the primary enters the centre of the front face along the axis
    (as in the paper) unless the caller asks otherwise.  The visible energy (LAr only) is
    scored, as in the CaloGAN files.

    >>> spec = calogan()
    >>> spec.geometry.n_voxels, [round(end, 1) for start, end in spec.layer_depths_x0()]
    (504, [5.8, 28.1, 30.8])
    """
    slabs: list[Slab] = []
    for i in range(80):
        slabs.append(Slab("G4_Pb", 2.0))
        if i < 15:
            slabs.append(Slab("G4_lAr", 4.0, 0))  # 0–90 mm
        elif i < 72:
            slabs.append(Slab("G4_lAr", 4.0, 1))
        elif i == 72:  # 432–438 mm: Pb 432–434, LAr 434–438, boundary at 437 mm
            slabs += [Slab("G4_lAr", 3.0, 1), Slab("G4_lAr", 1.0, 2)]
        else:
            slabs.append(Slab("G4_lAr", 4.0, 2))  # 437–480 mm
    return CalorimeterSpec("calogan", tuple(slabs), LayeredCartesianGrid.calogan(), 240.0,
                           "CaloGAN 480 mm Pb/LAr cube, 80 x (2 mm Pb + 4 mm LAr), three layers of 3x96, 12x12, "
                           "12x6 cells (90, 347, 43 mm deep)")


#: HGCAL prototype cells: 1.1 cm² hexagons (6-inch sensors of 128 cells, arXiv:2012.06336).
HGCAL_CELL_AREA_MM2 = 110.0


def hgcal() -> CalorimeterSpec:
    """A CMS HGCAL 2018 prototype-like CE-E: 28 silicon layers of hexagonal cells behind Pb, Cu and CuW.

    Sources (facts): the CE-E prototype tested at the CERN SPS in October 2018 consists of
    14 double-sided mini-modules giving 28 sampling layers, each layer a hexagonal silicon
    module with pads of ≈ 1 cm² (6-inch sensors, 128 cells of 1.1 cm², 300 µm silicon) on a
    metal (CuW) baseplate, with lead absorbers and copper cooling plates (CMS HGCAL,
    arXiv:2111.06855 and arXiv:2012.06336).

    Approximations (this preset, not the test-beam geometry): per mini-module, front to
    back, 0.3 mm steel (``G4_Fe``) + 4.9 mm Pb + 0.3 mm steel (a clad lead absorber), a
    0.3 mm silicon layer, a 1.2 mm CuW baseplate, a 6 mm Cu cooling plate, a second CuW
    baseplate and silicon layer (the two modules of the mini-module back to back).  CuW
    (75 % W, 25 % Cu by mass; no NIST material) is modelled as 0.7 mm W + 0.5 mm Cu, the same
    mass of each element per area (≈ 0.235 X0, as for 1.2 mm of the alloy).  Left out: the
    PCBs (≈ 0.01 X0 each), Kapton, air gaps, the beam-line material upstream and the
    varying absorbers of the real set-up.  The stack is ≈ 25.2 X0 deep here.  Readout: a
    hexagon of radius 6 (127 cells, the full cells of the 128-cell sensor) of pointy-top
    hexagonal cells of 1.1 cm² (pitch 11.27 mm), the same in every layer; the orientation
    is a choice, not the prototype's.  The slabs are 300 mm squares; energy in the silicon
    outside the hexagon is counted as outside the binning.

    >>> spec = hgcal()
    >>> spec.geometry.n_voxels, spec.geometry.n_cells, round(spec.depth_x0(), 1)
    (3556, 127, 25.2)
    """
    slabs: list[Slab] = []
    for i in range(14):
        slabs += [Slab("G4_Fe", 0.3), Slab("G4_Pb", 4.9), Slab("G4_Fe", 0.3),
                  Slab("G4_Si", 0.3, 2 * i), Slab("G4_W", 0.7), Slab("G4_Cu", 0.5),
                  Slab("G4_Cu", 6.0),
                  Slab("G4_Cu", 0.5), Slab("G4_W", 0.7), Slab("G4_Si", 0.3, 2 * i + 1)]
    geometry = HexagonalGrid.from_cell_area(28, 6, HGCAL_CELL_AREA_MM2, "pointy")
    return CalorimeterSpec("hgcal", tuple(slabs), geometry, 150.0,
                           "CMS HGCAL 2018 CE-E prototype-like: 14 mini-modules of Pb (steel-clad), CuW, Cu, "
                           "28 Si layers of 127 hexagonal 1.1 cm2 cells")


#: GFlash materials of the NIST names (PDG "Atomic and nuclear properties of materials": X0,
#: Molière radius, critical energy for e⁻ (Rossi), Z, density g/cm³, minimum dE/dx MeV cm²/g).
_GFLASH_MATERIALS = {
    "G4_Pb": LEAD,
    "G4_POLYSTYRENE": POLYSTYRENE,
    "G4_lAr": Material("liquid argon", X0_mm=140.0, moliere_radius_mm=90.43, critical_energy_MeV=32.84,
                       Z=18.0, density=1.396, mip_dedx=1.519),
    "G4_W": Material("tungsten", X0_mm=3.504, moliere_radius_mm=9.327, critical_energy_MeV=7.97,
                     Z=74.0, density=19.3, mip_dedx=1.145),
    "G4_Si": Material("silicon", X0_mm=93.70, moliere_radius_mm=48.82, critical_energy_MeV=40.19,
                      Z=14.0, density=2.329, mip_dedx=1.664),
}


def gflash_calorimeter(spec: CalorimeterSpec, sampling_fraction: float | None = None,
                       sampling_term: float = 0.10) -> SamplingCalorimeter:
    """The GFlash (:mod:`hepgen.simulate.calorimeter`) counterpart of a preset's main sampling structure.

    GFlash sees one homogeneous absorber/active mixture: that of the stack's most frequent
    (absorber, active) pair of slabs.  Its readout layers are made contiguous, each ending
    where the preset's layer ends (depths in PDG X0 from :meth:`CalorimeterSpec.layer_depths_x0`),
    so the front material and the gaps between readout layers are folded into the layers.

    Example:
        >>> cal = gflash_calorimeter(get_preset("ds1-photon"))
        >>> cal.absorber.name, cal.active.name, round(cal.total_depth_x0, 1)
        ('lead', 'liquid argon', 31.8)
    """
    pairs: dict[tuple, int] = {}
    for a, b in zip(spec.slabs[:-1], spec.slabs[1:]):
        if a.readout is None and b.readout is not None:
            key = (a.material, a.thickness_mm, b.material, b.thickness_mm)
            pairs[key] = pairs.get(key, 0) + 1
    absorber, d_abs, active, d_act = max(pairs, key=pairs.get)
    for name in (absorber, active):
        if name not in _GFLASH_MATERIALS:
            raise ValueError(f"preset {spec.name!r}: no GFlash material for {name!r}; GFlash knows "
                             f"{sorted(_GFLASH_MATERIALS)}")
    ends = [end for _, end in spec.layer_depths_x0()]
    thick = tuple(float(x) for x in np.diff([0.0] + ends))
    return SamplingCalorimeter(absorber=_GFLASH_MATERIALS[absorber], active=_GFLASH_MATERIALS[active],
                               sampling_fraction=sampling_fraction, sampling_term=sampling_term,
                               total_depth_x0=ends[-1], layer_thickness_x0=thick,
                               absorber_thickness_mm=d_abs, active_thickness_mm=d_act)


def _nist_name(material: Material) -> str:
    for name, m in _GFLASH_MATERIALS.items():
        if m == material:
            return name
    raise ValueError(f"GFlash material {material.name!r}: no Geant4 NIST counterpart; known: "
                     f"{sorted(m.name for m in _GFLASH_MATERIALS.values())}")


def gflash_twin(calorimeter: SamplingCalorimeter | None = None, geometry: Geometry | None = None,
                name: str = "demo", radius_mm: float = 300.0) -> CalorimeterSpec:
    """The Geant4 stack of a GFlash :class:`~hepgen.simulate.calorimeter.SamplingCalorimeter`, on ``geometry``.

    GFlash sees one homogeneous absorber/active mixture of ``total_depth_x0`` effective
    radiation lengths, read out in layers of ``layer_thickness_x0`` (default equal layers).
    The twin is the real stack: periods of ``absorber_thickness_mm`` absorber then
    ``active_thickness_mm`` active material (NIST materials of the GFlash ones), from the
    front face until the stack's depth in PDG radiation lengths (:data:`X0_MM`, the values
    GFlash's materials use) reaches ``total_depth_x0``.  A slab that straddles a GFlash layer
    boundary (in X0) is split there, so every readout layer covers exactly GFlash's depth
    interval in X0 (float rounding); its active slabs are read out by that layer, the
    absorbers are passive.  In mm the boundaries differ from GFlash's (``X0_eff ×`` depth)
    by less than one sampling period, because the stack is not homogeneous (absorber slabs
    hold almost all of each period's X0).  The slabs are ``radius_mm`` in radius (GFlash
    has no lateral edge; 300 mm ≈ 8 Molière radii of the default calorimeter).

    Arguments:
        calorimeter: the GFlash calorimeter (default :func:`~hepgen.simulate.calorimeter.default_calorimeter`).
        geometry: the readout binning (default :func:`~hepgen.data.geometry.default_binning`);
            its number of active layers must match ``layer_thickness_x0`` when that is given.
        name: the preset name recorded in the files.
        radius_mm: slab radius (mm).

    Example:
        >>> spec = gflash_twin()
        >>> edges = np.cumsum([s.thickness_mm / X0_MM[s.material] for s in spec.slabs])
        >>> [bool(np.isclose(edges, b).any()) for b in (3.0, 6.0, 21.0, 24.0)], spec.geometry.n_voxels
        ([True, True, True, True], 384)
    """
    cal = calorimeter if calorimeter is not None else default_calorimeter()
    geo = geometry if geometry is not None else default_binning()
    bounds = [float(b) for b in cal.layer_boundaries_x0(geo.n_layers)]  # (n_layers + 1,) X0, from 0
    period = [(_nist_name(cal.absorber), float(cal.absorber_thickness_mm)),
              (_nist_name(cal.active), float(cal.active_thickness_mm))]
    total = float(cal.total_depth_x0)
    eps = 1e-9  # X0: boundaries closer than this to a slab edge fall on the edge
    slabs: list[Slab] = []
    depth, k, i = 0.0, 0, 0
    while depth < total - eps:
        material, thick = period[i % 2]
        i += 1
        if thick <= 0:
            continue  # absorber_thickness_mm = 0: a homogeneous calorimeter
        active = i % 2 == 0
        x0 = X0_MM[material]
        left = thick / x0  # X0 of this slab still to place
        while left > eps and depth < total - eps:
            while k < geo.n_layers and depth >= bounds[k + 1] - eps:
                k += 1
            edge = bounds[k + 1] if k < geo.n_layers else total
            step = min(left, edge - depth, total - depth)
            readout = k if active and k < geo.n_layers else None
            slabs.append(Slab(material, float(step * x0), readout))
            depth += step
            left -= step
    return CalorimeterSpec(name, tuple(slabs), geo, float(radius_mm),
                           f"Geant4 twin of the GFlash calorimeter {cal.absorber_thickness_mm:g} mm "
                           f"{cal.absorber.name} / {cal.active_thickness_mm:g} mm {cal.active.name}, "
                           f"{total:g} X0, {geo.n_layers} readout layers at GFlash's depths in X0")


def demo() -> CalorimeterSpec:
    """``hepgen demo``'s calorimeter in Geant4: :func:`gflash_twin` of ``SamplingCalorimeter()`` on ``default_binning()``.

    2 mm Pb / 4 mm polystyrene periods (65.6 of them), 24 X0, 8 readout layers of 3 X0 each
    (the layer boundaries split slabs), 384 voxels; radius 300 mm.

    >>> spec = demo()
    >>> spec.name, round(spec.total_thickness_mm, 1), len(spec.slabs)
    ('demo', 391.2, 138)
    """
    return gflash_twin(default_calorimeter(), default_binning(), name="demo")


#: Preset name → constructor.
PRESETS: dict[str, Callable[[], CalorimeterSpec]] = {"ds1-photon": ds1_photon, "ds2": ds2, "3dgan": gan3d,
                                                     "calogan": calogan, "hgcal": hgcal,
                                                     "demo": demo}


def get_preset(name: str) -> CalorimeterSpec:
    """The preset ``name`` (one of :data:`PRESETS`).

    >>> get_preset("ds2").geometry.n_voxels
    6480
    """
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, found {name!r}")
    return PRESETS[name]()
