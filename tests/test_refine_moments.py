"""Tests of the response moments (hepgen.refine.moments, RefinerConfig.match_response) and the
occupancy calibration (ResidualRefiner.fit_occupancy, RefinerConfig.match_occupancy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.cli import build_parser, main
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.moments import ResponseMoments
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    apply_file,
    load_refiner,
    refine_arrays,
    train_refiner,
)
from hepgen.simulate.calorimeter import simulate_dataset

# two layers of four "voxels" each, then the total (the shape of the shower adapter's sum_groups)
GROUPS = np.array([[1] * 4 + [0] * 4, [0] * 4 + [1] * 4, [1] * 8], np.float32)


def _one_voxel(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, ResponseMoments]:
    """One feature x = log1p(E) with a response falling and a spread shrinking with y = ln E_inc;
    the moments fitted on it (labels standardised with their own mean and population spread)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(7.0, 11.5, (n, 1))
    u = (y - 9.0) / 1.3
    q = np.log(0.17) - 0.02 * u + 0.03 * u ** 2 + (0.08 - 0.05 * np.tanh(u)) * rng.standard_normal((n, 1))
    x = np.log1p(np.exp(q + y)).astype(np.float32)
    y = y.astype(np.float32)
    m = ResponseMoments(np.ones((1, 1), np.float32), y.mean(0), y.std(0))
    m.fit(x, y)
    return x, y, m


def test_fits_agree_with_numpy_polyfit():
    """The fitted mean of q and of the squared standardised residual are numpy's quadratic fits in ŷ."""
    x, y, m = _one_voxel()
    yt = torch.from_numpy(y)
    q = m.quantities(torch.from_numpy(x), yt).double().numpy()[:, 0]
    yn = ((y - y.mean(0)) / y.std(0))[:, 0].astype(np.float64)
    mean_fit = np.polyval(np.polyfit(yn, q, 2), yn)
    np.testing.assert_allclose((m.basis(yt).double() @ m.coef_mean.double().T).numpy()[:, 0], mean_fit, atol=2e-4)
    res = q - mean_fit
    sq_fit = np.polyval(np.polyfit(yn, (res / res.std(ddof=1)) ** 2, 2), yn)
    np.testing.assert_allclose((m.basis(yt).double() @ m.coef_sq.double().T).numpy()[:, 0], sq_fit, atol=2e-3)
    assert float(m.std[0]) == pytest.approx(res.std(ddof=1), rel=1e-4)


def test_loss_is_zero_on_the_fitted_data_and_hand_worked_for_a_shift():
    """On data itself the normal equations make both moments zero.  A shift δ of q gives
    r → r + c (c = δ/σ): the first moments are (c, c·mean ŷ, c·mean(ŷ² − 1)) = (c, 0, 0) and the
    second (c², 0, 0) (mean r φ_k = 0), so L = c² + c⁴."""
    x, y, m = _one_voxel()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert float(m.loss(xt, yt)) < 1e-8
    delta = 0.05
    x_shift = torch.log1p(torch.expm1(xt.double()) * np.exp(delta)).float()  # E × e^δ: q + δ
    c = delta / float(m.std[0])
    # 5e-3: the moments are float32 sums over features of magnitude ≈ 10, so the data's own first
    # moments are ≈ 1e-4 rather than 0 and enter the shifted ones as cross terms
    assert float(m.loss(x_shift, yt)) == pytest.approx(c ** 2 + c ** 4, rel=5e-3)


def test_a_broader_spread_costs_and_gradients_reach_the_features():
    """Residuals scaled by s about data's fit: no first moment, the second (s² − 1)·mean(r² φ_k).
    The loss grows with |s − 1| and its gradient reaches x."""
    x, y, m = _one_voxel()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    q = m.quantities(xt, yt)
    fit = m.basis(yt) @ m.coef_mean.T
    losses = []
    for s in (1.0, 1.2, 1.5):
        xs = fit + s * (q - fit) + yt  # one voxel: q = log1p(expm1(x)) − y = x − y
        xs.requires_grad_(True)
        loss = m.loss(xs, yt)
        r = ((q - fit) / m.std).double()
        expect = ((s ** 2 - 1) * (r ** 2 * m.basis(yt).double()).mean(0)) ** 2
        assert float(loss.detach()) == pytest.approx(float(expect.sum()), rel=1e-2, abs=1e-7)
        if s > 1:
            loss.backward()
            assert torch.isfinite(xs.grad).all() and float(xs.grad.abs().sum()) > 0
        losses.append(float(loss.detach()))
    assert losses[0] < 1e-8 < losses[1] < losses[2]


def test_match_response_refused_without_groups_or_labels():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(40, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="'match_response': expected sum groups"):
        train_refiner(x, y, x, y, RefinerConfig(epochs=1, match_response=1.0), progress=False)
    with pytest.raises(ValueError, match="'match_response': expected a number >= 0"):
        RefinerConfig(match_response=-1.0)
    with pytest.raises(ValueError, match="'match_occupancy': expected the residual MLP refiner and features with a"):
        train_refiner(x, y, x, y, RefinerConfig(epochs=1, match_occupancy=True), progress=False)


def test_occupancy_cut_hand_worked():
    """Group 0 (voxels 0–3): refined events occupy all 4 voxels with values 0.1–0.4, data half of
    them: the cut is the refined values' median 0.25 and applies only in eval mode; group 1: refined
    as empty as data: no cut."""
    model = ResidualRefiner(8, 1, hidden=8, stochastic=False, clip_min=0.0, occupancy=True)
    x_ref = np.tile(np.array([0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.5, 0.5], np.float32), (10, 1))
    x_dat = np.tile(np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0], np.float32), (10, 1))
    cut = model.fit_occupancy(x_ref, x_dat, GROUPS[:2])
    np.testing.assert_allclose(cut, [0.25] * 4 + [0.0] * 4, atol=1e-6)
    xt, yt = torch.from_numpy(x_ref), torch.zeros(10, 1)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model(xt, yt).numpy()[0], [0.0, 0.0, 0.3, 0.4, 0.0, 0.0, 0.5, 0.5])
        model.train()
        np.testing.assert_allclose(model(xt, yt).numpy()[0], x_ref[0])
    with pytest.raises(ValueError, match="without occupancy=True"):
        ResidualRefiner(8, 1, hidden=8).fit_occupancy(x_ref, x_dat, GROUPS[:2])


def test_match_occupancy_in_training_and_saved_with_the_refiner(tmp_path):
    """Sim occupies every voxel with small deposits in a third of them, data leave those empty:
    after training (one epoch, near the identity) the refined occupancy per layer is data's within
    1 %, and the refiner loaded from the checkpoint applies the same cut."""
    rng = np.random.default_rng(1)
    n = 600
    y = np.log(rng.uniform(1e3, 1e4, (n, 1))).astype(np.float32)
    e = rng.gamma(4.0, 50.0, (n, 8))
    soft = rng.random((n, 8)) < 1 / 3
    xs = np.log1p(np.where(soft, 0.01 * rng.random((n, 8)), e)).astype(np.float32)
    xd = np.log1p(np.where(rng.random((n, 8)) < 1 / 3, 0.0, e)).astype(np.float32)
    cfg = RefinerConfig(hidden=16, critic_hidden=16, epochs=1, critic_warmup=5, stochastic=False, seed=0,
                        match_occupancy=True)
    ck = tmp_path / "refiner.pt"
    model, _ = train_refiner(xs, y, xd, y, cfg, checkpoint=ck, progress=False, clip_min=0.0, sum_groups=GROUPS)
    xr = refine_arrays(model, xs, y)
    for g in GROUPS[:2].astype(bool):
        assert abs(float((xr[:, g] > 0).mean()) - float((xd[:, g] > 0).mean())) < 0.01
    loaded, _ = load_refiner(ck)
    np.testing.assert_array_equal(refine_arrays(loaded, xs, y), xr)


def test_cli_match_response_and_occupancy(tmp_path):
    """`hepgen refine train --match-response 2 --match-occupancy` on showers: both stored in the
    checkpoint, the cut fitted, and the applied file no fuller than the sim file in any layer."""
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    args = build_parser().parse_args(["refine", "train", "s", "d", "-o", "r"])
    assert args.match_response == 0.0 and args.match_occupancy is False
    tiny = ["--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 *tiny, "--match-response", "2", "--match-occupancy"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["match_response"] == 2.0 and payload["hparams"]["match_occupancy"] is True
    assert model.occupancy and float(model.occupancy_cut.min()) >= 0.0
    apply_file(tmp_path / "run" / "refiner.pt", tmp_path / "sim.h5", tmp_path / "ref.h5")
    ref, sim = read_showers(tmp_path / "ref.h5"), read_showers(tmp_path / "sim.h5")
    assert ref.showers.min() >= 0.0
    for s in geo.layer_slices:
        assert (ref.showers[:, s] > 0).mean() <= (sim.showers[:, s] > 0).mean() + 1e-9
