"""The refiner's coherent noise per layer (`layer_noise`, ResidualRefiner(layer_noise=…))."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _refine_resume import assert_resume_is_exact
from hepgen.cli import main
from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.refiner import (RefinerConfig, ResidualRefiner, load_refiner, refine_arrays, save_refiner,
                                   train_refiner)
from hepgen.simulate.calorimeter import simulate_dataset

TINY = ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]
LAYERS = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]], np.float32)     # 3 + 2 voxels


def _refiner(layer_noise=LAYERS, n_labels=1):
    torch.manual_seed(0)
    m = ResidualRefiner(5, n_labels, hidden=8, n_blocks=1, noise_init=1e-2, clip_min=0.0, layer_noise=layer_noise)
    with torch.no_grad():
        m.log_sigma.bias.fill_(-40.0)          # voxel noise off: only the layer factor acts
    return m


def test_each_layer_is_scaled_by_its_random_factor_by_hand():
    m = _refiner()
    with torch.no_grad():                      # σ = 0.2 for layer 1 and 0.5 for layer 2, whatever the labels
        m.layer_sigma.bias.copy_(torch.log(torch.tensor([0.2, 0.5])))
    e = np.array([[10.0, 20.0, 0.0, 5.0, 40.0], [1.0, 0.0, 3.0, 7.0, 2.0]])
    x, y = torch.log1p(torch.tensor(e, dtype=torch.float32)), torch.tensor([[0.3], [-1.0]])
    noise = torch.tensor([[0.5, -1.0, 2.0, 0.3, 0.4], [-0.2, 0.1, 0.7, -1.5, 0.9]])
    with torch.no_grad():
        out = torch.expm1(m(x, y, noise)).numpy()
    eps1 = noise[:, :3].sum(1).numpy() / math.sqrt(3)
    eps2 = noise[:, 3:].sum(1).numpy() / math.sqrt(2)
    expect = e * np.c_[np.repeat(np.exp(0.2 * eps1)[:, None], 3, 1), np.repeat(np.exp(0.5 * eps2)[:, None], 2, 1)]
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)   # empty voxels stay empty (e^-40 voxel noise)
    with torch.no_grad():                      # without noise the layer factor is off
        torch.testing.assert_close(m(x, y, None), x, rtol=0, atol=1e-6)


def test_the_layer_noise_is_standard_normal_and_independent_between_layers():
    m = _refiner()
    noise = torch.randn(20000, 5, generator=torch.Generator().manual_seed(1))
    eps = (noise @ m.noise_layers.T) / m.noise_layers.sum(1).sqrt()
    np.testing.assert_allclose(eps.std(0).numpy(), [1.0, 1.0], atol=0.02)
    assert abs(float(np.corrcoef(eps.numpy().T)[0, 1])) < 0.03


def test_refusals():
    with pytest.raises(ValueError, match=r"^refiner config key 'layer_noise': expected a stochastic refiner "
                                         r"\(stochastic=True\), found stochastic=False$"):
        RefinerConfig(layer_noise=True, stochastic=False)
    with pytest.raises(ValueError, match=r"^refiner config key 'layer_noise': expected a stochastic refiner and a "
                                         r"\(K, 5\) matrix of non-overlapping layers, found stochastic=True and shape "
                                         r"\(2, 5\)$"):
        ResidualRefiner(5, 1, layer_noise=np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], np.float32))
    x, y = np.random.default_rng(0).random((32, 4)).astype(np.float32), np.zeros((32, 1), np.float32)
    with pytest.raises(ValueError, match=r"^refiner config key 'layer_noise': expected layer groups \(sum_groups\)"):
        train_refiner(x, y, x, y, RefinerConfig(layer_noise=True, epochs=1, hidden=8, critic_hidden=8), progress=False)


def test_saved_refiner_with_layer_noise_refines_the_same_after_loading(tmp_path):
    m = _refiner()
    with torch.no_grad():
        m.layer_sigma.weight.fill_(0.3)
    x = np.log1p(np.random.default_rng(2).exponential(10.0, size=(40, 5))).astype(np.float32)
    y = np.random.default_rng(3).normal(size=(40, 1)).astype(np.float32)
    save_refiner(tmp_path / "r.pt", m)
    loaded, payload = load_refiner(tmp_path / "r.pt")
    assert payload["hparams"]["layer_noise_layers"] == 2
    a, b = refine_arrays(m.eval(), x, y, seed=4), refine_arrays(loaded, x, y, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x, atol=1e-3)                              # the factor acts


def test_train_with_layer_noise_resumes_exactly_and_learns_sigma_at_the_noise_rate(tmp_path):
    rng = np.random.default_rng(0)
    x, y = np.log1p(rng.exponential(5.0, (64, 4))).astype(np.float32), rng.random((64, 1)).astype(np.float32)
    groups = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)
    small = dict(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, layer_noise=True, closeness_mean=True,
                 noise_lr_factor=50.0)
    payload = assert_resume_is_exact(tmp_path, x, y, x + 0.3, y, small, sum_groups=groups)
    assert payload["hparams"]["layer_noise_layers"] == 2
    opt = payload["trainer"]["opt_refiner"]
    assert [g["lr"] for g in opt["param_groups"]] == [pytest.approx(2e-4), pytest.approx(2e-4 * 50)]
    n_fast = len(opt["param_groups"][1]["params"])
    assert n_fast == 4                                                   # log_sigma and layer_sigma, weight + bias
    moved = payload["model"]["layer_sigma.bias"] - math.log(1e-2)
    assert float(moved.abs().max()) > 0


def test_cli_layer_noise_on_showers(tmp_path):
    geo = CylindricalBinning.regular(3, [0.0, 10.0, 40.0], n_alpha=2)  # 3 layers × 4 voxels
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", *TINY, "--layer-noise", "--closeness-mean", "--response", "total"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["layer_noise"] is True and payload["hparams"]["layer_noise_layers"] == 3
    assert model.noise_layers.shape == (3, 12)
