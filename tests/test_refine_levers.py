"""Tests of issue #17's third round: fresh training samples per epoch, the regularised grid critic,
the critic's core distance, the random amplitude of silent stations and the threshold curriculum
(hepgen.refine.refiner, hepgen.refine.stations, hepgen.refine.options, benchmarks/bench_refine_auger.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from _benchmarks import load_benchmark
from hepgen.cli import main
from hepgen.data.traces import write_traces
from hepgen.refine import stations
from hepgen.refine.adapters import TraceAdapter
from hepgen.refine.options import set_adapter_options
from hepgen.refine.refiner import (
    RefinerConfig,
    load_refiner,
    refine_arrays,
    save_refiner,
    train_refiner,
)
from hepgen.refine.stations import StationCritic, StationRefiner, core_distance
from hepgen.simulate.auger_toy import simulate_auger

N_T = 16
SHAPE = np.exp(-np.arange(N_T) / 3.0) / np.exp(-np.arange(N_T) / 3.0).sum()
SMALL = {"hidden": 16, "critic_hidden": 16, "epochs": 3, "batch_size": 32, "n_critic": 2, "critic_warmup": 5, "seed": 0}


def _draw(rng, n, scale=1.0):
    y = rng.uniform(0, 1, (n, 1)).astype(np.float32)
    return (rng.gamma(4.0, 1.0, (n, 4)) * (1 + y) * scale).astype(np.float32), y


def _traces(n, rng, live_vem=20.0):
    """3 × 3 stations: the centre silent, the others ``live_vem`` VEM with a fixed shape."""
    s = np.zeros((n, 9, N_T), np.float32)
    s[:, [0, 1, 2, 3, 5, 6, 7, 8]] = live_vem * SHAPE
    return np.arcsinh(s / 0.1).reshape(n, -1).astype(np.float32)


def test_refresh_is_called_per_epoch_and_resumes_identically(tmp_path):
    """refresh(k) is called for epochs 1, 2 (not 0); an interrupted run resumed from its
    checkpoint ends with bit-identical weights (the samples are a function of the epoch)."""
    calls = []

    def refresh(epoch):
        calls.append(epoch)
        r = np.random.default_rng(100 + epoch)
        xs, ys = _draw(r, 96)
        xd, yd = _draw(r, 96, 1.1)
        return xs, ys, xd, yd, None

    rng = np.random.default_rng(0)
    xs, ys = _draw(rng, 96)
    xd, yd = _draw(rng, 96, 1.1)
    full, hist = train_refiner(xs, ys, xd, yd, RefinerConfig(**SMALL), checkpoint=tmp_path / "a.pt",
                               progress=False, refresh=refresh)
    assert calls == [1, 2] and hist["epoch"] == [1, 2, 3]
    calls.clear()
    train_refiner(xs, ys, xd, yd, RefinerConfig(**{**SMALL, "epochs": 2}), checkpoint=tmp_path / "b.pt",
                  progress=False, refresh=refresh)
    resumed, _ = train_refiner(xs, ys, xd, yd, RefinerConfig(**SMALL), checkpoint=tmp_path / "b.pt",
                               progress=False, refresh=refresh)
    assert calls == [1, 2]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_refiner_learns_a_shift_seen_only_in_fresh_samples():
    """The first samples are identical in distribution (data = sim); every fresh epoch draws
    data = sim × 1.1.  The refiner must follow the fresh samples: median refined/sim within 0.04
    of 1.1 (settings of test_refine.py's known-shift test, 1000 events per epoch)."""
    rng = np.random.default_rng(0)
    xs, ys = _draw(rng, 1000)
    xd, yd = _draw(rng, 1000)

    def refresh(epoch):
        r = np.random.default_rng(1000 + epoch)
        a, b = _draw(r, 1000)
        c, d = _draw(r, 1000, 1.1)
        return a, b, c, d, None

    cfg = RefinerConfig(hidden=32, critic_hidden=64, epochs=30, batch_size=128, n_critic=3, lr=1e-3,
                        critic_lr=1e-3, closeness=0.01, stochastic=False, critic_warmup=50, ema=0.9, seed=0)
    model, _ = train_refiner(xs, ys, xd, yd, cfg, progress=False, refresh=refresh)
    assert abs(np.median(refine_arrays(model, xs, ys) / xs) - 1.1) < 0.04


def test_refresh_with_wrong_shapes_refused():
    rng = np.random.default_rng(0)
    xs, ys = _draw(rng, 64)
    with pytest.raises(ValueError, match=r"refresh\(1\): expected 4 features and 1 labels, found sim 3/1"):
        train_refiner(xs, ys, xs, ys, RefinerConfig(**SMALL), progress=False,
                      refresh=lambda e: (xs[:, :3], ys, xs, ys, None))
    with pytest.raises(ValueError, match=r"refresh\(1\): expected a tuple"):
        train_refiner(xs, ys, xs, ys, RefinerConfig(**SMALL), progress=False, refresh=lambda e: (xs, ys))


def test_fresh_toy_draws_independent_events():
    """The benchmark's fresh samples: the same for the same epoch (resumable), different between
    epochs, between sim and data and from the benchmark's own samples (toy seeds 11 and 12)."""
    bench = load_benchmark("bench_refine_auger")
    fresh = bench.FreshToy(6, 5, refiner_seed=0)
    s1, d1 = fresh(1)
    s1b, _ = fresh(1)
    s2, d2 = fresh(2)
    assert len(s1) == 6 and len(d1) == 5 and s1.attrs["mode"] == "sim" and d1.attrs["mode"] == "data"
    np.testing.assert_array_equal(s1.traces, s1b.traces)
    own_s, own_d = simulate_auger(6, "sim", seed=11), simulate_auger(5, "data", seed=12)
    energies = [s1.energy, s2.energy, d1.energy, d2.energy, own_s.energy, own_d.energy,
                bench.FreshToy(6, 5, refiner_seed=1)(1)[0].energy]
    flat = np.concatenate([e[:5, 0] for e in energies])
    assert len(np.unique(flat)) == len(flat)  # no event drawn twice


def test_critic_dropout_and_core_distance_options():
    """dropout 0 keeps the state-dict keys of before (old checkpoints load); with dropout the
    critic is random in training mode and deterministic in eval mode; the refiner is still the
    identity at the start; the core-distance input has a finite gradient-penalty gradient even
    when a station sits on the core estimate (one triggered station)."""
    ref_keys = set(StationCritic(2, (3, 3), N_T, hidden=8).state_dict())
    assert set(StationCritic(2, (3, 3), N_T, hidden=8, dropout=0.0).state_dict()) == ref_keys
    c = StationCritic(2, (3, 3), N_T, hidden=8, dropout=0.5)
    x = torch.from_numpy(_traces(4, None))
    z = torch.cat([x, torch.zeros(4, 2)], 1)
    torch.manual_seed(0)
    assert not torch.equal(c(z), c(z))
    c.eval()
    assert torch.equal(c(z), c(z))
    with pytest.raises(ValueError, match="dropout: expected a number in"):
        StationCritic(2, (3, 3), N_T, dropout=1.0)
    one = np.zeros((2, 9, N_T), np.float32)
    one[:, 4] = 10 * SHAPE
    zc = torch.cat([torch.from_numpy(np.arcsinh(one / 0.1).reshape(2, -1)), torch.zeros(2, 2)], 1).requires_grad_(True)
    cd = StationCritic(2, (3, 3), N_T, hidden=8, core_distance=True)
    g, = torch.autograd.grad(cd(zc).sum(), zc, create_graph=True)
    g2, = torch.autograd.grad((g.norm(dim=1) ** 2).sum(), zc)
    assert torch.isfinite(g).all() and torch.isfinite(g2).all() and g[:, 4 * N_T:5 * N_T].abs().sum() > 0


def test_core_distance_by_hand():
    """Two stations of a 3 × 3 grid weighted 1 and 3 at (0, 0) and (2, 2): centroid (1.5, 1.5);
    station (0, 0) at √4.5 = 2.1213 grid steps → 0.5303 in units of 4 steps; (1, 1) at √0.5/4."""
    w = torch.zeros(1, 9)
    w[0, 0], w[0, 8] = 1.0, 3.0
    d = core_distance(w, (3, 3))
    np.testing.assert_allclose(d[0, [0, 4, 8]].numpy(), [np.sqrt(4.5) / 4, np.sqrt(0.5) / 4, np.sqrt(0.5) / 4],
                               rtol=1e-6)
    np.testing.assert_allclose(core_distance(w, (3, 3), eps=1e-6)[0, 0].numpy(), np.sqrt(4.5 + 1e-6) / 4, rtol=1e-6)


def test_random_amplitude_fires_with_the_hand_computed_probability():
    """fill_random: z = a + b ξ with a = 0, b = 1/12 (after the gain 12: 12 z = ξ), A = T softplus(ξ);
    the station passes T when softplus(ξ) ≥ 1, i.e. ξ ≥ ln(e − 1) = 0.5413: P = 1 − Φ(0.5413) =
    0.2942 (noise 1e-4 VEM: negligible).  Measured over 4000 events: within ±0.025.  At the start
    (b = 0) the refiner is the identity and silent stations stay silent."""
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=1e-4, fill_silent=True, trigger_vem=3.0,
                       fill_random=True)
    x = _traces(4000, None)
    y0 = np.zeros((4000, 0), np.float32)
    start = refine_arrays(r, x, y0, seed=1)
    assert np.all(start.reshape(4000, 9, N_T)[:, 4] == 0)
    with torch.no_grad():
        r.fill_amp.bias.fill_(0.0)
        r.fill_spread.bias.fill_(1.0 / stations._FILL_GAIN)
    out = 0.1 * np.sinh(refine_arrays(r, x, y0, seed=1)).reshape(4000, 9, N_T)
    p_on = (out[:, 4].sum(-1) >= 3.0).mean()
    assert abs(p_on - (1 - norm.cdf(np.log(np.e - 1)))) < 0.025
    # deterministic application (no noise): ξ = 0, A = 3 softplus(0) = 2.08 VEM < 3: silent
    det = refine_arrays(r, x[:10], y0[:10], stochastic=False).reshape(10, 9, N_T)
    assert np.all(det[:, 4] == 0)
    with pytest.raises(ValueError, match="fill_random: needs fill_silent"):
        StationRefiner(0, grid=(3, 3), n_t=N_T, fill_random=True, trigger_vem=3.0)


def test_threshold_curriculum_in_training_only(tmp_path):
    """trigger_curriculum 0.5: at progress 0 the rule in training is 1.5 VEM, at 0.25 it is
    2.25 VEM, from 0.5 on 3 VEM; evaluation always uses 3 VEM.  A 2 VEM pulse proposed for the
    silent centre passes in training at progress 0, not at 0.5 and never in eval mode.  Saved and
    loaded with the option."""
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, stochastic=False, fill_silent=True, trigger_vem=3.0,
                       trigger_curriculum=0.5)
    with torch.no_grad():  # A = 3 softplus(12 z) = 2 VEM
        r.fill_amp.bias.fill_(float(np.log(np.expm1(2.0 / 3.0))) / stations._FILL_GAIN)
    x = torch.from_numpy(_traces(2, None))
    y0 = torch.zeros(2, 0)

    def centre(model):
        with torch.no_grad():
            return float((0.1 * torch.sinh(model(x, y0))).reshape(2, 9, N_T)[0, 4].sum())

    r.train()
    r.set_progress(0.0)
    assert r._rule_factor == 0.5 and abs(centre(r) - 2.0) < 1e-4
    r.set_progress(0.25)
    assert abs(r._rule_factor - 0.75) < 1e-12 and centre(r) == 0.0
    r.set_progress(0.0)
    r.eval()
    assert centre(r) == 0.0
    save_refiner(tmp_path / "r.pt", r, kind="traces")
    back, payload = load_refiner(tmp_path / "r.pt")
    assert back.trigger_curriculum == 0.5 and payload["hparams"]["refiner_architecture"]["trigger_curriculum"] == 0.5
    with pytest.raises(ValueError, match="trigger_curriculum: expected a factor in"):
        StationRefiner(0, grid=(3, 3), n_t=N_T, trigger_curriculum=0.0, trigger_vem=3.0)


def test_new_adapter_options_set_the_network_and_refuse_bad_values():
    sim = simulate_auger(4, "sim", seed=1)
    ad = TraceAdapter()
    base = set_adapter_options(ad.fit(sim), {"trigger_vem": 3.0, "fill_silent": True})
    assert not {"fill_random", "trigger_curriculum", "critic_dropout", "critic_core_distance"} & set(ad.architecture(base))
    st = set_adapter_options(base, {"fill_random": True, "trigger_curriculum": 0.4, "critic_dropout": 0.2,
                                    "critic_core_distance": True})
    arch = ad.architecture(st)
    assert (arch["fill_random"], arch["trigger_curriculum"], arch["critic_dropout"], arch["critic_core_distance"]) == \
        (True, 0.4, 0.2, True)
    for opts, msg in (({"fill_random": True}, "'fill_random': needs fill_silent"),
                      ({"trigger_curriculum": 0.5}, "'trigger_curriculum': needs the trigger threshold"),
                      ({"trigger_curriculum": 1.5}, r"'trigger_curriculum': expected a number in \(0, 1\]"),
                      ({"critic_dropout": 1.0}, r"'critic_dropout': expected a number in \[0, 1\)"),
                      ({"critic_core_distance": 1}, "'critic_core_distance': expected true or false")):
        with pytest.raises(ValueError, match=msg):
            set_adapter_options(ad.fit(sim), opts)
    with pytest.raises(ValueError, match="'critic_dropout': the adapter of kind 'showers' has no such option"):
        set_adapter_options({"kind": "showers"}, {"critic_dropout": 0.1})


def test_cli_new_options_reach_the_checkpoint(tmp_path):
    """`hepgen refine train --fill-random --trigger-curriculum 0.5 --critic-dropout 0.2
    --critic-core-distance` trains (1 epoch) and stores every option in the adapter state and
    the refiner's architecture; the refiner of the checkpoint has them."""
    for name, seed in (("sim", 1), ("data", 2)):
        write_traces(tmp_path / f"{name}.h5", simulate_auger(12, name, seed=seed))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q",
                 "--critic-warmup", "1", "--fill-silent", "--trigger-vem", "3", "--fill-random",
                 "--trigger-curriculum", "0.5", "--critic-dropout", "0.2", "--critic-core-distance"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    pre, arch = payload["preprocessing"], payload["hparams"]["refiner_architecture"]
    assert (pre["fill_random"], pre["trigger_curriculum"], pre["critic_dropout"], pre["critic_core_distance"]) == \
        (True, 0.5, 0.2, True)
    assert (arch["fill_random"], arch["trigger_curriculum"], arch["critic_dropout"], arch["critic_core_distance"]) == \
        (True, 0.5, 0.2, True)
    assert model.fill_random and model.trigger_curriculum == 0.5 and not model.training
    assert np.isfinite(payload["meta"]["history"]["critic_w"][0])
