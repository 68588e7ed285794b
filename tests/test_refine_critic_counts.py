"""The sums critic's soft counts of voxels above a threshold (`critic_counts`, hepgen.refine.critic_sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _refine_resume import assert_resume_is_exact
from hepgen.refine.critic_sums import SumsCritic, soft_counts
from hepgen.refine.refiner import RefinerConfig, train_refiner

GROUPS = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)   # 2 layers of 2 voxels + total


class _Spy(nn.Module):
    """A base critic that keeps its input and scores 0."""

    def forward(self, z):
        self.seen = z.detach().clone()
        return z[:, 0] * 0.0


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_soft_counts_by_hand():
    e = np.array([[0.0, 0.1, 0.1 * math.e, 0.05], [2.0, 0.0, 0.0, 1e-6]])
    x = torch.log1p(torch.tensor(e, dtype=torch.float32))
    got = soft_counts(x, torch.from_numpy(GROUPS[:2]), threshold=0.1, width=0.5).numpy()
    # empty voxels count 0; E = E_c counts ½; E = E_c·e counts sigmoid(1/0.5); 0.05 counts sigmoid(ln ½ / 0.5)
    expect = [[0.5, _sigmoid(2.0) + _sigmoid(math.log(0.5) / 0.5)],
              [_sigmoid(math.log(20.0) / 0.5), _sigmoid(math.log(1e-5) / 0.5)]]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-7)


def test_the_critic_sees_the_standardised_counts_of_the_layers_by_hand():
    e = np.array([[0.5, 0.0, 0.02, 3.0], [0.0, 0.0, 1.0, 0.2], [0.3, 0.08, 0.0, 0.0], [2.0, 1.0, 0.1, 0.0]])
    x, y = np.log1p(e).astype(np.float32), np.log(np.array([[1000.0], [2000.0], [1500.0], [1000.0]], np.float32))
    xm, xs = x.mean(0), np.full(4, 0.5, np.float32)
    spy = _Spy()
    c = SumsCritic(spy, GROUPS, xm, xs, 1, x, y.mean(0), y.std(0), y, count_threshold=0.1)
    assert SumsCritic.n_counts(GROUPS) == 2 and c.count_groups.shape == (2, 4)     # the total is not counted
    z = torch.cat([(torch.from_numpy(x) - torch.from_numpy(xm)) / torch.from_numpy(xs),
                   (torch.from_numpy(y) - torch.from_numpy(y.mean(0))) / torch.from_numpy(y.std(0))], dim=1)
    c(z)
    soft = np.where(e > 0, 1.0 / (1.0 + np.exp(-(np.log(np.where(e > 0, e, 1.0)) - math.log(0.1)) / 0.5)), 0.0)
    n = np.stack([soft[:, :2].sum(1), soft[:, 2:].sum(1)], axis=1)
    n_hat = (n - n.mean(0)) / n.std(0, ddof=1)
    assert spy.seen.shape == (4, 4 + 1 + 3 + 2)                   # voxels, label, 3 log sums, 2 counts
    np.testing.assert_allclose(spy.seen[:, -2:].numpy(), n_hat, rtol=1e-4, atol=1e-5)
    # a deposit moved from below to above the threshold changes the counts, not the layer's sum much
    zz = z.clone()
    zz[2, 1] = float((math.log1p(0.3) - xm[1]) / xs[1])           # 0.08 MeV → 0.3 MeV in layer 1
    c(zz)
    assert float(spy.seen[2, -2] - n_hat[2, 0]) > 0.5
    with pytest.raises(ValueError, match=r"^count_threshold: expected an energy > 0, found -1.0$"):
        SumsCritic(spy, GROUPS, xm, xs, 1, x, y.mean(0), y.std(0), y, count_threshold=-1.0)


def test_the_refiner_gets_a_gradient_through_the_counts():
    x = torch.log1p(torch.tensor([[0.09, 0.0, 5.0, 0.2]])).requires_grad_(True)
    n = soft_counts(x, torch.from_numpy(GROUPS[:2]), threshold=0.1)
    n.sum().backward()
    g = x.grad.numpy()[0]
    assert g[0] > 0.5 and g[3] > 0.5                     # near the threshold: a large push
    assert g[1] == 0.0 and 0 < g[2] < 0.01               # empty: none; far above: saturated


def test_config_refusals_and_exact_resume(tmp_path):
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_counts': expected critic_sums=True"):
        RefinerConfig(critic_counts=0.1)
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_counts': expected a number >= 0, found -0.1$"):
        RefinerConfig(critic_counts=-0.1, critic_sums=True)
    rng = np.random.default_rng(0)
    e = rng.exponential(1.0, (64, 4)) * (rng.random((64, 4)) < 0.7)
    x, y = np.log1p(e).astype(np.float32), np.log(rng.uniform(1e3, 1e4, (64, 1))).astype(np.float32)
    small = dict(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, critic_sums=True, critic_counts=0.1,
                 critic_sums_head=True)
    payload = assert_resume_is_exact(tmp_path, x, y, np.log1p(e * 1.3).astype(np.float32), y, small,
                                     sum_groups=GROUPS, clip_min=0.0)
    assert payload["hparams"]["critic_counts"] == 0.1
    critic = payload["trainer"]["critic"]
    assert critic["count_groups"].shape == (2, 4) and critic["base.net.0.weight"].shape[1] == 4 + 1 + 3 + 2
    assert critic["head.net.0.weight"].shape[1] == 3 + 2 + 1
    plain = RefinerConfig(**{**small, "critic_counts": 0.0}, epochs=1)
    train_refiner(x, y, x, y, plain, checkpoint=tmp_path / "p.pt", progress=False, sum_groups=GROUPS)
    assert "count_groups" not in torch.load(tmp_path / "p.pt", weights_only=False)["trainer"]["critic"]
