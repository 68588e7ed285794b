"""Physically impossible showers: ``hepgen train`` and ``hepgen evaluate`` warn (E_dep > 2 x E_inc) or refuse
(non-finite, negative) with the count and the first offending row."""

import logging

import h5py
import numpy as np
import pytest

from hepgen.cli import main
from hepgen.data.formats import MAX_RESPONSE, ShowerData, read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.simulate.calorimeter import simulate_dataset

GEOMETRY = CylindricalBinning.regular(2, [0, 5, 10, 20], n_alpha=2)  # 12 voxels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("impossible")
    data = simulate_dataset(300, geometry=GEOMETRY, energy_range=(2e3, 5e4), seed=4)
    write_showers(d / "good.h5", data, compression=None)
    write_showers(d / "hot.h5", data, compression=None)
    with h5py.File(d / "hot.h5", "r+") as f:
        s = f["showers"][()]
        s[[17, 40, 41]] *= 1e30  # E_dep = 1e30 x a physical deposit: far above the incident energy
        f["showers"][...] = s
        e_dep, e_inc = float(s[17].sum(dtype=np.float64)), float(f["incident_energies"][17, 0])
    assert e_dep / e_inc > 1e28 and MAX_RESPONSE == 2.0
    return d, e_dep, e_inc


def _hot_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "x their incident energy" in r.getMessage()]


def _expected(path, e_dep, e_inc):
    return (f"{path}: key 'showers': 3 of 300 showers deposit more than 2 x their incident energy (first at row 17: "
            f"E_dep / E_inc = {e_dep / e_inc:.4g}, E_dep = {e_dep:.6g} MeV, E_inc = {e_inc:.6g} MeV); check the units")


def test_train_warns_with_count_and_first_row(files, tmp_path, caplog):
    d, e_dep, e_inc = files
    caplog.set_level(logging.INFO)
    # the warning comes from reading the file; the run then fails or not on its own: only the warning is checked
    main(["train", str(d / "hot.h5"), "-o", str(tmp_path / "run"), "--epochs", "1", "--set", "max_steps=1",
          "--set", "n_eval=50", "--set", "model.transforms=1", "--set", "model.hidden_features=8", "-q"])
    (msg,) = _hot_warnings(caplog)
    assert msg.startswith(_expected(d / "hot.h5", e_dep, e_inc)), msg


def test_evaluate_warns_for_the_file_with_impossible_showers_only(files, tmp_path, caplog):
    d, e_dep, e_inc = files
    caplog.set_level(logging.INFO)
    assert main(["evaluate", str(d / "good.h5"), str(d / "hot.h5"), "-o", str(tmp_path / "ev"), "--metrics",
                 "features", "--no-classifier", "-q"]) == 0
    (msg,) = _hot_warnings(caplog)  # once: the generated file; the real one has none
    assert msg.startswith(_expected(d / "hot.h5", e_dep, e_inc)), msg


def test_no_warning_at_the_threshold(tmp_path, caplog):
    """E_dep = 2 x E_inc exactly is allowed (the test is E_dep / E_inc > k, k = 2)."""
    path = tmp_path / "edge.h5"
    s = np.zeros((4, GEOMETRY.n_voxels))
    s[:, 0] = 2000.0  # E_dep / E_inc = 2 exactly ...
    s[2, 0] = 2020.0  # ... and 2.02 in row 2
    write_showers(path, ShowerData(s.astype(np.float32), np.full((4, 1), 1000.0), geometry=GEOMETRY))
    caplog.clear()
    caplog.set_level(logging.INFO)
    read_showers(path)  # what train and evaluate read through (tested above)
    (msg,) = _hot_warnings(caplog)
    assert "1 of 4 showers" in msg and "first at row 2: E_dep / E_inc = 2.02, E_dep = 2020 MeV, E_inc = 1000 MeV" in msg


@pytest.mark.parametrize("bad, text", [(np.nan, "expected finite values, found NaN/Inf in 1 row(s), first at row 5"),
                                       (-3.0, "expected energies >= 0 MeV, found minimum -3 MeV in 1 row(s), "
                                              "first at row 5")])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_non_finite_or_negative_deposits_are_one_line_errors(files, tmp_path, capsys, bad, text, command):
    d, _, _ = files
    path = tmp_path / "bad.h5"
    with h5py.File(d / "good.h5") as src, h5py.File(path, "w") as f:
        s = src["showers"][()]
        s[5, 3] = bad
        f["incident_energies"], f["showers"] = src["incident_energies"][()], s
    argv = (["train", str(path), "-o", str(tmp_path / "run"), "-q"] if command == "train" else
            ["evaluate", str(d / "good.h5"), str(path), "-o", str(tmp_path / "ev"), "-q"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"hepgen: error: {path}: key 'showers': {text}\n"
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "ev" / "metrics.json").exists()
