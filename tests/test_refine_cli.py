"""``hepgen refine train``'s options reach the refiner (config and adapter state), and the adapter options."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hepgen.cli import build_parser, main
from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.traces import write_traces
from _benchmarks import load_benchmark
from hepgen.refine.options import (
    ADAPTER_OPTIONS,
    SHOWER_FLAGS,
    TRACE_FLAGS,
    add_option_flags,
    baseline_noise_vem,
    options_from_flags,
    set_adapter_options,
)
from hepgen.refine.refiner import RefinerConfig, load_refiner
from hepgen.simulate.auger_toy import simulate_auger
from hepgen.simulate.calorimeter import simulate_dataset

TINY = ["--epochs", "1", "--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q"]


def _refine_train(*extra):
    return build_parser().parse_args(["refine", "train", "s.h5", "d.h5", "-o", "run", *extra])


def test_parser_defaults_are_todays_refiner_config():
    a = _refine_train()
    d = RefinerConfig()
    assert (a.lr, a.critic_lr, a.closeness, a.n_critic) == (d.lr, d.critic_lr, d.closeness, d.n_critic)
    assert (a.noise_lr_factor, a.gp_weight, a.critic_warmup, a.ema, a.architecture) == \
        (d.noise_lr_factor, d.gp_weight, d.critic_warmup, d.ema, d.architecture)
    assert a.critic_min_vem is None and a.noise_vem is None and a.measured_noise is False


def _helps(parser: argparse.ArgumentParser) -> dict:
    return {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}


def test_refine_train_and_the_auger_benchmark_share_one_table_of_adapter_options():
    """`hepgen refine train` and benchmarks/bench_refine_auger.py take the trace options from
    TRACE_FLAGS: same flags, same help (the command's prefixed "traces: "), same adapter_options
    from the same arguments; the table with noise_vem is every traces adapter option; the
    benchmark's own default is its critic gate (10 VEM); docs/refine.md lists every flag."""
    bench = load_benchmark("bench_refine_auger").build_parser()
    cli_help, bench_help = _helps(_sub_parser()), _helps(bench)
    flags = {"--" + f.key.replace("_", "-"): f for f in TRACE_FLAGS}
    assert {k: cli_help[k] for k in flags} == {k: "traces: " + f.help for k, f in flags.items()}
    assert {k: bench_help[k] for k in flags} == {k: f.help for k, f in flags.items()}
    assert {f.key for f in TRACE_FLAGS} | {"noise_vem"} == set(ADAPTER_OPTIONS["traces"])
    args = ["--critic-min-vem", "0", "--fill-silent", "--trigger-vem", "3", "--critic-count", "--match-moments", "5",
            "--critic-dropout", "0.25"]
    expected = {"critic_min_vem": 0.0, "trigger_vem": 3.0, "fill_silent": True, "critic_dropout": 0.25,
                "critic_count": True, "match_moments": 5.0}
    assert options_from_flags(_refine_train(*args)) == expected
    assert options_from_flags(bench.parse_args(args)) == expected
    assert options_from_flags(_refine_train()) == {}
    assert options_from_flags(bench.parse_args([])) == {"critic_min_vem": 10.0}
    docs = (Path(__file__).resolve().parents[1] / "docs" / "refine.md").read_text()
    assert [k for k in flags if not re.search(rf"^\| `{k}[ `]", docs, re.M)] == []
    with pytest.raises(ValueError, match=r"defaults: expected number or word options of the table, found \['fill_silent'\]"):
        add_option_flags(argparse.ArgumentParser(), defaults={"fill_silent": True})


def test_refine_train_and_the_shower_benchmark_share_one_table_of_shower_options():
    """`hepgen refine train` and benchmarks/bench_refine_showers.py take --critic-sums, --response,
    --match-response and --match-occupancy from SHOWER_FLAGS: same help (the command's prefixed
    "showers: "), same RefinerConfig keys from the same arguments, --response only one of its words;
    docs/refine.md lists every flag."""
    bench = load_benchmark("bench_refine_showers").build_parser()
    cli_help, bench_help = _helps(_sub_parser()), _helps(bench)
    flags = {"--" + f.key.replace("_", "-"): f for f in SHOWER_FLAGS}
    assert set(flags) == {"--critic-sums", "--critic-sums-head", "--critic-layers", "--layer-noise", "--response",
                          "--match-response", "--match-profile", "--match-occupancy", "--azimuthal-slices",
                          "--response-depth", "--response-fractions", "--critic-counts"}
    docs = (Path(__file__).resolve().parents[1] / "docs" / "refine.md").read_text()
    assert [k for k in flags if not re.search(rf"^\| `{k}[ `]", docs, re.M)] == []      # docs/refine.md lists each
    assert {k: cli_help[k] for k in flags} == {k: "showers: " + f.help for k, f in flags.items()}
    assert {k: bench_help[k] for k in flags} == {k: f.help for k, f in flags.items()}
    args = ["--critic-sums", "--response", "layers", "--match-occupancy", "--match-response", "2"]
    expected = {"critic_sums": True, "response": "layers", "match_response": 2.0, "match_occupancy": True,
                "match_profile": 0.0, "critic_counts": 0.0}
    assert options_from_flags(_refine_train(*args), SHOWER_FLAGS) == expected
    assert options_from_flags(bench.parse_args(args), SHOWER_FLAGS) == expected
    defaults = {"response": "off", "match_response": 0.0, "match_profile": 0.0, "critic_counts": 0.0}
    assert options_from_flags(_refine_train(), SHOWER_FLAGS) == defaults
    assert options_from_flags(bench.parse_args([]), SHOWER_FLAGS) == defaults
    c = RefinerConfig(**options_from_flags(_refine_train(*args), SHOWER_FLAGS))
    assert (c.critic_sums, c.response, c.match_response, c.match_occupancy) == (True, "layers", 2.0, True)
    assert RefinerConfig(**options_from_flags(_refine_train(), SHOWER_FLAGS)).response == "off"
    with pytest.raises(SystemExit):
        _refine_train("--response", "voxels")


def _sub_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for name in ("refine", "train"):
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_parser_reads_every_new_option():
    a = _refine_train("--lr", "1e-3", "--critic-lr", "2e-3", "--closeness", "0.5", "--n-critic", "3",
                      "--noise-lr-factor", "10", "--gp-weight", "5", "--critic-warmup", "7", "--ema", "0",
                      "--architecture", "mlp", "--critic-min-vem", "10", "--noise-vem", "0.07")
    assert (a.lr, a.critic_lr, a.closeness, a.n_critic, a.noise_lr_factor, a.gp_weight, a.critic_warmup, a.ema,
            a.architecture, a.critic_min_vem, a.noise_vem) == (1e-3, 2e-3, 0.5, 3, 10.0, 5.0, 7, 0.0, "mlp", 10.0, 0.07)
    assert _refine_train("--measured-noise").measured_noise is True
    with pytest.raises(SystemExit):  # one noise source at a time
        _refine_train("--noise-vem", "0.07", "--measured-noise")


@pytest.fixture(scope="module")
def trace_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("traces")
    write_traces(d / "sim.h5", simulate_auger(16, "sim", seed=1))
    write_traces(d / "data.h5", simulate_auger(16, "data", seed=2))
    return d


def test_cli_options_reach_the_refiner_traces(trace_files, tmp_path):
    run = tmp_path / "run"
    assert main(["refine", "train", str(trace_files / "sim.h5"), str(trace_files / "data.h5"), "-o", str(run), *TINY,
                 "--lr", "1e-3", "--critic-lr", "2e-3", "--closeness", "0.3", "--n-critic", "2",
                 "--noise-lr-factor", "10", "--gp-weight", "4", "--critic-warmup", "1", "--ema", "0.9",
                 "--critic-min-vem", "10", "--noise-vem", "0.0739"]) == 0
    model, payload = load_refiner(run / "refiner.pt")
    hp = payload["hparams"]
    assert (hp["lr"], hp["critic_lr"], hp["closeness"], hp["n_critic"], hp["noise_lr_factor"], hp["gp_weight"],
            hp["critic_warmup"], hp["ema"]) == (1e-3, 2e-3, 0.3, 2, 10.0, 4.0, 1, 0.9)
    assert payload["preprocessing"]["critic_min_vem"] == 10.0 and payload["preprocessing"]["noise_vem"] == 0.0739
    arch = hp["refiner_architecture"]
    assert arch["name"] == "stations" and arch["critic_min_vem"] == 10.0 and arch["noise_vem"] == 0.0739
    assert model.fixed_noise == pytest.approx(0.0739)


def test_cli_measured_noise_is_the_baseline_difference(trace_files, tmp_path):
    from hepgen.data.traces import read_traces

    run = tmp_path / "run"
    assert main(["refine", "train", str(trace_files / "sim.h5"), str(trace_files / "data.h5"), "-o", str(run), *TINY,
                 "--critic-warmup", "1", "--measured-noise"]) == 0
    _, payload = load_refiner(run / "refiner.pt")
    expect = baseline_noise_vem(read_traces(trace_files / "sim.h5"), read_traces(trace_files / "data.h5"))
    assert payload["preprocessing"]["noise_vem"] == pytest.approx(expect["noise_vem"], rel=1e-12)
    # the toy's noise: sim 0.03 VEM, data 0.08 VEM per bin; on 16 events the tails also hold some signal
    assert 0.03 < expect["sigma_sim"] < expect["sigma_data"] and 0.05 < expect["noise_vem"] < 0.12


def test_cli_architecture_mlp_on_traces(trace_files, tmp_path):
    run = tmp_path / "run"
    assert main(["refine", "train", str(trace_files / "sim.h5"), str(trace_files / "data.h5"), "-o", str(run), *TINY,
                 "--critic-warmup", "1", "--architecture", "mlp"]) == 0
    model, payload = load_refiner(run / "refiner.pt")
    assert payload["hparams"]["architecture"] == "mlp" and payload["hparams"]["refiner_architecture"] is None
    assert type(model).__name__ == "ResidualRefiner"


def test_trace_options_on_showers_refused(tmp_path, capsys):
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(20, geometry=geo, seed=seed, progress=False))
    rc = main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
               *TINY, "--critic-min-vem", "10"])
    assert rc != 0
    assert "refiner option 'critic_min_vem': the adapter of kind 'showers' has no such option" in capsys.readouterr().err
    assert not (tmp_path / "run" / "refiner.pt").exists()


def test_baseline_noise_by_hand_and_bad_options():
    # σ_sim = 0.03, σ_data = 0.05 exactly (±1 patterns): added noise √(0.05² − 0.03²) = 0.04
    def pattern(s):
        t = np.zeros((2, 1, 1, 4))
        t[:, 0, 0] = s * np.array([1.0, -1.0, 1.0, -1.0])
        return SimpleNamespace(traces=t)

    r = baseline_noise_vem(pattern(0.03), pattern(0.05), tail_bins=4)
    assert r["sigma_sim"] == pytest.approx(0.03, abs=1e-15) and r["noise_vem"] == pytest.approx(0.04, abs=1e-15)
    assert baseline_noise_vem(pattern(0.05), pattern(0.03), tail_bins=2)["noise_vem"] == 0.0  # data quieter: none
    with pytest.raises(ValueError, match=r"tail_bins: expected 1 … 4"):
        baseline_noise_vem(pattern(0.03), pattern(0.05), tail_bins=5)
    with pytest.raises(ValueError, match="data: expected triggered stations"):
        baseline_noise_vem(pattern(0.03), SimpleNamespace(traces=np.zeros((2, 1, 1, 4))), tail_bins=4)
    st = {"kind": "traces", "critic_min_vem": 0.0, "noise_vem": None}
    with pytest.raises(ValueError, match=r"refiner option 'critic_min_vem': expected a number >= 0, found -1"):
        set_adapter_options(st, {"critic_min_vem": -1.0})
    with pytest.raises(ValueError, match="'measured' needs the sim and data"):
        set_adapter_options(st, {"noise_vem": "measured"})
    assert set_adapter_options(st, {"noise_vem": None})["noise_vem"] is None and st["critic_min_vem"] == 0.0


def test_shower_sum_groups_are_the_layers_then_all():
    from hepgen.refine.adapters import get_adapter

    geo = CylindricalBinning.regular(3, [0.0, 10.0, 40.0], n_alpha=2)  # 3 layers × 2 r × 2 α = 12 voxels
    d = simulate_dataset(4, geometry=geo, seed=1, progress=False)
    g = get_adapter("showers").sum_groups(d)
    assert g.shape == (4, 12) and g.dtype == np.float32
    np.testing.assert_array_equal(g[:3].sum(axis=0), np.ones(12))  # every voxel in exactly one layer
    np.testing.assert_array_equal(g[:3].sum(axis=1), [4, 4, 4])
    np.testing.assert_array_equal(g[3], np.ones(12))


def test_sums_critic_sees_the_response_by_hand():
    from hepgen.refine.critic_sums import SumsCritic

    # 2 voxels in one group; energies (MeV) and E_inc: responses 0.1 and 0.2
    e = np.array([[50.0, 50.0], [150.0, 50.0]])
    e_inc = np.array([1000.0, 1000.0])
    x, y = np.log1p(e).astype(np.float32), np.log(e_inc)[:, None].astype(np.float32)
    xm, xs, ym, ys = x.mean(0), np.full(2, 0.5, np.float32), y.mean(0), np.ones(1, np.float32)
    class Record(torch.nn.Module):  # records its input
        def forward(self, z):
            self.z = z
            return z[:, 0]

    c = SumsCritic(Record(), np.ones((1, 2), np.float32), xm, xs, 1, x, ym, ys, y)
    z = torch.cat([(torch.from_numpy(x) - torch.from_numpy(xm)) / torch.from_numpy(xs),
                   (torch.from_numpy(y) - torch.from_numpy(ym)) / torch.from_numpy(ys)], dim=1)
    c(z)
    s = np.log(np.array([101.0, 201.0]) / 1000.0)  # log(1 + ΣE) − ln E_inc
    expect = (s - s.mean()) / s.std(ddof=1)
    np.testing.assert_allclose(c.base.z[:, 3].numpy(), expect, rtol=1e-5)
    np.testing.assert_allclose(c.base.z[:, :3].numpy(), z.numpy())


def test_cli_critic_sums_on_showers_and_refused_without_groups(tmp_path, trace_files):
    from hepgen.refine.refiner import train_refiner

    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 *TINY, "--critic-warmup", "1", "--critic-sums"]) == 0
    model, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["critic_sums"] is True
    critic = payload["trainer"]["critic"]
    assert critic["groups"].shape == (3, 8)  # 2 layers + all, 8 voxels
    rng = np.random.default_rng(0)
    x = rng.random((16, 4)).astype(np.float32)
    y = rng.random((16, 1)).astype(np.float32)
    with pytest.raises(ValueError, match=r"refiner config key 'critic_sums': expected sum groups of shape \(G, 4\)"):
        train_refiner(x, y, x, y, RefinerConfig(critic_sums=True, epochs=1, hidden=8, critic_hidden=8), progress=False)


def test_shower_bench_geant4_fallback_and_cache(tmp_path, monkeypatch):
    from _benchmarks import load_benchmark

    bench = load_benchmark("bench_refine_showers")
    monkeypatch.setattr(bench, "have", lambda module: False)  # the geant4 extra "missing"
    data, reason = bench.geant4_data(10, 1, tmp_path)
    assert data is None and reason == "the Geant4 engine needs the optional extra: pip install 'hepgen[geant4]'"
    # a cached file of the expected name is read, not simulated again
    monkeypatch.setattr(bench, "have", lambda module: True)
    geo = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)
    write_showers(tmp_path / "geant4_demo_gamma_n7_seed3.h5", simulate_dataset(7, geometry=geo, seed=1, progress=False))
    data, note = bench.geant4_data(7, 3, tmp_path)
    assert len(data) == 7 and note.startswith("data = Geant4 7 photon showers, preset demo") and "seed 3" in note


def test_both_refine_benchmarks_average_five_classifier_seeds_unless_told():
    showers = load_benchmark("bench_refine_showers")
    for name in ("bench_refine_showers", "bench_refine_auger"):
        p = load_benchmark(name).build_parser()
        assert showers.classifier_seeds(p.parse_args([])) == (0, 1, 2, 3, 4)
        assert showers.classifier_seeds(p.parse_args(["--classifier-seeds", "7"])) == (7,)
