"""``hepgen tune``: search-space parsing, physics objectives, pruning, seeding, shared storage."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from scipy import stats

from hepgen.cli import main
from hepgen.config import TrainConfig
from hepgen.data.formats import ShowerData, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains import get_domain
from hepgen.domains.showers import score
from hepgen.domains.showers.evaluate import evaluate
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train import tune
from hepgen.train.trainer import StopTraining

GOOD_SPACE = {
    "lr": {"type": "float", "low": "1e-4", "high": 3e-3, "log": True},  # "1e-4": how PyYAML reads 1e-4
    "batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
    "model.hidden_features": {"type": "categorical", "choices": [8, 16]},
}


@pytest.fixture(scope="module")
def geometry():
    return CylindricalBinning.regular(n_layers=3, r_edges=[0, 5, 10, 20], n_alpha=2)  # 18 voxels


@pytest.fixture(scope="module")
def showers(geometry):
    return simulate_dataset(300, geometry=geometry, energy_range=(2000.0, 20000.0), seed=1)


# --- search space ---------------------------------------------------------------------------
def test_parse_space_reads_every_type():
    space = tune.parse_space(GOOD_SPACE)
    assert space["lr"] == tune.ParamSpec("lr", "float", low=1e-4, high=3e-3, log=True)
    assert space["batch_size"] == tune.ParamSpec("batch_size", "int", low=32, high=128, step=32)
    assert space["model.hidden_features"].choices == (8, 16)
    # the YAML form round-trips
    assert tune.parse_space({k: p.to_dict() for k, p in space.items()}) == space


@pytest.mark.parametrize(
    "key, spec, message",
    [
        ("lrr", {"type": "float", "low": 1e-4, "high": 1e-3}, "not a tunable TrainConfig field"),
        ("model", {"type": "float", "low": 1e-4, "high": 1e-3}, "not a tunable TrainConfig field"),
        ("model.a.b", {"type": "int", "low": 1, "high": 3}, "one level"),
        ("lr", {"low": 1e-4, "high": 1e-3}, "'type' must be one of"),
        ("lr", {"type": "uniform", "low": 1e-4, "high": 1e-3}, "'type' must be one of"),
        ("lr", {"type": "float", "low": 1e-4}, "needs 'high'"),
        ("lr", {"type": "float", "low": "small", "high": 1e-3}, "'low': expected a number"),
        ("lr", {"type": "float", "low": 1e-3, "high": 1e-4}, "low <= high"),
        ("lr", {"type": "float", "low": 0.0, "high": 1e-3, "log": True}, "needs low > 0"),
        ("lr", {"type": "float", "low": 1e-4, "high": 1e-3, "log": "yes"}, "'log' must be true or false"),
        ("lr", {"type": "float", "low": 1e-4, "high": 1e-3, "log": True, "step": 1e-4}, "cannot be combined"),
        ("lr", {"type": "float", "low": 1e-4, "high": 1e-3, "choices": [1]}, "unknown keys \\['choices'\\]"),
        ("epochs", {"type": "float", "low": 1, "high": 5}, "integer field"),
        ("epochs", {"type": "int", "low": 1.5, "high": 5}, "expected an integer"),
        ("batch_size", {"type": "int", "low": 32, "high": 128, "step": 0}, "'step' must be > 0"),
        ("batch_size", {"type": "int", "low": 32, "high": 100, "step": 32}, "not a multiple of step"),
        ("model.hidden_features", {"type": "categorical", "choices": []}, "non-empty list"),
        ("model.hidden_features", {"type": "categorical", "choices": [[8, 8]]}, "None, bool, int"),
        ("model.hidden_features", {"type": "categorical", "choices": [8, 8]}, "duplicates"),
        ("lr", 0.001, "expected a mapping"),
    ],
)
def test_bad_space_is_a_value_error_naming_the_key(key, spec, message):
    with pytest.raises(ValueError, match=message) as err:
        tune.parse_space({key: spec}, source="space.yaml")
    assert "space.yaml" in str(err.value) and repr(key) in str(err.value)


def test_load_space_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        tune.load_space(tmp_path / "missing.yaml")
    for text, message in (("[1, 2]", "expected a mapping"), ("", "empty"), ("lr: {type: float, low: [", "not valid YAML")):
        path = tmp_path / "space.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as err:
            tune.load_space(path)
        assert str(path) in str(err.value)
    path.write_text("lr: {type: float, low: 1e-4, high: 3e-3, log: true}\n")  # PyYAML: '1e-4' is a str
    assert tune.load_space(path)["lr"].low == 1e-4


def test_model_keys_are_checked_against_the_family():
    space = tune.parse_space({"model.hiden_features": {"type": "int", "low": 8, "high": 16}})
    with pytest.raises(ValueError, match="'model.hiden_features'.*family 'flow' has no argument") as err:
        tune.check_space(space, TrainConfig(family="flow"))
    assert "hidden_features" in str(err.value)  # lists what the family takes
    tune.check_space(tune.parse_space(GOOD_SPACE), TrainConfig(family="flow"))


def test_apply_params_copies_the_base():
    base = TrainConfig(lr=1e-3, model={"transforms": 2})
    out = tune.apply_params(base, {"lr": 2e-3, "model.hidden_features": 16})
    assert out.lr == 2e-3 and out.model == {"transforms": 2, "hidden_features": 16}
    assert base.lr == 1e-3 and base.model == {"transforms": 2}


# --- objectives -----------------------------------------------------------------------------
def test_ks_nll_hand_worked():
    same = {"a": np.arange(10.0), "b": np.linspace(0, 1, 7)}
    assert score.ks_nll_score(same, same) == 0.0  # D = 0, p = 1 for every feature
    # {1,2,3} vs {4,5,6}: D = 1; exact two-sided p = 2 / C(6,3) = 0.1 (only the two fully
    # separated orderings of the 20 are as extreme)
    value = score.ks_nll_score({"a": [1.0, 2, 3], "b": [0.0, 1]}, {"a": [4.0, 5, 6], "b": [0.0, 1]})
    assert value == pytest.approx(-math.log(0.1), rel=1e-9)


def test_ks_nll_on_shifted_samples_matches_scipy():
    rng = np.random.default_rng(5)
    real = {f"f{i}": rng.normal(size=400) for i in range(3)}
    gen = {k: rng.normal(size=300) + 0.1 * i for i, (k, v) in enumerate(real.items())}
    expected = sum(-math.log(stats.ks_2samp(real[k], gen[k]).pvalue) for k in real)
    assert score.ks_nll_score(real, gen) == pytest.approx(expected, rel=1e-12)
    assert expected > 5.0  # the shifts are detected, so the comparison is not trivially 0


def test_ks_nll_floors_zero_p_values():
    a, b = np.arange(5000.0), np.arange(5000.0) + 1e6  # disjoint: scipy's p underflows to 0
    assert stats.ks_2samp(a, b).pvalue == 0.0
    value = score.ks_nll_score({"x": a, "y": a}, {"x": b, "y": a})
    assert value == pytest.approx(-math.log(np.finfo(np.float64).tiny), rel=1e-12)  # ≈ 708.4


def test_sep_power_hand_worked():
    # f2: p = (1/2, 1/2), q = (1, 0) on the lattice bins {0}, {1} → S = ½[(½)²/(3/2) + (½)²/(½)] = 1/3
    real = {"f1": np.array([0.0, 0, 1, 1]), "f2": np.array([0.0, 0, 1, 1])}
    gen = {"f1": np.array([0.0, 1, 0, 1]), "f2": np.zeros(4)}
    assert score.sep_power_score(real, gen) == pytest.approx((0 + 1 / 3) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="only real \\['f2'\\]"):
        score.sep_power_score(real, {"f1": gen["f1"]})


def test_physics_score_agrees_with_evaluate(showers, geometry):
    other = simulate_dataset(300, geometry=geometry, energy_range=(2000.0, 20000.0), seed=2)
    gen = other.showers * 1.05  # a 5 % miscalibrated "model", at the real incident energies
    m = evaluate(showers, ShowerData(gen, showers.incident_energies, geometry=geometry), classifier=False)
    assert score.holdout_score(showers, gen, "sep_power") == pytest.approx(m["separation_power_mean"], rel=1e-12)
    ks = sum(-math.log(max(v["pvalue"], np.finfo(float).tiny)) for v in m["ks"].values())
    assert score.holdout_score(showers, gen, "ks_nll") == pytest.approx(ks, rel=1e-12)
    with pytest.raises(ValueError, match="objective"):
        score.holdout_score(showers, gen, "auc")


def test_tune_objectives_come_from_the_domain():
    """The showers domain names the objectives score.holdout_score accepts, sep_power first (auto)."""
    assert get_domain("showers").tune_objectives == score.TUNE_OBJECTIVES == ("sep_power", "ks_nll")
    assert tune.objectives_of(get_domain("showers")) == ("sep_power", "ks_nll", "selection")
    assert tune.objectives_of(get_domain("events")) == ("selection",)


# --- studies with a controllable stand-in for the trainer -----------------------------------
class _FakeGenerator:
    """Returns the held-out showers themselves (a perfect model)."""

    def __init__(self, showers):
        self.showers = showers
        self.condition_names = []

    def sample(self, energies, conditions, seed=0):
        return self.showers[: len(energies)]


def _fake_train(holdout, curves, epochs_run):
    """A train() stand-in: reports ``curves[call]`` per epoch, honours StopTraining like the trainer."""
    calls = []

    def train_fn(data, config, out_dir, progress=True, callbacks=()):
        curve = curves[len(calls) % len(curves)]
        calls.append(config)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        n = 0
        try:
            for epoch, value in enumerate(curve):
                n += 1
                for cb in callbacks:
                    cb(epoch, {"epoch": epoch, "step": 10 * (epoch + 1), "train_loss": value, "val_loss": value})
        except StopTraining:
            pass
        epochs_run.append(n)
        (Path(out_dir) / "best.pt").write_bytes(b"fake")
        return _FakeGenerator(holdout.showers)

    return train_fn


def test_pruner_stops_a_bad_trial(tmp_path, showers):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    epochs_run = []
    fake = _fake_train(hold, curves=[[1.0, 0.9, 0.8, 0.7], [5.0, 4.0, 3.0, 2.0]], epochs_run=epochs_run)
    study, best = tune.run_study(
        train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, n_trials=2, holdout=hold,
        sampler="tpe", pruner="median", pruner_kwargs={"n_startup_trials": 1, "n_warmup_steps": 0},
        prune_on="val_loss", train_fn=fake,
    )
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert epochs_run == [4, 1]  # the bad trial stopped after its first report, not after 4 epochs
    assert study.trials[1].intermediate_values == {0: 5.0}
    assert json.loads((tmp_path / "trial_1" / "trial.json").read_text())["state"] == "PRUNED"
    # the perfect stand-in scores 0 separation on the held-out sample; best.json points at it
    assert best["best_trial"] == 0 and best["value"] == 0.0
    on_disk = json.loads((tmp_path / "best.json").read_text())
    assert on_disk == best and Path(on_disk["checkpoint"]) == tmp_path / "trial_0" / "best.pt"
    assert on_disk["n_trials"] == {"COMPLETE": 1, "PRUNED": 1}
    assert on_disk["storage"].startswith("sqlite:///") and (tmp_path / "study.db").is_file()


def test_real_trainer_stops_a_pruned_trial(tmp_path, showers):
    """The real trainer honours StopTraining: an untrained (lr = 1e-9) trial is cut after epoch 1."""
    base = TrainConfig(epochs=3, batch_size=16, threads=1, tensorboard=False, select_by="val_loss",
                       model={"transforms": 1, "hidden_features": 8})
    common = {"n_trials": 1, "sampler": "random", "prune_on": "val_loss", "study_name": "real",
              "pruner_kwargs": {"n_startup_trials": 1, "n_warmup_steps": 1}}
    for lr in (1e-2, 1e-9):  # the second call joins the study with another range (a warning)
        space = tune.parse_space({"lr": {"type": "float", "low": lr, "high": lr}})
        study, _ = tune.run_study(showers, space, base, tmp_path, **common)
    good, bad = study.trials
    assert (good.state.name, bad.state.name) == ("COMPLETE", "PRUNED")
    assert list(bad.intermediate_values) == [1] and bad.intermediate_values[1] > good.intermediate_values[1]
    rows = (tmp_path / "trial_1" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 2  # header + epoch 1: training stopped where it was pruned


def test_without_pruner_the_bad_trial_completes(tmp_path, showers):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    epochs_run = []
    fake = _fake_train(hold, curves=[[1.0, 0.9], [5.0, 4.0]], epochs_run=epochs_run)
    study, _ = tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, n_trials=2,
                              holdout=hold, pruner="none", train_fn=fake)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"] and epochs_run == [2, 2]


def _params(tmp_path, showers, seed, name):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    fake = _fake_train(hold, curves=[[1.0]], epochs_run=[])
    study, _ = tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path / name, n_trials=4,
                              holdout=hold, sampler="random", sampler_seed=seed, pruner="none", train_fn=fake)
    return [t.params for t in study.trials]


def test_seeded_random_sampler_repeats_its_params(tmp_path, showers):
    first, again = _params(tmp_path, showers, 3, "a"), _params(tmp_path, showers, 3, "b")
    assert first == again and len({json.dumps(p, sort_keys=True) for p in first}) > 1
    assert _params(tmp_path, showers, 4, "c") != first


def test_study_refuses_another_objective_and_bad_urls(tmp_path, caplog):
    storage, url = tune.make_storage(None, tmp_path)
    assert url == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    sampler, pruner = tune.make_sampler("tpe", 0), tune.make_pruner("median")
    tune.open_study(storage, "s", sampler, pruner, "sep_power")
    tune.open_study(storage, "s", sampler, pruner, "sep_power")  # joining the same study is fine
    with pytest.raises(ValueError, match="hepgen_objective = 'sep_power'.*'ks_nll'"):
        tune.open_study(storage, "s", sampler, pruner, "ks_nll")
    # another search space is only a warning (narrowing a space mid-study is legitimate)
    tune.open_study(storage, "t", sampler, pruner, "sep_power", tune.parse_space(GOOD_SPACE))
    narrower = tune.parse_space({"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}})
    with caplog.at_level("WARNING", logger="hepgen.train.tune"):
        tune.open_study(storage, "t", sampler, pruner, "sep_power", narrower)
    assert "was created with the search space" in caplog.text
    # ... but one Optuna would refuse at the first trial is an error naming the key
    other_choices = tune.parse_space({**GOOD_SPACE, "model.hidden_features": {"type": "categorical", "choices": [8]}})
    with pytest.raises(ValueError, match="key 'model.hidden_features': was created with choices"):
        tune.open_study(storage, "t", sampler, pruner, "sep_power", other_choices)
    linear = tune.parse_space({**GOOD_SPACE, "lr": {"type": "float", "low": 1e-4, "high": 1e-3}})
    with pytest.raises(ValueError, match="key 'lr': was created with log = True"):
        tune.open_study(storage, "t", sampler, pruner, "sep_power", linear)
    with pytest.raises(ValueError, match="--storage: expected an SQLAlchemy URL"):
        tune.make_storage("not a url", tmp_path)
    assert tune.storage_url_for_display("postgresql://me:secret@db.example/hpo") == "postgresql://me:***@db.example/hpo"
    for bad in (("sampler", lambda: tune.make_sampler("grid")), ("pruner", lambda: tune.make_pruner("asha"))):
        with pytest.raises(ValueError, match=bad[0]):
            bad[1]()


def test_journal_storage(tmp_path, showers):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    fake = _fake_train(hold, curves=[[1.0]], epochs_run=[])
    url = f"journal:{tmp_path / 'j' / 'study.log'}"
    _, best = tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, n_trials=2,
                             holdout=hold, storage=url, pruner="none", train_fn=fake)
    assert (tmp_path / "j" / "study.log").is_file() and not (tmp_path / "study.db").exists()
    reopened = optuna.load_study(study_name="hepgen", storage=tune.make_storage(url, tmp_path)[0])
    assert len(reopened.trials) == 2 and best["storage"] == url


def test_total_trials_caps_the_study_and_heartbeat_runs(tmp_path, showers):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    fake = _fake_train(hold, curves=[[1.0]], epochs_run=[])
    study, best = tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, n_trials=5,
                                 total_trials=3, holdout=hold, pruner="none", heartbeat=5, train_fn=fake)
    assert len(study.trials) == 3 and best["n_trials"] == {"COMPLETE": 3}


def test_a_second_study_in_the_same_folder_is_refused(tmp_path, showers):
    train, hold = tune.split_holdout(showers, 0.2, seed=0)
    fake = _fake_train(hold, curves=[[1.0]], epochs_run=[])
    kwargs = {"n_trials": 1, "holdout": hold, "pruner": "none", "train_fn": fake}
    tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, study_name="one", **kwargs)
    with pytest.raises(ValueError, match="trial_0 already holds files of another study"):
        tune.run_study(train, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path, study_name="two", **kwargs)


def test_cli_tune_bad_space_is_a_clear_error(tmp_path, showers, capsys):
    write_showers(tmp_path / "d.h5", showers)
    (tmp_path / "space.yaml").write_text("learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3}\n")
    assert main(["tune", str(tmp_path / "d.h5"), "--space", str(tmp_path / "space.yaml"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "space.yaml" in err and "'learning_rate'" in err


# --- two worker processes, one SQLite file, the real trainer --------------------------------
def test_two_workers_share_one_sqlite_study(tmp_path, showers):
    write_showers(tmp_path / "d.h5", showers)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(GOOD_SPACE))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "epochs": 3, "max_steps": 6, "batch_size": 64, "threads": 1, "tensorboard": False,
        "model": {"transforms": 1, "hidden_features": 8},
    }))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "hepgen.cli", "tune", str(tmp_path / "d.h5"), "--space", str(tmp_path / "space.yaml"),
             "--config", str(tmp_path / "base.yaml"), "-o", str(out), "--n-trials", "3", "--sampler", "random",
             "--sampler-seed", str(i), "--study-name", "shared", "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = [w.communicate(timeout=240) for w in workers]
    for w, (stdout, stderr) in zip(workers, results):
        assert w.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'study.db'}")
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(6))  # 2 workers × 3 trials: none lost, none duplicated
    assert len({t._trial_id for t in study.trials}) == 6
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    for t in study.trials:
        record = json.loads((out / f"trial_{t.number}" / "trial.json").read_text())
        assert record["number"] == t.number and record["state"] == t.state.name and record["params"] == t.params
    best = json.loads((out / "best.json").read_text())
    assert best["best_trial"] == study.best_trial.number and best["value"] == study.best_value
    completed = [t.value for t in study.trials if t.state.name == "COMPLETE"]
    assert Path(best["checkpoint"]).is_file() and best["value"] == min(completed)  # the objective is minimised


def test_streamed_training_files_are_tuned_with_the_holdout_in_memory(tmp_path, showers):
    """A file set above the memory budget arrives as a ShowerFileSet: trials get the streamed
    training rows, the held-out rows are loaded and scored (identical showers: separation 0)."""
    from hepgen.data.chunked import ShowerFileSet

    write_showers(tmp_path / "a.h5", showers.subset(slice(0, 150)))
    write_showers(tmp_path / "b.h5", showers.subset(slice(150, 300)))
    files = ShowerFileSet([tmp_path / "a.h5", tmp_path / "b.h5"], chunk_rows=40)
    _, hold_rows = tune.split_holdout(files, 0.2, seed=0)
    hold = hold_rows.load()
    seen = []
    fake = _fake_train(hold, curves=[[1.0]], epochs_run=[])

    def train_fn(data, config, out_dir, progress=True, callbacks=()):
        seen.append((type(data).__name__, len(data)))
        return fake(data, config, out_dir, progress, callbacks)

    study, best = tune.run_study(files, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path / "study",
                                 n_trials=1, pruner="none", seed=0, train_fn=train_fn)
    assert seen == [("ShowerFileSet", 240)]
    assert best["value"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(hold.incident_energies, showers.incident_energies[np.sort(hold_rows.rows)])


def test_streamed_holdout_with_other_voxels_is_refused(tmp_path, showers):
    from hepgen.data.chunked import ShowerFileSet

    write_showers(tmp_path / "a.h5", showers)
    other = ShowerData(showers.showers[:, :12], showers.incident_energies, {}, None)
    files = ShowerFileSet([tmp_path / "a.h5"], chunk_rows=40)
    with pytest.raises(ValueError, match="held-out showers have 12 voxels, training data 18"):
        tune.run_study(files, tune.parse_space(GOOD_SPACE), TrainConfig(), tmp_path / "s", n_trials=1,
                       holdout=other, pruner="none", train_fn=_fake_train(showers, [[1.0]], []))
