"""hepgen.bench_events and ``hepgen bench`` on events checkpoints: the points and their arithmetic,
the simulator's marginal cost by differencing (a fake simulator with a known cost), the speed-up as
the ratio of CPU seconds per image, the ensemble path rule, bench.json / bench.png, bad input."""

import json

import numpy as np
import pytest

import hepgen.bench_events as be
from _toy_events import toy_events, untrained_dcgan
from hepgen.cli import main
from hepgen.domains.events import EventEnsemble


class _FakeEvents:
    def __init__(self, attrs):
        self.attrs = attrs


def _fake_generate(calls):
    """A stand-in for generate_events: 10 s of initialisation + 40 ms CPU (50 ms wall) per image."""
    def generate(process, n_events, seed, config, masses=None, mu=0.0):
        calls.append((process, n_events, masses, mu))
        return _FakeEvents({"process_seconds": 10.0 + 0.04 * n_events, "seconds": 12.0 + 0.05 * n_events})
    return generate


def test_simulator_cost_differences_two_runs_at_the_condition_point():
    calls = []
    c = be.simulator_cost([1200.0, 400.0, 0.0], 60, seed=3, generate=_fake_generate(calls))
    assert calls == [("signal", 3, (1200.0, 400.0), 0.0), ("signal", 63, (1200.0, 400.0), 0.0)]
    assert c["process"] == "signal" and c["masses"] == [1200.0, 400.0] and c["n"] == [3, 63]
    assert c["cpu_s_per_image"] == pytest.approx(0.04, rel=1e-12)
    assert c["wall_s_per_image"] == pytest.approx(0.05, rel=1e-12)
    calls.clear()
    c = be.simulator_cost([0.0, 0.0, 50.0], 10, generate=_fake_generate(calls))
    assert calls[0][0] == "minbias" and calls[0][3] == 50.0 and c["mu"] == 50.0 and c["n"] == [1, 11]
    with pytest.raises(ValueError, match="n: expected >= 1 images, found 0"):
        be.simulator_cost([0.0, 0.0, 20.0], 0)


def test_run_event_bench_points_and_speedup(monkeypatch):
    data = toy_events(8, seed=1)
    gen = untrained_dcgan(data)
    monkeypatch.setattr(be, "generate_events", _fake_generate([]))
    res = be.run_event_bench(gen, batch_sizes=[1, 4], threads=[1], paths=["fp32", "channels_last"], simulator_n=20,
                             min_time=0.01, progress=False)
    assert [(p["path"], p["batch_size"]) for p in res["points"]] == [("fp32", 1), ("fp32", 4), ("channels_last", 1),
                                                                     ("channels_last", 4)]
    assert res["condition"] == [float(v) for v in gen.meta["condition_points"][0]]
    assert res["simulator"]["cpu_s_per_image"] == pytest.approx(0.04) and res["simulator"]["process"] == "signal"
    for p in res["points"]:
        assert p["calls"] >= 3 and p["ms_per_image_cpu"] > 0 and p["ms_per_image_wall"] > 0
        assert p["speedup_vs_simulator"] == pytest.approx(40.0 / p["ms_per_image_cpu"], rel=1e-12)
    assert not res["calibrated"] and res["family"] == "dcgan"
    text = be.format_event_table(res)
    assert "40.00 ms CPU (50.00 ms wall) per signal event at (1000, 300) GeV" in text
    assert len(text.splitlines()) == 3 + 4


def test_ensemble_paths_and_bad_input():
    data = toy_events(6, seed=2)
    ens = EventEnsemble([untrained_dcgan(data), untrained_dcgan(data)])
    res = be.run_event_bench(ens, batch_sizes=[2], threads=[1], paths=["bf16"], simulator_n=0, min_time=0.01,
                             progress=False, condition=[1400.0, 400.0, 0.0])
    assert res["simulator"] is None and res["points"][0]["speedup_vs_simulator"] is None
    assert res["family"] == "ensemble" and res["condition"] == [1400.0, 400.0, 0.0]
    with pytest.raises(ValueError, match="an ensemble checkpoint samples through its members"):
        be.run_event_bench(ens, paths=["bf16-compile"], simulator_n=0)
    with pytest.raises(ValueError, match=r"expected paths among .* for an events checkpoint, found \['int8'\]"):
        be.run_event_bench(ens, paths=["int8"], simulator_n=0)
    with pytest.raises(ValueError, match=r"expected positive batch sizes, found \[0\]"):
        be.run_event_bench(ens, batch_sizes=[0], simulator_n=0)


def test_cli_bench_events_writes_json_and_plot(tmp_path, capsys):
    data = toy_events(8, seed=3)
    untrained_dcgan(data).save(tmp_path / "g.pt")
    assert main(["bench", str(tmp_path / "g.pt"), "-o", str(tmp_path / "out"), "--batch-sizes", "2,4",
                 "--threads", "1", "--n-pythia", "0", "--min-time", "0.01", "-q"]) == 0
    out = capsys.readouterr().out
    got = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert got["schema"] == be.EVENT_BENCH_SCHEMA and [p["path"] for p in got["points"]] == ["fp32"] * 2 + ["bf16"] * 2
    assert "simulator: not measured (--n-pythia 0)" in out and (tmp_path / "out" / "bench.png").stat().st_size > 1000
    for p in got["points"]:
        assert f"{p['ms_per_image_cpu']:13.3f}" in out
    assert np.isfinite([p["ms_per_image_wall"] for p in got["points"]]).all()
    assert main(["bench", str(tmp_path / "g.pt"), "-o", str(tmp_path / "bad"), "--device", "cuda", "--n-pythia", "0"]) == 2
    assert "--device cuda: hepgen bench of an events checkpoint runs on the CPU only" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
