"""Tests of hepgen.refine: the refiner, its adapters and file round trips, DCTR reweighting."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch

from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.traces import read_traces, write_traces
from hepgen.refine.adapters import check_pair, get_adapter, read_pair
from hepgen.refine.proof import demonstrate, gap_closed, regression_study, repeated_auc, two_sample_auc
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    apply_file,
    load_refiner,
    refine_arrays,
    save_refiner,
    train_files,
    train_refiner,
)
from hepgen.refine.reweight import dctr_weights, effective_sample_size
from hepgen.simulate.auger_toy import AugerToyConfig, simulate_auger
from hepgen.simulate.calorimeter import simulate_dataset

SMALL = {"hidden": 16, "critic_hidden": 16, "epochs": 1, "batch_size": 32, "n_critic": 1, "critic_warmup": 2}


@pytest.fixture(scope="module")
def shower_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("showers")
    sim = simulate_dataset(120, seed=1, theta_range=(0.0, 0.3), position_range=(-5.0, 5.0))
    data = simulate_dataset(100, seed=2, theta_range=(0.0, 0.3), position_range=(-5.0, 5.0))
    data.showers = data.showers * 1.1
    write_showers(d / "sim.h5", sim)
    write_showers(d / "data.h5", data)
    return d


def test_identity_refiner_leaves_arrays_unchanged():
    r = ResidualRefiner(n_features=7, n_labels=2, hidden=8, noise_init=1e-3)
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    np.testing.assert_array_equal(refine_arrays(r, x, y, stochastic=False), x)
    # with noise: only the starting noise amplitude 1e-3 (in units of the spread, here 1)
    assert np.abs(refine_arrays(r, x, y, seed=3) - x).max() < 6e-3


def test_identity_refiner_leaves_shower_file_unchanged(shower_files, tmp_path):
    sim = read_showers(shower_files / "sim.h5")
    adapter = get_adapter("showers")
    state = adapter.fit(sim)
    model = ResidualRefiner(sim.showers.shape[1], 4, hidden=8, stochastic=False, clip_min=0.0)
    save_refiner(tmp_path / "id.pt", model, kind="showers", preprocessing=state)
    out = apply_file(tmp_path / "id.pt", shower_files / "sim.h5", tmp_path / "refined.h5")
    back = read_showers(tmp_path / "refined.h5")
    np.testing.assert_allclose(back.showers, sim.showers, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(back.incident_energies, sim.incident_energies)
    assert out.attrs["refiner_epoch"] == 0 and back.attrs["refined_from"].endswith("sim.h5")


def test_known_shift_is_learned():
    """data = sim × 1.1 on a positive 4-d toy: per-feature means of refined sim within 4 % of
    data's, and the median per-event ratio refined/sim within 0.04 of 1.1."""
    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.uniform(0, 1, (n, 1)).astype(np.float32)
        return (rng.gamma(4.0, 1.0, (n, 4)) * (1 + y)).astype(np.float32), y

    xs, ys = draw(2000)
    xd, yd = draw(2000)
    xd *= 1.1
    cfg = RefinerConfig(hidden=32, critic_hidden=64, epochs=40, batch_size=128, n_critic=3, lr=1e-3,
                        critic_lr=1e-3, closeness=0.01, stochastic=False, critic_warmup=50, ema=0.9, seed=0)
    model, hist = train_refiner(xs, ys, xd, yd, cfg, progress=False)
    xr = refine_arrays(model, xs, ys)
    np.testing.assert_allclose(xr.mean(0) / xd.mean(0), 1.0, atol=0.04)
    assert abs(np.median(xr / xs) - 1.1) < 0.04
    assert hist["epoch"] == list(range(1, 41))


def test_labels_and_conditions_preserved_showers(shower_files, tmp_path):
    run = train_files(shower_files / "sim.h5", shower_files / "data.h5", tmp_path / "run",
                      RefinerConfig(**SMALL), progress=False)
    model, payload = load_refiner(run)
    assert payload["kind"] == "showers" and payload["meta"]["epoch"] == 1 and model.clip_min == 0.0
    apply_file(run, shower_files / "sim.h5", tmp_path / "refined.h5", seed=1)
    sim, ref = read_showers(shower_files / "sim.h5"), read_showers(tmp_path / "refined.h5")
    np.testing.assert_array_equal(ref.incident_energies, sim.incident_energies)
    assert sorted(ref.conditions) == ["impact_position", "incident_theta"]
    for k in sim.conditions:
        np.testing.assert_array_equal(ref.conditions[k], sim.conditions[k])
    assert ref.showers.min() >= 0.0 and ref.geometry.to_dict() == sim.geometry.to_dict()
    assert not np.array_equal(ref.showers, sim.showers)
    assert ref.attrs["refined_by"] == str(run)


def test_labels_preserved_traces_and_dead_stations_stay_zero(tmp_path):
    write_traces(tmp_path / "sim.h5", simulate_auger(40, "sim", seed=1))
    write_traces(tmp_path / "data.h5", simulate_auger(40, "data", seed=2))
    run = train_files(tmp_path / "sim.h5", tmp_path / "data.h5", tmp_path / "run", RefinerConfig(**SMALL),
                      progress=False)
    apply_file(run, tmp_path / "sim.h5", tmp_path / "ref.h5")
    sim, ref = read_traces(tmp_path / "sim.h5"), read_traces(tmp_path / "ref.h5")
    np.testing.assert_array_equal(ref.energy, sim.energy)
    np.testing.assert_array_equal(ref.zenith, sim.zenith)
    dead = ~np.any(sim.traces != 0, axis=-1)
    assert dead.any() and np.all(ref.traces[dead] == 0)
    assert not np.array_equal(ref.traces, sim.traces)


def test_resume_gives_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 5)).astype(np.float32), rng.normal(size=(96, 1)).astype(np.float32)
    xd = x + 0.5
    cfg2 = RefinerConfig(**{**SMALL, "epochs": 2})
    full, _ = train_refiner(x, y, xd, y, cfg2, checkpoint=tmp_path / "a.pt", progress=False)
    train_refiner(x, y, xd, y, RefinerConfig(**SMALL), checkpoint=tmp_path / "b.pt", progress=False)
    resumed, hist = train_refiner(x, y, xd, y, cfg2, checkpoint=tmp_path / "b.pt", progress=False)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert hist["epoch"] == [1, 2]
    with pytest.raises(ValueError, match=r"b\.pt: key 'hparams': cannot resume a run with other settings"):
        train_refiner(x, y, xd, y, RefinerConfig(**{**SMALL, "epochs": 3, "hidden": 8}),
                      checkpoint=tmp_path / "b.pt", progress=False)


def test_diverged_training_stops_with_the_last_epoch_kept(tmp_path, monkeypatch):
    """A non-finite refiner loss stops training with a one-line FloatingPointError naming the epoch,
    the step and the checkpoint, before the step: the checkpoint still holds the finished epoch 1."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 5)).astype(np.float32), rng.normal(size=(96, 1)).astype(np.float32)
    ck = tmp_path / "run.pt"
    train_refiner(x, y, x + 0.5, y, RefinerConfig(**SMALL), checkpoint=ck, progress=False)
    before = torch.load(ck, weights_only=False)["model"]
    monkeypatch.setattr(ResidualRefiner, "closeness", lambda self, a, b: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match=rf"^refiner training diverged at epoch 2, step 1: refiner loss nan, "
                                                 rf"critic W [-0-9.e]+; {re.escape(str(ck))} holds epoch 1 \("):
        train_refiner(x, y, x + 0.5, y, RefinerConfig(**{**SMALL, "epochs": 2}), checkpoint=ck, progress=False)
    payload = torch.load(ck, weights_only=False)
    assert payload["meta"]["history"]["epoch"] == [1]
    for k, v in before.items():
        torch.testing.assert_close(payload["model"][k], v, rtol=0, atol=0)


def test_dctr_recovers_gaussian_density_ratio():
    """sim N(0,1), data N(0.5,1): w(x) ∝ exp(0.5 x − 0.125); ESS/N = exp(−0.25) = 0.78."""
    rng = np.random.default_rng(1)
    xs, xd = rng.normal(size=(6000, 1)), rng.normal(size=(6000, 1)) + 0.5
    r = dctr_weights(xs, xd, seed=0, n_folds=3, model="mlp")
    w = r["weights"]
    exact = np.exp(0.5 * xs[:, 0] - 0.125)
    exact /= exact.mean()
    core = np.abs(xs[:, 0]) < 1.5
    assert np.median(np.abs(w[core] / exact[core] - 1)) < 0.1
    assert abs(np.average(xs[:, 0], weights=w) - 0.5) < 0.05
    assert abs(r["ess_fraction"] - np.exp(-0.25)) < 0.06
    assert r["n_clipped"] == 0 and abs(w.mean() - 1) < 1e-12


def test_effective_sample_size_and_gap_by_hand():
    assert effective_sample_size([1.0, 3.0]) == pytest.approx(16 / 10)
    assert gap_closed(0.2, 0.05, 0.0) == pytest.approx(0.75)
    assert gap_closed(0.2, 0.3, 0.0) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match=r"weights: expected a 1-d array of finite values >= 0"):
        effective_sample_size([1.0, -1.0])


def test_regression_study_sees_a_known_bias():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, 1500)
    x_data = np.stack([t, rng.normal(size=1500)], 1) + rng.normal(0, 0.02, (1500, 2))
    x_sim = x_data.copy()
    x_sim[:, 0] = x_sim[:, 0] - 0.2  # sim response shifted: a sim-trained regressor is biased by +0.2
    res = regression_study({"sim": (x_sim[:1000], {"t": t[:1000]}, None),
                            "data": (x_data[:1000], {"t": t[:1000]}, None)},
                           x_data[1000:], {"t": t[1000:]}, seeds=(0,), epochs=30)
    assert res["summary"]["sim"]["t"]["bias"] == pytest.approx(0.2, abs=0.05)
    assert abs(res["summary"]["data"]["t"]["bias"]) < 0.05


def test_repeated_auc_is_the_mean_over_classifier_seeds_and_finds_the_gaussian_auc():
    """Two unit Gaussians 1 apart: AUC = Φ(1/√2) = 0.7602 (by hand); each seed is an independent
    two_sample_auc call, the mean and population spread are theirs."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3000, 1)) + 1.0, rng.normal(size=(3000, 1))
    r = repeated_auc(a, b, seeds=(0, 1, 2))
    per_seed = [two_sample_auc(a, b, seed=s)["auc"] for s in (0, 1, 2)]
    assert r["auc_seeds"] == pytest.approx(per_seed, abs=1e-12)
    assert r["auc"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert r["auc_std"] == pytest.approx(np.std(per_seed), abs=1e-12)
    assert r["auc"] == pytest.approx(0.7602, abs=0.03)
    assert r["auc_err"] == two_sample_auc(a, b, seed=0)["auc_err"]
    with pytest.raises(ValueError, match="classifier seeds: expected at least one seed, found none"):
        repeated_auc(a, b, seeds=())


def test_demonstrate_reports_the_auc_over_classifier_seeds(tmp_path):
    sim = simulate_dataset(200, seed=1, theta_range=(0.0, 0.3), position_range=(-5.0, 5.0), progress=False)
    data = simulate_dataset(200, seed=2, theta_range=(0.0, 0.3), position_range=(-5.0, 5.0), progress=False)
    data.showers = data.showers * 2.0
    m = demonstrate("showers", sim, data, tmp_path, RefinerConfig(epochs=1, hidden=16, critic_hidden=16),
                    reg_seeds=(0,), progress=False, classifier_seeds=(0, 1), closeness_scan=(0.1,))
    for level in ("auc_low_level", "auc_high_level"):
        for v in m[level].values():
            assert len(v["auc_seeds"]) == 2
            assert v["auc"] == pytest.approx(np.mean(v["auc_seeds"]), abs=1e-12)
            assert v["auc_std"] == pytest.approx(np.std(v["auc_seeds"]), abs=1e-12)
    # data is twice sim in every voxel: the summaries (E_tot/E_inc) show it even with 60 held-out
    # showers (0.74 here; 0.5 would be blind)
    assert m["auc_high_level"]["sim vs data"]["auc"] > 0.65, m["auc_high_level"]
    assert "mean over classifier seeds [0, 1]" in (tmp_path / "report.html").read_text()
    # the scan at the main run's own λ trains the same refiner: its AUC is the same mean over seeds
    assert m["closeness_scan"]["0.1"]["auc_low_level"] == m["auc_low_level"]["refined vs data"]["auc"]


def test_mismatched_geometry_refused(tmp_path):
    sim = simulate_dataset(5, seed=1)
    other = CylindricalBinning.regular(n_layers=8, r_edges=[0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 160.0, 200.0],
                                       n_alpha=6)
    data = simulate_dataset(5, geometry=other, seed=2)
    write_showers(tmp_path / "sim.h5", sim)
    write_showers(tmp_path / "data.h5", data)
    with pytest.raises(ValueError, match=r"data\.h5: detector layout differs from .*sim\.h5 in \['geometry'\]"):
        read_pair(tmp_path / "sim.h5", tmp_path / "data.h5")


def test_mismatched_conditions_refused():
    a = simulate_dataset(5, seed=1)
    b = simulate_dataset(5, seed=1, theta_range=(0.0, 0.1))
    with pytest.raises(ValueError, match=r"^data: event labels/conditions differ from sim: expected \['log_E_inc'\], "
                                         r"found \['log_E_inc', 'incident_theta_0'\]$"):
        check_pair(a, b, "showers")


def test_mismatched_kinds_refused(tmp_path):
    write_showers(tmp_path / "sim.h5", simulate_dataset(5, seed=1))
    write_traces(tmp_path / "data.h5", simulate_auger(3, "data", seed=1))
    with pytest.raises(ValueError, match=r"data\.h5: key 'kind': expected 'showers' \(the kind of .*sim\.h5\), "
                                         r"found 'traces'$"):
        read_pair(tmp_path / "sim.h5", tmp_path / "data.h5")


def test_mismatched_trace_layout_refused(tmp_path):
    write_traces(tmp_path / "sim.h5", simulate_auger(3, "sim", seed=1))
    write_traces(tmp_path / "data.h5", simulate_auger(3, config=AugerToyConfig(n_t=60), seed=1))
    with pytest.raises(ValueError, match=r"data\.h5: detector layout differs from .*sim\.h5 in \['n_t'\]: "
                                         r"expected \{'n_t': 80\}, found \{'n_t': 60\}$"):
        read_pair(tmp_path / "sim.h5", tmp_path / "data.h5")


def test_empty_file_refused(tmp_path):
    sim = simulate_dataset(5, seed=1)
    write_showers(tmp_path / "sim.h5", sim)
    write_showers(tmp_path / "empty.h5", sim.subset(slice(0, 0)))
    with pytest.raises(ValueError, match=r"empty\.h5: expected at least 1 event, found an empty file \(0 events\)$"):
        read_pair(tmp_path / "sim.h5", tmp_path / "empty.h5")


def test_apply_to_other_kind_or_missing_file_refused(shower_files, tmp_path):
    model = ResidualRefiner(384, 4, hidden=8)
    save_refiner(tmp_path / "r.pt", model, kind="showers",
                 preprocessing=get_adapter("showers").fit(read_showers(shower_files / "sim.h5")))
    write_traces(tmp_path / "t.h5", simulate_auger(2, "sim", seed=1))
    with pytest.raises(ValueError, match=r"t\.h5: key 'kind': expected 'showers' \(the refiner's\), found 'traces'$"):
        apply_file(tmp_path / "r.pt", tmp_path / "t.h5", tmp_path / "o.h5")
    with pytest.raises(FileNotFoundError, match=r"nope\.h5: file not found$"):
        apply_file(tmp_path / "r.pt", tmp_path / "nope.h5", tmp_path / "o.h5")
    with h5py.File(tmp_path / "junk.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"junk\.h5: not a file of a kind the refiner knows \['showers', 'traces'\]$"):
        apply_file(tmp_path / "r.pt", tmp_path / "junk.h5", tmp_path / "o.h5")


def test_bad_arrays_and_config_refused():
    with pytest.raises(ValueError, match=r"^data: expected at least 1 event, found 0$"):
        train_refiner(np.zeros((4, 2)), np.zeros((4, 1)), np.zeros((0, 2)), np.zeros((0, 1)), progress=False)
    with pytest.raises(ValueError, match=r"^refiner config key 'closeness': expected a number >= 0, found -1$"):
        RefinerConfig(closeness=-1)
    with pytest.raises(ValueError, match=r"^refiner config: unknown keys \['foo'\]"):
        RefinerConfig.from_dict({"foo": 1})


def test_shower_adapter_round_trip_and_clip():
    d = ShowerData(np.array([[0.0, 2.5, 100.0]], np.float32), [[1000.0]], geometry=None)
    a = get_adapter("showers")
    st = a.fit(d)
    x, y = a.to_arrays(d, st)
    np.testing.assert_allclose(x, np.log1p([[0.0, 2.5, 100.0]]), rtol=1e-6)
    assert y[0, 0] == pytest.approx(np.log(1000.0))
    back = a.from_arrays(np.array([[-0.3, np.log1p(2.5), np.log1p(100.0)]]), d, st)
    np.testing.assert_allclose(back.showers, [[0.0, 2.5, 100.0]], rtol=1e-5)
