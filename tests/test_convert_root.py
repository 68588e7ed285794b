"""``hepgen convert FILE.h5 -o FILE.root``: the ROOT TTree read back with uproot equals the HDF5 arrays."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hepgen.cli import main
from hepgen.data.formats import ShowerData, write_showers
from hepgen.data.geometry import default_binning
from hepgen.data.jets import JetData, write_jets

uproot = pytest.importorskip("uproot")


def _showers(n=50, seed=0):
    rng = np.random.default_rng(seed)
    geo = default_binning()
    showers = (rng.exponential(5.0, (n, geo.n_voxels)) * (rng.random((n, geo.n_voxels)) < 0.3)).astype(np.float32)
    return ShowerData(showers, rng.uniform(1e3, 1e5, (n, 1)), {"incident_theta": rng.uniform(0.1, 0.3, (n, 1))},
                      geo, {"seed": 3})


def _read_tree(path):
    with uproot.open(path) as f:
        tree = f["events"]
        return tree.arrays(library="np"), tree.typenames(), str(f["hepgen_attrs"])


def test_showers_convert_to_a_ttree_with_the_hdf5_columns_exactly(tmp_path, capsys):
    write_showers(tmp_path / "s.h5", _showers())
    assert main(["convert", str(tmp_path / "s.h5"), "-o", str(tmp_path / "s.root")]) == 0
    assert "wrote 50 showers to" in capsys.readouterr().out
    arrays, types, attrs = _read_tree(tmp_path / "s.root")
    assert types == {"incident_energies": "double", "showers": "float[384]", "incident_theta": "double"}
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(arrays["showers"], f["showers"][:])  # exact, float32
        assert arrays["showers"].dtype == f["showers"].dtype == np.float32
        np.testing.assert_array_equal(arrays["incident_energies"], f["incident_energies"][:, 0])
        np.testing.assert_array_equal(arrays["incident_theta"], f["incident_theta"][:, 0])
    attrs = json.loads(attrs)
    assert attrs["kind"] == "showers" and attrs["seed"] == 3
    assert json.loads(attrs["hepgen_geometry"]) == default_binning().to_dict()
    assert not list(tmp_path.glob(".s.root*"))  # the atomic write's temporary file is gone


def test_jets_convert_with_particle_arrays_and_types(tmp_path):
    rng = np.random.default_rng(1)
    pf = rng.normal(size=(20, 30, 4)).astype(np.float32)
    pf[..., 2] = np.abs(pf[..., 2])  # pt_rel >= 0
    pf[..., 3] = 1.0
    jf = np.abs(rng.normal(size=(20, 4))) + 1
    jf[:, 3] = 30  # num_particles
    jets = JetData(pf, jf, rng.integers(0, 5, 20))
    write_jets(tmp_path / "j.h5", jets)
    assert main(["convert", str(tmp_path / "j.h5"), "-o", str(tmp_path / "j.root")]) == 0
    arrays, types, attrs = _read_tree(tmp_path / "j.root")
    assert types == {"particle_features": "float[30][4]", "jet_features": "float[4]", "jet_type": "int8_t"}
    with h5py.File(tmp_path / "j.h5", "r") as f:
        for key in ("particle_features", "jet_features", "jet_type"):
            np.testing.assert_array_equal(arrays[key], f[key][:])
            assert arrays[key].dtype == f[key].dtype
    assert json.loads(attrs)["kind"] == "jets"


def test_an_empty_file_keeps_its_branches(tmp_path):
    empty = _showers().subset(slice(0, 0))
    empty.conditions = {}  # (validate_showers refuses an empty condition array: its reshape(0, -1))
    write_showers(tmp_path / "e.h5", empty)
    assert main(["convert", str(tmp_path / "e.h5"), "-o", str(tmp_path / "e.root")]) == 0
    arrays, types, _ = _read_tree(tmp_path / "e.root")
    assert types["showers"] == "float[384]" and arrays["showers"].shape == (0, 384)


def test_bad_requests_are_one_line_errors(tmp_path, capsys):
    write_showers(tmp_path / "s.h5", _showers(5))
    assert main(["convert", str(tmp_path / "s.h5"), "-o", str(tmp_path / "s.h5.out")]) == 2
    assert capsys.readouterr().err == ("hepgen: error: -o/--output: expected a .root file name, found "
                                       f"'{tmp_path / 's.h5.out'}'\n")
    assert main(["convert", str(tmp_path / "nope.h5"), "-o", str(tmp_path / "n.root")]) == 2
    assert capsys.readouterr().err == f"hepgen: error: {tmp_path / 'nope.h5'}: file not found\n"
    (tmp_path / "t.txt").write_text("not hdf5")
    assert main(["convert", str(tmp_path / "t.txt"), "-o", str(tmp_path / "t.root")]) == 2
    assert "not a file of any known kind of data" in capsys.readouterr().err
    assert not (tmp_path / "n.root").exists() and not (tmp_path / "t.root").exists()
