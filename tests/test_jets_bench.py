"""`hepgen bench` of jet checkpoints (issue 21): speed per path and step count, Pythia, fidelity, bad input."""

import json
import sys

import numpy as np
import pytest
import torch

from _toy_jets import toy_jets
from hepgen._extras import have
from hepgen.bench_jets import (
    JET_BENCH_PATHS,
    format_jet_table,
    pythia_rate,
    run_jet_bench,
    write_jet_bench,
)
from hepgen.cli import main
from hepgen.domains.jets import JetGenerator, JetPreprocessor
from hepgen.models import build_model
from hepgen.models.base import MODEL_FAMILIES

P = 6
ROW_KEYS = {"threads", "path", "steps", "batch_size", "calls", "latency_ms_median", "latency_ms_min", "jets_per_s",
            "jets_per_cpu_s", "cpu_per_wall", "peak_rss_mib", "rss_increase_mib", "speedup_vs_pythia"}


@pytest.fixture(scope="module")
def jets():
    return toy_jets(200, n_particles=P, seed=5)


def _generator(jets, family) -> JetGenerator:
    torch.manual_seed(0)
    pre = JetPreprocessor(P, ["type", "pt", "eta"]).fit(jets)
    model = build_model(family, n_features=3 * P, n_conditions=pre.n_conditions,
                        **MODEL_FAMILIES[family].tiny_hparams()).eval()
    return JetGenerator(model, pre, {"pt_range": [800.0, 1200.0], "eta_range": [-2.0, 2.0]})


def test_bench_flow_matching_steps_and_int8(jets):
    gen = _generator(jets, "epic_fm")
    res = run_jet_bench(gen, batch_sizes=[8, 1], threads=[1], paths=["fp32", "int8"], steps=[2, 1], pythia_n=0,
                        min_time=0.01)
    assert res["schema"] == "hepgen.bench_jets/1" and res["steps"] == [2, 1] and res["batch_sizes"] == [1, 8]
    assert len(res["runs"]) == 2 * 2 * 2
    for r in res["runs"]:
        assert ROW_KEYS <= set(r) and r["calls"] >= 3
        assert r["jets_per_s"] > 0 and r["jets_per_cpu_s"] > 0 and r["latency_ms_min"] <= r["latency_ms_median"]
        assert r["speedup_vs_pythia"] is None
    assert {(r["path"], r["steps"]) for r in res["runs"]} == {(p, k) for p in ("fp32", "int8") for k in (2, 1)}
    assert res["best"]["1"]["jets_per_cpu_s"] == max(r["jets_per_cpu_s"] for r in res["runs"])
    # matmul FLOPs per jet grow with the solver steps: two network calls per midpoint step
    f2, f1 = res["flops_per_jet"]["2"], res["flops_per_jet"]["1"]
    assert f1 > 0 and f2 == pytest.approx(2 * f1, rel=1e-6)
    assert res["pythia"] == {"available": False, "reason": "Pythia timing disabled (--n-pythia 0; at least 2 jets)"}


@pytest.mark.skipif(not have("onnxruntime") or not have("onnxscript"), reason="needs hepgen[onnx]")
def test_bench_gan_all_paths_with_fidelity(jets, tmp_path):
    gen = _generator(jets, "epic_gan")
    real = toy_jets(120, n_particles=P, seed=6)
    paths = [p for p in JET_BENCH_PATHS if p != "compile"]  # compiling is slow: the test below covers it
    res = run_jet_bench(gen, batch_sizes=[1, 16], threads=[1], paths=paths, steps=[4], pythia_n=0,
                        min_time=0.01, fidelity_n=100, real=real)
    assert [r["steps"] for r in res["runs"]] == [None] * 8 and res["notes"][0].startswith("--steps ignored")
    assert {r["path"] for r in res["runs"]} == set(paths)
    assert all(r["jets_per_cpu_s"] > 0 for r in res["runs"]) and res["onnx_export_s"]["None"] > 0
    fid = res["fidelity"]
    assert fid["n"] == 100 and set(fid["paths"]) == set(paths)
    assert fid["paths"]["fp32"]["max_abs_diff_vs_fp32"] == 0.0
    assert fid["paths"]["ort"]["max_abs_diff_vs_fp32"] < 1e-3  # the same graph, float rounding
    assert all(r["warmup_s"] > 0 for r in res["runs"])
    # the quantised path changes the jets (slots may also swap places in the pT sorting)
    assert 0 < fid["paths"]["int8"]["max_abs_diff_vs_fp32"] < np.inf
    for row in fid["paths"].values():
        assert row["w1m"] > 0 and row["w1p"] > 0 and ("fpd" in row) == have("energyflow")
    assert abs(fid["paths"]["ort"]["w1m"] - fid["paths"]["fp32"]["w1m"]) < 1e-3
    js, png = write_jet_bench(res, tmp_path)
    assert json.loads(js.read_text())["schema"] == "hepgen.bench_jets/1" and png.stat().st_size > 1000
    text = format_jet_table(res)
    assert "fidelity ort-int8" in text and "ort-int8" in text.splitlines()[-len(paths) - 3]


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch._dynamo's import
def test_bench_compile_path_solves_the_same_ode(jets):
    # the whole sampler compiled, the ODE loop unrolled: the same jets as fp32 up to float rounding;
    # one batch shape (timing and fidelity both 20 jets), so one compilation
    gen = _generator(jets, "epic_fm")
    real = toy_jets(20, n_particles=P, seed=7)
    res = run_jet_bench(gen, batch_sizes=[20], threads=[1], paths=["fp32", "compile"], steps=[1], pythia_n=0,
                        min_time=0.01, fidelity_n=20, real=real)
    assert [(r["path"], r["steps"]) for r in res["runs"]] == [("fp32", 1), ("compile", 1)]
    assert all(r["jets_per_cpu_s"] > 0 for r in res["runs"])
    diff = res["fidelity"]["paths"]["compile"]["max_abs_diff_vs_fp32"]
    assert diff < 1e-3
    assert res["fidelity"]["paths"]["compile"]["w1m"] == pytest.approx(res["fidelity"]["paths"]["fp32"]["w1m"],
                                                                       abs=1e-4)


@pytest.mark.skipif(not have("pythia8mc") or not have("fastjet"), reason="needs hepgen[jets]")
def test_pythia_rate_and_speedup(jets):
    p = pythia_rate(["g"], 5, P, seed=1)
    g = p["types"]["g"]
    assert p["available"] and g["jets"] == 5 and g["cpu_s"] > 0 and g["init_and_one_jet_cpu_s"] > 0
    marginal = 4 / (g["cpu_s"] - g["init_and_one_jet_cpu_s"]) if g["cpu_s"] > g["init_and_one_jet_cpu_s"] else 5 / g["cpu_s"]
    assert g["jets_per_cpu_s"] == pytest.approx(marginal) and g["jets_per_cpu_s_with_init"] == pytest.approx(5 / g["cpu_s"])
    gen = _generator(toy_jets(50, n_particles=P, types=(0,)), "epic_gan")  # one type: one Pythia process timed
    res = run_jet_bench(gen, batch_sizes=[4], threads=[1], paths=["fp32"], pythia_n=5, min_time=0.01)
    r = res["runs"][0]
    assert r["speedup_vs_pythia"] == pytest.approx(r["jets_per_cpu_s"] / res["pythia"]["jets_per_cpu_s"])
    assert list(res["pythia"]["types"]) == ["g"]


def test_missing_jets_extra_is_one_note(jets, monkeypatch):
    import hepgen.bench_jets as bj

    monkeypatch.setattr(bj, "have", lambda m: m not in ("pythia8mc", "fastjet", "awkward", "energyflow"))
    res = run_jet_bench(_generator(jets, "epic_gan"), batch_sizes=[2], threads=[1], paths=["fp32"], pythia_n=10,
                        min_time=0.01)
    assert res["pythia"]["available"] is False
    assert res["notes"] == [("no speed-up against Pythia: the speed-up against Pythia 8 + FastJet needs the optional "
                             "extra: pip install 'hepgen[jets]'")]
    assert res["runs"][0]["speedup_vs_pythia"] is None


def test_bad_input_one_line(jets, tmp_path, capsys, monkeypatch):
    gen = _generator(jets, "epic_gan")
    with pytest.raises(ValueError, match=r"paths \['bf16'\]: expected names from"):
        run_jet_bench(gen, paths=["fp32", "bf16"])
    with pytest.raises(ValueError, match="needs --real"):
        run_jet_bench(gen, paths=["fp32"], fidelity_n=10)
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        run_jet_bench(gen, batch_sizes=[0])
    gen.save(tmp_path / "gan.pt")
    ckpt = str(tmp_path / "gan.pt")
    assert main(["bench", ckpt, "-o", str(tmp_path / "b"), "--paths", "fp32,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "paths ['bogus']" in err
    assert main(["bench", ckpt, "-o", str(tmp_path / "b"), "--device", "cuda"]) == 2
    assert "CPU only" in capsys.readouterr().err
    # the onnx extra missing: one line naming it (no traceback)
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["bench", ckpt, "-o", str(tmp_path / "b"), "--paths", "ort", "--threads", "1", "--batch-sizes", "2",
                 "--n-pythia", "0", "--min-time", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'hepgen[onnx]'" in err


def test_cli_bench_jets_checkpoint(jets, tmp_path, capsys):
    gen = _generator(jets, "epic_fm")
    gen.save(tmp_path / "fm.pt")
    out = tmp_path / "bench"
    assert main(["bench", str(tmp_path / "fm.pt"), "-o", str(out), "--threads", "1", "--batch-sizes", "1,4",
                 "--paths", "fp32", "--steps", "2", "--n-pythia", "0", "--min-time", "0.01", "-q"]) == 0
    text = capsys.readouterr().out
    res = json.loads((out / "bench.json").read_text())
    assert res["family"] == "epic_fm" and res["steps"] == [2] and len(res["runs"]) == 2
    assert (out / "bench.png").is_file() and "jets/CPU-s" in text and "Pythia timing disabled" in text
    assert np.isfinite([r["jets_per_cpu_s"] for r in res["runs"]]).all()
