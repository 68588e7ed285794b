"""benchmarks/profile_sampling.py: the categories of profiled operators and one profiled run."""

import doctest

import pytest
import torch

from _benchmarks import load_benchmark
from hepgen.config import TrainConfig
from hepgen.data.geometry import CylindricalBinning
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import train

prof = load_benchmark("profile_sampling")


def test_categories_and_sums_worked_by_hand():
    events = [("aten::addmm", 3000.0), ("mkl::_mkl_linear", 1000.0), ("aten::copy_", 400.0),
              ("graph_1_cpp_fused_abs_add_exp_3", 2000.0), ("aten::normal_", 200.0),
              ("## Call CompiledFxGraph fxyz", 100.0), ("aten::gather", 300.0)]
    sums = prof.summarise(events, calls=4)                  # µs over 4 calls -> ms per call
    assert sums == pytest.approx({"matmul": 1.0, "copies": 0.1, "compiled kernels": 0.5, "noise": 0.05,
                                  "wrappers": 0.025, "other operators": 0.075}, rel=1e-12)


def test_the_scripts_docstring_examples():
    # benchmarks/ is outside the suite's doctest collection (testpaths): run this script's here
    res = doctest.testmod(prof)
    assert res.attempted >= 2 and res.failed == 0


def test_profile_of_a_tiny_flow(tmp_path, capsys):
    geometry = CylindricalBinning.regular(2, [0, 5, 10, 20], n_alpha=2)
    data = simulate_dataset(300, geometry=geometry, energy_range=(2e3, 5e4), seed=3)
    config = TrainConfig(model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=1,
                         batch_size=100, seed=0)
    train(data, config, tmp_path / "run", progress=False)
    torch_threads = torch.get_num_threads()
    try:
        res = prof.main([str(tmp_path / "run" / "best.pt"), "--path", "fp32", "--batch", "64",
                         "--threads", "1", "--calls", "3", "--top", "3"])
    finally:
        torch.set_num_threads(torch_threads)
    ms = res["ms_per_call"]
    # the network's products are found and are part, not all, of the time (the affine
    # transforms and the decoding are element-wise operators)
    assert 0 < ms["matmul"] < res["profiled_ms_per_call"] and ms["other operators"] > 0
    assert res["matmul_efficiency"] == pytest.approx(
        res["flops_per_shower"] * 64 / (ms["matmul"] / 1e3) / res["matmul_flops"])
    assert res["roofline_ratio"] == pytest.approx(res["flops_per_shower"] * res["showers_per_s"]
                                                  / res["matmul_flops"])
    # --top: the three largest single events, largest first, each within its category's sum
    top = res["top_events"]
    assert len(top) == 3 and [t[0] for t in top] == sorted((t[0] for t in top), reverse=True)
    assert all(0 < t_ms <= ms[prof.category(name)] * (1 + 1e-9) for t_ms, name in top)
    out = capsys.readouterr().out
    assert "matmul efficiency" in out and f"{res['showers_per_s']:,.0f} showers/s" in out
