"""Tests of the station refiner's shot noise (issue #17, fourth round; hepgen.refine.stations,
hepgen.refine.options, hepgen.refine.refiner, ``hepgen refine train --shot-noise``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hepgen.cli import main
from hepgen.data.traces import write_traces
from hepgen.refine import stations
from hepgen.refine.adapters import TraceAdapter
from hepgen.refine.options import ADAPTER_OPTIONS, FLAG_OPTIONS, NETWORK_OPTIONS, set_adapter_options
from hepgen.refine.refiner import load_refiner, refine_arrays, save_refiner
from hepgen.refine.stations import StationRefiner
from hepgen.simulate.auger_toy import simulate_auger

N_T = 16


def _constant(n, vem_per_bin, silent_tail=0):
    """3 × 3 stations, every bin ``vem_per_bin`` VEM except the last ``silent_tail`` bins (zero)."""
    s = np.full((n, 9, N_T), vem_per_bin, np.float32)
    if silent_tail:
        s[..., -silent_tail:] = 0.0
    return np.arcsinh(s / 0.1).reshape(n, -1).astype(np.float32)


#: labels at the four corners (±1, ±1): y₀y₁ is orthogonal to 1, y₀ and y₁ (residual fits by hand)
CORNERS = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])


def _head_last_input(critic, x, y):
    """``(N,)``: the last input of the grid critic's head for flat traces ``x`` and labels ``y``."""
    seen = {}
    hook = critic.head[0].register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0].detach()))
    critic(torch.cat([x, y], 1))
    hook.remove()
    return seen["x"][:, -1].numpy()


def _train_cli(tmp_path, *flags):
    """`hepgen refine train` for one epoch on 12 + 12 toy events with ``flags``: (refiner, checkpoint payload)."""
    for name, seed in (("sim", 1), ("data", 2)):
        write_traces(tmp_path / f"{name}.h5", simulate_auger(12, name, seed=seed))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q",
                 "--critic-warmup", "1", *flags]) == 0
    return load_refiner(tmp_path / "run" / "refiner.pt")


def _set_shot(r, quantum_vem, kernel=None):
    """Quantum q (VEM) for every station: 4 sigmoid(b) = q; kernel logits (default: lag 0 only)."""
    with torch.no_grad():
        r.shot.bias.fill_(float(np.log(quantum_vem / (stations._SHOT_QMAX - quantum_vem))))
        r.shot_kernel.copy_(torch.tensor(kernel if kernel is not None else [0.0] + [-1e4] * (stations._SHOT_TAPS - 1)))


def test_shot_noise_variance_is_quantum_times_signal():
    """q = 1 VEM, lag-0 kernel, constant 5 VEM per bin: added variance per bin q·m = 5 VEM²
    (hand); with q = 0.25 VEM: 1.25 VEM².  Mean unchanged (zero-mean noise).  Measured over
    20 000 events, tolerance 3 %.  No other noise (fixed_noise 0).  The skew of the log-normal below."""
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.0, shot_noise=True)
    x = _constant(20000, 5.0)
    for q, var in ((1.0, 5.0), (0.25, 1.25)):
        _set_shot(r, q)
        out = 0.1 * np.sinh(refine_arrays(r, x, np.zeros((20000, 0), np.float32), seed=2)).reshape(20000, 9, N_T)
        assert abs(out.var(axis=0).mean() / var - 1) < 0.03
        assert abs(out.mean() - 5.0) < 0.01
    # log-normal: at q = 1 VEM on 0.5 VEM per bin a² = ln 3, the median is m e^{−a²/2} = 0.5/√3
    # (hand), below the mean 0.5: spikes upwards, and no bin below zero
    _set_shot(r, 1.0)
    out = 0.1 * np.sinh(refine_arrays(r, _constant(20000, 0.5), np.zeros((20000, 0), np.float32), seed=4))
    assert abs(np.median(out) / (0.5 / np.sqrt(3.0)) - 1) < 0.03 and abs(out.mean() / 0.5 - 1) < 0.02
    assert out.min() > -1e-3


def test_shot_noise_kernel_spreads_fluctuations_and_the_tail_stays_quiet():
    """Kernel weights (1, 1)/√2 at lags 0 and 1 (logits 0, 0, −1e4, …): neighbouring bins share
    half their variance, correlation 0.5 (hand: Cov = q m k0 k1 = q m / 2, Var = q m); the four
    last bins carry no signal, so from the second of them on (the kernel reaches one bin back) no
    noise at all: the tail is untouched (within the 1e-6 VEM² floor of the square root)."""
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.0, shot_noise=True)
    _set_shot(r, 1.0, [0.0, 0.0] + [-1e4] * (stations._SHOT_TAPS - 2))
    np.testing.assert_allclose(r.shot_kernel_weights().detach().numpy()[:2], [2 ** -0.5] * 2, rtol=1e-6)
    x = _constant(20000, 4.0, silent_tail=4)
    out = 0.1 * np.sinh(refine_arrays(r, x, np.zeros((20000, 0), np.float32), seed=3)).reshape(20000, 9, N_T)
    a, b = out[:, :, 5].ravel(), out[:, :, 6].ravel()
    assert abs(np.corrcoef(a, b)[0, 1] - 0.5) < 0.03
    assert abs(a.var() / 4.0 - 1) < 0.03
    assert np.abs(out[..., -3:]).max() < 0.01


def test_identity_and_determinism_with_shot_noise(tmp_path):
    """At the start the refiner without noise is the identity; the shape correction does not see
    the noise (one input channel fewer); the option survives save/load; without stochasticity
    it is refused."""
    r = StationRefiner(2, grid=(3, 3), n_t=N_T, hidden=8, shot_noise=True)
    x = torch.from_numpy(_constant(4, 2.0))
    assert torch.allclose(r(x, torch.zeros(4, 2)), x, atol=1e-4)
    assert r.shape[0].in_channels == 1 + stations._FILM
    assert StationRefiner(2, grid=(3, 3), n_t=N_T, hidden=8).shape[0].in_channels == 2 + stations._FILM
    assert set(p for p in r.fast_parameters()) == set(r.shot.parameters())
    save_refiner(tmp_path / "r.pt", r, kind="traces")
    back, payload = load_refiner(tmp_path / "r.pt")
    assert back.shot_noise and payload["hparams"]["refiner_architecture"]["shot_noise"] is True
    with pytest.raises(ValueError, match="shot_noise: needs the stochastic refiner"):
        StationRefiner(2, grid=(3, 3), n_t=N_T, stochastic=False, shot_noise=True)


def test_shot_noise_option_and_cli(tmp_path):
    """``shot_noise`` is a traces adapter option (bool only; refused on showers) and
    `hepgen refine train --shot-noise` stores it in the checkpoint's state and architecture."""
    sim = simulate_auger(4, "sim", seed=1)
    ad = TraceAdapter()
    assert "shot_noise" not in ad.architecture(ad.fit(sim))
    assert ad.architecture(set_adapter_options(ad.fit(sim), {"shot_noise": True}))["shot_noise"] is True
    assert set(FLAG_OPTIONS) | set(NETWORK_OPTIONS) <= set(ADAPTER_OPTIONS["traces"])
    with pytest.raises(ValueError, match="'shot_noise': expected true or false"):
        set_adapter_options(ad.fit(sim), {"shot_noise": 1})
    with pytest.raises(ValueError, match="'shot_noise': the adapter of kind 'showers' has no such option"):
        set_adapter_options({"kind": "showers"}, {"shot_noise": True})
    model, payload = _train_cli(tmp_path, "--shot-noise")
    assert payload["preprocessing"]["shot_noise"] is True and model.shot_noise
    assert np.isfinite(payload["meta"]["history"]["critic_w"][0])


def _set_pulses(r, quantum_vem, fraction, kernel=None):
    """Shot pulses: quantum q (VEM) and fraction f of the signal in quanta for every station;
    kernel logits (default: lag 0 only)."""
    _set_shot(r, quantum_vem, kernel)
    with torch.no_grad():
        r.shot_frac.bias.fill_(float(np.log(fraction / (1 - fraction))))


def test_poisson_quantile_against_scipy():
    """``poisson_quantile`` equals ``scipy.stats.poisson.ppf`` (an independent implementation)
    element by element for λ in [0, 10] and u in (0, 1), 20 000 draws; a λ of 0 gives 0."""
    from scipy import stats as sps

    rng = np.random.default_rng(5)
    lam, u = rng.uniform(0, 10, 20000), rng.uniform(1e-6, 1 - 1e-6, 20000)
    got = stations.poisson_quantile(torch.from_numpy(lam), torch.from_numpy(u)).numpy()
    np.testing.assert_array_equal(got, sps.poisson.ppf(u, lam))
    assert stations.poisson_quantile(torch.zeros(3), torch.tensor([0.1, 0.5, 0.99])).tolist() == [0.0, 0.0, 0.0]


def test_shot_pulses_are_poisson_quanta_with_the_signal_kept():
    """q = 1 VEM, f = 0.5, lag-0 kernel, 5 VEM per bin: λ = 0.5 (5 − 0.05)/1 = 2.475 quanta per
    bin (hand), so a refined bin is 5 − 2.475 + n VEM with n integer, Poisson(2.475): its
    frequencies against scipy's pmf (absolute tolerance 0.01 over 180 000 bins), mean 5 VEM
    (±0.01), variance q f (m − 0.05) = 2.475 VEM² (3 %).  At q = 2 VEM the quanta are 2 VEM apart.
    Below the floor (0.04 VEM per bin) no quanta are added (within 1e-5 VEM)."""
    from scipy import stats as sps

    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.0, shot_noise=True, shot_pulses=True)
    _set_pulses(r, 1.0, 0.5)
    out = 0.1 * np.sinh(refine_arrays(r, _constant(20000, 5.0), np.zeros((20000, 0), np.float32), seed=2))
    b = out.reshape(20000, 9, N_T)[:, :, 8].ravel()
    n = b - 5.0 + 2.475
    assert np.abs(n - np.round(n)).max() < 2e-3
    freq = np.bincount(np.round(n).astype(int), minlength=8)[:8] / n.size
    np.testing.assert_allclose(freq, sps.poisson.pmf(np.arange(8), 2.475), atol=0.01)
    assert abs(b.mean() - 5.0) < 0.01 and abs(b.var() / 2.475 - 1) < 0.03
    _set_pulses(r, 2.0, 0.5)
    out = 0.1 * np.sinh(refine_arrays(r, _constant(2000, 5.0), np.zeros((2000, 0), np.float32), seed=3))
    n2 = (out.reshape(2000, 9, N_T)[:, :, 8] - 5.0 + 0.5 * 4.95) / 2.0
    assert np.abs(n2 - np.round(n2)).max() < 2e-3
    quiet = _constant(50, 0.04)  # no quanta: within the ≈ 5e-7 VEM noise that fixed_noise 0 leaves (σ's floor)
    got = 0.1 * np.sinh(refine_arrays(r, quiet, np.zeros((50, 0), np.float32), seed=3))
    assert np.abs(got - 0.04).max() < 1e-5


def test_shot_pulses_kernel_and_gradient():
    """The kernel starts as the tank's decay, softmax(−j/1.5) (unit area, hand: 0.5046 at lag 0);
    with logits (0, 0, −1e4, …) a pulse is spread evenly over two bins, so neighbouring bins share
    half the variance (correlation 0.5, as for the log-normal kernel of the same weights).  The
    straight-through gradient of a bin's output with respect to the fraction's bias is that of the
    Gaussian limit, q ε √λ (1 − f) / 2 (hand: λ = f (m − 0.05)/q, dλ/db = λ (1 − f)), with ε the
    noise rolled by a quarter of the trace."""
    r = StationRefiner(0, grid=(3, 3), n_t=N_T, hidden=8, fixed_noise=0.0, shot_noise=True, shot_pulses=True)
    k = torch.softmax(r.shot_kernel, 0).detach().numpy()
    np.testing.assert_allclose(k, np.exp(-np.arange(5) / 1.5) / np.exp(-np.arange(5) / 1.5).sum(), rtol=1e-6)
    assert abs(k[0] - 0.5046) < 1e-4
    _set_pulses(r, 1.0, 0.5, [0.0, 0.0] + [-1e4] * (stations._SHOT_TAPS - 2))
    out = 0.1 * np.sinh(refine_arrays(r, _constant(20000, 4.0), np.zeros((20000, 0), np.float32), seed=3))
    out = out.reshape(20000, 9, N_T)
    assert abs(np.corrcoef(out[:, :, 5].ravel(), out[:, :, 6].ravel())[0, 1] - 0.5) < 0.03
    _set_pulses(r, 1.0, 0.5)
    x = torch.from_numpy(_constant(1, 4.0))
    eps = torch.from_numpy(np.random.default_rng(7).normal(size=(1, 9 * N_T)).astype(np.float32))
    out = 0.1 * torch.sinh(r(x, torch.zeros(1, 0), noise=eps))
    out.view(9, N_T)[4, 8].backward()
    lam = 0.5 * (4.0 - 0.05)
    e = torch.roll(eps.view(9, N_T), N_T // 4, dims=-1)[4, 8].item()
    assert abs(r.shot_frac.bias.grad.item() - e * np.sqrt(lam) * 0.5 / 2) < 1e-4


def test_shot_pulses_option_identity_and_refusals(tmp_path):
    """At the start (f ≈ 0.0025) and without noise the refiner is the identity; the option needs
    ``shot_noise`` (the model and the adapter option refuse it alone); it survives save/load, its
    heads train at the fast rate, and `hepgen refine train --shot-noise --shot-pulses` stores it."""
    r = StationRefiner(2, grid=(3, 3), n_t=N_T, hidden=8, shot_noise=True, shot_pulses=True)
    x = torch.from_numpy(_constant(4, 2.0))
    assert torch.allclose(r(x, torch.zeros(4, 2)), x, atol=1e-4)
    assert set(r.fast_parameters()) == set(r.shot.parameters()) | set(r.shot_frac.parameters())
    with pytest.raises(ValueError, match="shot_pulses: needs shot_noise"):
        StationRefiner(2, grid=(3, 3), n_t=N_T, shot_pulses=True)
    save_refiner(tmp_path / "r.pt", r, kind="traces")
    back, payload = load_refiner(tmp_path / "r.pt")
    assert back.shot_pulses and payload["hparams"]["refiner_architecture"]["shot_pulses"] is True
    sim = simulate_auger(4, "sim", seed=1)
    with pytest.raises(ValueError, match="'shot_pulses': needs shot_noise"):
        set_adapter_options(TraceAdapter().fit(sim), {"shot_pulses": True})
    model, payload = _train_cli(tmp_path, "--shot-noise", "--shot-pulses")
    assert payload["preprocessing"]["shot_pulses"] is True and model.shot_pulses
    assert np.isfinite(payload["meta"]["history"]["critic_w"][0])


def test_critic_total_signal_input_is_log_total_over_three(tmp_path):
    """``critic_total``: the head's input ends with log(1 + Σ_stations Σ_t S)/3 (hand: stations of
    2 and 5 VEM per bin over 16 bins, the rest silent: log(1 + 112)/3), after the labels; the
    option reaches the critic of `hepgen refine train --critic-total`."""
    from hepgen.refine.stations import StationCritic

    c = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, total_signal=True)
    s = np.zeros((1, 9, N_T), np.float32)
    s[0, 0], s[0, 4] = 2.0, 5.0
    z = torch.cat([torch.from_numpy(np.arcsinh(s / 0.1).reshape(1, -1)), torch.tensor([[0.3, -0.7]])], 1)
    seen = {}
    c.head[0].register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0].detach()))
    c(z)
    np.testing.assert_allclose(seen["x"][0, -3:].numpy(), [0.3, -0.7, np.log(113.0) / 3], rtol=1e-5)
    assert c.head[0].in_features == StationCritic(2, (3, 3), N_T, hidden=8).head[0].in_features + 1
    _, payload = _train_cli(tmp_path, "--critic-total")
    assert payload["preprocessing"]["critic_total"] is True
    assert payload["trainer"]["critic"]["head.0.weight"].shape[1] == c.head[0].in_features


def test_critic_response_is_the_standardised_residual_of_the_total(tmp_path):
    """``critic_response``: the fit of log(1 + Σ S) on the labels recovers a known linear
    dependence (hand: log(1 + Σ S) = 1 + 0.5 y₀ + 0.1 y₀ y₁ on the four corners y = (±1, ±1):
    coefficients (1, 0.5, 0), residuals ±0.1, σ = 0.1), and the head's last input is the residual
    over σ, y₀ y₁ = (1, −1, −1, 1).  The option reaches `hepgen refine train --critic-response`, whose
    critic carries the fitted buffers (a fit on the toy: σ ≠ 1, c₀ ≠ 0)."""
    from hepgen.refine.stations import StationCritic

    c = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, total_response=True)
    y = CORNERS
    total = torch.expm1(1.0 + 0.5 * y[:, 0] + 0.1 * y[:, 0] * y[:, 1])
    s = np.zeros((4, 9, N_T), np.float32)
    s[:, 4, :] = (total / N_T).numpy()[:, None]          # one station, the total spread over the bins
    x = torch.from_numpy(np.arcsinh(s / 0.1).reshape(4, -1))
    c.fit_residuals(x, y)
    np.testing.assert_allclose(c.response_coef.numpy(), [1.0, 0.5, 0.0], atol=2e-5)
    np.testing.assert_allclose(float(c.response_std), 0.1, rtol=1e-4)
    np.testing.assert_allclose(_head_last_input(c, x, y), [1.0, -1.0, -1.0, 1.0], atol=2e-3)
    assert c.head[0].in_features == StationCritic(2, (3, 3), N_T, hidden=8).head[0].in_features + 1
    off = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8)
    off.fit_residuals(x, y)                               # without the option: nothing fitted, keys as before
    assert not any(k.startswith("response_") for k in off.state_dict())
    _, payload = _train_cli(tmp_path, "--critic-response")
    assert payload["preprocessing"]["critic_response"] is True
    critic = payload["trainer"]["critic"]
    assert critic["response_coef"][0] != 0 and critic["response_std"] != 1.0


def test_critic_count_is_the_soft_station_count_residual(tmp_path):
    """``critic_count``: the soft count Σ min(I/T, 1) (hand, T = 3 VEM: stations of 6, 3 and 1.5 VEM
    and six silent ones → 1 + 1 + 0.5 = 2.5), fitted on the labels like the response (counts
    2 + y₀ + 0.5 y₀y₁ on the corners: coefficients (2, 1, 0), σ = 0.5, head input y₀y₁); it needs
    the trigger threshold, and reaches `hepgen refine train --critic-count`."""
    from hepgen.refine.stations import StationCritic

    c = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, count_vem=3.0)
    s = np.zeros((1, 9, N_T), np.float32)
    s[0, 0], s[0, 4], s[0, 8] = 6.0 / N_T, 3.0 / N_T, 1.5 / N_T
    np.testing.assert_allclose(float(stations.soft_count(torch.from_numpy(np.arcsinh(s / 0.1).reshape(1, -1)), N_T, 0.1,
                                                         c.count_vem)[0]), 2.5, rtol=1e-5)
    y = CORNERS
    counts = (2.0 + y[:, 0] + 0.5 * y[:, 0] * y[:, 1]).numpy()   # 1.5, 0.5, 2.5, 3.5 stations
    s = np.zeros((4, 9, N_T), np.float32)
    for i, k in enumerate(counts):
        s[i, :int(k)] = 3.0 / N_T                            # whole stations at threshold
        s[i, int(k)] = (k - int(k)) * 3.0 / N_T              # and a half one
    x = torch.from_numpy(np.arcsinh(s / 0.1).reshape(4, -1))
    c.fit_residuals(x, y)
    np.testing.assert_allclose(c.count_coef.numpy(), [2.0, 1.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(float(c.count_std), 0.5, rtol=1e-4)
    np.testing.assert_allclose(_head_last_input(c, x, y), [1.0, -1.0, -1.0, 1.0], atol=1e-3)
    with pytest.raises(ValueError, match="count_vem: expected a threshold > 0"):
        StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, count_vem=0.0)
    with pytest.raises(ValueError, match="'critic_count': needs the trigger threshold"):
        set_adapter_options(TraceAdapter().fit(simulate_auger(2, "sim", seed=1)), {"critic_count": True})
    _, payload = _train_cli(tmp_path, "--critic-count", "--trigger-vem", "3")
    assert payload["preprocessing"]["critic_count"] is True
    assert payload["trainer"]["critic"]["count_std"] != 1.0


def test_match_moments_zero_on_data_and_pushes_the_station_count(tmp_path):
    """``match_moments``: the term is zero (1e-10) for data against data's own fits (the normal
    equations of the least-squares fit), positive for data with one station fewer per event, and its
    gradient through the straight-through trigger rule raises the amplitude of silent stations
    (d loss / d fill bias < 0 when the refined events lack stations).  Hand: the event quantities
    of a 3 × 3 event with stations of 6, 3, 1.5 VEM are log(1 + 10.5) and 2.5 (T = 3 VEM).  The
    option needs the trigger threshold and reaches `hepgen refine train --match-moments`."""
    r = StationRefiner(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, fill_silent=True, trigger_vem=3.0,
                       match_moments=1.0)
    s = np.zeros((1, 9, N_T), np.float32)
    s[0, 0], s[0, 4], s[0, 8] = 6.0 / N_T, 3.0 / N_T, 1.5 / N_T
    q = r.event_quantities(torch.from_numpy(np.arcsinh(s / 0.1).reshape(1, -1)))
    np.testing.assert_allclose(q[0].numpy(), [np.log(11.5), 2.5], rtol=1e-5)
    rng = np.random.default_rng(0)
    n = 200
    y = rng.normal(size=(n, 2)).astype(np.float32)
    k = np.clip(np.round(4 + y[:, 1] + rng.normal(0, 0.7, n)), 2, 8).astype(int)   # stations per event
    s = np.zeros((n, 9, N_T), np.float32)
    for i in range(n):
        s[i, :k[i]] = rng.uniform(3.5, 20.0, (k[i], 1)) / N_T
    x = np.arcsinh(s / 0.1).reshape(n, -1).astype(np.float32)
    r.set_normalisation(x, y)
    r.fit_moments(x, y)
    assert float(r.moment_loss(torch.from_numpy(x), torch.from_numpy(y))) < 1e-10
    fewer = s.copy()
    fewer[np.arange(n), k - 1] = 0.0                       # one station fewer per event
    xf = torch.from_numpy(np.arcsinh(fewer / 0.1).reshape(n, -1).astype(np.float32))
    assert float(r.moment_loss(xf, torch.from_numpy(y))) > 0.1
    r.train()
    loss = r.moment_loss(r(xf, torch.from_numpy(y), torch.zeros_like(xf)), torch.from_numpy(y))
    loss.backward()
    assert float(r.fill_amp.bias.grad) < 0                 # a larger amplitude lowers the term
    with pytest.raises(ValueError, match="match_moments: needs the trigger threshold"):
        StationRefiner(n_labels=2, grid=(3, 3), n_t=N_T, match_moments=1.0)
    _, payload = _train_cli(tmp_path, "--match-moments", "1", "--trigger-vem", "3")
    assert payload["preprocessing"]["match_moments"] == 1.0
    assert payload["model"]["moment_std"].shape == (2,) and float(payload["model"]["moment_std"][1]) != 1.0


def test_excess_roughness_against_numpy():
    """``excess_roughness``: ln(10⁻³ + Σ (total variation with zeros around − 2 peak) / Σ I) of random
    3 × 3 events, computed again with numpy (rtol 1e-5; silent stations included as zeros); a smooth
    pulse of any sharpness has none (hand: 1, 5, 2, 1 VEM → ln 10⁻³)."""
    rng = np.random.default_rng(3)
    s = rng.gamma(2.0, 1.0, (5, 9, N_T)).astype(np.float32)
    s[:, 4] = 0.0
    got = stations.excess_roughness(torch.from_numpy(np.arcsinh(s / 0.1).reshape(5, -1)), N_T, 0.1).numpy()
    padded = np.pad(s, ((0, 0), (0, 0), (1, 1)))
    excess = np.abs(np.diff(padded, axis=-1)).sum(-1) - 2 * s.max(-1)
    np.testing.assert_allclose(got, np.log(1e-3 + excess.sum(1) / s.sum((1, 2))), rtol=1e-5)
    smooth = np.zeros((1, 9, N_T), np.float32)
    smooth[0, 0, :4] = [1.0, 5.0, 2.0, 1.0]
    got = stations.excess_roughness(torch.from_numpy(np.arcsinh(smooth / 0.1).reshape(1, -1)), N_T, 0.1)
    np.testing.assert_allclose(got.numpy(), [np.log(1e-3)], rtol=1e-4)


def test_match_roughness_zero_on_data_and_raises_the_shot_quantum(tmp_path):
    """``match_roughness``: with ``match_moments`` the event quantities are three (log total, count,
    excess roughness); the term is zero (1e-10) for data against data's own fits, positive for
    smooth events of the same totals, and its gradient raises the shot quantum of a refiner
    acting on the smooth events (d loss / d shot bias < 0).  The option needs ``match_moments``
    and reaches `hepgen refine train --match-roughness` (three fitted spreads in the checkpoint)."""
    rng = np.random.default_rng(0)
    n = 200
    y = rng.normal(size=(n, 2)).astype(np.float32)
    level = (2.0 + 0.5 * (y[:, :1] + 2.5)).astype(np.float32)  # VEM per bin, ≥ 0.75: every station above 3 VEM
    smooth = np.repeat(level[:, None, :], 9, 1) * np.ones((1, 1, N_T), np.float32)  # (n, 9, N_T)
    rough = rng.poisson(smooth).astype(np.float32)   # quanta of 1 VEM: same mean, spiky
    rough[rough.sum(-1) < 3.0] = 3.0 / N_T           # keep every station triggered
    to_x = lambda a: torch.from_numpy(np.arcsinh(a / 0.1).reshape(n, -1).astype(np.float32))  # noqa: E731
    r = StationRefiner(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, trigger_vem=3.0, shot_noise=True,
                       match_moments=1.0, match_roughness=True)
    assert r.event_quantities(to_x(rough)).shape == (n, 3)
    r.set_normalisation(to_x(rough).numpy(), y)
    r.fit_moments(to_x(rough).numpy(), y)
    yt = torch.from_numpy(y)
    assert float(r.moment_loss(to_x(rough), yt)) < 1e-10
    assert float(r.moment_loss(to_x(smooth), yt)) > 0.1
    r.train()
    torch.manual_seed(0)
    xs = to_x(smooth)
    r.moment_loss(r(xs, yt, torch.randn_like(xs)), yt).backward()
    assert float(r.shot.bias.grad) < 0                     # a larger quantum lowers the term
    with pytest.raises(ValueError, match="match_roughness: needs match_moments > 0"):
        StationRefiner(n_labels=2, grid=(3, 3), n_t=N_T, trigger_vem=3.0, match_roughness=True)
    with pytest.raises(ValueError, match="refiner option 'match_roughness': needs match_moments > 0, found None"):
        set_adapter_options(TraceAdapter().fit(simulate_auger(4, "sim", seed=1)),
                            {"trigger_vem": 3.0, "match_roughness": True})
    _, payload = _train_cli(tmp_path, "--match-moments", "1", "--trigger-vem", "3", "--match-roughness")
    assert payload["preprocessing"]["match_roughness"] is True
    assert payload["model"]["moment_std"].shape == (3,) and float(payload["model"]["moment_std"][2]) != 1.0


def test_critic_roughness_input_is_the_total_variation(tmp_path):
    """``critic_roughness``: each station's network sees Σ_t |S(t+1) − S(t)| / max(I, 1) after its
    other inputs (hand: a station 0, 4, 0, 2, 0… VEM has I = 6 and variation 4 + 4 + 2 + 2 = 12 →
    2.0; the option reaches `hepgen refine train --critic-roughness`)."""
    from hepgen.refine.stations import StationCritic

    c = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, roughness=True)
    s = np.zeros((1, 9, N_T), np.float32)
    s[0, 4, 1], s[0, 4, 3] = 4.0, 2.0
    z = torch.cat([torch.from_numpy(np.arcsinh(s / 0.1).reshape(1, -1)), torch.tensor([[0.3, -0.7]])], 1)
    seen = []
    c.phi[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    c(z)
    np.testing.assert_allclose(seen[-1][0, -3:].numpy(), [2.0, 0.3, -0.7], rtol=1e-5)   # the live station's row
    assert c.phi[0].in_features == StationCritic(2, (3, 3), N_T, hidden=8).phi[0].in_features + 1
    _, payload = _train_cli(tmp_path, "--critic-roughness")
    assert payload["preprocessing"]["critic_roughness"] is True
    # the toy's 80 bins: asinh trace and cumulative (2 × 80), log I, the variation, two labels
    assert payload["trainer"]["critic"]["phi.0.weight"].shape[1] == 2 * 80 + 1 + 1 + 2


def test_critic_dense_adds_an_mlp_on_the_standardised_event(tmp_path):
    """``critic_dense``: the score is the grid critic's plus an MLP on every feature standardised
    with the fitted pooled mean and spread (checked against numpy's mean and std, spread floored at
    10⁻³ for a bin that never changes) and the labels; rebuilt by hand from the branch's weights
    with the grid head zeroed.  Without the option the state-dict keys are those of before; the
    option reaches `hepgen refine train --critic-dense`, whose critic carries the fitted buffers."""
    from hepgen.refine.stations import StationCritic

    torch.manual_seed(0)
    c = StationCritic(n_labels=2, grid=(3, 3), n_t=N_T, hidden=8, dense=True)
    rng = np.random.default_rng(3)
    s = rng.gamma(2.0, 1.0, (6, 9, N_T)).astype(np.float32)
    s[:, 0] = 0.0                                           # a silent station: spread 0 → floor
    x = torch.from_numpy(np.arcsinh(s / 0.1).reshape(6, -1))
    y = torch.from_numpy(rng.normal(size=(6, 2)).astype(np.float32))
    c.fit_residuals(x, y)
    xn = x.numpy().astype(np.float64)
    np.testing.assert_allclose(c.dense_mean.numpy(), xn.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.dense_std.numpy(), np.maximum(xn.std(0), 1e-3), rtol=1e-5)
    assert float(c.dense_std[0]) == pytest.approx(1e-3)
    with torch.no_grad():
        c.head[-1].weight.zero_()
        c.head[-1].bias.zero_()
    w = [p.detach().numpy().astype(np.float64) for p in c.dense_net.parameters()]
    h = np.concatenate([(xn - xn.mean(0)) / np.maximum(xn.std(0), 1e-3), y.numpy()], 1)
    for i in (0, 2):
        h = h @ w[i].T + w[i + 1]
        h = np.where(h > 0, h, 0.2 * h)
    expected = (h @ w[4].T + w[5])[:, 0]
    np.testing.assert_allclose(c(torch.cat([x, y], 1)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert not any(k.startswith("dense") for k in StationCritic(2, (3, 3), N_T, hidden=8).state_dict())
    _, payload = _train_cli(tmp_path, "--critic-dense")
    assert payload["preprocessing"]["critic_dense"] is True
    critic = payload["trainer"]["critic"]
    assert critic["dense_net.0.weight"].shape[1] == 81 * 80 + 2
    assert float(critic["dense_std"].max()) > 1.0 and float(critic["dense_mean"].abs().max()) > 0


def test_closeness_mean_does_not_penalise_the_added_noise(tmp_path):
    """``closeness_mean``: with the refiner held at the identity (learning rate 1e-12) and a fixed
    added noise of 0.3 VEM per bin, the closeness of the first epoch is > 0.01 on the noisy output
    (the noise changes every station integral by ≈ 0.3 · √80 VEM) and < 1e-4 on the output without
    noise (the identity up to the asinh round trip).  A non-boolean value is refused."""
    from hepgen.refine import RefinerConfig

    closeness = []
    for i, extra in enumerate(([], ["--closeness-mean"])):
        _, payload = _train_cli(tmp_path / str(i), "--noise-vem", "0.3", "--lr", "1e-12", *extra)
        assert payload["hparams"]["closeness_mean"] is bool(extra)
        closeness.append(payload["meta"]["history"]["closeness"][0])
    assert closeness[0] > 0.01 and closeness[1] < 1e-4, closeness
    with pytest.raises(ValueError, match="'closeness_mean': expected true or false"):
        RefinerConfig(closeness_mean=1)


def test_shape_envelope_bounds_the_correction_to_the_pulse(tmp_path):
    """``shape_envelope``: with the shape heads pushed far from zero (dense bias ±50 per bin), the
    change of each bin is at most I⁺ · env(t) (env: mean |u| over ±3 bins, hand-computed in
    numpy) and exactly zero where env is zero: a 10 VEM pulse in bins 0–5 of a 3 × 3 station
    grid leaves bins ≥ 9 untouched.  The free correction (no envelope) does change them."""
    n_t = 16
    s = np.zeros((2, 9, n_t), np.float32)
    s[:, :, :6] = 10.0 / 6.0
    x = torch.from_numpy(np.arcsinh(s / 0.1).reshape(2, -1))
    y = torch.zeros(2, 0)
    sign = torch.tensor([50.0, -50.0] * (n_t // 2))
    outs = {}
    for env in (True, False):
        r = StationRefiner(0, grid=(3, 3), n_t=n_t, hidden=8, stochastic=False, shape_envelope=env)
        with torch.no_grad():
            r.shape_dense.bias.copy_(sign)
            outs[env] = (0.1 * torch.sinh(r(x, y))).reshape(2, 9, n_t).numpy()
    u = s[0, 0] / 10.0
    env = np.array([np.abs(u[max(t - 3, 0):t + 4]).mean() for t in range(n_t)])
    change = np.abs(outs[True][0, 0] - s[0, 0])
    assert np.all(change <= 10.0 * env + 1e-4)
    assert np.all(change[9:] < 1e-5) and change[:9].max() > 0.1
    assert np.abs(outs[False][0, 0, 9:]).max() > 1.0
    r = StationRefiner(0, grid=(3, 3), n_t=n_t, hidden=8, shape_envelope=True)
    save_refiner(tmp_path / "e.pt", r, kind="traces")
    assert load_refiner(tmp_path / "e.pt")[0].shape_envelope
    sim = simulate_auger(4, "sim", seed=1)
    ad = TraceAdapter()
    assert ad.architecture(set_adapter_options(ad.fit(sim), {"shape_envelope": True}))["shape_envelope"] is True


def test_station_diagnostic_against_hand_cases():
    """benchmarks/diag_refine_auger_stations.py: a sample compared with itself has separation 0, two
    independent sim samples a station classifier at chance (|AUC − 0.5| < 0.08); a sample whose
    traces are all doubled differs only in log10 I and the spikiness counts (the normalised shape
    quantities are equal: separation 0); the core distance and the event table by hand."""
    from _benchmarks import load_benchmark

    diag = load_benchmark("diag_refine_auger_stations")
    d = simulate_auger(150, "sim", seed=4)
    f = diag.station_features(d.traces, d.energy, d.zenith)
    same = diag.compare(f, f)
    assert all(v["sep"] == 0.0 for b in same.values() if isinstance(b, dict) for v in b.values())
    other = simulate_auger(150, "sim", seed=5)  # the classifier at chance needs an independent sample
    fo = diag.station_features(other.traces, other.energy, other.zenith)
    assert abs(diag.compare(fo, f)["station_auc_all"] - 0.5) < 0.08
    f2 = diag.station_features(2 * d.traces, d.energy, d.zenith)
    np.testing.assert_allclose(f2["log10_I"], f["log10_I"] + np.log10(2), rtol=1e-12)
    for q in ("peak_over_I", "rise_10_50", "t90", "early4", "r_core"):
        np.testing.assert_allclose(f2[q], f[q], rtol=1e-9, atol=1e-12)
    t = np.zeros((1, 3, 1, 12))
    t[0, 0, 0, :2], t[0, 2, 0, :2] = 1.0, 3.0  # 2 and 6 VEM at x = 0 and x = 2: core at x = 1.5
    g = diag.station_features(t, np.full((1, 1), 10.0), np.zeros((1, 1)))
    np.testing.assert_allclose(g["r_core"], [1.5, 0.5])
    tab = diag.event_table(SimpleNamespace(traces=t, energy=np.full((1, 1), 10.0), zenith=np.zeros((1, 1))), g)
    assert tab["stations_per_event"] == 2.0 and tab["log10_stot_over_e_by_sec"][0] == round(np.log10(8 / 10), 3)
