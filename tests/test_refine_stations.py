"""Tests of the per-station trace refiner and grid critic (hepgen.refine.stations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.data.traces import write_traces
from hepgen.refine.adapters import get_adapter
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    load_refiner,
    refine_arrays,
    save_refiner,
    train_files,
    train_refiner,
)
from hepgen.refine.stations import StationCritic, StationRefiner
from hepgen.simulate.auger_toy import simulate_auger

SMALL = {"hidden": 16, "critic_hidden": 16, "epochs": 1, "batch_size": 16, "n_critic": 1, "critic_warmup": 2}


def _toy_traces(n, gain, noise, rng, grid=(3, 3), n_t=16):
    """Stations with a fixed pulse shape, log-normal amplitudes (mean integral ≈ 20 VEM), about a
    third untriggered; ``gain`` scales the signal, ``noise`` (VEM per bin) is added to triggered stations."""
    shape = np.exp(-np.arange(n_t) / 3.0)
    shape /= shape.sum()
    amp = np.exp(rng.normal(np.log(20.0), 0.5, (n, grid[0] * grid[1])))
    live = rng.uniform(size=amp.shape) > 0.33
    s = gain * amp[..., None] * shape + rng.normal(0.0, noise, (*amp.shape, n_t))
    return np.where(live[..., None], s, 0.0).reshape(n, -1).astype(np.float32)


def test_identity_at_start_and_dead_stations_exact():
    d = simulate_auger(6, "sim", seed=3)
    a = get_adapter("traces")
    st = a.fit(d)
    x, y = a.to_arrays(d, st)
    arch = a.architecture(st)
    r = StationRefiner(2, arch["grid"], arch["n_t"], arch["scale"], hidden=8)
    out = refine_arrays(r, x, y, stochastic=False)
    np.testing.assert_allclose(out, x, atol=1e-4)
    keep = a.keep_mask(d)
    np.testing.assert_array_equal(out[keep], x[keep])  # untriggered stations: exactly zero
    noisy = refine_arrays(r, x, y, seed=1)  # starting noise 0.01 VEM per bin
    back = a.from_arrays(noisy, d, st).traces - d.traces
    assert 0.005 < back[~keep.reshape(back.shape)].std() < 0.015


def test_gain_is_bounded():
    """a_max = 0.7: even a saturated gain head changes a station integral by at most e^0.7."""
    r = StationRefiner(0, grid=(3, 3), n_t=16, hidden=8, stochastic=False)
    with torch.no_grad():
        r.gain.bias.fill_(50.0)
    x = np.arcsinh(_toy_traces(20, 1.0, 0.0, np.random.default_rng(0)) / 0.1)
    out = refine_arrays(r, x, np.zeros((20, 0), np.float32))
    i0 = (0.1 * np.sinh(x)).reshape(20, 9, 16).sum(-1)
    i1 = (0.1 * np.sinh(out)).reshape(20, 9, 16).sum(-1)
    live = i0 > 0
    np.testing.assert_allclose(i1[live] / i0[live], np.exp(0.7), rtol=1e-3)


def test_known_gain_and_noise_are_learned():
    """data = sim × 1.3 with noise 0.25 instead of 0.05 VEM per bin: the refined sim's median
    station-integral ratio to its input is within 0.08 of 1.3 and the noise it adds (std of
    refined − 1.3 × sim in the tail bins) within 0.08 of √(0.25² − 1.3² 0.05²) = 0.24."""
    rng = np.random.default_rng(0)
    xs = _toy_traces(600, 1.0, 0.05, rng)
    xd = _toy_traces(600, 1.3, 0.25, rng)
    fs, fd = np.arcsinh(xs / 0.1), np.arcsinh(xd / 0.1)
    y0 = np.zeros((600, 0), np.float32)
    # 80 epochs: at 40 the learned noise was still converging from above and the test passed on an
    # AVX-512 Intel CPU but not on an AVX2 AMD EPYC (tail std 0.457, median 1.373; seed 1: 0.313);
    # at 80 epochs the EPYC gives 0.293 and 1.336 (2026-12-02)
    cfg = RefinerConfig(hidden=32, critic_hidden=32, epochs=80, batch_size=64, n_critic=5, lr=1e-3, critic_lr=1e-3,
                        closeness=0.01, critic_warmup=50, ema=0.9, noise_lr_factor=10.0, seed=0)
    arch = {"name": "stations", "grid": [3, 3], "n_t": 16, "scale": 0.1}
    model, hist = train_refiner(fs, y0, fd, y0, cfg, progress=False, architecture=arch)
    assert isinstance(model, StationRefiner)
    assert max(hist["critic_w"]) < 5.0  # the critic's estimate stays bounded (no runaway)
    out = 0.1 * np.sinh(refine_arrays(model, fs, y0, seed=2))
    i0, i1 = xs.reshape(600, 9, 16).sum(-1), out.reshape(600, 9, 16).sum(-1)
    live = i0 != 0
    assert abs(np.median(i1[live] / i0[live]) - 1.3) < 0.08
    tail = (out - 1.3 * xs).reshape(600, 9, 16)[live][:, 10:]
    assert abs(tail.std() - np.sqrt(0.25**2 - (1.3 * 0.05) ** 2)) < 0.08


def test_trace_files_use_station_refiner_and_mlp_override(tmp_path):
    write_traces(tmp_path / "sim.h5", simulate_auger(30, "sim", seed=1))
    write_traces(tmp_path / "data.h5", simulate_auger(30, "data", seed=2))
    run = train_files(tmp_path / "sim.h5", tmp_path / "data.h5", tmp_path / "a", RefinerConfig(**SMALL),
                      progress=False)
    model, payload = load_refiner(run)
    assert isinstance(model, StationRefiner) and model.grid == (9, 9) and model.n_t == 80
    assert payload["hparams"]["refiner_architecture"] == {"name": "stations", "grid": [9, 9], "n_t": 80,
                                                          "scale": 0.1, "critic_min_vem": 0.0, "noise_vem": None}
    run = train_files(tmp_path / "sim.h5", tmp_path / "data.h5", tmp_path / "b",
                      RefinerConfig(**SMALL, architecture="mlp"), progress=False)
    assert isinstance(load_refiner(run)[0], ResidualRefiner)


def test_station_critic_sees_positions_and_bad_config():
    """The grid critic is not permutation invariant over stations (mean pooling was)."""
    torch.manual_seed(0)
    c = StationCritic(0, grid=(3, 3), n_t=16, hidden=8)
    x = torch.from_numpy(np.arcsinh(_toy_traces(4, 1.0, 0.0, np.random.default_rng(1)) / 0.1))
    perm = x.view(4, 9, 16)[:, [8, 7, 6, 5, 4, 3, 2, 1, 0]].reshape(4, -1)
    assert not torch.allclose(c(x), c(perm))
    with pytest.raises(ValueError, match=r"^refiner config key 'architecture': expected 'auto' or 'mlp', found 'x'$"):
        RefinerConfig(architecture="x")
    with pytest.raises(ValueError, match=r"^architecture: expected 144 features for grid \[3, 3\] × n_t 16, found 10$"):
        train_refiner(np.zeros((4, 10)), np.zeros((4, 0)), np.zeros((4, 10)), np.zeros((4, 0)), RefinerConfig(**SMALL),
                      progress=False, architecture={"name": "stations", "grid": [3, 3], "n_t": 16, "scale": 0.1})


def test_critic_gate_hides_weak_stations():
    """min_signal = 10 VEM: a station of 2 VEM changes the critic's output by < 1 % of what a
    50 VEM station changes (the gate is 1/(1 + (10/2)^5) ≈ 3e-4 there); without the gate it counts."""
    torch.manual_seed(0)
    shape = torch.exp(-torch.arange(16) / 3.0)
    shape /= shape.sum()

    def event(amps):
        s = torch.zeros(1, 9, 16)
        for j, a in amps.items():
            s[0, j] = a * shape
        return torch.cat([torch.asinh(s / 0.1).reshape(1, -1), torch.zeros(1, 0)], 1)

    base, weak, strong = event({4: 30.0}), event({4: 30.0, 5: 2.0}), event({4: 30.0, 5: 50.0})
    gated = StationCritic(0, grid=(3, 3), n_t=16, hidden=8, min_signal=10.0)
    plain = StationCritic(0, grid=(3, 3), n_t=16, hidden=8)
    plain.load_state_dict(gated.state_dict())
    with torch.no_grad():
        d_weak, d_strong = (gated(weak) - gated(base)).abs(), (gated(strong) - gated(base)).abs()
        assert d_strong > 0 and d_weak < 0.01 * d_strong
        assert (plain(weak) - plain(base)).abs() > 10 * d_weak


def test_fixed_noise_is_added_and_not_learned():
    """fixed_noise = 0.07 VEM: the identity refiner adds noise of that std per bin of triggered
    stations (within 5 %), and the amplitude is not a trainable parameter."""
    r = StationRefiner(0, grid=(3, 3), n_t=16, hidden=8, fixed_noise=0.07)
    assert not r.log_sigma.value.requires_grad
    xs = _toy_traces(200, 1.0, 0.0, np.random.default_rng(2))
    out = 0.1 * np.sinh(refine_arrays(r, np.arcsinh(xs / 0.1), np.zeros((200, 0), np.float32), seed=4))
    live = xs.reshape(200, 9, 16).sum(-1) != 0
    diff = (out - xs).reshape(200, 9, 16)
    assert abs(diff[live].std() / 0.07 - 1) < 0.05 and np.all(diff[~live] == 0)


def test_save_and_load_station_refiner(tmp_path):
    """save_refiner / load_refiner keep the architecture, a fixed noise and the weights."""
    for kw in ({"fixed_noise": 0.05}, {"stochastic": False}):
        r = StationRefiner(2, grid=(3, 3), n_t=16, hidden=8, **kw)
        with torch.no_grad():
            r.gain.bias.fill_(0.3)
        save_refiner(tmp_path / "r.pt", r, kind="traces")
        back, payload = load_refiner(tmp_path / "r.pt")
        assert isinstance(back, StationRefiner) and back.fixed_noise == kw.get("fixed_noise")
        x = np.arcsinh(_toy_traces(5, 1.0, 0.0, np.random.default_rng(3)) / 0.1)
        y = np.zeros((5, 2), np.float32)
        np.testing.assert_array_equal(refine_arrays(back, x, y, seed=1), refine_arrays(r, x, y, seed=1))
