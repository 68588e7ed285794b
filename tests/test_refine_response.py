"""Tests of the refiner's response factor (hepgen.refine.response, RefinerConfig.response)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.cli import build_parser, main
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.traces import write_traces
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    apply_file,
    load_refiner,
    refine_arrays,
    save_refiner,
    train_refiner,
)
from hepgen.refine.response import LayerResponse, response_groups
from hepgen.simulate.auger_toy import simulate_auger
from hepgen.simulate.calorimeter import simulate_dataset

# two layers of four "voxels" each, then the total (the shape of the shower adapter's sum_groups)
GROUPS = np.array([[1] * 4 + [0] * 4, [0] * 4 + [1] * 4, [1] * 8], np.float32)


def _toy(n: int, rng: np.random.Generator, layer1_scale: float = 1.0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: x = log1p(E/MeV) of 8 voxels, E ~ Gamma(4) · 50 MeV · E_inc/GeV with a 20 %
    per-event response fluctuation, × ``scale``; layer 1 (voxels 4–7) × ``layer1_scale``; y = ln(E_inc/MeV)."""
    e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e4), n))
    e = rng.gamma(4.0, 50.0, (n, 8)) * (e_inc / 1e3)[:, None] * rng.normal(1.0, 0.2, (n, 1)).clip(0.3)
    e[:, 4:] *= layer1_scale
    e *= scale
    return np.log1p(e).astype(np.float32), np.log(e_inc)[:, None].astype(np.float32)


def test_response_groups_total_or_layers_and_refuse_overlaps():
    np.testing.assert_array_equal(response_groups(GROUPS, 8), GROUPS[2:])            # "total": one group
    np.testing.assert_array_equal(response_groups(GROUPS, 8, "layers"), GROUPS[:2])  # layers, total dropped
    np.testing.assert_array_equal(response_groups(GROUPS[2:], 8, "layers"), GROUPS[2:])  # only a total: one factor
    with pytest.raises(ValueError, match="more than one group"):
        response_groups(np.array([[1, 1, 0], [0, 1, 1]], np.float32), 3, "layers")
    with pytest.raises(ValueError, match="expected 'off', 'total' or 'layers', found 'voxels'"):
        response_groups(GROUPS, 8, "voxels")
    with pytest.raises(ValueError, match="expected 'off', 'total' or 'layers', found True"):
        RefinerConfig(response=True)
    with pytest.raises(ValueError, match="names no sum_groups"):
        response_groups(None, 8)
    with pytest.raises(ValueError, match=r"expected a \(G, 5\)"):
        response_groups(GROUPS, 5)


def test_identity_at_start_and_after_a_save_load(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _toy(64, rng)
    model = ResidualRefiner(8, 1, hidden=8, stochastic=False, clip_min=0.0, response_groups=GROUPS[:2])
    model.set_normalisation(x, y)
    np.testing.assert_array_equal(refine_arrays(model, x, y), x)
    save_refiner(tmp_path / "r.pt", model, kind="showers")
    back, _ = load_refiner(tmp_path / "r.pt")
    assert back.response is not None and back.response.n_groups == 2
    np.testing.assert_array_equal(back.response.groups.numpy(), GROUPS[:2])
    np.testing.assert_array_equal(refine_arrays(back, x, y), x)


def test_factor_is_the_head_output_and_energies_stay_non_negative():
    """A set bias a = (ln 0.5, ln 1.5) scales layer 0 by 0.5 and layer 1 by 1.5 exactly (hand-worked:
    E' = E e^a); extreme factors and zero energies keep E' >= 0 (zeros stay zero)."""
    rng = np.random.default_rng(1)
    x, y = _toy(50, rng)
    x[:5] = 0.0                                              # empty events
    r = LayerResponse(GROUPS[:2], n_labels=1, a_max=1.0)
    target = torch.tensor([np.log(0.5), np.log(1.5)])
    with torch.no_grad():
        r.head[-1].bias.copy_(torch.atanh(target))           # a = a_max tanh(h / a_max), a_max = 1
        out = r(torch.from_numpy(x), torch.zeros(50, 1), torch.from_numpy(y)).numpy()
    e, e_out = np.expm1(x.astype(np.float64)), np.expm1(out.astype(np.float64))
    np.testing.assert_allclose(e_out[:, :4], 0.5 * e[:, :4], rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(e_out[:, 4:], 1.5 * e[:, 4:], rtol=2e-5, atol=1e-4)
    assert out.min() >= 0.0 and np.all(out[:5] == 0.0)
    with torch.no_grad():
        r.head[-1].bias.fill_(-50.0)                         # factor at its bound e^-1
        out = r(torch.from_numpy(x), torch.zeros(50, 1), torch.from_numpy(y)).numpy()
    assert out.min() >= 0.0
    np.testing.assert_allclose(np.expm1(out.astype(np.float64)), np.exp(-1.0) * e, rtol=2e-5, atol=1e-4)


def test_shrink_narrows_the_layer_response_and_never_flips_it():
    """c = 0.5, b = 0 (a_max large so that tanh is linear here): each layer's log response moves
    half-way to the pooled mean, u′ − ū = (1 − c)(u − ū) (hand-worked from E′ = E e^a, a = −c (u − ū);
    up to log(1 + S) ≠ log S for small layer sums S: tolerance 5e-3)."""
    rng = np.random.default_rng(3)
    x, y = _toy(300, rng)
    r = LayerResponse(GROUPS[:2], n_labels=1, a_max=50.0)
    r.set_normalisation(x, y)
    with torch.no_grad():
        r.shrink.bias.fill_(0.5)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        u, u2 = r.log_response(xt, yt), r.log_response(r(xt, torch.zeros(300, 1), yt), yt)
        np.testing.assert_allclose((u2 - r.u_mean).numpy(), 0.5 * (u - r.u_mean).numpy(), atol=5e-3)
        r.shrink.bias.fill_(5.0)                                    # clamped to c_max = 0.9: never past the mean
        u3 = r.log_response(r(xt, torch.zeros(300, 1), yt), yt)
        np.testing.assert_allclose((u3 - r.u_mean).numpy(), 0.1 * (u - r.u_mean).numpy(), atol=5e-3)


@pytest.mark.parametrize(("mode", "layer1_scale", "scale", "expect"),
                         [("layers", 1.1, 1.0, (1.0, 1.1)), ("total", 1.0, 1.1, (1.1, 1.1))])
def test_known_scale_is_learned(mode, layer1_scale, scale, expect):
    """"layers": data = sim with layer 1 × 1.1 (layer 0 unchanged); "total": data = sim × 1.1.  The
    median per-event ratio of refined to sim layer energy is within 0.03 of the true factor per layer."""
    rng = np.random.default_rng(0)
    xs, ys = _toy(2000, rng)
    xd, yd = _toy(2000, rng, layer1_scale=layer1_scale, scale=scale)
    cfg = RefinerConfig(hidden=32, critic_hidden=64, epochs=30, batch_size=128, n_critic=3, lr=1e-3, critic_lr=1e-3,
                        closeness=0.01, stochastic=False, critic_warmup=50, ema=0.99, seed=0, response=mode,
                        critic_sums=True)
    model, _ = train_refiner(xs, ys, xd, yd, cfg, progress=False, clip_min=0.0, sum_groups=GROUPS)
    xr = refine_arrays(model, xs, ys)
    e_s, e_r = np.expm1(xs.astype(np.float64)), np.expm1(xr.astype(np.float64))
    ratio = e_r @ GROUPS[:2].T / (e_s @ GROUPS[:2].T)
    med = np.median(ratio, axis=0)
    assert abs(med[0] - expect[0]) < 0.03 and abs(med[1] - expect[1]) < 0.03, med


def test_response_refused_without_layers_and_for_station_refiners():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(40, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="names no sum_groups"):
        train_refiner(x, y, x, y, RefinerConfig(epochs=1, response="total"), progress=False)


def test_shape_correction_keeps_each_layer_energy():
    """With the factor at 1, a perturbed residual part (and its noise) changes voxels but not the
    layer sums: those are the input's to float precision; E >= 0 throughout."""
    rng = np.random.default_rng(2)
    x, y = _toy(200, rng)
    model = ResidualRefiner(8, 1, hidden=8, stochastic=True, noise_init=0.3, clip_min=0.0, response_groups=GROUPS[:2])
    model.set_normalisation(x, y)
    with torch.no_grad():
        model.out.weight.normal_(0.0, 0.3)
    xr = refine_arrays(model, x, y, seed=4)
    e, er = np.expm1(x.astype(np.float64)), np.expm1(xr.astype(np.float64))
    assert np.abs(er - e).max() > 10.0 and xr.min() >= 0.0
    np.testing.assert_allclose(er @ GROUPS[:2].T, e @ GROUPS[:2].T, rtol=1e-4)


def test_cli_response_on_showers_and_refused_on_traces(tmp_path, capsys):
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    assert build_parser().parse_args(["refine", "train", "s", "d", "-o", "r"]).response == "off"
    tiny = ["--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 *tiny, "--response", "layers"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["response"] == "layers" and payload["hparams"]["response_groups"] == 2
    assert model.response is not None and model.response.groups.shape == (2, 8)
    apply_file(tmp_path / "run" / "refiner.pt", tmp_path / "sim.h5", tmp_path / "ref.h5")
    assert read_showers(tmp_path / "ref.h5").showers.min() >= 0.0
    write_traces(tmp_path / "ts.h5", simulate_auger(8, "sim", seed=1))
    write_traces(tmp_path / "td.h5", simulate_auger(8, "data", seed=2))
    assert main(["refine", "train", str(tmp_path / "ts.h5"), str(tmp_path / "td.h5"), "-o", str(tmp_path / "rt"),
                 *tiny, "--response", "total"]) != 0
    assert "refiner config key 'response': the adapter of this kind names no sum_groups" in capsys.readouterr().err
