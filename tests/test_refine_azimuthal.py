"""The azimuthal-slices refiner (``RefinerConfig.azimuthal_slices``): one network shared by the
angular slices of a cylindrical binning (hepgen.refine.refiner, hepgen.refine.adapters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.cli import main
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning, LayerBinning
from hepgen.refine.adapters import get_adapter
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    apply_file,
    load_refiner,
    refine_arrays,
    save_refiner,
    train_refiner,
)
from hepgen.simulate.calorimeter import simulate_dataset


def _rotate(t: torch.Tensor, grid=(2, 3, 4)) -> torch.Tensor:
    """Turn every shower by one angular bin: voxel (l, a, r) → (l, a + 1 mod A, r)."""
    return t.view(-1, *grid).roll(1, dims=2).reshape(t.shape[0], -1)


def _randomised(model: ResidualRefiner) -> ResidualRefiner:
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


def test_slices_refiner_is_the_identity_at_start_and_rotation_equivariant():
    x, y, noise = torch.rand(5, 24), torch.rand(5, 1), torch.randn(5, 24)
    fresh = ResidualRefiner(24, 1, hidden=16, azimuthal=(2, 3, 4))
    torch.testing.assert_close(fresh(x, y), x, atol=0, rtol=0)  # zero correction at the start
    az = _randomised(ResidualRefiner(24, 1, hidden=16, azimuthal=(2, 3, 4), noise_init=0.1))
    torch.testing.assert_close(az(_rotate(x), y), _rotate(az(x, y)), atol=1e-6, rtol=0)
    torch.testing.assert_close(az(_rotate(x), y, _rotate(noise)), _rotate(az(x, y, noise)), atol=1e-6, rtol=0)
    # the plain MLP is not: the same check fails for it (so the one above can fail)
    mlp = _randomised(ResidualRefiner(24, 1, hidden=16, noise_init=0.1))
    assert not torch.allclose(mlp(_rotate(x), y), _rotate(mlp(x, y)), atol=1e-3)
    # one slice's correction depends on the other slices only through their mean: swapping two
    # other slices leaves slice 0 unchanged
    swap = x.view(5, 2, 3, 4)[:, :, [0, 2, 1], :].reshape(5, 24)
    torch.testing.assert_close(az(swap, y).view(5, 2, 3, 4)[:, :, 0], az(x, y).view(5, 2, 3, 4)[:, :, 0],
                               atol=1e-6, rtol=0)


def test_azimuthal_grid_of_the_shower_adapter():
    a = get_adapter("showers")
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=3)
    d = ShowerData(np.zeros((2, 12), np.float32), [[1e3], [2e3]], geometry=geo)
    assert a.azimuthal_grid(a.fit(d)) == (2, 3, 2)
    uneven = CylindricalBinning((LayerBinning(0, (0.0, 10.0, 40.0), 3), LayerBinning(1, (0.0, 10.0), 3)))
    d2 = ShowerData(np.zeros((2, 9), np.float32), [[1e3], [2e3]], geometry=uneven)
    assert a.azimuthal_grid(a.fit(d2)) is None
    assert a.azimuthal_grid(a.fit(ShowerData(np.zeros((2, 4), np.float32), [[1e3], [2e3]]))) is None
    assert get_adapter("traces").azimuthal_grid({}) is None


def test_slices_refused_without_a_cylindrical_grid():
    x = np.random.default_rng(0).random((40, 12)).astype(np.float32)
    y = np.zeros((40, 1), np.float32)
    cfg = RefinerConfig(epochs=1, hidden=8, critic_hidden=8, azimuthal_slices=True)
    with pytest.raises(ValueError, match=r"refiner config key 'azimuthal_slices': expected the residual MLP refiner "
                                         r"and an \(L, A, R\) cylindrical binning .* found architecture 'mlp' and grid None"):
        train_refiner(x, y, x, y, cfg, progress=False)
    with pytest.raises(ValueError, match=r"azimuthal: expected \(L, A, R\) with L·A·R = n_features = 12"):
        ResidualRefiner(12, 1, azimuthal=(2, 3, 4))
    with pytest.raises(ValueError, match="refiner config key 'azimuthal_slices': expected true or false, found 1"):
        RefinerConfig(azimuthal_slices=1)


def test_cli_trains_saves_resumes_and_applies_the_slices_refiner(tmp_path):
    """`hepgen refine train --azimuthal-slices` on showers of a 2-layer, 3-angle, 2-ring binning:
    the grid is stored with the refiner, a resumed run with the same settings continues, and the
    loaded refiner refines the file as the trained one does."""
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=3)
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    tiny = ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]
    run = tmp_path / "run"
    args = ["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(run), *tiny,
            "--azimuthal-slices"]
    assert main([*args, "--epochs", "1"]) == 0
    model, payload = load_refiner(run / "refiner.pt")
    assert payload["hparams"]["azimuthal_slices"] is True and model.azimuthal == (2, 3, 2)
    assert main([*args, "--epochs", "2"]) == 0  # resumes from epoch 1 (same settings)
    model, payload = load_refiner(run / "refiner.pt")
    assert payload["meta"]["epoch"] == 2
    apply_file(run / "refiner.pt", tmp_path / "sim.h5", tmp_path / "ref.h5", seed=3)
    ref, sim = read_showers(tmp_path / "ref.h5"), read_showers(tmp_path / "sim.h5")
    a = get_adapter("showers")
    st = a.fit(sim)
    x, y = a.to_arrays(sim, st)
    expected = a.from_arrays(refine_arrays(model, x, y, seed=3), sim, st).showers
    np.testing.assert_allclose(ref.showers, expected, rtol=1e-6, atol=1e-6)
    assert ref.showers.min() >= 0.0


def test_save_refiner_keeps_the_slices(tmp_path):
    """An untrained slices refiner written by save_refiner loads with its grid and refines alike."""
    model = _randomised(ResidualRefiner(24, 1, hidden=16, azimuthal=(2, 3, 4), noise_init=0.1))
    save_refiner(tmp_path / "r.pt", model)
    loaded, payload = load_refiner(tmp_path / "r.pt")
    assert loaded.azimuthal == (2, 3, 4) and payload["hparams"]["azimuthal_slices"] is True
    x, y = np.random.default_rng(1).random((6, 24)).astype(np.float32), np.ones((6, 1), np.float32)
    np.testing.assert_array_equal(refine_arrays(loaded, x, y, seed=2), refine_arrays(model.eval(), x, y, seed=2))
