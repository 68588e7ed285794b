"""The response factor's fraction term (`response_fractions`, LayerResponse(fraction_groups=…)):
a small network of the labels and the layer fractions of the event *after* the shape correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _refine_resume import assert_resume_is_exact
from hepgen.refine.refiner import RefinerConfig, ResidualRefiner, load_refiner, refine_arrays, train_refiner
from hepgen.refine.response import LayerResponse

# 4 voxels in 2 layers; the response factor acts on the total (one group)
LAYERS = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
TOTAL = np.ones((1, 4), np.float32)
E = np.array([[1.0, 0.0, 0.0, 3.0], [2.0, 2.0, 0.0, 0.0], [0.0, 1.0, 1.0, 2.0]])  # layer-1 fractions 1/4, 1, 1/4


def _silu(v):
    return v / (1.0 + math.exp(-v))


def _response_reading_layer_1(c=0.3):
    """A fraction term set by hand: h = c · silu(φ̂_1), φ̂_1 the standardised layer-1 fraction."""
    r = LayerResponse(TOTAL, n_labels=1, fraction_groups=LAYERS)
    with torch.no_grad():
        r.fractions[0].weight.zero_()
        r.fractions[0].bias.zero_()
        r.fractions[0].weight[0, 1] = 1.0          # input 0 is the label, inputs 1, 2 the two fractions
        r.fractions[-1].weight.zero_()
        r.fractions[-1].weight[0, 0] = c
    return r


def test_fraction_term_by_hand():
    r = LayerResponse(TOTAL, n_labels=1, fraction_groups=LAYERS)
    x, y = torch.log1p(torch.tensor(E, dtype=torch.float32)), torch.zeros(3, 1)
    torch.testing.assert_close(r.layer_fractions(x), torch.tensor([[0.25, 0.75], [1.0, 0.0], [0.25, 0.75]]))
    torch.testing.assert_close(r.layer_fractions(torch.zeros(1, 4)), torch.zeros(1, 2))   # an empty event: 0
    torch.testing.assert_close(r(x, y, y), x)                  # identity at the start, fraction term included
    r.set_normalisation(x.numpy(), y.numpy())
    f_mean, f_std = 0.5, math.sqrt((0.25**2 * 2 + 0.5**2) / 2)   # layer 1: mean 0.5, unbiased spread
    np.testing.assert_allclose(r.f_mean.numpy(), [f_mean, 1 - f_mean], rtol=1e-6)
    np.testing.assert_allclose(r.f_std.numpy(), [f_std, f_std], rtol=1e-6)
    h = _response_reading_layer_1()
    h.load_state_dict({**r.state_dict(), **{k: v for k, v in h.state_dict().items() if k.startswith("fractions.")}})
    expected = [row * math.exp(0.5 * math.tanh(0.3 * _silu((f1 - f_mean) / f_std) / 0.5))
                for row, f1 in zip(E, (0.25, 1.0, 0.25))]
    np.testing.assert_allclose(torch.expm1(h(x, y, y)).detach().numpy(), np.array(expected), rtol=1e-5)
    with pytest.raises(ValueError, match=r"^fraction_groups: expected a \(K, 4\) matrix with K >= 2 layers, found "
                                         r"shape \(1, 4\)$"):
        LayerResponse(TOTAL, n_labels=1, fraction_groups=LAYERS[:1])


def test_the_fractions_are_read_after_the_shape_correction():
    """Same input, a shape correction that moves energy into layer 1: the factor follows the
    shaped event's fraction, the total before the factor stays the input's."""
    r = _response_reading_layer_1(c=0.4)
    x = torch.log1p(torch.tensor([[1.0, 1.0, 1.0, 1.0]]))              # fraction 1/2 in layer 1
    shaped = torch.log1p(torch.tensor([[3.0, 3.0, 1.0, 1.0]]))         # 3/4 in layer 1, total 8
    y = torch.zeros(1, 1)
    out = torch.expm1(r(x, y, y, shaped=shaped)).detach().numpy()[0]
    factor = math.exp(0.5 * math.tanh(0.4 * _silu(0.75) / 0.5))       # f̄ = 0, σ = 1 before set_normalisation
    np.testing.assert_allclose(out, np.array([3.0, 3.0, 1.0, 1.0]) * 0.5 * factor, rtol=1e-5)
    without = torch.expm1(r(x, y, y)).detach().numpy()[0]              # no shape correction: fraction 1/2
    np.testing.assert_allclose(without, np.ones(4) * math.exp(0.5 * math.tanh(0.4 * _silu(0.5) / 0.5)), rtol=1e-5)


def test_train_resume_save_load_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    x = np.log1p(rng.exponential(5.0, (64, 4))).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    groups = np.concatenate([LAYERS, TOTAL])
    small = dict(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, response="total", layer_noise=True,
                 closeness_mean=True, response_fractions=True)
    payload = assert_resume_is_exact(tmp_path, x, y, x + 0.2, y, small, sum_groups=groups, clip_min=0.0)
    assert payload["hparams"]["response_fraction_layers"] == 2 and payload["hparams"]["response_fractions"] is True
    assert float(payload["model"]["response.fractions.2.weight"].abs().sum()) > 0      # it learned
    loaded, _ = load_refiner(tmp_path / "a.pt")
    again = ResidualRefiner(4, 1, hidden=8, clip_min=0.0, response_groups=TOTAL, layer_noise=LAYERS,
                            response_fractions=LAYERS)
    again.load_state_dict(payload["model"])
    np.testing.assert_array_equal(refine_arrays(loaded, x, y, seed=1), refine_arrays(again.eval(), x, y, seed=1))


@pytest.mark.parametrize("key", ["response_depth", "response_fractions"])
def test_the_response_terms_refuse_without_a_factor(key):
    """The depth and fraction terms share one check: no response factor, or a single layer, is refused."""
    x = np.log1p(np.random.default_rng(0).exponential(5.0, (64, 4))).astype(np.float32)
    y = np.zeros((64, 1), np.float32)
    one = dict(hidden=8, critic_hidden=8, epochs=1, **{key: True})
    with pytest.raises(ValueError, match=rf"^refiner config key '{key}': expected a response factor "
                                         r"\(response 'total' or 'layers'\) of the residual MLP refiner, found "
                                         r"response 'off' and architecture 'mlp'$"):
        train_refiner(x, y, x, y, RefinerConfig(**one), progress=False, sum_groups=np.concatenate([LAYERS, TOTAL]))
    with pytest.raises(ValueError, match=rf"^refiner config key '{key}': expected at least 2 layers"):
        train_refiner(x, y, x, y, RefinerConfig(**one, response="total"), progress=False, sum_groups=TOTAL)
    with pytest.raises(ValueError, match=rf"^refiner config key '{key}': expected a response factor "
                                         r"\(response 'total' or 'layers'\), found response 'off'$"):
        ResidualRefiner(4, 1, **{key: LAYERS})


@pytest.mark.parametrize("key", ["response_fractions", "layer_noise", "critic_sums", "stochastic", "match_occupancy"])
def test_every_switch_of_the_config_refuses_a_word(key):
    """A switch given as the word "false" (e.g. from a hand-written config) is refused, not taken as true."""
    with pytest.raises(ValueError, match=rf"^refiner config key '{key}': expected true or false, found 'false'$"):
        RefinerConfig(**{key: "false"})
