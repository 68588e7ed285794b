"""Progress within evaluation: every stage (reading, features, metric groups, classifier epochs, figures,
report) is reported, on stderr by `hepgen evaluate` / `evaluate-jets`, and nothing with -q."""

import pytest
from _toy_jets import toy_jets

import hepgen
from hepgen._progress import Stages
from hepgen.cli import main
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.jets.evaluate import evaluate_jets, planned_jet_stages
from hepgen.domains.showers.evaluate import evaluate, planned_stages

GEOMETRY = CylindricalBinning.regular(2, [0.0, 10.0, 30.0], n_alpha=1)


@pytest.fixture(scope="module")
def showers(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    real = hepgen.simulate_showers(80, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=1)
    gen = hepgen.simulate_showers(80, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=2)
    hepgen.write(d / "real.h5", real)
    hepgen.write(d / "gen.h5", gen)
    return d, real, gen


@pytest.fixture(scope="module")
def jets(tmp_path_factory):
    d = tmp_path_factory.mktemp("jets")
    hepgen.write(d / "real.h5", toy_jets(120, n_particles=6, seed=1, types=(2,)))
    hepgen.write(d / "gen.h5", toy_jets(120, n_particles=6, seed=2, types=(2,)))
    return d


def test_stages_counts_and_shares_one_bar(capsys):
    seen = []
    outer = Stages(seen.append, "x")
    inner = Stages.of(outer, "y")
    assert inner is outer
    inner.stage("a")
    inner.close()  # the inner user is done; the outer one still holds the bar
    outer.step("a", "epoch 1/3")
    outer.close()
    assert seen == ["a", "a: epoch 1/3"]
    with Stages(True, "demo", ["a", "b"]) as bar:
        bar.stage("a")
        bar.stage("b")
        assert bar.bar.n == 1  # a is done, b is running
    err = capsys.readouterr().err
    assert "demo" in err and "b" in err
    assert Stages(False, "q").epochs("a") is None


def test_every_shower_stage_and_the_classifier_epochs_are_reported(showers):
    _, real, gen = showers
    seen = []
    evaluate(real, gen, groups=["features", "classifier"], classifier_protocol="calochallenge", progress=seen.append,
             calochallenge_kwargs=dict(epochs=2, batch_size=20, hidden=8))
    assert [s for s in seen if "epoch" not in s] == planned_stages(["features", "classifier"], "calochallenge") == [
        "features", "calochallenge low_level", "calochallenge high_level"]
    assert [s for s in seen if "epoch" in s] == [f"calochallenge {lv}: epoch {e}/2" for lv in ("low_level", "high_level")
                                                 for e in (1, 2)]


def test_api_evaluate_reports_reading_the_files(showers):
    d, _, _ = showers
    seen = []
    hepgen.evaluate(d / "real.h5", d / "gen.h5", metrics="fast", progress=seen.append)
    assert seen == ["read", "features", "physics"]  # no output folder: no figures, no report


def test_cli_evaluate_shows_the_stages_on_stderr_and_nothing_with_q(showers, tmp_path, capsys):
    d, _, _ = showers
    args = ["evaluate", str(d / "real.h5"), str(d / "gen.h5"), "--metrics", "features", "--no-classifier"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    for stage in ("evaluate showers", "read", "features", "figures", "report", "stages"):
        assert stage in err, stage
    assert main([*args, "-o", str(tmp_path / "b"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "stages" not in err and "evaluate showers" not in err and "figures" not in err


def test_jet_stages_and_classifier_epochs(jets):
    seen = []
    real, gen = hepgen.read(jets / "real.h5"), hepgen.read(jets / "gen.h5")
    evaluate_jets(real, gen, num_eval_samples=50, num_batches=2, efps=False, classifier_kwargs={"epochs": 2},
                  progress=seen.append)
    assert [s for s in seen if "epoch" not in s] == planned_jet_stages(["t"], efps=False)
    assert [s for s in seen if "epoch" in s] == ["t: classifier: epoch 1/2", "t: classifier: epoch 2/2",
                                                 "t: classifier floor: epoch 1/2", "t: classifier floor: epoch 2/2"]


def test_cli_evaluate_jets_shows_the_stages_and_nothing_with_q(jets, tmp_path, capsys):
    args = ["evaluate-jets", str(jets / "real.h5"), str(jets / "gen.h5"), "--no-efp", "--no-classifier",
            "--num-eval-samples", "50", "--num-batches", "2"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    for stage in ("evaluate jets", "read", "t: W1", "t: substructure W1", "figures", "report"):
        assert stage in err, stage
    assert main([*args, "-o", str(tmp_path / "b"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "stages" not in err and "t: W1" not in err
