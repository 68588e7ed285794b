"""Hexagonal cells (HGCAL-like): axial indexing, centres, neighbours, position → cell (by hand and
against scipy's k-d tree), round trips, drawing, and the Geant4 ``hgcal`` preset (a few 1 GeV showers)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.spatial import cKDTree

from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import HexagonalGrid, geometry_from_dict, load_geometry, save_geometry
from hepgen.domains.showers.evaluate import layer_images
from hepgen.domains.showers.plots import plot_average_showers
from hepgen.metrics.observables import high_level_features, radial_profile
from hepgen.report.hexagons import draw_hexagonal_layer

H = np.sqrt(3) / 2 * 10.0  # 8.660 mm: row spacing of a 10 mm pitch


def test_radius_one_hexagon_by_hand():
    g = HexagonalGrid(n_layers=1, radius=1, pitch_mm=10.0)
    assert g.n_cells == 7
    # order: r then q increasing
    assert g.cell_qr().tolist() == [[0, -1], [1, -1], [-1, 0], [0, 0], [1, 0], [-1, 1], [0, 1]]
    x, y = g.cell_centres()
    np.testing.assert_allclose(x, [-5, 5, -10, 0, 10, -5, 5], atol=1e-12)
    np.testing.assert_allclose(y, [-H, -H, 0, 0, 0, H, H], atol=1e-12)
    # the centre has 6 neighbours, each edge cell 3 (the centre and its two ring neighbours)
    assert g.neighbours(3) == [0, 1, 2, 4, 5, 6]
    assert {c: g.neighbours(c) for c in (0, 1, 2, 4, 5, 6)} == {
        0: [1, 2, 3], 1: [0, 3, 4], 2: [0, 3, 5], 4: [1, 3, 6], 5: [2, 3, 6], 6: [3, 4, 5]}


def test_flat_top_centres_by_hand():
    g = HexagonalGrid(n_layers=1, radius=1, pitch_mm=10.0, orientation="flat")
    x, y = g.cell_centres()
    np.testing.assert_allclose(x, [0, H, -H, 0, H, -H, 0], atol=1e-12)
    np.testing.assert_allclose(y, [-10, -5, -5, 0, 5, 5, 10], atol=1e-12)
    assert g.neighbours(3) == [0, 1, 2, 4, 5, 6] and g.neighbours(6) == [3, 4, 5]


def test_cell_shape_by_hand():
    g = HexagonalGrid(n_layers=1, radius=0, pitch_mm=10.0)
    v = g.cell_vertices()[0]
    a = 10.0 / np.sqrt(3)  # side = circumradius
    # pointy-top: vertices at 30° + 60° k, the top one at (0, a)
    np.testing.assert_allclose(v[1], [0.0, a], atol=1e-12)
    np.testing.assert_allclose(v[0], [5.0, a / 2], atol=1e-12)
    shoelace = 0.5 * abs(np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1)))
    assert shoelace == pytest.approx(np.sqrt(3) / 2 * 100.0) == g.cell_area_mm2
    assert HexagonalGrid.from_cell_area(1, 0, 110.0).cell_area_mm2 == pytest.approx(110.0)
    f = HexagonalGrid(n_layers=1, radius=0, pitch_mm=10.0, orientation="flat").cell_vertices()[0]
    np.testing.assert_allclose(f[0], [a, 0.0], atol=1e-12)  # flat-top: a vertex along +x


@pytest.mark.parametrize("radius, counts", [(1, {6: 1, 3: 6}), (2, {6: 7, 4: 6, 3: 6}), (6, {6: 91, 4: 30, 3: 6})])
def test_neighbour_counts(radius, counts):
    # a hexagon of radius R: interior cells 6 neighbours, the 6 corners 3, the other edge cells 4
    g = HexagonalGrid(n_layers=1, radius=radius, pitch_mm=1.0)
    n = (g.neighbour_table() >= 0).sum(axis=1)
    assert dict(zip(*np.unique(n, return_counts=True))) == counts
    assert g.n_cells == 3 * radius * (radius + 1) + 1


@pytest.mark.parametrize("orientation", ["pointy", "flat"])
def test_neighbours_match_a_kd_tree(orientation):
    g = HexagonalGrid(n_layers=1, radius=4, pitch_mm=7.5, orientation=orientation)
    x, y = g.cell_centres()
    pairs = cKDTree(np.c_[x, y]).query_pairs(r=7.5 * 1.01)  # centres one pitch apart
    table = g.neighbour_table()
    mine = {tuple(sorted((i, int(j)))) for i in range(g.n_cells) for j in table[i] if j >= 0}
    assert mine == pairs


def test_position_to_cell_at_centres_and_near_edges():
    g = HexagonalGrid(n_layers=1, radius=1, pitch_mm=10.0)
    x, y = g.cell_centres()
    np.testing.assert_array_equal(g.cell_at(x, y), np.arange(7))
    a, e = 10.0 / np.sqrt(3), 1e-3
    # across the vertical side at x = 5: centre (3) | right (4); beyond the right cell: outside
    # above the top vertex (0, a): just below it the centre cell, just above it and right of x = 0 cell 6
    # (q, r) = (0, 1), left of x = 0 cell 5; far away: outside
    px = [5 - e, 5 + e, 15 - e, 15 + e, 0.0, e, -e, 100.0]
    py = [0.0, 0.0, 0.0, 0.0, a - e, a + e, a + e, 0.0]
    assert g.cell_at(px, py).tolist() == [3, 4, 4, -1, 3, 6, 5, -1]
    # the three layers' voxel index adds the layer offset; layer 3 does not exist
    g3 = HexagonalGrid(n_layers=3, radius=1, pitch_mm=10.0)
    assert g3.voxel_index([0, 1, 2, 3, 2], [0, 0, 10, 0, 100], [0, 0, 0, 0, 0]).tolist() == [3, 10, 18, -1, -1]


@pytest.mark.parametrize("orientation", ["pointy", "flat"])
def test_position_to_cell_is_the_nearest_centre(orientation):
    # a hexagonal cell is the Voronoi cell of its centre: compare with scipy's nearest neighbour among
    # the centres of a hexagon one ring larger (a point whose nearest centre is in the outer ring is outside)
    g = HexagonalGrid(n_layers=1, radius=3, pitch_mm=11.27, orientation=orientation)
    big = HexagonalGrid(n_layers=1, radius=4, pitch_mm=11.27, orientation=orientation)
    pts = np.random.default_rng(0).uniform(-60, 60, (20000, 2))
    _, nearest = cKDTree(np.c_[big.cell_centres()]).query(pts)
    qr_big = big.cell_qr()[nearest]
    lookup = {tuple(qr): i for i, qr in enumerate(g.cell_qr().tolist())}
    expected = np.array([lookup.get(tuple(qr), -1) for qr in qr_big.tolist()])
    assert np.array_equal(g.cell_at(pts[:, 0], pts[:, 1]), expected)
    assert (expected >= 0).sum() > 5000 and (expected < 0).sum() > 5000


def test_common_geometry_interface():
    g = HexagonalGrid(n_layers=2, radius=1, pitch_mm=10.0)
    assert g.n_voxels == 14 and g.layer_slices == [slice(0, 7), slice(7, 14)]
    np.testing.assert_array_equal(g.voxel_layer(), [0] * 7 + [1] * 7)
    x, y = g.voxel_xy()
    np.testing.assert_allclose(x[7:], x[:7]) and np.testing.assert_allclose(y[7:], y[:7])
    np.testing.assert_allclose(g.voxel_r(), np.hypot(x, y))
    np.testing.assert_allclose(g.voxel_area(), np.sqrt(3) / 2 * 100.0)
    assert g.max_radius == pytest.approx(15.0)  # the vertical sides of the right and left cells
    assert g.layer_image_shape(0) is None
    # one shower with 1 MeV in cell 4 (x = 10) of layer 0 and 3 MeV in cell 3 (centre) of layer 1
    s = np.zeros((1, 14))
    s[0, 4], s[0, 10] = 1.0, 3.0
    f = high_level_features(s, np.array([8.0]), g)
    assert f["EC_eta_0"][0] == pytest.approx(10.0) and f["EC_eta_1"][0] == pytest.approx(0.0)
    assert f["E_tot_over_E_inc"][0] == pytest.approx(0.5)
    centres, e = radial_profile(s, g)  # rings of one pitch: r = 0 and r = 10 mm
    np.testing.assert_allclose(centres, [5.0, 15.0])
    np.testing.assert_allclose(e, [[3.0, 1.0]])
    assert layer_images(s, np.array([8.0]), g) == [None, None]  # no square images: no SSIM


def test_round_trips(tmp_path):
    g = HexagonalGrid.from_cell_area(28, 6, 110.0, "flat")
    save_geometry(g, tmp_path / "hex.json")
    assert load_geometry(tmp_path / "hex.json") == g and geometry_from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match=r"hex\.xml: only cylindrical binnings can be written as XML"):
        save_geometry(g, tmp_path / "hex.xml")
    showers = np.random.default_rng(1).gamma(1.0, size=(3, g.n_voxels)).astype(np.float32)
    write_showers(tmp_path / "s.h5", ShowerData(showers, np.full((3, 1), 1e3), {}, g, {}))
    assert read_showers(tmp_path / "s.h5").geometry == g


def test_errors():
    with pytest.raises(ValueError, match="radius must be an integer >= 0, found -1"):
        HexagonalGrid(1, -1, 10.0)
    with pytest.raises(ValueError, match="orientation must be 'pointy' or 'flat', found 'round'"):
        HexagonalGrid(1, 1, 10.0, "round")
    with pytest.raises(ValueError, match="pitch_mm must be > 0 mm, found 0"):
        HexagonalGrid(1, 1, 0)
    with pytest.raises(ValueError, match=r"cell must be in 0 … 6, found 7"):
        HexagonalGrid(1, 1, 10.0).neighbours(7)
    with pytest.raises(ValueError, match="values: expected 7 cells"):
        draw_hexagonal_layer(Figure().add_subplot(), HexagonalGrid(1, 1, 10.0), np.zeros(14))


def test_drawing(tmp_path):
    g = HexagonalGrid(n_layers=2, radius=2, pitch_mm=10.0)
    ax = Figure().add_subplot()
    values = np.arange(g.n_cells, dtype=float)
    coll = draw_hexagonal_layer(ax, g, values)
    assert len(coll.get_paths()) == 19
    np.testing.assert_array_equal(coll.get_array(), values)
    np.testing.assert_allclose(coll.get_paths()[9].vertices[:6], g.cell_vertices()[9])  # the centre cell
    assert ax.get_xlim() == pytest.approx((-25.0, 25.0))
    showers = np.random.default_rng(0).gamma(1.0, size=(20, g.n_voxels))
    plot_average_showers(tmp_path / "avg.png", showers, showers, g)
    assert (tmp_path / "avg.png").stat().st_size > 1000


# --- Geant4 -----------------------------------------------------------------------------------
HGCAL_RUN = textwrap.dedent("""
    import sys
    import numpy as np
    from hepgen.simulate.geant4 import get_engine
    eng = get_engine("hgcal")
    a = eng.simulate(np.full(8, 1000.0), "e-", seed=21)
    x, y = eng.spec.geometry.cell_centres()
    b = eng.simulate(np.full(3, 1000.0), "e-", impact_position=np.tile([x[80], y[80]], (3, 1)), seed=22)
    np.savez(sys.argv[1], visible=a["showers"].sum(1), outside=a["outside"].sum(1), absorber=a["absorber"],
             offset=b["showers"].sum(0))
""")


@pytest.fixture(scope="module")
def hgcal_g4(tmp_path_factory):
    from hepgen.simulate.geant4 import engine  # first: sets Geant4's data-free environment

    if engine.g4 is None:
        pytest.skip("the optional extra hepgen[geant4] is not installed")
    out = tmp_path_factory.mktemp("hgcal")
    res = subprocess.run([sys.executable, "-c", HGCAL_RUN, str(out / "run.npz")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "hepgen.cli", "simulate", "showers", "--engine", "geant4",
                          "--preset", "hgcal", "--particle", "e-", "--energies", "1000", "--n", "2", "-q",
                          "--output", str(out / "hgcal.h5")], capture_output=True, text=True, timeout=300, check=False)
    assert cli.returncode == 0, cli.stderr[-3000:]
    return out


def test_hgcal_geant4_energy_conservation_and_sampling(hgcal_g4):
    r = np.load(hgcal_g4 / "run.npz")
    total = (r["visible"] + r["outside"] + r["absorber"]) / 1000.0
    # 25.2 X0 deep, 300 mm wide: at 1 GeV a few per cent at most escape (measured over 20 showers:
    # mean 0.996, lowest 0.988)
    assert np.all((total > 0.9) & (total < 1.0 + 1e-6)) and total.mean() > 0.97
    # MIP sampling fraction per mini-module (PDG minimum dE/dx): 2 × 0.3 mm Si = 0.23 MeV against
    # 6.2 (Pb) + 0.7 (steel) + 3.1 (W) + 8.8 (Cu) MeV: 0.0122 (measured for showers: 0.0120 ± 0.0033
    # per 1 GeV shower, 0.0117 ± 0.0009 at 10 GeV); the mean of 8 showers has a spread of ≈ 0.0012
    assert 0.007 < r["visible"].mean() / 1000.0 < 0.017
    # the silicon outside the 127-cell hexagon (≈ 73 mm half-width) sees only the shower's tail
    assert r["outside"].mean() < 0.1 * r["visible"].mean()


def test_hgcal_geant4_cells_follow_the_impact_point(hgcal_g4):
    g = HexagonalGrid.from_cell_area(28, 6, 110.0)
    s = np.load(hgcal_g4 / "run.npz")["offset"].reshape(g.n_layers, g.n_cells)
    # summed over layers, the hottest cell is the one whose centre the primary hit (cell 80)
    assert int(np.argmax(s.sum(0))) == 80
    qr = g.cell_qr()[80].tolist()
    # its six neighbours hold more energy than the cells two rings away
    near = s.sum(0)[g.neighbours(80)].mean()
    far = s.sum(0)[[i for i, c in enumerate(g.cell_qr().tolist())
                    if max(abs(c[0] - qr[0]), abs(c[1] - qr[1]), abs(c[0] + c[1] - qr[0] - qr[1])) == 2]].mean()
    assert near > 3 * far


def test_hgcal_cli_file_carries_the_geometry(hgcal_g4):
    data = read_showers(hgcal_g4 / "hgcal.h5")
    assert data.geometry == HexagonalGrid.from_cell_area(28, 6, 110.0) and data.showers.shape == (2, 3556)
    assert data.attrs["preset"] == "hgcal"
    assert np.all(data.showers.sum(1) / data.incident_energies[:, 0] < 0.03)


@pytest.mark.parametrize("orientation", ["pointy", "flat"])
def test_geant4_cell_solid_is_the_geometry_cell(orientation):
    # the prism the engine places for every cell (G4ExtrudedSolid of _cell_shape) holds exactly the
    # points that HexagonalGrid.cell_at gives to that cell (Geant4's own G4VSolid::Inside)
    from hepgen.simulate.geant4 import engine  # first: sets Geant4's data-free environment

    if engine.g4 is None:
        pytest.skip("the optional extra hepgen[geant4] is not installed")
    g4 = engine.g4
    g = HexagonalGrid(n_layers=1, radius=0, pitch_mm=11.27, orientation=orientation)
    shape = engine._cell_shape(g, 0)
    assert shape[0] == "polygon" and len(shape) == 13
    poly = g4.G4TwoVectorVector()
    for i in range(1, 13, 2):
        poly.append(g4.G4TwoVector(shape[i], shape[i + 1]))
    solid = g4.G4ExtrudedSolid("cell", poly, 1.0, g4.G4TwoVector(0, 0), 1.0, g4.G4TwoVector(0, 0), 1.0)
    try:
        pts = np.random.default_rng(5).uniform(-8, 8, (3000, 2))
        inside = np.array([solid.Inside(g4.G4ThreeVector(float(x), float(y), 0.0)) == g4.EInside.kInside
                           for x, y in pts])
        assert np.array_equal(inside, g.cell_at(pts[:, 0], pts[:, 1]) == 0) and inside.sum() > 1000
    finally:
        del solid  # before interpreter exit (see engine.py: a G4ExtrudedSolid alive at exit crashes it)
