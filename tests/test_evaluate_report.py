"""evaluate → metrics.json → HTML report, end to end on small synthetic showers."""

import json
import re

import numpy as np
import pytest

from hepgen.data.formats import ShowerData, write_showers
from hepgen.data.geometry import CartesianGrid, CylindricalBinning
from hepgen.evaluate import METRICS_SCHEMA, evaluate, evaluate_files, write_outputs
from hepgen.report import flagged_features, write_report

GEO = CylindricalBinning.regular(n_layers=3, r_edges=[0, 2, 5, 10, 20], n_alpha=4)


def synthetic_showers(n, geometry=GEO, seed=0, broken=False):
    """Exponential transverse profile, longitudinal profile peaking in the middle layer."""
    rng = np.random.default_rng(seed)
    e_inc = 10 ** rng.uniform(3, 4, size=(n, 1))
    r = geometry.voxel_r()
    layer = geometry.voxel_layer()
    mean = np.exp(-r / 4.0) * np.exp(-0.5 * (layer - 1.0) ** 2)
    mean = mean / mean.sum()
    showers = rng.gamma(2.0, 0.5, size=(n, geometry.n_voxels)) * mean * e_inc
    showers[rng.random(showers.shape) < 0.2] = 0.0
    if broken:  # all energy moved to the last layer
        last = geometry.layer_slices[-1]
        tot = showers.sum(1, keepdims=True)
        showers[:] = 0.0
        showers[:, last] = tot / (last.stop - last.start)
    return ShowerData(showers.astype(np.float32), e_inc, {}, geometry, {})


@pytest.fixture(scope="module")
def real():
    return synthetic_showers(1000, seed=1)


def test_identical_samples_have_zero_separation(real):
    m = evaluate(real, real, classifier=False)
    assert m["schema"] == METRICS_SCHEMA
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in m["separation_power"].values())
    assert m["separation_power_mean"] == pytest.approx(0.0, abs=1e-12)
    assert all(v["statistic"] == 0 and v["pvalue"] == pytest.approx(1.0) for v in m["ks"].values())
    assert "classifier" not in m
    n_features = 1 + GEO.n_layers * 8
    assert len(m["separation_power"]) == n_features


def test_evaluate_files_writes_metrics_and_report(real, tmp_path):
    gen = synthetic_showers(800, seed=2)
    write_showers(tmp_path / "real.h5", real)
    write_showers(tmp_path / "gen.h5", gen)
    out = tmp_path / "out"
    m = evaluate_files(tmp_path / "real.h5", tmp_path / "gen.h5", out_dir=out, seed=0)
    loaded = json.loads((out / "metrics.json").read_text())
    for key in ("schema", "n_real", "n_generated", "geometry", "separation_power", "separation_power_mean",
                "separation_power_max", "ks", "classifier", "energy_response", "inputs"):
        assert key in loaded, key
    assert loaded["n_real"] == 1000 and loaded["n_generated"] == 800
    assert loaded["geometry"] == GEO.to_dict()
    for level in ("low_level", "high_level"):
        assert set(loaded["classifier"][level]) == {"auc", "auc_err", "jsd", "n_train", "n_test"}
        # independent samples of one distribution: the classifier cannot tell them apart
        assert loaded["classifier"][level]["auc"] == pytest.approx(0.5, abs=0.1)
    assert loaded["separation_power_max"]["value"] == max(loaded["separation_power"].values())
    assert m["separation_power"] == loaded["separation_power"]
    html = (out / "report.html").read_text()
    images = re.findall(r"<img src='([^']+)'", html)
    assert "figures/roc.png" in images and "figures/average_showers.png" in images
    assert "figures/E_layer.png" in images
    for rel in images:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 1000, rel
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_broken_showers_are_flagged(real, tmp_path):
    broken = synthetic_showers(1000, seed=3, broken=True)
    m, details = evaluate(real, broken, classifier=True, return_details=True)
    assert m["separation_power"]["E_layer_0"] > 0.9  # broken layer 0 is always empty
    assert m["separation_power"]["E_layer_2"] > 0.1
    assert m["separation_power_max"]["value"] > 0.5
    assert m["classifier"]["high_level"]["auc"] > 0.95 and m["classifier"]["low_level"]["auc"] > 0.95
    flagged = flagged_features(m)
    assert "E_layer_0" in flagged and "E_layer_2" in flagged
    m["timing"] = {"generator_showers_per_s": 12345.0}
    report = write_outputs(m, real, broken, tmp_path, details=details)
    html = report.read_text()
    assert "class='flag'" in html and "Speed" in html and "12345" in html
    # thresholds are arguments: nothing is flagged above S = 2 and below p = 0
    relaxed = write_report(m, tmp_path / "relaxed", sep_threshold=2.0, p_threshold=0.0).read_text()
    assert "class='flag'" not in relaxed and "0 of" in relaxed


def test_cartesian_geometry_report(tmp_path):
    geo = CartesianGrid(nx=4, ny=4, nz=2, cell_size=5.0)
    a, b = synthetic_showers(300, geo, seed=4), synthetic_showers(300, geo, seed=5)
    m = evaluate(a, b, classifier=False)
    assert m["geometry"]["kind"] == "cartesian"
    report = write_outputs(m, a, b, tmp_path)
    assert (tmp_path / "figures" / "average_showers.png").is_file() and report.is_file()
    assert "figures/roc.png" not in report.read_text()  # no classifier, no ROC figure


def test_evaluate_files_rejects_mismatched_inputs(real, tmp_path):
    other_geo = CylindricalBinning.regular(n_layers=2, r_edges=[0, 2, 5, 10, 20], n_alpha=4)
    same_size_geo = CylindricalBinning.regular(n_layers=3, r_edges=[0, 1, 5, 10, 30], n_alpha=4)
    write_showers(tmp_path / "real.h5", real)
    write_showers(tmp_path / "small.h5", synthetic_showers(100, other_geo))
    write_showers(tmp_path / "moved.h5", synthetic_showers(100, same_size_geo))
    with pytest.raises(ValueError, match=r"small\.h5.*32 voxels.*real\.h5.*48"):
        evaluate_files(tmp_path / "real.h5", tmp_path / "small.h5", out_dir=tmp_path / "o")
    with pytest.raises(ValueError, match=r"real\.h5 and .*moved\.h5 store different geometries"):
        evaluate_files(tmp_path / "real.h5", tmp_path / "moved.h5", out_dir=tmp_path / "o")
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_evaluate_rejects_wrong_voxel_count(real):
    bad = ShowerData(np.ones((10, 7), np.float32), np.ones((10, 1)), {}, None, {})
    with pytest.raises(ValueError, match="7 voxels, expected 48"):
        evaluate(real, bad, classifier=False)
