"""Geant4's cost per shower for the speed-ups of ``hepgen bench`` and ``hepgen demo``.

The arithmetic is tested with a stand-in engine whose "seconds" are a known function of the
energy (no clock involved); one test runs the real engine, in a subprocess (one Geant4 run
manager per process), through ``hepgen bench``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hepgen.bench import format_table, run_bench
from hepgen.config import DemoConfig, TrainConfig
from hepgen.data.geometry import CylindricalBinning, default_binning
from hepgen.demo import run_demo
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.simulate.geant4 import timing
from hepgen.simulate.geant4.timing import describe, stratified_log_energies, time_geant4_showers, twin_preset

K = 2e-5  # stand-in engine: seconds per MeV


class FakeEngine:
    """Stands in for Geant4Engine: 'seconds' = K × energy, every call recorded."""

    def __init__(self):
        self.calls = []

    def simulate(self, energies, particle="gamma", seed=1, **_):
        e = np.asarray(energies, dtype=float)
        self.calls.append((e.copy(), particle, seed))
        return {"showers": np.zeros((len(e), 384), np.float32), "seconds": K * float(e.sum())}


def _patch(mp, engine, presets_seen=None):
    mp.setattr(timing, "_unavailable", lambda: None)
    mp.setattr(timing._engine, "geant4_version", lambda: "geant4-fake")

    def get_engine(preset):
        if presets_seen is not None:
            presets_seen.append(preset)
        return engine

    mp.setattr(timing, "get_engine", get_engine)


def test_stratified_energies_average_a_linear_cost_like_the_spectrum():
    np.testing.assert_allclose(stratified_log_energies(1.0, 100.0, 2), [10**0.5, 10**1.5], rtol=1e-12)
    # t ∝ E: the exact mean of E over log-uniform [lo, hi] is (hi − lo) / ln(hi/lo) = 21.498 GeV
    # for 1–100 GeV.  The midpoints' mean is, summing the geometric series, that times x / sinh(x)
    # with x = ln(hi/lo) / 2n: 0.22 % low for 20 strata
    exact = (100.0 - 1.0) / np.log(100.0)
    x = np.log(100.0) / 40
    mean = stratified_log_energies(1.0, 100.0, 20).mean()
    assert mean == pytest.approx(exact * x / np.sinh(x), rel=1e-12)
    assert mean == pytest.approx(exact, rel=2.5e-3)
    with pytest.raises(ValueError, match=r"^energy_range: expected 0 < lo <= hi MeV, found \(0.0, 1.0\)$"):
        stratified_log_energies(0.0, 1.0, 3)


def test_time_geant4_showers_is_the_mean_of_the_timed_showers(monkeypatch):
    eng, seen = FakeEngine(), []
    _patch(monkeypatch, eng, seen)
    r = time_geant4_showers(default_binning(), (2000.0, 20000.0), n=5, seed=3)
    strata = stratified_log_energies(2000.0, 20000.0, 5)
    assert r["available"] and r["preset"] == "demo" and seen == ["demo"] and r["particle"] == "gamma"
    # one warm-up shower at the lowest energy, not counted; then one run per stratum
    assert eng.calls[0][0].tolist() == [2000.0] and len(eng.calls) == 6
    assert sorted(float(c[0][0]) for c in eng.calls[1:]) == pytest.approx(sorted(strata))
    assert r["n_showers"] == 5 and not r["stopped_at_budget"]
    assert r["s_per_shower"] == pytest.approx(K * strata.mean(), rel=1e-12)
    assert r["seconds"] == pytest.approx(K * strata.sum(), rel=1e-12)
    assert r["energy_range_mev"] == [2000.0, 20000.0] and r["geant4_version"] == "geant4-fake"
    assert len({c[2] for c in eng.calls}) == 6 and min(c[2] for c in eng.calls) >= 1  # valid, distinct seeds
    json.dumps(r, allow_nan=False)
    assert describe(r).startswith("Geant4 (preset demo, gamma, same binning, one core): ")
    # the time budget stops the timing; the estimate is the mean of the showers done
    eng2 = FakeEngine()
    _patch(monkeypatch, eng2)
    r = time_geant4_showers(default_binning(), (2000.0, 20000.0), n=5, max_seconds=K * 2000.0, seed=0)
    assert r["stopped_at_budget"] and 1 <= r["n_showers"] < 5
    done = np.array([e for e, _ in r["showers"]])
    assert r["s_per_shower"] == pytest.approx(K * done.mean(), rel=1e-12)
    assert "stopped at the time budget" in describe(r)


def test_reasons_when_geant4_is_not_timed(monkeypatch):
    assert time_geant4_showers(default_binning(), (1e3, 1e5), n=0) == {
        "available": False, "reason": "Geant4 timing disabled (0 showers requested)"}
    monkeypatch.setattr(timing._engine, "g4", None)  # the extra is missing
    r = time_geant4_showers(default_binning(), (1e3, 1e5), n=3)
    assert r == {"available": False, "reason": "the optional extra is not installed (pip install 'hepgen[geant4]')"}
    assert describe(r) == "Geant4: not timed: the optional extra is not installed (pip install 'hepgen[geant4]')"
    monkeypatch.setattr(timing, "_unavailable", lambda: None)
    odd = CylindricalBinning.regular(2, [0, 5, 10], n_alpha=2)
    assert twin_preset(odd) is None
    r = time_geant4_showers(odd, (1e3, 1e5), n=3)
    assert not r["available"] and r["reason"].startswith("no Geant4 preset has this binning (8 voxels); presets ")

    def busy(preset):
        raise RuntimeError("this process already runs Geant4 with preset 'ds2', cut 0.7 mm\nmore")

    monkeypatch.setattr(timing, "get_engine", busy)
    r = time_geant4_showers(default_binning(), (1e3, 1e5), n=3)
    assert r == {"available": False, "reason": "this process already runs Geant4 with preset 'ds2', cut 0.7 mm"}
    with pytest.raises(ValueError, match=r"^n: expected >= 0 Geant4 showers to time, found -1$"):
        time_geant4_showers(default_binning(), (1e3, 1e5), n=-1)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A tiny demo on the default binning, with the stand-in Geant4 engine."""
    out = tmp_path_factory.mktemp("demo_g4")
    config = DemoConfig(n_train=400, n_test=200, energy_range=(2000.0, 20000.0), seed=2,
                        train=TrainConfig(family="flow", model={"transforms": 2, "hidden_features": 16},
                                          epochs=1, batch_size=128),
                        geant4_n=4)
    eng = FakeEngine()
    with pytest.MonkeyPatch.context() as mp:
        _patch(mp, eng)
        summary = run_demo(out, config, progress=False)
    return out, config, summary, eng


def test_demo_reports_speedup_vs_geant4(demo_run, capsys):
    out, config, summary, eng = demo_run
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    t = metrics["timing"]
    strata = stratified_log_energies(2000.0, 20000.0, 4)
    # Geant4's s/shower is the stand-in's seconds over the 4 strata of the demo's spectrum ...
    assert t["geant4_s_per_shower"] == pytest.approx(K * strata.mean(), rel=1e-12)
    assert t["geant4_showers_timed"] == 4 and t["geant4_energy_range_mev"] == list(config.energy_range)
    # ... and the speed-up is the generator's showers/s times it
    assert t["speedup_vs_geant4"] == pytest.approx(t["generator_showers_per_s"] * t["geant4_s_per_shower"], rel=1e-9)
    assert summary["speedup_vs_geant4"] == t["speedup_vs_geant4"]
    g4 = metrics["geant4_timing"]
    assert g4["preset"] == "demo" and len(g4["showers"]) == 4 and g4["method"] == timing.METHOD
    assert len(eng.calls) == 5  # warm-up + 4


def test_bench_reports_speedup_vs_geant4(demo_run, monkeypatch):
    out, _, _, _ = demo_run
    gen = ShowerGenerator.load(out / "run" / "best.pt")
    assert twin_preset(gen.geometry) == "demo"  # the checkpoint's geometry finds the twin
    eng = FakeEngine()
    _patch(monkeypatch, eng)
    res = run_bench(gen, batch_sizes=[16], threads=[1], devices=["cpu"], paths=["fp32"], simulator_n=20,
                    min_time=0.01, geant4_n=3)
    lo, hi = gen.meta["energy_range"]
    s = K * stratified_log_energies(lo, hi, 3).mean()
    assert res["geant4"]["s_per_shower"] == pytest.approx(s, rel=1e-12)
    for r in res["runs"]:
        assert r["speedup_vs_geant4"] == pytest.approx(r["showers_per_s"] * s, rel=1e-12)
    table = format_table(res)
    assert "x Geant4" in table and "Geant4 (preset demo, gamma, same binning, one core)" in table
    res = run_bench(gen, batch_sizes=[16], threads=[1], devices=["cpu"], paths=["fp32"], simulator_n=20,
                    min_time=0.01, geant4_n=0)
    assert all(r["speedup_vs_geant4"] is None for r in res["runs"])
    table = format_table(res)
    assert "x Geant4" not in table and "Geant4: not timed: Geant4 timing disabled" in table


def test_cli_bench_times_real_geant4(demo_run, tmp_path):
    pytest.importorskip("geant4_pybind")
    out, _, _, _ = demo_run
    code = "import sys; from hepgen.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "bench", str(out / "run" / "best.pt"), "-o", str(tmp_path),
                          "--batch-sizes", "16", "--threads", "1", "--device", "cpu", "--paths", "fp32",
                          "--simulator-n", "20", "--min-time", "0.01", "--n-geant4", "2", "-q"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "x Geant4" in res.stdout and "Geant4 (preset demo, gamma, same binning, one core)" in res.stdout
    g4 = json.loads((tmp_path / "bench.json").read_text())["geant4"]
    assert g4["available"] and g4["n_showers"] == 2 and g4["geant4_version"].startswith("geant4-11")
    assert g4["s_per_shower"] == pytest.approx(sum(s for _, s in g4["showers"]) / 2, rel=1e-12)
    assert 1e-4 < g4["s_per_shower"] < 10.0  # 2–20 GeV photons: ≈ 0.02–0.2 s on one core
