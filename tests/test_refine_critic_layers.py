"""The per-layer critics (`critic_layers`, hepgen.refine.critic_layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _refine_resume import assert_resume_is_exact
from hepgen.cli import main
from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.critic_layers import LayerCritic, layer_groups
from hepgen.refine.refiner import RefinerConfig, load_refiner, train_refiner
from hepgen.simulate.calorimeter import simulate_dataset

TINY = ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]


class _Zero(nn.Module):
    def forward(self, z):
        return z[:, 0] * 0.0


def test_layer_groups_drop_the_total_and_refuse_what_is_not_a_partition():
    g = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(layer_groups(g, 5), g[:2])
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_layers': expected layer groups \(sum_groups\) "
                                         r"from the adapter of this kind \(showers\), found none$"):
        layer_groups(None, 5)
    with pytest.raises(ValueError, match=r"expected at least 2 layers that cover every feature once, found 0 groups "
                                         r"covering 0 of 5 features once$"):
        layer_groups(np.ones((1, 5), np.float32), 5)  # only the total
    with pytest.raises(ValueError, match=r"found 1 groups covering 2 of 5 features once$"):
        layer_groups(np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32), 5)
    overlap = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], np.float32)
    with pytest.raises(ValueError, match=r"found 2 groups covering 4 of 5 features once$"):
        layer_groups(overlap, 5)
    with pytest.raises(ValueError, match=r"expected a \(G, 5\) 0/1 group matrix, found shape \(2, 4\)$"):
        layer_groups(np.ones((2, 4), np.float32), 5)


def test_each_layer_network_equals_a_plain_mlp_on_its_own_features():
    """Group l's score equals an independently built nn.Sequential (Linear, LeakyReLU, Linear,
    LeakyReLU, Linear) on [x_l, y] with the block's weights; the sum adds the base critic."""
    torch.manual_seed(0)
    groups = np.zeros((3, 7), np.float32)
    groups[0, [0, 4]] = groups[1, [1, 2, 5]] = groups[2, [3, 6]] = 1  # unequal, interleaved groups
    h, n_lab = 5, 2

    class Base(nn.Module):
        def forward(self, z):
            return z.sum(dim=1)

    c = LayerCritic(Base(), groups, n_lab, hidden=h)
    z = torch.randn(11, 7 + n_lab, dtype=torch.float32)
    scores = c.layer_scores(z)
    for g in range(3):
        cols = np.flatnonzero(groups[g]).tolist() + [7, 8]
        mlp = nn.Sequential(nn.Linear(len(cols), h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2),
                            nn.Linear(h, 1))
        with torch.no_grad():
            mlp[0].weight.copy_(c.w1[cols, g * h:(g + 1) * h].T)
            mlp[0].bias.copy_(c.b1[g * h:(g + 1) * h])
            mlp[2].weight.copy_(c.w2[g].T)
            mlp[2].bias.copy_(c.b2[g])
            mlp[4].weight.copy_(c.w3[g][None])
            mlp[4].bias.copy_(c.b3[g:g + 1])
        torch.testing.assert_close(scores[:, g], mlp(z[:, cols]).squeeze(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c(z), z.sum(dim=1) + scores.sum(dim=1), rtol=1e-5, atol=1e-6)
    # a group's score does not move with another group's features: the mask holds in training
    opt = torch.optim.SGD(c.parameters(), lr=0.5)
    c(z).pow(2).sum().backward()
    opt.step()
    z2 = z.clone()
    z2[:, [1, 2, 5]] += 3.0  # group 1's features only
    diff = (c.layer_scores(z2) - c.layer_scores(z)).abs()
    assert diff[:, 1].min() > 0 and diff[:, [0, 2]].max() == 0


def test_train_refiner_with_layer_critics_resumes_and_refuses_without_layers(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)).astype(np.float32), rng.random((64, 1)).astype(np.float32)
    groups = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)
    small = dict(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, critic_layers=True)
    critic = assert_resume_is_exact(tmp_path, x, y, x + 0.3, y, small, sum_groups=groups)["trainer"]["critic"]
    assert critic["w2"].shape == (2, 4, 4) and critic["mask"].shape == (4 + 1, 2 * 4)  # 2 layers, width 8 // 2
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_layers': expected layer groups"):
        train_refiner(x, y, x, y, RefinerConfig(**small, epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_layers': expected the residual MLP refiner on "
                                         r"ungrouped features \(showers\), found architecture 'mlp' with 2 groups$"):
        train_refiner(x, y, x, y, RefinerConfig(**small, epochs=1), progress=False, sum_groups=groups, group_size=2)


def test_cli_critic_layers_on_showers(tmp_path):
    """`hepgen refine train --critic-layers --critic-sums` on a 3-layer binning: one network per
    layer (the total is not a layer), beside the sums critic; the refiner file applies as usual."""
    geo = CylindricalBinning.regular(3, [0.0, 10.0, 40.0], n_alpha=2)  # 3 layers × 4 voxels
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", *TINY, "--critic-sums", "--critic-layers"]) == 0
    _, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["critic_layers"] is True
    critic = payload["trainer"]["critic"]
    assert critic["w2"].shape == (3, 4, 4) and critic["base.groups"].shape == (4, 12)
    # layer l's block of the first weight sees layer l's 4 voxels and the label, nothing else
    mask = critic["mask"].numpy()
    assert mask.shape == (12 + 1, 3 * 4)
    np.testing.assert_array_equal(mask[:12].sum(axis=0), np.full(12, 4))
    np.testing.assert_array_equal(mask[12], np.ones(12))
