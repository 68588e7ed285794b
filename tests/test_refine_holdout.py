"""Refiners measured on new, large samples: hepgen.refine.proof.holdout_aucs and benchmarks/bench_refine_holdout.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.adapters import get_adapter
from hepgen.refine.proof import holdout_aucs, refinement_aucs
from hepgen.refine.refiner import ResidualRefiner, save_refiner
from hepgen.simulate.auger_toy import simulate_auger
from hepgen.simulate.calorimeter import simulate_dataset


def _identity(path, sim, kind="showers"):
    state = get_adapter(kind).fit(sim)
    d = sim.showers.shape[1] if kind == "showers" else get_adapter(kind).to_arrays(sim, state)[0].shape[1]
    save_refiner(path, ResidualRefiner(d, len(state["labels"]), hidden=8, stochastic=False,
                                       clip_min=0.0), kind=kind, preprocessing=state)
    return path


@pytest.fixture(scope="module")
def pair():
    sim = simulate_dataset(200, seed=1, progress=False)
    data = simulate_dataset(400, seed=2, progress=False)
    data.showers = data.showers * 2.0  # a difference the summaries (E_tot/E_inc) see
    return sim, data


def test_identity_refiners_give_the_raw_aucs_and_the_null_sits_at_one_half(pair, tmp_path):
    sim, data = pair
    cks = [_identity(tmp_path / "a.pt", sim), _identity(tmp_path / "b.pt", sim)]
    r = holdout_aucs(cks, sim, data, seeds=(0, 1), null=True)
    assert r["sizes"] == {"sim": 200, "data": 200, "null": 200} and r["seeds"] == [0, 1]
    for c in map(str, cks):
        for lev in ("auc_low_level", "auc_high_level"):
            # an identity refiner returns sim's events (to float rounding of the adapter's round trip)
            assert r["refined vs data"][c][lev]["auc"] == pytest.approx(r["sim vs data"][lev]["auc"], abs=0.02)
            assert len(r["refined vs data"][c][lev]["auc_seeds"]) == 2
    assert r["over_checkpoints"]["auc_high_level"][1] == pytest.approx(0.0, abs=1e-12)  # two equal refiners
    assert list(r["rocs"]) == ["sim vs data", "refined #0 (a.pt) vs data", "refined #1 (b.pt) vs data",
                               "data B vs data A (null)"]
    # data is twice sim: the summaries show it; data B vs data A (the same distribution) do not
    assert r["sim vs data"]["auc_high_level"]["auc"] > 0.75, r["sim vs data"]
    assert abs(r["null"]["auc_high_level"]["auc"] - 0.5) < 0.12, r["null"]
    # the null compares the two halves of data, the others the first half: the same as calling by hand
    ad = get_adapter("showers")
    state = ad.fit(sim)
    a, b = data.subset(np.arange(200)), data.subset(np.arange(200, 400))
    names = sorted(ad.summaries(a))
    by_hand, _ = refinement_aucs({"data": np.hstack(ad.to_arrays(a, state)), "sim": np.hstack(ad.to_arrays(b, state))},
                                 {"data": np.stack([ad.summaries(a)[n] for n in names], 1),
                                  "sim": np.stack([ad.summaries(b)[n] for n in names], 1)}, seeds=(0, 1))
    assert r["null"]["auc_high_level"]["auc"] == pytest.approx(by_hand["auc_high_level"]["sim vs data"]["auc"],
                                                               abs=1e-12)


def test_holdout_refuses_mixed_kinds_other_layouts_and_no_checkpoint(pair, tmp_path):
    sim, data = pair
    shower_ck = _identity(tmp_path / "s.pt", sim)
    toy = simulate_auger(60, mode="sim", seed=0)
    trace_ck = _identity(tmp_path / "t.pt", toy, kind="traces")
    with pytest.raises(ValueError, match=r"t\.pt: key 'kind': expected 'showers' \(the first checkpoint's\), "
                                         r"found 'traces'"):
        holdout_aucs([shower_ck, trace_ck], sim, data)
    other = simulate_dataset(60, geometry=CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2), seed=3,
                             progress=False)
    with pytest.raises(ValueError, match="other.h5: detector layout differs from the refiner's training files"):
        holdout_aucs([shower_ck], other, other, sim_source="other.h5")
    with pytest.raises(ValueError, match="expected at least one refiner checkpoint, found none"):
        holdout_aucs([], sim, data)


def test_holdout_benchmark_writes_its_figures_and_report(pair, tmp_path, monkeypatch, capsys):
    from _benchmarks import load_benchmark

    bench = load_benchmark("bench_refine_holdout")
    sim, data = pair
    write_showers(tmp_path / "sim.h5", sim)
    write_showers(tmp_path / "data.h5", data)
    ck = _identity(tmp_path / "id.pt", sim)
    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["bench", str(ck), "--sim", str(tmp_path / "sim.h5"), "--data",
                                     str(tmp_path / "data.h5"), "--null", "--classifier-seeds", "0", "-o", str(out)])
    bench.main()
    r = json.loads((out / "holdout.json").read_text())
    assert r["sizes"] == {"sim": 200, "data": 200, "null": 200} and "rocs" not in r
    assert r["notes"][0] == f"sim = {tmp_path / 'sim.h5'}"
    page = (out / "report.html").read_text()
    assert "data B vs data A (null)" in page and "data:image/png;base64," in page
    printed = capsys.readouterr().out
    assert f"refined vs data [{ck}]: AUC {r['refined vs data'][str(ck)]['auc_low_level']['auc']:.3f}" in printed


def test_toy_holdout_samples_are_new_events_of_the_asked_sizes():
    from _benchmarks import load_benchmark

    bench = load_benchmark("bench_refine_holdout")
    sim, data = bench.toy_samples(40, null=True)
    assert len(sim) == 40 and len(data) == 80
    # not the benchmark's own streams (integer seeds 11 and 12)
    assert not np.array_equal(sim.traces, simulate_auger(40, mode="sim", seed=11).traces)
    assert not np.array_equal(data.traces[:40], simulate_auger(40, mode="data", seed=12).traces)


def test_shower_benchmark_measures_its_refiners_on_new_geant4_showers(tmp_path, monkeypatch, capsys):
    """``--holdout-geant4 N``: N cached Geant4 showers of the hold-out seed (halves A and B) and N/2 new GFlash."""
    from argparse import Namespace

    from _benchmarks import load_benchmark

    bench = load_benchmark("bench_refine_showers")
    monkeypatch.setattr(bench, "have", lambda module: True)
    write_showers(tmp_path / "geant4_demo_gamma_n120_seed2.h5", simulate_dataset(120, seed=7, progress=False))
    ck = _identity(tmp_path / "id.pt", simulate_dataset(60, seed=1, progress=False))
    a = Namespace(holdout_geant4=120, holdout_seed=2, cache=str(tmp_path), classifier_seeds="0", out=str(tmp_path))
    bench.holdout(a, [ck])
    r = json.loads((tmp_path / "holdout.json").read_text())
    assert r["sizes"] == {"sim": 60, "data": 60, "null": 60}
    assert "seed 2" in r["notes"][0] and r["notes"][1] == "sim = 60 new GFlash showers, seed 5"
    assert "data B vs data A (null)" in capsys.readouterr().out
    bench.holdout(Namespace(holdout_geant4=0), [ck])  # without the option: nothing (no file of another name read)


@pytest.mark.parametrize(("name", "argv", "message"), [
    ("bench_refine_showers", ["--holdout-geant4", "100"], "--holdout-geant4 needs --geant4"),
    ("bench_refine_showers", ["--geant4", "10", "--geant4-seed", "3", "--holdout-geant4", "100", "--holdout-seed", "3"],
     "--holdout-seed 3 is --geant4-seed"),
    ("bench_refine_auger", ["--holdout-events", "100", "--sim", "x.h5"], "--holdout-events needs the toy"),
])
def test_benchmarks_refuse_a_holdout_without_its_source(name, argv, message, monkeypatch, capsys):
    from _benchmarks import load_benchmark

    monkeypatch.setattr("sys.argv", [name, *argv])
    with pytest.raises(SystemExit):
        load_benchmark(name).main()
    assert message in capsys.readouterr().err


def test_holdout_benchmark_refuses_files_and_sources_of_another_kind(pair, tmp_path, monkeypatch, capsys):
    from _benchmarks import load_benchmark

    from hepgen.data.traces import write_traces

    bench = load_benchmark("bench_refine_holdout")
    sim, _ = pair
    ck = _identity(tmp_path / "id.pt", sim)
    write_traces(tmp_path / "toy.h5", simulate_auger(60, mode="data", seed=0))
    monkeypatch.setattr("sys.argv", ["bench", str(ck), "--gflash", "60", "--data", str(tmp_path / "toy.h5")])
    with pytest.raises(SystemExit, match=r"toy\.h5: key 'kind': expected 'showers' \(the refiners'\), found 'traces'"):
        bench.main()
    monkeypatch.setattr("sys.argv", ["bench", str(ck), "--toy", "60"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "id.pt: key 'kind': expected 'traces' (--toy), found 'showers'" in capsys.readouterr().err
