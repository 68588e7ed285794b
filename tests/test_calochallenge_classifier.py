"""The CaloChallenge classifier protocol: inputs, split, calibration, JSD, the DNN test and its wiring."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from hepgen.cli import main
from hepgen.data.formats import ShowerData, write_showers
from hepgen.data.geometry import CartesianGrid, CylindricalBinning, LayerBinning
from hepgen.data.geometry_hex import HexagonalGrid
from hepgen.data.geometry_layers import CartesianLayer, LayeredCartesianGrid
from hepgen.domains.showers.calochallenge import CaloChallengeDNN, calochallenge_classifier_test, calochallenge_levels
from hepgen.domains.showers.evaluate import evaluate
from hepgen.domains.showers.report import write_report
from hepgen.metrics.calochallenge_classifier import (
    binary_cross_entropy,
    calibrate,
    cls_high_inputs,
    cls_low_inputs,
    jsd_bits,
    protocol_scores,
    split_sizes,
)
from hepgen.metrics.classifier import jsd_from_probabilities

TINY = {"hidden": 16, "epochs": 8, "batch_size": 100, "lr": 1e-2}  # tests only; the protocol is 2048 / 50 / 1000 / 2e-4


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gaussians(n, shift=0.0, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ---- numpy parts ---------------------------------------------------------------------------------


def test_split_sizes_are_60_20_20_truncated_as_the_reference():
    assert split_sizes(10_000) == (6000, 2000, 2000)
    assert split_sizes(999) == (599, 199, 201)  # int(599.4), int(199.8), the rest
    with pytest.raises(ValueError, match="three positive numbers summing to 1"):
        split_sizes(100, (0.5, 0.5, 0.5))


def test_classifier_split_sizes_exact_and_balanced():
    # 1000 real, 1500 generated: balanced to 1000 per class → 600 / 200 / 200 per class
    res = calochallenge_classifier_test(gaussians(1000), gaussians(1500, seed=1), **{**TINY, "epochs": 1})
    assert (res["n_train"], res["n_val"], res["n_test"]) == (1200, 400, 400)
    res = calochallenge_classifier_test(gaussians(1000), gaussians(1500, seed=1), max_samples=500,
                                        **{**TINY, "epochs": 1})
    assert (res["n_train"], res["n_val"], res["n_test"]) == (600, 200, 200)
    assert res["steps"] == 6 and res["epochs"] == 1  # ceil(600 / 100) batches


def test_jsd_hand_worked_and_against_hepgen_formula():
    # y = (1, 0), p = (0.8, 0.2): BCE = −ln 0.8 = 0.22314 nats, JSD = (ln 2 − 0.22314) / ln 2 = 0.67807
    assert jsd_bits([1, 0], [0.8, 0.2]) == pytest.approx(0.678072, abs=1e-6)
    # wrong way round: BCE = ln 5, JSD = 1 − ln 5 / ln 2 = −1.32193 (the reference does not clip; hepgen's does)
    assert jsd_bits([1, 0], [0.2, 0.8]) == pytest.approx(1 - np.log(5) / np.log(2), abs=1e-9)
    assert jsd_from_probabilities(np.array([1, 0]), np.array([0.2, 0.8])) == 0.0
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + 0.1 * rng.normal(size=500), 1e-6, 1 - 1e-6)
    assert jsd_bits(y, p) > 0
    assert jsd_bits(y, p) == pytest.approx(jsd_from_probabilities(y, p), abs=1e-12)
    assert binary_cross_entropy(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_calibration_is_monotone_and_in_unit_interval():
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    y = (rng.random(2000) < p**2).astype(float)  # miscalibrated on purpose: P(y=1 | p) = p²
    iso = calibrate(p, y)
    grid = np.linspace(-0.5, 1.5, 401)  # beyond the fitted range too: clipped
    out = iso.predict(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 1e-6 and out.max() <= 1 - 1e-6
    # calibrated ≈ p² in the middle (isotonic on 2000 points: within 0.1)
    assert np.abs(iso.predict([0.5])[0] - 0.25) < 0.1


def test_protocol_scores_use_calibrated_predictions():
    y_val = np.array([0, 0, 1, 1, 0, 1])
    p_val = np.array([0.1, 0.2, 0.3, 0.4, 0.15, 0.35])  # separable at 0.25
    y_te = np.array([0, 1, 0, 1])
    p_te = np.array([0.12, 0.33, 0.18, 0.45])
    s = protocol_scores(y_te, p_te, y_val, p_val)
    assert s["auc"] == 1.0 and s["auc_uncalibrated"] == 1.0 and s["accuracy"] == 1.0
    # calibrated to 1e-6 / 1 − 1e-6: JSD = 1 − 1e-6 / ln 2
    assert s["jsd"] == pytest.approx(1 - 1e-6 / np.log(2), abs=1e-9)
    with pytest.raises(ValueError, match="need both labels"):
        protocol_scores(np.ones(4), p_te, y_val, p_val)


def test_cls_low_inputs():
    x = cls_low_inputs([[10.0, 0.5, 90.0], [0.0, 2.0, 8.0]], [1000.0, 100.0], threshold=1.0)
    np.testing.assert_allclose(x, [[3.0, 0.01, 0.0, 0.09], [2.0, 0.0, 0.02, 0.08]])
    with pytest.raises(ValueError, match=r"cls_low_inputs: expected showers \(N, n_voxels\) and N incident"):
        cls_low_inputs(np.ones((3, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match="incident energies must be positive"):
        cls_low_inputs(np.ones((2, 2)), [1.0, 0.0])


def test_cls_high_inputs_hand_worked():
    # layer 0: one angular bin (no η/φ features), layer 1: 4 angular bins; radial edges 0, 10, 30 mm
    geo = CylindricalBinning(layers=(LayerBinning(0, (0.0, 10.0, 30.0), 1), LayerBinning(1, (0.0, 10.0, 30.0), 4)))
    showers = np.zeros((1, geo.n_voxels))
    showers[0, 0] = 100.0  # layer 0, r bin 0 (centre 5 mm)
    # layer 1, angular bin 2 (centre π/4), radial bins 0 and 1 (centres 5, 20 mm), 30 and 10 MeV
    showers[0, 2 + 2 * 2 + 0], showers[0, 2 + 2 * 2 + 1] = 30.0, 10.0
    x, names = cls_high_inputs(showers, [1000.0], geo)
    row = dict(zip(names, x[0]))
    assert names[:3] == ["log10_E_inc", "log10_E_layer_0", "log10_E_layer_1"]
    assert "EC_eta_0" not in row and "EC_eta_1" in row
    assert len(names) == 1 + 2 + 4 * 1 + 1 + 3 * 2
    r_ec = (30 * 5 + 10 * 20) / 40  # 8.75 mm
    r_width = np.sqrt((30 * 25 + 10 * 400) / 40 - r_ec**2)
    expected = {"log10_E_inc": 3.0, "log10_E_layer_0": 2.0, "log10_E_layer_1": np.log10(40.0),
                "EC_eta_1": r_ec * np.cos(np.pi / 4) / 100, "EC_phi_1": r_ec * np.sin(np.pi / 4) / 100,
                "width_eta_1": r_width * np.cos(np.pi / 4) / 100, "width_phi_1": r_width * np.sin(np.pi / 4) / 100,
                "log10_E_tot": np.log10(140.0), "empty_fraction_0": 0.5, "empty_fraction_1": 6 / 8,
                "EC_r_0": 0.05, "width_r_0": 0.0, "EC_r_1": r_ec / 100, "width_r_1": r_width / 100}
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-9), name
    # an empty layer: centres and widths 0 (the reference's 0 / (0 + 1e-16)), log10(1e-8) = −8
    x0, _ = cls_high_inputs(np.zeros((1, geo.n_voxels)), [1000.0], geo)
    assert dict(zip(names, x0[0]))["log10_E_layer_1"] == pytest.approx(-8.0)
    assert dict(zip(names, x0[0]))["EC_r_1"] == 0.0
    with pytest.raises(ValueError, match="cls_high_inputs: showers have 5 voxels, the geometry 10"):
        cls_high_inputs(np.ones((1, 5)), [1.0], geo)


@pytest.mark.parametrize("geo", [CartesianGrid(nx=3, ny=3, nz=2), HexagonalGrid(n_layers=2, radius=1, pitch_mm=10.0),
                                 LayeredCartesianGrid((CartesianLayer(2, 1, 10.0, 10.0), CartesianLayer(1, 1, 20.0, 20.0)))])
def test_cls_high_inputs_other_geometries_have_xy_for_every_layer(geo):
    showers = np.random.default_rng(0).random((4, geo.n_voxels))
    x, names = cls_high_inputs(showers, np.full(4, 100.0), geo)
    assert x.shape == (4, 1 + 2 + 4 * 2 + 1 + 3 * 2) and "EC_phi_1" in names
    xs, ys = geo.voxel_xy()
    s = geo.layer_slices[1]
    expected = (showers[:, s] @ ys[s]) / showers[:, s].sum(axis=1) / 100
    np.testing.assert_allclose(x[:, names.index("EC_phi_1")], expected, rtol=1e-12)


# ---- the DNN test --------------------------------------------------------------------------------


def test_network_matches_the_reference_layout():
    net = CaloChallengeDNN(10)
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(10, 2048), (2048, 2048), (2048, 2048), (2048, 1)]
    assert all(m.negative_slope == 0.01 for m in net.modules() if isinstance(m, torch.nn.LeakyReLU))


def test_same_distribution_gives_auc_near_one_half():
    res = calochallenge_classifier_test(gaussians(3000, seed=1), gaussians(3000, seed=2), **TINY)
    # 600 test showers per class: σ(AUC) ≈ 0.017
    assert abs(res["auc"] - 0.5) < 0.05
    assert abs(res["auc_uncalibrated"] - 0.5) < 0.05
    assert res["jsd"] < 0.02
    assert res["deviations"] == []


def test_shifted_distribution_gives_auc_near_one():
    res = calochallenge_classifier_test(gaussians(1000, shift=1.5, seed=1), gaussians(1000, seed=2), **TINY)
    assert res["auc"] > 0.95
    assert res["jsd"] > 0.5
    assert 1 <= res["best_epoch"] <= res["epochs"] == TINY["epochs"]
    assert res["val_loss_best_epoch"] < res["val_loss_initial"] < 0.75


def test_deterministic_given_seed_and_leaves_global_rng_alone():
    a, b = gaussians(400, shift=0.3, seed=1), gaussians(400, seed=2)
    state = torch.random.get_rng_state()
    r1 = calochallenge_classifier_test(a, b, seed=7, **TINY)
    assert torch.equal(state, torch.random.get_rng_state())
    r2 = calochallenge_classifier_test(a, b, seed=7, **TINY)
    r3 = calochallenge_classifier_test(a, b, seed=8, **TINY)
    assert r1 == r2
    assert r1["history"] != r3["history"]
    d1 = calochallenge_classifier_test(a, b, seed=7, dropout=0.3, **TINY)
    assert torch.equal(state, torch.random.get_rng_state())
    assert d1 == calochallenge_classifier_test(a, b, seed=7, dropout=0.3, **TINY)
    assert d1["history"] != r1["history"]


def test_deviations_are_recorded():
    res = calochallenge_classifier_test(gaussians(500), gaussians(500, seed=1), min_steps=30, standardise=True,
                                        **{**TINY, "epochs": 2})
    assert res["epochs"] == 5 and res["steps"] == 30  # 6 steps per epoch
    assert len(res["deviations"]) == 2 and res["deviations"][1].startswith("min_steps=30")


def test_bad_inputs_are_one_line_errors():
    cases = [
        ((np.ones((100, 3)), np.ones((100, 4))), "expected real (N, D) and generated (M, D) inputs, found (100, 3) and (100, 4)"),
        ((np.ones(100), np.ones((100, 1))), "found (100,) and (100, 1)"),
        ((np.full((100, 2), np.nan), np.ones((100, 2))), "real inputs contain NaN or inf in 100 rows"),
        ((np.ones((5, 2)), np.ones((100, 2))), "needs at least 10 showers per sample, found 5"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as err:
            calochallenge_classifier_test(*args, **TINY)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="min_steps must be at least 1, found 0"):
        calochallenge_classifier_test(np.ones((100, 2)), np.ones((100, 2)), min_steps=0, **TINY)
    with pytest.raises(ValueError, match="epochs must be at least 1, found 0"):
        calochallenge_classifier_test(np.ones((100, 2)), np.ones((100, 2)), **{**TINY, "epochs": 0})


# ---- wiring: evaluate, report, command line -------------------------------------------------------

GEO = CylindricalBinning.regular(n_layers=3, r_edges=[0, 2, 5, 10, 20], n_alpha=4)


def showers(n, seed, scale_last=1.0):
    rng = np.random.default_rng(seed)
    e_inc = 10 ** rng.uniform(3, 4, size=(n, 1))
    mean = np.exp(-GEO.voxel_r() / 4.0) * np.exp(-0.5 * (GEO.voxel_layer() - 1.0) ** 2)
    x = rng.gamma(2.0, 0.5, size=(n, GEO.n_voxels)) * mean / mean.sum() * e_inc
    x[:, GEO.layer_slices[-1]] *= scale_last
    return ShowerData(x.astype(np.float32), e_inc, {}, GEO, {})


def test_evaluate_runs_both_classifiers_side_by_side(tmp_path):
    real, gen = showers(600, 1), showers(600, 2, scale_last=3.0)
    m = evaluate(real, gen, groups="classifier", classifier_protocol="both", calochallenge_kwargs=TINY)
    assert set(m["classifier"]) == set(m["classifier_calochallenge"]) == {"low_level", "high_level"}
    for level in ("low_level", "high_level"):
        res = m["classifier_calochallenge"][level]
        assert res["auc"] > 0.9  # layer 2 three times too bright
        assert {"auc", "jsd", "best_epoch", "n_train", "n_test"} <= set(res) and "history" not in res
        assert (res["n_train"], res["n_test"]) == (720, 240)
    json.dumps(m)
    only = evaluate(real, gen, groups="classifier", classifier_protocol="calochallenge",
                    calochallenge_kwargs={**TINY, "epochs": 1, "min_steps": 16})
    assert "classifier" not in only and "classifier_calochallenge" in only
    assert only["classifier_calochallenge"]["low_level"]["steps"] == 16  # 8 steps per epoch, 2 epochs
    assert "(deviations: min_steps=16: 2 epochs of 8 steps instead of 1)" in write_report(only, tmp_path / "d").read_text()
    assert "classifier_calochallenge" not in evaluate(real, gen, groups="features")
    with pytest.raises(ValueError, match="classifier protocol: expected one of hepgen, calochallenge, both, found 'cc'"):
        evaluate(real, gen, groups="classifier", classifier_protocol="cc")
    page = write_report(m, tmp_path).read_text()
    assert "CaloChallenge classifier AUC / JSD [bits], low-level" in page
    assert f"{m['classifier_calochallenge']['high_level']['auc']:.4f} / " in page
    assert page.index("classifier AUC, high-level") < page.index("CaloChallenge classifier AUC")


def test_levels_reject_unknown_level():
    real = showers(50, 1)
    with pytest.raises(ValueError, match="expected 'low_level' or 'high_level', found 'voxels'"):
        calochallenge_levels(real.showers, real.incident_energies, real.showers, real.incident_energies, GEO,
                             levels=("voxels",))


def test_cli_option_reaches_the_shower_evaluation(tmp_path, monkeypatch):
    import hepgen.domains.showers.evaluate as ev

    seen = {}

    def fake(real, generated, **kw):
        seen.update(kw)
        return {"separation_power_mean": 0.0}

    monkeypatch.setattr(ev, "evaluate_files", fake)
    for i in (1, 2):
        write_showers(tmp_path / f"{i}.h5", showers(20, i))
    assert main(["evaluate", str(tmp_path / "1.h5"), str(tmp_path / "2.h5"), "-o", str(tmp_path / "o"),
                 "--classifier", "both"]) == 0
    assert seen["classifier_protocol"] == "both" and seen["calochallenge_kwargs"] is None
    main(["evaluate", str(tmp_path / "1.h5"), str(tmp_path / "2.h5"), "-o", str(tmp_path / "o"),
          "--classifier", "calochallenge", "--calochallenge-min-steps", "6000"])
    assert seen["classifier_protocol"] == "calochallenge" and seen["calochallenge_kwargs"] == {"min_steps": 6000}
    main(["evaluate", str(tmp_path / "1.h5"), str(tmp_path / "2.h5"), "-o", str(tmp_path / "o")])
    assert seen["classifier_protocol"] == "hepgen"
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "1.h5"), str(tmp_path / "2.h5"), "-o", str(tmp_path / "o"),
              "--classifier", "cc"])
