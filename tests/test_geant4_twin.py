"""The Geant4 twin of the demo's GFlash calorimeter (preset ``demo``, :func:`gflash_twin`).

Pure bookkeeping of the slab stack: no Geant4 run, so these tests need no extra.
"""

import numpy as np
import pytest

from hepgen.data.geometry import CylindricalBinning, default_binning
from hepgen.simulate.calorimeter import LEAD, POLYSTYRENE, Material, SamplingCalorimeter
from hepgen.simulate.geant4.presets import X0_MM, get_preset, gflash_twin


def _edges_x0(spec):
    """Cumulative depth (PDG X0) at the back of every slab."""
    return np.cumsum([s.thickness_mm / X0_MM[s.material] for s in spec.slabs])


def _check_layers(spec, bounds):
    """Every GFlash boundary is a slab edge; every active slab of layer k lies inside [b_k, b_k+1]."""
    edges = _edges_x0(spec)
    starts = np.concatenate([[0.0], edges[:-1]])
    for b in bounds[1:]:
        assert np.min(np.abs(edges - b)) < 1e-9, b
    layers_seen = set()
    for s, lo, hi in zip(spec.slabs, starts, edges):
        if s.readout is None:
            continue
        layers_seen.add(s.readout)
        assert bounds[s.readout] - 1e-9 <= lo and hi <= bounds[s.readout + 1] + 1e-9, (s, lo, hi)
    assert layers_seen == set(range(len(bounds) - 1))


def test_demo_preset_is_the_default_calorimeter_in_x0():
    spec, cal = get_preset("demo"), SamplingCalorimeter()
    # the same voxels as the demo's files
    assert spec.geometry == default_binning() and spec.geometry.to_dict() == default_binning().to_dict()
    # the same radiation lengths as GFlash's materials
    assert X0_MM["G4_Pb"] == LEAD.X0_mm and X0_MM["G4_POLYSTYRENE"] == POLYSTYRENE.X0_mm
    # depth in X0: GFlash's 24 X0 within float rounding (tolerance 1e-9 X0)
    assert cal.total_depth_x0 == 24.0 and abs(spec.depth_x0() - 24.0) < 1e-9
    # per-layer depth: 8 layers of 3 X0, boundaries at GFlash's, active slabs inside them (1e-9 X0)
    bounds = cal.layer_boundaries_x0(8)
    np.testing.assert_allclose(np.diff(bounds), 3.0)
    _check_layers(spec, bounds)
    # materials and thicknesses: whole periods of 2 mm Pb then 4 mm polystyrene, absorbers passive
    assert {s.material for s in spec.slabs} == {"G4_Pb", "G4_POLYSTYRENE"}
    assert all((s.readout is None) == (s.material == "G4_Pb") for s in spec.slabs)
    merged = []  # slabs split at a layer boundary merged back
    for s in spec.slabs:
        if merged and merged[-1][0] == s.material:
            merged[-1][1] += s.thickness_mm
        else:
            merged.append([s.material, s.thickness_mm])
    assert [m for m, _ in merged] == ["G4_Pb", "G4_POLYSTYRENE"] * 65 + ["G4_Pb"]
    np.testing.assert_allclose([t for _, t in merged[:-1]], [2.0, 4.0] * 65, rtol=0, atol=1e-9)
    # hand-worked: 65 periods are 65 (2/5.612 + 4/413.1) = 23.794035 X0; the remaining
    # 0.205965 X0 of lead is 1.155877 mm, so the stack is 391.155877 mm deep
    assert merged[-1][1] == pytest.approx(1.155877, abs=1e-6)
    assert spec.total_thickness_mm == pytest.approx(391.155877, abs=1e-6)
    # in mm the boundaries are within one sampling period (6 mm) of GFlash's X0_eff × depth
    edges_mm = np.cumsum([s.thickness_mm for s in spec.slabs])
    for b in bounds[1:]:
        z = edges_mm[np.argmin(np.abs(_edges_x0(spec) - b))]
        assert abs(z - b * cal.X0_mm) < 6.0
    assert spec.radius_mm >= 2 * spec.geometry.max_radius


def test_twin_of_unequal_layers_and_passive_back():
    # 3 readout layers of 1, 2.5, 3 X0 in a 10 X0 calorimeter of 3 mm Pb / 2 mm plastic:
    # the last 3.5 X0 are passive (GFlash loses spots there; Geant4 scores them as absorber)
    cal = SamplingCalorimeter(total_depth_x0=10.0, layer_thickness_x0=(1.0, 2.5, 3.0),
                              absorber_thickness_mm=3.0, active_thickness_mm=2.0)
    geo = CylindricalBinning.regular(3, [0, 10, 50], n_alpha=2)
    spec = gflash_twin(cal, geo, name="t", radius_mm=100.0)
    assert spec.name == "t" and spec.geometry == geo
    assert abs(spec.depth_x0() - 10.0) < 1e-9
    _check_layers(spec, [0.0, 1.0, 3.5, 6.5])
    last_active = max(i for i, s in enumerate(spec.slabs) if s.readout is not None)
    assert _edges_x0(spec)[last_active] <= 6.5 + 1e-9
    assert all(s.readout is None for s in spec.slabs[last_active + 1:])


def test_twin_refuses_a_material_without_nist_name():
    odd = Material("unobtainium", X0_mm=10.0, moliere_radius_mm=20.0, critical_energy_MeV=10.0, Z=50.0,
                   density=5.0, mip_dedx=1.2)
    with pytest.raises(ValueError, match=r"^GFlash material 'unobtainium': no Geant4 NIST counterpart; known: "):
        gflash_twin(SamplingCalorimeter(absorber=odd))
