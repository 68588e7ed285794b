"""The lone-cell law of ``ShowerPreprocessor(occupancy=True)`` (issue 14): a layer given exactly one lit
cell takes its place from the training showers' histogram of lone lit cells in its bin of E_inc."""

import numpy as np
import pytest
import torch

from hepgen.domains.showers.inference import FeatureDecoder
from hepgen.domains.showers.preprocessing import (LONE_CELL_BINS, LONE_CELL_MIN, LONE_CELL_PRIOR, LONE_CELL_SCRAMBLE,
                                                  ShowerPreprocessor, _logit)


def _showers(n=400, seed=0):
    """Layer 0 (4 cells): all four lit.  Layer 1 (4 cells): one lit cell, cell 0 below the median E_inc,
    cell 3 above it.  E_inc log-uniform in 1-100 GeV (MeV)."""
    rng = np.random.default_rng(seed)
    e = np.sort(np.exp(rng.uniform(np.log(1e3), np.log(1e5), n)))
    showers = np.zeros((n, 8))
    showers[:, :4] = rng.uniform(1.0, 2.0, (n, 4))
    showers[: n // 2, 4] = 3.0
    showers[n // 2 :, 7] = 3.0
    return showers, e.reshape(-1, 1)


def _phases(v):
    """Fractional parts of counts at which the cell is drawn at ``v`` (``LONE_CELL_SCRAMBLE · phase mod 1``),
    spread over [0, 1)."""
    v = np.asarray(v, dtype=np.float64)
    return (v + np.arange(v.size) % LONE_CELL_SCRAMBLE) / LONE_CELL_SCRAMBLE


def _features(pre, showers, e, counts, v, seed=1):
    """Features of ``showers`` with the dequantised count of layer 1 set to draw its cell at ``v``."""
    unit = pre._unit_features(showers, e, np.random.default_rng(seed))
    unit[:, 3] = (counts + _phases(v)) / 5.0
    return ((_logit(unit, pre.alpha) - pre.feat_mean) / pre.feat_std).astype(np.float32)


def test_the_fitted_law_by_hand():
    showers, e = _showers()
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(showers, e)
    np.testing.assert_allclose(pre.lone_edges, np.quantile(np.log(e), np.linspace(0, 1, LONE_CELL_BINS + 1)[1:-1]))
    assert pre.lone_cells.shape == (LONE_CELL_BINS, 8)
    np.testing.assert_array_equal(pre.lone_cells[:, :4], 0.0)    # layer 0 never has a lone lit cell
    # 400 showers in 8 bins of 50; bins 0-3 all at cell 0, bins 4-7 at cell 3; overall [1/2, 0, 0, 1/2],
    # pulled with 10 pseudo-counts: (50 + 5) / 60 and 5 / 60
    hi, lo = (50 + 0.5 * LONE_CELL_PRIOR) / (50 + LONE_CELL_PRIOR), 0.5 * LONE_CELL_PRIOR / (50 + LONE_CELL_PRIOR)
    np.testing.assert_allclose(pre.lone_cells[:4, 4:], np.tile([hi, 0, 0, lo], (4, 1)), rtol=1e-12)
    np.testing.assert_allclose(pre.lone_cells[4:, 4:], np.tile([lo, 0, 0, hi], (4, 1)), rtol=1e-12)
    # read in chunks (the large-data fit): the same law
    chunked = ShowerPreprocessor([4, 4], occupancy=True).fit_chunks(
        lambda: ((showers[i:i + 70], e[i:i + 70], {}) for i in range(0, 400, 70)))
    np.testing.assert_array_equal(chunked.lone_cells, pre.lone_cells)
    np.testing.assert_array_equal(chunked.lone_edges, pre.lone_edges)
    state = pre.state_dict()
    back = ShowerPreprocessor.from_state(state)
    np.testing.assert_array_equal(back.lone_cells, pre.lone_cells)
    np.testing.assert_array_equal(back.lone_edges, pre.lone_edges)
    del state["lone_cells"], state["lone_edges"]                  # a checkpoint from before the law
    assert ShowerPreprocessor.from_state(state).lone_cells is None


def test_no_law_without_occupancy_with_extra_conditions_or_with_too_few_lone_layers():
    showers, e = _showers()
    assert ShowerPreprocessor([4, 4]).fit(showers, e).lone_cells is None
    angle = {"angle": np.zeros(len(e))}
    assert ShowerPreprocessor([4, 4], ["angle"], occupancy=True).fit(showers, e, angle).lone_cells is None
    few = ShowerPreprocessor([4, 4], occupancy=True).fit(showers[: LONE_CELL_MIN - 1], e[: LONE_CELL_MIN - 1])
    np.testing.assert_array_equal(few.lone_cells, 0.0)


def test_the_law_is_averaged_over_the_orientations():
    showers, e = _showers()
    swap = np.array([np.arange(8), [3, 2, 1, 0, 7, 6, 5, 4]])    # mirror each layer
    pre = ShowerPreprocessor([4, 4], occupancy=True, orientations=swap).fit(showers, e)
    np.testing.assert_allclose(pre.lone_cells[:, 4:], np.tile([0.5, 0, 0, 0.5], (LONE_CELL_BINS, 1)), rtol=1e-12)


def test_a_count_of_one_places_the_cell_by_the_inverse_cdf_at_a_multiple_of_the_counts_fractional_part():
    showers, e = _showers()
    pre = ShowerPreprocessor([4, 4], occupancy=True).fit(showers, e)
    hi = (50 + 0.5 * LONE_CELL_PRIOR) / (50 + LONE_CELL_PRIOR)
    # a low-energy shower (bin 0: cdf [hi, hi, hi, 1]) and a high one (bin 7: cdf [lo, lo, lo, 1])
    rows = [0, 399]
    for v, want in ((0.5, [4, 7]), (hi + 0.01, [7, 7]), (0.01, [4, 4])):
        feats = _features(pre, showers[rows], e[rows], np.ones(2), np.full(2, v))
        out = pre.inverse(feats, e[rows])
        np.testing.assert_array_equal(np.argmax(out[:, 4:], axis=1) + 4, want)
        np.testing.assert_array_equal((out[:, 4:] > 0).sum(axis=1), 1)
        np.testing.assert_allclose(out[:, 4:].sum(axis=1), 3.0, rtol=1e-2)   # the layer's energy, in its one cell
    # the shape features of such a layer (columns 8-11 after 4 energy features) are not read; a count of two keeps the two largest shares
    feats = _features(pre, showers[rows], e[rows], np.ones(2), np.full(2, 0.5))
    scrambled = feats.copy()
    scrambled[:, 4 + 4 :] = np.random.default_rng(3).normal(size=(2, 4))
    np.testing.assert_array_equal(pre.inverse(scrambled, e[rows]), pre.inverse(feats, e[rows]))
    two = _features(pre, showers[rows], e[rows], np.full(2, 2.0), np.full(2, 0.5))
    assert not np.array_equal(pre.inverse(two, e[rows])[:, 4:] > 0, pre.inverse(feats, e[rows])[:, 4:] > 0)


@pytest.mark.parametrize("counted", [False, True])    # kept_largest as eager / as compiled
@pytest.mark.parametrize("sizes", [[4, 4], [3, 5]])   # equal layers at once, unequal ones layer by layer
def test_drawn_cells_follow_the_law_and_the_torch_decoder_agrees(sizes, counted, monkeypatch):
    if counted:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    rng = np.random.default_rng(7)
    showers = rng.exponential(0.05, (2000, 8)) * (rng.random((2000, 8)) < 0.5)
    e_inc = np.exp(rng.uniform(np.log(5.0), np.log(50.0), (2000, 1)))
    pre = ShowerPreprocessor(sizes, occupancy=True).fit(showers, e_inc)
    np.testing.assert_allclose(pre.lone_cells.sum(axis=1), 2.0, rtol=1e-12)   # both layers: a law in every bin
    # one shower per bin of E_inc, each drawn at 1,000 points v on a grid: count 1 in layer 1 everywhere
    where, total = np.searchsorted(pre.lone_edges, np.log(e_inc[:, 0])), showers.sum(axis=1)
    pick = [int(np.argmax(np.where(where == b, total, -1.0))) for b in range(LONE_CELL_BINS)]   # the brightest
    grid = (np.arange(1000) + 0.5) / 1000
    rows = np.repeat(pick, grid.size)
    unit = pre._unit_features(showers[rows], e_inc[rows], np.random.default_rng(1))
    n1 = sizes[1]
    unit[:, 3] = (1.0 + _phases(np.tile(grid, len(pick)))) / (n1 + 1.0)
    unit[:, 1] = 0.5                                               # layer 0 keeps half: layer 1 well above the threshold
    feats = ((_logit(unit, pre.alpha) - pre.feat_mean) / pre.feat_std).astype(np.float32)
    out = pre.inverse(feats, e_inc[rows])
    layer1 = out[:, sizes[0]:]
    assert ((layer1 > 0).sum(axis=1) == 1).all()
    for b in range(LONE_CELL_BINS):
        seen = np.bincount(np.argmax(layer1[b * 1000 : (b + 1) * 1000], axis=1), minlength=n1) / 1000
        np.testing.assert_allclose(seen, pre.lone_cells[b, sizes[0]:], atol=1e-3)   # the grid's resolution
    with torch.no_grad():
        got = FeatureDecoder(pre)(torch.from_numpy(feats), torch.tensor(e_inc[rows], dtype=torch.float32)).numpy()
    # the same cells, but for phases within float32 rounding of a step of the CDF
    same = np.argmax(got[:, sizes[0]:], axis=1) == np.argmax(layer1, axis=1)
    assert same.mean() > 0.995
    np.testing.assert_allclose(got[same, sizes[0]:], layer1[same], rtol=1e-4, atol=1e-6)


def test_a_trained_caloflow_draws_lone_cells_in_torch_numpy_and_onnx_alike(tmp_path):
    """End to end with the law in the checkpoint: the torch sampler equals the numpy inverse of the same
    features, generated lone cells of layer 1 follow the law, and the exported ONNX graph matches."""
    from hepgen.config import TrainConfig
    from hepgen.data.formats import ShowerData
    from hepgen.data.geometry import CylindricalBinning
    from hepgen.domains.showers.generator import ShowerGenerator
    from hepgen.domains.showers.inference import ShowerSampler
    from hepgen.export import check_onnx, export_onnx
    from hepgen.models.flow import CaloFlow
    from hepgen.train.trainer import train

    geometry = CylindricalBinning.regular(2, [0.0, 8.0, 20.0, 60.0], n_alpha=2)    # 6 cells per layer
    rng = np.random.default_rng(2)
    e = np.exp(rng.uniform(np.log(2e3), np.log(2e4), (400, 1)))
    showers = np.zeros((400, 12), dtype=np.float32)
    showers[:, :6] = rng.uniform(0.5, 1.5, (400, 6)) * e / 2e3
    showers[np.arange(400), 6 + rng.choice(6, 400, p=[0.05, 0.05, 0.1, 0.1, 0.35, 0.35])] = 0.2 * e[:, 0] / 2e3
    tiny = CaloFlow.tiny_hparams()
    config = TrainConfig(family="caloflow", model={"energy_flow": tiny["energy_flow"], "shape_flow": tiny["shape_flow"]},
                         occupancy=True, epochs=1, batch_size=100, seed=0)
    train(ShowerData(showers, e, {}, geometry), config, tmp_path / "run", progress=False)
    gen = ShowerGenerator.load(tmp_path / "run" / "best.pt")
    pre = gen.preprocessor
    assert pre.lone_cells[:, :6].sum() == 0 and np.allclose(pre.lone_cells[:, 6:].sum(axis=1), 1.0)
    n = 4000
    energies = np.exp(rng.uniform(np.log(2e3), np.log(2e4), n))
    z = torch.randn(n, gen.model.n_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = gen.model.sample_from_noise(torch.from_numpy(pre.transform_conditions(energies)), z).numpy()
        got = ShowerSampler.from_generator(gen)(torch.tensor(energies, dtype=torch.float32).reshape(-1, 1), z).numpy()
    ref = pre.inverse(feats, energies)
    flip = (got == 0) != (ref == 0)
    assert flip.mean() < 2e-3
    np.testing.assert_allclose(got[~flip], ref[~flip], rtol=1e-3, atol=1e-3)
    lone = (ref[:, 6:] > 0).sum(axis=1) == 1
    assert lone.sum() > 200
    seen = np.bincount(np.argmax(ref[lone, 6:], axis=1), minlength=6) / lone.sum()
    want = pre.lone_cells[np.searchsorted(pre.lone_edges, np.log(energies[lone])), 6:].mean(axis=0)
    np.testing.assert_allclose(seen, want, atol=5 * np.sqrt(0.25 / lone.sum()))    # 5 binomial sd at most
    export_onnx(gen, tmp_path / "m.onnx")
    res = check_onnx(tmp_path / "m.onnx", gen, n=500, seed=1)
    assert res["ok"], res
