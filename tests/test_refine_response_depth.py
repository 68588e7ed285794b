"""The response factor's depth term (`response_depth`, hepgen.refine.response.LayerResponse)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hepgen.refine.refiner import RefinerConfig, load_refiner, refine_arrays, train_refiner
from hepgen.refine.response import LayerResponse

# 4 voxels in 2 layers; the response factor acts on the total (one group)
LAYERS = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
TOTAL = np.ones((1, 4), np.float32)


def test_depth_term_by_hand():
    """Depth t = Σ k S_k / Σ S_k; with only the depth head's bias d set, the log factor is
    a_max·tanh(d (t − t̄)/σ_t / a_max), t̄ and σ_t (n − 1) from the pool."""
    r = LayerResponse(TOTAL, n_labels=1, depth_groups=LAYERS)
    e = np.array([[1.0, 0.0, 0.0, 3.0], [2.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 2.0]])  # depths 0.75, 0, 0.75
    x, y = torch.log1p(torch.tensor(e, dtype=torch.float32)), torch.zeros(3, 1)
    torch.testing.assert_close(r.shower_depth(x), torch.tensor([0.75, 0.0, 0.75]))
    torch.testing.assert_close(r.shower_depth(torch.zeros(1, 4)), torch.zeros(1))  # an empty event: 0
    torch.testing.assert_close(r(x, y, y), x)  # identity at the start, depth term included
    r.set_normalisation(x.numpy(), y.numpy())
    t_mean, t_std = 0.5, math.sqrt(((0.25**2) * 2 + 0.5**2) / 2)  # mean 0.5, unbiased spread
    assert math.isclose(float(r.t_mean), t_mean, rel_tol=1e-6) and math.isclose(float(r.t_std), t_std, rel_tol=1e-6)
    with torch.no_grad():
        r.depth.bias.fill_(0.2)
    expected = []
    for row, t in zip(e, (0.75, 0.0, 0.75)):
        a = 0.5 * math.tanh(0.2 * (t - t_mean) / t_std / 0.5)
        expected.append(row * math.exp(a))
    np.testing.assert_allclose(torch.expm1(r(x, y, y)).detach().numpy(), np.array(expected), rtol=1e-5)
    with pytest.raises(ValueError, match=r"^depth_groups: expected a \(K, 4\) matrix with K >= 2 layers, found shape \(1, 4\)$"):
        LayerResponse(TOTAL, n_labels=1, depth_groups=LAYERS[:1])


def test_train_save_load_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    x = np.log1p(rng.exponential(5.0, (64, 4))).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    groups = np.concatenate([LAYERS, TOTAL])
    cfg = RefinerConfig(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, epochs=2, response="total",
                        response_depth=True)
    model, _ = train_refiner(x, y, x + 0.2, y, cfg, checkpoint=tmp_path / "r.pt", progress=False, sum_groups=groups,
                             clip_min=0.0)
    assert model.response.depth is not None and float(model.response.depth.bias.detach().abs().sum()) > 0  # it learned
    loaded, payload = load_refiner(tmp_path / "r.pt")
    assert payload["hparams"]["response_depth_layers"] == 2 and payload["hparams"]["response_depth"] is True
    np.testing.assert_array_equal(refine_arrays(loaded, x, y, seed=1), refine_arrays(model, x, y, seed=1))
    # its refusals: tests/test_refine_response_fractions.py, test_the_response_terms_refuse_without_a_factor
