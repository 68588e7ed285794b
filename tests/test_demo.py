"""`hepgen demo` on a tiny configuration: every stage runs and every promised output exists."""

import json
import logging

import pytest

from hepgen.config import DemoConfig, TrainConfig
from hepgen.demo import run_demo
from hepgen.domains.showers.inference import auto_sampling_path


def test_demo_writes_report_and_headline(tmp_path, capsys, caplog, monkeypatch):
    config = DemoConfig(n_train=600, n_test=300, energy_range=(2000.0, 20000.0), seed=3,
                        train=TrainConfig(epochs=1),
                        distill={"rounds": 1, "n_pairs": 300, "n_val": 100, "hidden": 16, "n_hidden": 1},
                        geant4_n=0)  # Geant4 timing: tests/test_geant4_timing.py
    assert config.sampling_path == "auto"  # the default: compile-bf16 where bf16 is native, else compile
    # compiling takes minutes on a CPU: here the compilation fails (as without a C++ compiler),
    # and the demo falls back to fp32
    import hepgen.demo

    def no_compiler(sampler, path, device="cpu"):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(hepgen.demo, "prepare_path", no_compiler)
    with caplog.at_level(logging.INFO, logger="hepgen"):
        summary = run_demo(tmp_path, config, progress=False)
    assert "hepgen demo: seed 3;" in caplog.text  # the demo's own seed, not the command line's (none)
    for name in ("data/train.h5", "data/test.h5", "data/binning.xml", "run/best.pt", "student/best.pt",
                 "student/distill_log.csv", "generated.h5",
                 "report/metrics.json", "report/report.html", "summary.json", "demo_config.yaml"):
        assert (tmp_path / name).is_file(), name
    for fig in ("roc.png", "average_showers.png", "profiles.png", "E_layer.png", "loss_curve.png"):
        assert (tmp_path / "report" / "figures" / fig).is_file(), fig
    html = (tmp_path / "report" / "report.html").read_text()
    assert "figures/roc.png" in html and "speedup_vs_simulator" in html
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_real"] == 300 and metrics["n_generated"] == 300
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["speedup_vs_simulator"] == pytest.approx(
        summary["generator_showers_per_s"] / summary["simulator_showers_per_s"], rel=1e-9)
    # the headline AUCs and separation power are the evaluation's, and each is printed
    out = capsys.readouterr().out
    for key, level in (("auc_low_level", "low_level"), ("auc_high_level", "high_level")):
        assert summary[key] == metrics["classifier"][level]["auc"]
        assert f"{key:28s} {summary[key]:.4g}" in out
    assert summary["separation_power_mean"] == metrics["separation_power_mean"]
    assert metrics["timing"]["speedup_vs_simulator"] == summary["speedup_vs_simulator"]
    # Geant4 timing switched off: no speed-up, and the reason is recorded
    assert summary["speedup_vs_geant4"] is None and metrics["timing"]["speedup_vs_geant4"] is None
    assert metrics["timing"]["geant4_note"] == "Geant4 timing disabled (0 showers requested)"
    # the demo samples with the distilled student and also times its teacher
    assert summary["model"] == "student" and summary["teacher_showers_per_s"] > 0
    assert "distilling a one-pass student" in out
    # it says which path it sampled with: compile was asked for, fp32 was used, and why
    assert f"(sampling path auto: {auto_sampling_path()})" in out and summary["sampling_path"] == "fp32"
    assert metrics["timing"]["sampling_path_fallback"] == ("compile failed (RuntimeError: InvalidCxxCompiler: "
                                                           "No working C++ compiler found)")
    assert "compile failed (RuntimeError" in out and "sampling with fp32 instead" in out
    assert "headline numbers" in out and str(tmp_path / "report" / "report.html") in out


def test_demo_refuses_an_unknown_sampling_path(tmp_path):
    with pytest.raises(ValueError, match="'sampling_path': expected 'auto' or one of .* found 'fp64'"):
        run_demo(tmp_path, DemoConfig(sampling_path="fp64"), progress=False)
    assert not (tmp_path / "data" / "train.h5").exists()  # refused before any work
