"""CaloChallenge HDF5 and binning XML: round trips and every bad-input case."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import CartesianGrid, CylindricalBinning, load_geometry, save_geometry

XML = """<?xml version="1.0"?>
<Bins>
  <Bin pid="22" name="photon" etaMin="0" etaMax="130">
    <Layer id="0" r_edges="0,5,10,30" n_bin_alpha="1"/>
    <Layer id="1" r_edges="0,2,4,8,20" n_bin_alpha="4"/>
    <Layer id="2" r_edges="0" n_bin_alpha="1"/>
    <Layer id="3" r_edges="0,10,50" n_bin_alpha="2"/>
  </Bin>
  <Bin pid="11" name="electron"><Layer id="0" r_edges="0,1" n_bin_alpha="1"/></Bin>
</Bins>
"""


@pytest.fixture
def xml_path(tmp_path):
    p = tmp_path / "binning.xml"
    p.write_text(XML)
    return p


def _data(geometry, n=20, seed=0, conditions=True):
    rng = np.random.default_rng(seed)
    s = rng.exponential(size=(n, geometry.n_voxels)).astype(np.float32)
    s[s < 0.5] = 0
    cond = {"incident_theta": rng.uniform(0, 0.3, (n, 1)), "impact_position": rng.uniform(-5, 5, (n, 2))}
    return ShowerData(s, rng.uniform(1e3, 1e5, (n, 1)), cond if conditions else {}, geometry,
                      {"generator": "test", "seed": 3})


def test_xml_parsing_inactive_layer_and_voxel_order(xml_path):
    b = CylindricalBinning.from_xml(xml_path)
    assert b.particle == "photon" and b.pid == 22
    assert [l.active for l in b.layers] == [True, True, False, True]
    assert b.n_layers == 3 and b.n_voxels == 3 + 16 + 4
    assert b.layer_slices == [slice(0, 3), slice(3, 19), slice(19, 23)]
    # radial-fastest, then angular, then layer: layer 1, α bin 2 (0 … π/2), r bin 1 (2–4 mm)
    x, y = 3 * np.cos(0.5), 3 * np.sin(0.5)
    assert b.voxel_index(np.array([1]), np.array([x]), np.array([y]))[0] == 3 + 2 * 4 + 1
    assert b.voxel_index(np.array([0]), np.array([31.0]), np.array([0.0]))[0] == -1  # beyond r_edges
    assert CylindricalBinning.from_xml(xml_path, particle="electron").n_voxels == 1


def test_xml_round_trip(xml_path, tmp_path):
    b = CylindricalBinning.from_xml(xml_path)
    save_geometry(b, tmp_path / "again.xml")
    assert load_geometry(tmp_path / "again.xml") == b
    g = CartesianGrid(4, 5, 3, 2.5)
    save_geometry(g, tmp_path / "grid.json")
    assert load_geometry(tmp_path / "grid.json") == g


@pytest.mark.parametrize(
    "text, match",
    [
        ("<Bins/>", "expected <Bin> elements"),
        ("<Bins><Bin name='photon'><Layer id='0' n_bin_alpha='1'/></Bin></Bins>", "missing attribute 'r_edges'"),
        ("<Bins><Bin name='photon'><Layer id='0' r_edges='0,a' n_bin_alpha='1'/></Bin></Bins>", "comma-separated numbers"),
        ("<Bins><Bin name='photon'><Layer id='0' r_edges='0,5,3'/></Bin></Bins>", "strictly increasing"),
        ("<Bins><Bin", "not a valid XML"),
        ("<Bins><Bin name='photon'/></Bins>", "no <Layer> elements"),
        ("<Bins><Bin name='photon'><Layer id='0' r_edges='0,1' n_bin_alpha='x'/></Bin></Bins>", "non-integer"),
        ("<Bins><Bin name='photon'><Layer id='0' r_edges='0'/></Bin></Bins>", "no active layer"),
    ],
)
def test_bad_xml(tmp_path, text, match):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        CylindricalBinning.from_xml(p)
    assert "bad.xml" in str(err.value)


def test_cartesian_voxel_index():
    g = CartesianGrid(nx=4, ny=2, nz=2, cell_size=10.0)  # x edges -20..20, y edges -10..10
    idx = g.voxel_index(np.array([0, 1, 1, 0]), np.array([-15.0, 15.0, 25.0, 0.1]), np.array([-5.0, 5.0, 0.0, 0.1]))
    np.testing.assert_array_equal(idx, [0, 8 + 4 + 3, -1, 4 + 2])


@pytest.mark.parametrize("geometry", [CylindricalBinning.regular(3, [0, 1, 2, 4], 3), CartesianGrid(3, 3, 4, 5.0)])
def test_round_trip(tmp_path, geometry):
    d = _data(geometry)
    write_showers(tmp_path / "s.h5", d)
    back = read_showers(tmp_path / "s.h5")
    np.testing.assert_array_equal(back.showers, d.showers)
    np.testing.assert_array_equal(back.incident_energies, d.incident_energies)
    for k in d.conditions:
        np.testing.assert_array_equal(back.conditions[k], d.conditions[k])
    assert back.geometry == geometry
    assert back.attrs["generator"] == "test" and back.attrs["seed"] == 3
    sub = back.subset(np.arange(5))
    assert len(sub) == 5 and sub.conditions["impact_position"].shape == (5, 2)
    assert back.condition_matrix(["incident_theta"]).shape == (20, 2)


def test_reads_plain_calochallenge_file_with_xml(tmp_path, xml_path):
    b = CylindricalBinning.from_xml(xml_path)
    with h5py.File(tmp_path / "cc.h5", "w") as f:  # exactly the community layout, nothing else
        f["incident_energies"] = np.array([[1000.0], [2000.0]])
        f["showers"] = np.ones((2, 23), dtype=np.float32)
    d = read_showers(tmp_path / "cc.h5", geometry=xml_path)
    assert d.geometry == b and d.conditions == {} and d.showers.dtype == np.float32
    assert read_showers(tmp_path / "cc.h5").geometry is None


def _write_raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v


GOOD_S = np.ones((4, 23), dtype=np.float32)
GOOD_E = np.full((4, 1), 1000.0)


@pytest.mark.parametrize(
    "datasets, match",
    [
        (dict(showers=GOOD_S), r"missing dataset 'incident_energies'.*found keys \['showers'\]"),
        (dict(incident_energies=GOOD_E), r"missing dataset 'showers'.*found keys \['incident_energies'\]"),
        (dict(showers=np.array([b"a"] * 4), incident_energies=GOOD_E), r"key 'showers': expected a numeric dataset, found dtype \|S1"),
        (dict(showers=GOOD_S, incident_energies=GOOD_E, impact_position=np.array([[b"x"]] * 4)), r"key 'impact_position': expected a numeric dataset"),
        (dict(showers=GOOD_S, incident_energies=GOOD_E, incident_theta=np.full((4, 1), np.nan)), r"key 'incident_theta': expected finite values, found NaN/Inf in 4 row\(s\)"),
        (dict(showers=np.ones(4), incident_energies=GOOD_E), r"key 'showers': expected a 2-d array.*found shape \(4,\)"),
        (dict(showers=GOOD_S, incident_energies=np.ones((4, 2))), r"key 'incident_energies': expected shape \(N, 1\), found \(4, 2\)"),
        (dict(showers=GOOD_S, incident_energies=GOOD_E[:3]), r"4 showers but key 'incident_energies' has 3"),
        (dict(showers=np.where(np.eye(4, 23) > 0, np.nan, 1.0), incident_energies=GOOD_E), r"key 'showers': expected finite values, found NaN/Inf in 4 row\(s\), first at row 0"),
        (dict(showers=GOOD_S, incident_energies=np.array([[1.0], [np.inf], [1.0], [1.0]])), r"key 'incident_energies': expected finite.*first at row 1"),
        (dict(showers=np.where(np.arange(23) == 5, -2.0, 1.0) * np.ones((4, 1)), incident_energies=GOOD_E), r"key 'showers': expected energies >= 0 MeV, found minimum -2"),
        (dict(showers=GOOD_S, incident_energies=np.array([[1.0], [0.0], [1.0], [1.0]])), r"key 'incident_energies': expected energies > 0 MeV, found minimum 0"),
        (dict(showers=np.ones((4, 30)), incident_energies=GOOD_E), r"key 'showers': expected shape \(N, 23\) to match binning 'binning.xml', found \(4, 30\)"),
        (dict(showers=GOOD_S, incident_energies=GOOD_E, incident_theta=np.ones((3, 1))), r"key 'incident_theta': expected first dimension 4"),
    ],
)
def test_bad_hdf5_inputs_name_file_key_and_values(tmp_path, xml_path, datasets, match):
    path = tmp_path / "bad_input.h5"
    _write_raw(path, **datasets)
    with pytest.raises(ValueError, match=match) as err:
        read_showers(path, geometry=xml_path)
    assert "bad_input.h5" in str(err.value)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5: file not found"):
        read_showers(tmp_path / "nothing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="text.h5: expected an HDF5 file"):
        read_showers(tmp_path / "text.h5")


def test_write_is_atomic(tmp_path, monkeypatch):
    geo = CylindricalBinning.regular(2, [0, 1], 1)
    path = tmp_path / "keep.h5"
    write_showers(path, _data(geo, n=3))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_showers(path, _data(geo, n=5, seed=9))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.h5"]  # no temporary file left behind


def test_write_refuses_invalid_data(tmp_path):
    geo = CylindricalBinning.regular(2, [0, 1], 1)
    d = _data(geo, n=3)
    d.showers[0, 0] = -1.0
    with pytest.raises(ValueError, match="out.h5: key 'showers': expected energies >= 0"):
        write_showers(tmp_path / "out.h5", d)
    assert not Path(tmp_path / "out.h5").exists()


def test_unknown_particle_and_grid_as_xml(xml_path, tmp_path):
    with pytest.raises(ValueError, match=r"binning.xml: no <Bin name='pion'>, found names \['photon', 'electron'\]"):
        CylindricalBinning.from_xml(xml_path, particle="pion")
    with pytest.raises(ValueError, match="grid.xml: only cylindrical"):
        save_geometry(CartesianGrid(2, 2, 2), tmp_path / "grid.xml")
    with pytest.raises(FileNotFoundError, match="absent.xml"):
        load_geometry(tmp_path / "absent.xml")


def test_group_instead_of_dataset(tmp_path):
    with h5py.File(tmp_path / "grp.h5", "w") as f:
        f.create_group("showers")
        f["incident_energies"] = GOOD_E
    with pytest.raises(ValueError, match="grp.h5: key 'showers': expected a dataset, found a Group"):
        read_showers(tmp_path / "grp.h5")


def test_truncated_hdf5(tmp_path):
    path = tmp_path / "cut.h5"
    write_showers(path, _data(CartesianGrid(8, 8, 8), n=50))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.h5"):
        read_showers(path)


def test_one_dim_energies_geometry_precedence_and_json_geometry(tmp_path):
    grid = CartesianGrid(2, 2, 1)
    _write_raw(tmp_path / "e1.h5", showers=np.ones((3, 4)), incident_energies=np.full(3, 500.0))
    d = read_showers(tmp_path / "e1.h5", geometry=grid)
    assert d.incident_energies.shape == (3, 1) and d.geometry == grid
    save_geometry(grid, tmp_path / "grid.json")
    assert read_showers(tmp_path / "e1.h5", geometry=tmp_path / "grid.json").geometry == grid
    # the argument wins over the geometry stored in the file, and is checked against the data
    write_showers(tmp_path / "g.h5", _data(grid, n=3))
    other = CylindricalBinning.regular(1, [0, 1, 2], 2)
    assert read_showers(tmp_path / "g.h5", geometry=other).geometry == other
    with pytest.raises(ValueError, match=r"g.h5: key 'showers': expected shape \(N, 8\).*found \(3, 4\)"):
        read_showers(tmp_path / "g.h5", geometry=CartesianGrid(2, 2, 2))


def test_attrs_arrays_and_bytes(tmp_path):
    grid = CartesianGrid(2, 2, 1)
    d = _data(grid, n=3)
    d.attrs = {"edges": np.arange(3), "note": None, "cfg": {"a": 1}}
    write_showers(tmp_path / "a.h5", d)
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f.attrs["raw"] = np.array([1.5, 2.5])
        f.attrs["blob"] = np.bytes_(b"geant4")
    attrs = read_showers(tmp_path / "a.h5").attrs
    assert json.loads(attrs.pop("hepgen_provenance"))["seed"] is None  # every writer records itself
    assert attrs == {"edges": "[0, 1, 2]", "cfg": '{"a": 1}', "raw": [1.5, 2.5], "blob": "geant4"}
    d.attrs = {"bad": object()}
    with pytest.raises(ValueError, match="attribute 'bad': expected a JSON-able value, found object"):
        write_showers(tmp_path / "b.h5", d)


def test_write_refuses_unknown_condition(tmp_path):
    d = _data(CartesianGrid(2, 2, 1), n=3)
    d.conditions["showers"] = np.ones((3, 1))
    with pytest.raises(ValueError, match=r"out.h5: conditions \['showers'\]: expected names from"):
        write_showers(tmp_path / "out.h5", d)
    assert not (tmp_path / "out.h5").exists()


def test_in_memory_validation_and_condition_matrix(tmp_path):
    from hepgen.data.formats import CONDITION_KEYS, validate_showers

    assert CONDITION_KEYS == ("incident_theta", "incident_phi", "impact_position")
    d = ShowerData([[1.0, 2.0]], [[10.0]], {"impact_position": [[1.0, -2.0]], "incident_theta": [[0.1]]})
    validate_showers(d)
    np.testing.assert_array_equal(d.condition_matrix(), [[10.0, 1.0, -2.0, 0.1]])
    np.testing.assert_array_equal(d.condition_matrix(["incident_theta"]), [[10.0, 0.1]])
    assert d.condition_matrix().dtype == np.float64
    with pytest.raises(ValueError, match=r"\['incident_phi'\] requested, found only"):
        d.condition_matrix(["incident_phi"])
    with pytest.raises(ValueError, match=r"<memory>: key 'showers': expected shape \(N, 3\)"):
        validate_showers(d, geometry=CartesianGrid(3, 1, 1))
    mask = np.array([True, False, True])
    full = _data(CartesianGrid(2, 2, 1), n=3)
    sub = full.subset(mask)
    np.testing.assert_array_equal(sub.showers, full.showers[mask])
    np.testing.assert_array_equal(sub.conditions["incident_theta"], full.conditions["incident_theta"][mask])
    assert len(full.subset(slice(1, None))) == 2


def test_empty_file_round_trip(tmp_path):
    grid = CartesianGrid(2, 2, 1)
    write_showers(tmp_path / "e.h5", ShowerData(np.zeros((0, 4), np.float32), np.zeros((0, 1)), geometry=grid))
    back = read_showers(tmp_path / "e.h5")
    assert len(back) == 0 and back.showers.shape == (0, 4) and back.geometry == grid
