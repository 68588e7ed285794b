"""Tests of the station refiner acting on the whole footprint (silent stations may be turned on)
and of the trigger rule applied to refined events (hepgen.refine.stations, TraceAdapter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.refine.adapters import TraceAdapter
from hepgen.refine.refiner import RefinerConfig, load_refiner, refine_arrays, save_refiner, train_refiner
from hepgen.refine import stations
from hepgen.refine.stations import StationCritic, StationRefiner, near_live
from hepgen.simulate.auger_toy import simulate_auger

N_T = 16
SHAPE = np.exp(-np.arange(N_T) / 3.0) / np.exp(-np.arange(N_T) / 3.0).sum()


def _events(n, rng, centre_vem=None, noise=0.05):
    """3 × 3 stations, the centre (index 4) silent unless ``centre_vem`` is given; the others
    triggered with log-normal integrals (median 20 VEM, at least 6 VEM), fixed pulse shape."""
    amp = np.clip(np.exp(rng.normal(np.log(20.0), 0.4, (n, 9))), 6.0, None)
    amp[:, 4] = 0.0 if centre_vem is None else centre_vem
    s = amp[..., None] * SHAPE + rng.normal(0.0, noise, (n, 9, N_T))
    s[amp == 0] = 0.0
    return s.astype(np.float32)


def _asinh(s):
    return np.arcsinh(s / 0.1).reshape(len(s), -1).astype(np.float32)


def test_identity_at_start_with_filling():
    """Untrained: triggered stations unchanged (atol 1e-4 in asinh units), silent ones exactly
    zero — deterministic and with the refiner's noise (σ = 0.07 VEM: a silent station's noise
    integral, std 0.28 VEM, never reaches the 3 VEM threshold)."""
    rng = np.random.default_rng(0)
    x = _asinh(_events(50, rng))
    y = rng.normal(size=(50, 2)).astype(np.float32)
    r = StationRefiner(2, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.07, fill_silent=True, trigger_vem=3.0)
    np.testing.assert_allclose(refine_arrays(r, x, y, stochastic=False), x, atol=1e-4)
    noisy = refine_arrays(r, x, y, seed=3).reshape(50, 9, N_T)
    assert np.all(noisy[:, 4] == 0)
    assert np.all((noisy[:, [0, 1, 2, 3, 5, 6, 7, 8]] != 0).any(-1))


def test_trigger_rule_applied_to_refined_stations():
    """A gain of e^−0.7 ≈ 0.497: stations of 6 VEM drop to 2.98 VEM < 3 and read all zeros, a
    20 VEM station becomes 9.93 VEM; the adapter's inverse map applies the same rule."""
    s = np.zeros((1, 9, N_T), np.float32)
    s[0, 0], s[0, 1] = 6.0 * SHAPE, 20.0 * SHAPE
    x = _asinh(s)
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, stochastic=False, trigger_vem=3.0)
    with torch.no_grad():
        r.gain.bias.fill_(-50.0)
    out = 0.1 * np.sinh(refine_arrays(r, x, np.zeros((1, 0), np.float32))).reshape(9, N_T)
    assert np.all(out[0] == 0) and np.all(out[2:] == 0)
    np.testing.assert_allclose(out[1].sum(), 20.0 * np.exp(-0.7), rtol=1e-4)
    # the adapter applies the rule to any refined array (here: one station pushed to 2.9 VEM)
    d = simulate_auger(2, "sim", seed=1)
    a = TraceAdapter()
    a.trigger_vem, a.fill_silent = 3.0, True
    st = a.fit(d)
    assert st["trigger_vem"] == 3.0 and st["fill_silent"] and a.keep_mask(d, st) is None
    assert a.architecture(st)["fill_silent"] and a.architecture(st)["trigger_vem"] == 3.0
    xa, _ = a.to_arrays(d, st)
    t = 0.1 * np.sinh(xa.astype(np.float64)).reshape(2, 81, 80)
    t[0, 0] = 2.9 / 80
    t[1, 0] = 3.1 / 80
    back = a.from_arrays(np.arcsinh(t / 0.1).reshape(2, -1), d, st).traces.reshape(2, 81, 80)
    assert np.all(back[0, 0] == 0) and back[1, 0].sum() == pytest.approx(3.1, rel=1e-4)


def test_fill_needs_a_trigger_threshold():
    with pytest.raises(ValueError, match=r"^trigger_vem: fill_silent needs the trigger threshold \(> 0 VEM\), found None$"):
        StationRefiner(0, grid=(3, 3), n_t=N_T, fill_silent=True)
    a = TraceAdapter()
    a.fill_silent = True
    with pytest.raises(ValueError, match=r"^trigger_vem: fill_silent needs the trigger threshold"):
        a.fit(simulate_auger(1, "sim", seed=0))


def test_near_live_and_critic_gradient_at_silent_stations():
    """near_live: Chebyshev distance ≤ 2 on a 5 × 5 grid.  The critic's output does not depend
    on all_stations, but only with it does a silent station near a triggered one get a gradient."""
    live = torch.zeros(1, 25, dtype=torch.bool)
    live[0, 0] = True  # corner (0, 0)
    near = near_live(live, (5, 5)).view(5, 5)
    assert near[:3, :3].all() and not near[3:].any() and not near[:, 3:].any()
    torch.manual_seed(0)
    s = torch.zeros(2, 9, N_T)
    s[:, 0] = torch.from_numpy(20 * SHAPE).float()
    z = torch.cat([torch.asinh(s / 0.1).reshape(2, -1), torch.zeros(2, 1)], 1).requires_grad_(True)
    c0 = StationCritic(1, grid=(3, 3), n_t=N_T, hidden=8)
    c1 = StationCritic(1, grid=(3, 3), n_t=N_T, hidden=8, all_stations=True)
    c1.load_state_dict(c0.state_dict())
    torch.testing.assert_close(c0(z), c1(z), atol=1e-5, rtol=1e-5)
    g0, = torch.autograd.grad(c0(z).sum(), z)
    g1, = torch.autograd.grad(c1(z).sum(), z)
    silent = g1[:, N_T:9 * N_T].abs().sum()
    assert g0[:, N_T:9 * N_T].abs().sum() == 0 and silent > 0


def test_refiner_turns_on_a_silent_station():
    """sim: the centre station is always silent; data: it carries a 10 VEM pulse.  After
    training, the refined centre station is triggered in ≥ 90 % of the events, with a median
    integral within 40 % of 10 VEM, while the other stations' median integral ratio to their
    input stays within 0.1 of 1 (they were already like data)."""
    rng = np.random.default_rng(1)
    n = 400
    xs = _asinh(_events(n, rng))
    xd = _asinh(_events(n, rng, centre_vem=10.0))
    y0 = np.zeros((n, 0), np.float32)
    cfg = RefinerConfig(hidden=16, critic_hidden=16, epochs=25, batch_size=50, n_critic=3, lr=1e-3, critic_lr=1e-3,
                        closeness=0.1, critic_warmup=30, ema=0.98, noise_lr_factor=10.0, seed=0)
    arch = {"name": "stations", "grid": [3, 3], "n_t": N_T, "scale": 0.1, "noise_vem": 0.03,
            "fill_silent": True, "trigger_vem": 3.0}
    model, hist = train_refiner(xs, y0, xd, y0, cfg, progress=False, architecture=arch)
    out = 0.1 * np.sinh(refine_arrays(model, xs, y0, seed=2)).reshape(n, 9, N_T)
    centre = out[:, 4].sum(-1)
    assert (centre >= 3.0).mean() >= 0.9
    assert abs(np.median(centre) / 10.0 - 1) < 0.4
    i0 = (0.1 * np.sinh(xs)).reshape(n, 9, N_T).sum(-1)
    ratio = out.sum(-1)[:, [0, 1, 2, 3, 5, 6, 7, 8]] / i0[:, [0, 1, 2, 3, 5, 6, 7, 8]]
    assert abs(np.median(ratio) - 1) < 0.1


def test_save_load_keeps_fill(tmp_path):
    r = StationRefiner(1, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.05, fill_silent=True, trigger_vem=3.0)
    with torch.no_grad():
        r.fill_amp.bias.fill_(2.0 / stations._FILL_GAIN)  # A = 3 softplus(2) ≈ 6.4 VEM: the centre turns on
    save_refiner(tmp_path / "r.pt", r, kind="traces")
    back, payload = load_refiner(tmp_path / "r.pt")
    assert payload["hparams"]["refiner_architecture"]["fill_silent"] and back.trigger_vem == 3.0
    x = _asinh(_events(5, np.random.default_rng(4)))
    y = np.zeros((5, 1), np.float32)
    a, b = refine_arrays(back, x, y, seed=1), refine_arrays(r, x, y, seed=1)
    np.testing.assert_array_equal(a, b)
    centre = (0.1 * np.sinh(a)).reshape(5, 9, N_T)[:, 4].sum(-1)
    np.testing.assert_allclose(centre, 3 * np.log1p(np.exp(2.0)), atol=1.5)  # noise 0.05 VEM × √16 bins
