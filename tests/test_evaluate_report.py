"""evaluate → metrics.json → HTML report, end to end on small synthetic showers."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hepgen.cli import main
from hepgen.data.formats import ShowerData, write_showers
from hepgen.data.geometry import CartesianGrid, CylindricalBinning
from hepgen.domains.showers.evaluate import (
    FAST_GROUPS,
    METRIC_GROUPS,
    METRICS_SCHEMA,
    evaluate,
    evaluate_files,
    resolve_groups,
    write_outputs,
)
from hepgen.domains.showers.report import flagged_features, write_report
from hepgen.metrics.observables import DEPTH_OBSERVABLES

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


def _leaves(obj, prefix=""):
    """Every (dotted key, leaf value) of a nested dict/list."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def test_identical_samples_have_zero_separation(real):
    m = evaluate(real, real, classifier=False, train=synthetic_showers(400, seed=9))
    assert m["schema"] == METRICS_SCHEMA
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in m["separation_power"].values())
    assert m["separation_power_mean"] == pytest.approx(0.0, abs=1e-12)
    assert all(v["statistic"] == 0 and v["pvalue"] == pytest.approx(1.0) for v in m["ks"].values())
    assert "classifier" not in m
    n_features = 1 + GEO.n_layers * 8
    assert len(m["separation_power"]) == n_features
    assert m["metric_groups"] == [g for g in METRIC_GROUPS if g != "classifier"]
    # the extended per-feature table: CaloChallenge features + depth observables, all null
    assert set(m["features"]) == set(m["separation_power"]) | set(DEPTH_OBSERVABLES)
    for row in m["features"].values():
        assert row["separation_power"] == 0 and row["jsd"] == 0 and row["wasserstein"] == 0
        assert row["ks_statistic"] == 0 and row["ks_pvalue"] == pytest.approx(1.0)
    # physics: the same bins and fits for both samples
    rr = m["response_resolution"]
    assert rr["real"] == rr["generated"] and np.isfinite(rr["real"]["fit"]["a"])
    assert m["cell_energy"]["separation_power"] == 0 and m["cell_energy"]["jsd"] == 0
    assert m["layer_correlation"]["max_abs_diff"] == 0 and m["layer_correlation"]["constant_layers"]["real"] == []
    assert m["layer_correlation"]["spearman"]["max_abs_diff"] == 0
    oa = m["orientation_asymmetry"]  # 4 angular bins: 4 turns x 2 mirror images; the showers depend on r only
    assert oa["n_orientations"] == 8 and oa["real"] == oa["generated"]
    assert 0.3 < oa["real"]["chi2_per_ndof"] < 2.0 and oa["real"]["ndof"] == 3 * 4 * 3
    lit = m["lit_cells"]  # the same showers: the same quantiles, and at most 1 % above the 99th percentile
    assert lit["real"] == lit["generated"]
    assert lit["above_real_q99"]["real"] == lit["above_real_q99"]["generated"]
    assert all(v is None or 0 <= v <= 0.01 for v in lit["above_real_q99"]["real"])
    # Fisher z: every z is 0, χ² = 0, p = 1 (both the χ² and the permutation p-value)
    fz = m["correlation"]["fisher_z"]
    assert fz["chi2"] == 0 and fz["max_abs_z"] == 0 and fz["p_value"] == 1 and fz["p_value_permutation"] == 1
    assert fz["ndof"] == fz["n_features"] * (fz["n_features"] - 1) // 2
    # multivariate: generated = reference half → FPD 0, MMD ≈ 0, PRDC 1 (density ≈ 1)
    mv = m["multivariate"]
    assert mv["fpd"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert mv["fpd"]["reference"] > 3 * mv["fpd_err"]["reference"]  # two finite halves do differ
    assert abs(mv["kpd"]["value"]) < 3 * mv["kpd_err"]["value"] + 1e-12
    assert abs(mv["mmd_gaussian"]["value"]) < 2.0 / mv["n_subsample"]  # unbiased MMD² of a set with itself
    assert mv["precision"]["value"] == mv["recall"]["value"] == mv["coverage"]["value"] == 1.0
    assert mv["density"]["value"] == pytest.approx(1.0, abs=0.15)
    # diversity: the same pairs and subsamples for both
    dv = m["diversity"]
    assert dv["ssim"]["real"] == dv["ssim"]["generated"]
    assert dv["birthday"]["real"] == dv["birthday"]["generated"]
    assert dv["mode_collapse"]["std_ratio"] == pytest.approx(1.0) and dv["mode_collapse"]["pairwise_distance_ratio"] == 1
    assert dv["memorisation"]["ratio"] == 1.0 and not dv["memorisation"]["flagged"]
    reg = m["condition_regression"]["log_E_inc"]
    assert abs(reg["bias_gen"] - reg["bias_real"]) < 3 * (reg["bias_real_err"] + reg["bias_gen_err"])


def test_metric_groups_select_what_is_computed(real):
    assert resolve_groups(None) == list(METRIC_GROUPS)
    assert resolve_groups("fast") == list(FAST_GROUPS)
    assert resolve_groups("classifier, physics") == ["physics", "classifier"]
    assert resolve_groups("all", classifier=False) == [g for g in METRIC_GROUPS if g != "classifier"]
    with pytest.raises(ValueError, match="unknown metric group 'fpd'.*multivariate"):
        resolve_groups("features,fpd")
    m = evaluate(real, synthetic_showers(300, seed=5), groups="fast")
    assert m["metric_groups"] == list(FAST_GROUPS)
    assert "features" in m and "response_resolution" in m and "cell_energy" in m
    for key in ("classifier", "multivariate", "correlation", "diversity", "condition_regression"):
        assert key not in m, key
    base = evaluate(real, synthetic_showers(300, seed=5), groups=[])
    # the CaloChallenge keys never depend on the groups
    assert base["separation_power"] == m["separation_power"] and base["ks"] == m["ks"]


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
    # figures are embedded (data URIs, the bytes of the PNG beside the report); the alt text names the file
    embedded = re.findall(r"<img src='data:image/png;base64,([^']+)' alt='[^']*\((figures/[^)]+\.png)\)'", html)
    assert len(embedded) == html.count("<img ")
    images = [rel for _, rel in embedded]
    for b64, rel in embedded:
        assert base64.b64decode(b64) == (out / rel).read_bytes(), rel
    assert "figures/roc.png" in images and "figures/average_showers.png" in images
    assert "figures/E_layer.png" in images
    for name in ("response_resolution", "cell_spectrum", "layer_correlation", "lit_cells", "feature_correlations",
                 "depth"):
        assert f"figures/{name}.png" in images, name
    for rel in images:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 1000, rel
    # the HTML references every figure written, and nothing else
    assert sorted(images) == sorted(f"figures/{p.name}" for p in (out / "figures").glob("*.png"))
    assert sorted(p.stem for p in (out / "figures").glob("*.pdf")) == sorted(Path(i).stem for i in images)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    # every metric group ran, and its numbers are finite (null only where documented)
    assert loaded["metric_groups"] == list(METRIC_GROUPS)
    for key in ("features", "response_resolution", "cell_energy", "layer_correlation", "correlation",
                "multivariate", "diversity", "condition_regression"):
        leaves = dict(_leaves(loaded[key]))
        assert leaves, key
        bad = [k for k, v in leaves.items() if v is None or (isinstance(v, float) and not np.isfinite(v))]
        # these showers' resolution does not fall with energy: the fit puts a at 0, where the
        # parametrisation √(a²/E + b²) has no finite error on a or b (documented: null)
        allowed = {f"{s}.fit.{p}_err" for s in ("real", "generated") for p in "ab"} if key == "response_resolution" \
            else set()
        assert not set(bad) - allowed, (key, bad)
    for section in ("Physics observables", "Correlations (Fisher z)", "Multivariate metrics",
                    "Conditions regressed from the showers", "Diversity and memorisation"):
        assert section in html, section
    assert "<th>W1</th><th>JSD [bits]</th>" in html and "<td>shower_depth</td>" in html


def test_broken_showers_are_flagged(real, tmp_path):
    broken = synthetic_showers(1000, seed=3, broken=True)
    m, details = evaluate(real, broken, classifier=True, return_details=True,
                          groups="features,physics,correlation,multivariate,classifier")
    assert m["separation_power"]["E_layer_0"] > 0.9  # broken layer 0 is always empty
    assert m["separation_power"]["E_layer_2"] > 0.1
    assert m["separation_power_max"]["value"] > 0.5
    assert m["classifier"]["high_level"]["auc"] > 0.95 and m["classifier"]["low_level"]["auc"] > 0.95
    flagged = flagged_features(m)
    assert "E_layer_0" in flagged and "E_layer_2" in flagged
    # all energy in the last layer: depth 2, width 0
    assert "shower_depth" in flagged and "depth_width" in flagged
    assert m["features"]["shower_depth"]["wasserstein"] == pytest.approx(1.0, abs=0.05)  # ⟨k⟩ 1 → 2
    assert m["correlation"]["fisher_z"]["p_value_permutation"] == pytest.approx(0.01)  # the smallest possible
    mv = m["multivariate"]
    assert mv["fpd"]["value"] > 10 * mv["fpd"]["reference"] and mv["precision"]["value"] < 0.05
    # only the last layer has energy, the same in each of its voxels: no pair of layers is defined in both
    assert m["layer_correlation"]["max_abs_diff"] is None
    assert m["layer_correlation"]["constant_layers"] == {"real": [], "generated": [0, 1]}
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
    assert "orientation_asymmetry" not in m                    # no angular bins
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


def test_same_inputs_give_identical_metrics_json(tmp_path):
    a, b = synthetic_showers(400, seed=11), synthetic_showers(300, seed=12)
    write_showers(tmp_path / "a.h5", a)
    write_showers(tmp_path / "b.h5", b)
    texts = []
    for run in ("one", "two"):
        evaluate_files(tmp_path / "a.h5", tmp_path / "b.h5", out_dir=tmp_path / run, report=False,
                       train_path=tmp_path / "a.h5")
        texts.append((tmp_path / run / "metrics.json").read_text())
    assert texts[0] == texts[1]
    assert json.loads(texts[0])["inputs"]["train"].endswith("a.h5")


def test_cli_evaluate_fast_metrics_and_thresholds(real, tmp_path, capsys):
    write_showers(tmp_path / "real.h5", real)
    write_showers(tmp_path / "gen.h5", synthetic_showers(300, seed=13))
    out = tmp_path / "fast"
    assert main(["evaluate", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "-o", str(out), "--fast",
                 "--sep-threshold", "2", "--p-threshold", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["metric_groups"] == list(FAST_GROUPS) and "classifier" not in m
    html = (out / "report.html").read_text()
    assert "class='flag'" not in html and "separation power &gt; 2 or KS p-value &lt; 0" in html
    capsys.readouterr()
    for bad, message in ((["--metrics", "nonsense"], "unknown metric group 'nonsense'"),
                         (["--metrics", "physics", "--fast"], "either --fast or --metrics")):
        assert main(["evaluate", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "-o", str(tmp_path / "x"),
                     *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_copied_training_showers_are_flagged_as_memorised(real):
    train = synthetic_showers(600, seed=14)
    copied = train.subset(np.arange(400))  # a "generator" that replays its training set
    m = evaluate(real, copied, groups="diversity", train=train)
    mem = m["diversity"]["memorisation"]
    assert mem["flagged"] and mem["fraction_below"] == 1.0 and mem["ratio"] == 0.0
    honest = evaluate(real, synthetic_showers(400, seed=15), groups="diversity", train=train)
    assert not honest["diversity"]["memorisation"]["flagged"]
    assert honest["diversity"]["memorisation"]["ratio"] == pytest.approx(1.0, abs=0.2)
