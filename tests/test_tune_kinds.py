"""``hepgen tune`` on a kind other than showers: event images tuned by the paper's random search
(lr, noise size, filters, label-flip rate) with the kind's selection score as the objective."""

import json

import numpy as np
import pytest
import yaml

from _toy_events import toy_events
from hepgen.checkpoint import load_checkpoint
from hepgen.cli import main
from hepgen.data.formats import ShowerData
from hepgen.data.events import write_events
from hepgen.domains.events import DOMAIN
from hepgen.train import tune

SPACE = {  # docs/events.md: the paper's search, scaled down to a toy
    "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
    "model.noise_dim": {"type": "categorical", "choices": [4, 8]},
    "model.filters": {"type": "categorical", "choices": [2, 4]},
    "model.flip_rate": {"type": "float", "low": 0.0, "high": 0.2},
}


@pytest.fixture()
def files(tmp_path):
    data = toy_events(20, seed=1)
    write_events(tmp_path / "ev.h5", data)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "family": "dcgan", "epochs": 1, "batch_size": 8, "threads": 1, "tensorboard": False}))
    return tmp_path, data


def test_cli_tune_events_scores_trials_by_the_selection_score(files, capsys):
    d, data = files
    args = ["tune", str(d / "ev.h5"), "--space", str(d / "space.yaml"), "--config", str(d / "base.yaml"),
            "--n-trials", "2", "--sampler", "random", "--pruner", "none", "-q"]
    assert main([*args, "-o", str(d / "out")]) == 0
    best = json.loads((d / "out" / "best.json").read_text())
    assert best["objective"] == "selection"  # auto: the kind's own score for anything but showers
    assert best["params"]["model.noise_dim"] in (4, 8) and 0.0 <= best["params"]["model.flip_rate"] <= 0.2
    # the value is the domain's selection score of the kept checkpoint on the seeded held-out split
    _, holdout = tune.split_holdout(data, 0.2, seed=0)
    gen = DOMAIN.from_payload(load_checkpoint(best["checkpoint"]), best["checkpoint"])
    assert best["value"] == pytest.approx(DOMAIN.selection_score(gen, holdout, 0), rel=1e-9)
    # shower objectives are refused by name for event images, before any training
    capsys.readouterr()
    assert main([*args, "-o", str(d / "out2"), "--objective", "ks_nll"]) == 2
    assert "objective 'ks_nll': events data are scored by one of ('selection',) (or auto)" in \
        capsys.readouterr().err
    assert not (d / "out2" / "trial_0").exists()


def test_holdout_of_another_kind_is_refused(files):
    d, data = files
    showers = ShowerData(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="held-out data: expected events like the training data, found showers"):
        tune.run_study(data, tune.parse_space(SPACE), DOMAIN.default_config(), d / "o", holdout=showers)
