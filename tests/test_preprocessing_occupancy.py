"""The lit-cell counts as energy features (``ShowerPreprocessor(occupancy=True)``, issue 14)."""

import numpy as np
import pytest

from hepgen.config import TrainConfig, apply_overrides
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers import ShowerDomain, model_hparams
from hepgen.domains.showers.preprocessing import ShowerPreprocessor, _expit, _logit, keep_largest
from hepgen.simulate.calorimeter import simulate_dataset

# two layers of 4 cells; threshold 0.01 MeV
SHOWERS = np.array([
    [5.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0],   # 1 and 3 lit cells
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],   # 4 and 0
    [0.0, 2.0, 0.5, 0.0, 0.0, 7.0, 0.0, 0.0],   # 2 and 1
])
E_INC = np.array([[20.0], [10.0], [30.0]])


def test_features_hold_the_dequantised_lit_cell_counts():
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(SHOWERS, E_INC)
    assert pre.n_energy_features == 4 and pre.n_features == 12
    unit = pre._unit_features(SHOWERS, E_INC, np.random.default_rng(0))
    occ = unit[:, 2:4] * 5.0                        # (k + U(0, 1)) / (4 + 1), times 5
    np.testing.assert_array_equal(np.floor(occ), [[1, 3], [4, 0], [2, 1]])
    np.testing.assert_array_equal(pre.lit_cells_of(unit[:, 2:4]), [[1, 3], [4, 0], [2, 1]])


def test_round_trip_keeps_every_lit_cell_and_energy():
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(SHOWERS, E_INC)
    back = pre.inverse(pre.transform(SHOWERS, E_INC, np.random.default_rng(1)), E_INC)
    np.testing.assert_array_equal(back > 0, SHOWERS > 0)
    # the 1e-3 MeV noise of the zeroed cells is folded back into the kept ones: < 4e-3 MeV per layer
    np.testing.assert_allclose(back, SHOWERS, atol=5e-3)


def test_inverse_keeps_the_k_largest_cells_renormalised_to_the_layer_energy():
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(SHOWERS, E_INC)
    feats = pre.transform(SHOWERS, E_INC, np.random.default_rng(1))
    unit = np.clip(pre._unit_features(SHOWERS, E_INC, np.random.default_rng(1)), 1e-9, 1 - 1e-9)
    # smear row 1's layer 0 (4 lit cells of 1 MeV) ... and ask for 2 lit cells: the 2 largest shares stay
    unit[1, 4:8] = [0.4, 0.3, 0.2, 0.1]
    unit[1, 2] = 2.5 / 5.0
    z = _logit(unit, pre.alpha)
    feats[1] = (z[1] - pre.feat_mean) / pre.feat_std
    back = pre.inverse(feats, E_INC)
    # layer 0 of row 1 carries its 4 MeV (+ noise) in its two largest cells, in the ratio 0.4 : 0.3
    assert np.count_nonzero(back[1, :4]) == 2 and back[1, 2] == back[1, 3] == 0
    assert back[1, 0] / back[1, 1] == pytest.approx(4 / 3, rel=1e-4)
    assert back[1, :4].sum() == pytest.approx(4.0, abs=5e-3)


def test_keep_largest_against_sorting_by_hand():
    rng = np.random.default_rng(3)
    x = rng.random((50, 7))
    k = rng.integers(0, 8, size=50)
    got = keep_largest(x, k)
    for row, kk, g in zip(x, k, got):
        kept = np.sort(np.argsort(-row)[:kk])
        np.testing.assert_array_equal(np.flatnonzero(g), kept)
        np.testing.assert_array_equal(g[kept], row[kept])


@pytest.mark.parametrize("n_cells", [12, 70])    # counted ranks when compiled (≤ RANK_MAX_CELLS), else the sort
def test_kept_largest_counted_or_sorted_is_numpys_keep_largest_with_ties(monkeypatch, n_cells):
    import torch

    from hepgen.domains.showers.inference import RANK_MAX_CELLS, kept_largest
    rng = np.random.default_rng(11)
    shares = rng.integers(1, 6, size=(60, 3, n_cells)) / 10.0     # many ties, all positive
    k = rng.integers(0, n_cells + 1, size=(60, 3, 1))
    k[0, 0, 0], k[1, 1, 0] = 0, n_cells
    want = keep_largest(shares.reshape(-1, n_cells), k.reshape(-1)).reshape(shares.shape) > 0
    s, kt = torch.tensor(shares, dtype=torch.float32), torch.from_numpy(k)
    np.testing.assert_array_equal(kept_largest(s, kt).numpy(), want)        # eager: the sort
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)       # as inside torch.compile
    if n_cells <= RANK_MAX_CELLS:                                          # the counted ranks may not sort
        monkeypatch.setattr(torch, "sort", lambda *a, **k: pytest.fail("sorted a row it should count"))
    np.testing.assert_array_equal(kept_largest(s, kt).numpy(), want)


def test_config_reaches_the_preprocessor_the_model_and_the_saved_state():
    geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
    data = simulate_dataset(200, geometry=geometry, energy_range=(2e3, 2e4), seed=5, progress=False)
    assert TrainConfig().occupancy is False
    config = apply_overrides(TrainConfig(family="caloflow"), ["occupancy=true"])
    pre = ShowerDomain().fit_preprocessor(data, config)
    assert pre.occupancy and pre.n_features == 2 * 3 + 3 * 6   # 3 layers of 3 rings x 2 sectors
    assert model_hparams(config, geometry)["n_layers"] == 6        # the energy flow models 6 features
    assert model_hparams(TrainConfig(family="caloflow"), geometry)["n_layers"] == 3
    state = pre.state_dict()
    assert ShowerPreprocessor.from_state(state).occupancy is True
    del state["occupancy"]                                          # a checkpoint from before the field
    assert ShowerPreprocessor.from_state(state).occupancy is False


def test_fill_to_threshold_keeps_sums_and_lit_cells_and_lifts_faint_cells():
    from hepgen.domains.showers.preprocessing import fill_to_threshold
    rng = np.random.default_rng(4)
    cells = rng.exponential(0.05, size=(300, 6)) * (rng.random((300, 6)) < 0.6)
    k = (cells > 0).sum(axis=1)
    ok = cells.sum(axis=1) >= 0.01 * k                   # what the inverse guarantees (k capped)
    out = fill_to_threshold(cells[ok], 0.01)
    np.testing.assert_allclose(out.sum(axis=1), cells[ok].sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(out > 0, cells[ok] > 0)
    assert out[out > 0].min() >= 0.01 - 1e-15
    # cells above the threshold keep their order; rows without faint cells are unchanged
    plain = ~((cells[ok] > 0) & (cells[ok] < 0.01)).any(axis=1)
    np.testing.assert_allclose(out[plain], cells[ok][plain], rtol=1e-12)
    for a, b in zip(cells[ok], out):
        hi = a >= 0.01
        assert np.array_equal(np.argsort(a[hi], kind="stable"), np.argsort(b[hi], kind="stable"))


def test_caloflow_with_occupancy_trains_samples_and_exports(tmp_path):
    """End to end: a tiny caloflow with ``occupancy: true`` — the torch sampling path equals the numpy
    one, generated layers have the lit-cell counts the energy flow drew, and the ONNX graph matches."""
    import torch

    from hepgen.domains.showers.generator import ShowerGenerator
    from hepgen.domains.showers.inference import ShowerSampler
    from hepgen.export import check_onnx, export_onnx
    from hepgen.models.flow import CaloFlow
    from hepgen.train.trainer import train

    geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
    data = simulate_dataset(400, geometry=geometry, energy_range=(2e3, 2e4), seed=5, progress=False)
    tiny = CaloFlow.tiny_hparams()
    config = TrainConfig(family="caloflow", model={"energy_flow": tiny["energy_flow"], "shape_flow": tiny["shape_flow"]},
                         occupancy=True, epochs=1, batch_size=100, seed=0)
    train(data, config, tmp_path / "run", progress=False)
    gen = ShowerGenerator.load(tmp_path / "run" / "best.pt")
    assert gen.preprocessor.occupancy and gen.model.n_layers == 6
    e = np.geomspace(2e3, 2e4, 200)
    z = torch.randn(200, gen.model.n_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        c = torch.from_numpy(gen.preprocessor.transform_conditions(e))
        feats = gen.model.sample_from_noise(c, z).numpy()
        got = ShowerSampler.from_generator(gen)(torch.tensor(e, dtype=torch.float32).reshape(-1, 1), z).numpy()
    ref = gen.preprocessor.inverse(feats, e)
    # each layer: the drawn count, capped by the energy (no cell below the threshold), or fewer only where
    # float rounding puts a cell at the threshold on the other side (numpy float64 vs torch float32)
    x = _expit(feats.astype(np.float64) * gen.preprocessor.feat_std + gen.preprocessor.feat_mean,
               gen.preprocessor.alpha)
    drawn = gen.preprocessor.lit_cells_of(x[:, 3:6])
    lit = np.stack([(ref[:, s] > 0).sum(axis=1) for s in geometry.layer_slices], axis=1)
    assert (lit <= drawn).all() and (lit == drawn).mean() > 0.9
    assert ref[ref > 0].min() >= gen.preprocessor.threshold
    flip = (got == 0) != (ref == 0)
    assert flip.mean() < 2e-3
    np.testing.assert_allclose(got[~flip], ref[~flip], rtol=1e-3, atol=1e-3)
    export_onnx(gen, tmp_path / "m.onnx")
    res = check_onnx(tmp_path / "m.onnx", gen, n=200, seed=1)
    assert res["ok"], res


def test_fill_to_threshold_with_the_faint_cell_spectrum_by_hand():
    from hepgen.domains.showers.preprocessing import LIFT_STEP, fill_to_threshold
    # two faint cells, levels 0.25 and (0.25 + φ) mod 1 = 0.868...; quantiles 1, 2, 3 thresholds
    out = fill_to_threshold(np.array([[0.004, 0.006, 0.05, 0.1, 0.0]]), 0.01, np.array([1.0, 2.0, 3.0]), np.array([0.25]))
    t0 = 0.01 * 1.5                                           # pos 0.5: halfway from 1 to 2
    pos1 = (0.25 + LIFT_STEP) * 2                             # 1.736...
    t1 = 0.01 * (2.0 + (pos1 - 1.0))
    keep = 1.0 - (0.01 + (t0 - 0.01) + (t1 - 0.01)) / 0.13    # deficit 0.01, extra, from excesses 0.04 + 0.09
    np.testing.assert_allclose(out, [[t0, t1, 0.01 + 0.04 * keep, 0.01 + 0.09 * keep, 0.0]], rtol=1e-12)
    assert out.sum() == pytest.approx(0.16, rel=1e-12)
    # capped at the faintest cell above the threshold (0.02), and then only half of what that wants is
    # there (0.005 above the deficit, 0.01 wanted): the raised cell gets thr + 0.5 × 0.01, the other thr
    out = fill_to_threshold(np.array([[0.005, 0.02, 0.0]]), 0.01, np.array([1.0, 5.0, 9.0]), np.array([0.5]))
    np.testing.assert_allclose(out, [[0.015, 0.01, 0.0]], rtol=1e-12)
    # without quantiles: the threshold itself (the behaviour of checkpoints before lift_quantiles)
    np.testing.assert_allclose(fill_to_threshold(np.array([[0.005, 0.02, 0.0]]), 0.01), [[0.01, 0.015, 0.0]], rtol=1e-12)


def test_fitted_lift_quantiles_are_the_faintest_lit_cells_of_layers_with_two_or_more():
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(SHOWERS, E_INC)
    # layer 0: rows 1 (4 lit, faintest 1 MeV) and 2 (2 lit, faintest 0.5 MeV) -> 100, 50 thresholds;
    # layer 1: only row 0 (3 lit, faintest 1 MeV) -> 100; the lowest level is the threshold itself
    levels = np.linspace(0.0, 0.99, pre.lift_quantiles.shape[1])
    want0 = np.quantile([100.0, 50.0], levels)
    want0[0] = 1.0
    np.testing.assert_allclose(pre.lift_quantiles[0], want0, rtol=1e-12)
    assert pre.lift_quantiles[0, -1] == pytest.approx(99.5)
    np.testing.assert_allclose(pre.lift_quantiles[1], np.r_[1.0, np.full(levels.size - 1, 100.0)])
    state = pre.state_dict()
    np.testing.assert_array_equal(ShowerPreprocessor.from_state(state).lift_quantiles, pre.lift_quantiles)
    del state["lift_quantiles"]                                      # a checkpoint from before the field
    assert ShowerPreprocessor.from_state(state).lift_quantiles is None
    assert ShowerPreprocessor([4, 4]).fit(SHOWERS, E_INC).lift_quantiles is None


@pytest.mark.parametrize("counted", [False, True])    # kept_largest as eager / as compiled
@pytest.mark.parametrize("sizes", [[4, 4], [3, 5]])   # equal layers at once, unequal ones layer by layer
def test_raised_cells_spread_over_the_faint_spectrum_and_the_torch_decoder_agrees(sizes, counted, monkeypatch):
    import torch
    if counted:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)

    from hepgen.domains.showers.inference import FeatureDecoder
    rng = np.random.default_rng(7)
    showers = rng.exponential(0.05, (400, 8)) * (rng.random((400, 8)) < 0.7)
    e_inc = rng.uniform(5.0, 10.0, (400, 1))
    pre = ShowerPreprocessor(sizes, occupancy=True).fit(showers, e_inc)
    assert pre.lift_quantiles[:, -1].min() > 3.0                     # a spectrum, not the threshold
    feats = rng.normal(0.0, 1.0, (2000, pre.n_features)).astype(np.float32)
    e = rng.uniform(5.0, 10.0, 2000)
    lifted = pre.inverse(feats, e)
    plain = ShowerPreprocessor.from_state({**pre.state_dict(), "lift_quantiles": None}).inverse(feats, e)
    np.testing.assert_array_equal(lifted > 0, plain > 0)             # same lit cells ...
    for cut in (slice(0, sizes[0]), slice(sizes[0], 8)):           # the layer energies
        np.testing.assert_allclose(lifted[:, cut].sum(axis=1), plain[:, cut].sum(axis=1), rtol=1e-5)
    at_thr = lambda x: np.isclose(x[x > 0], pre.threshold, rtol=1e-5).mean()
    assert at_thr(plain) > 2 * at_thr(lifted)                       # ... and fewer of them at the threshold
    with torch.no_grad():
        got = FeatureDecoder(pre)(torch.from_numpy(feats), torch.tensor(e, dtype=torch.float32).reshape(-1, 1)).numpy()
    flip = (got == 0) != (lifted == 0)
    assert flip.mean() < 2e-3
    close = np.isclose(got, lifted, rtol=1e-3, atol=1e-4)
    assert close[~flip].mean() > 0.995                               # float32 vs float64 at the level wrap-around


def test_the_caloflow_preset_and_the_demo_count_lit_cells_the_demo_with_a_smaller_shape_flow():
    from hepgen.config import DemoConfig, preset
    assert preset("caloflow").occupancy is True
    demo = DemoConfig().train
    assert demo.occupancy is True and demo.family == "caloflow" and demo.deposit_bound == 4.5
    shape = demo.model["shape_flow"]
    assert (shape["hidden_features"], shape["spline_bins"], shape["mix"]) == (128, 6, 4)
    assert "mix" not in preset("caloflow").model["shape_flow"]                      # measured on the demo only
    assert demo.compile is True and demo.epochs == 40 and demo.fit_epochs_to_time is True
    assert demo.symmetry == "dihedral" and demo.augment_symmetry is True and preset("caloflow").symmetry == "none"
    assert preset("caloflow").model["shape_flow"]["hidden_features"] == 256       # the preset keeps its own
