"""The trainer on tabular data (hepgen.train.trainer.train through the TabularDomain).

Needs the integrated trainer that dispatches through ``hepgen.domains.domain_of_data`` (and the
import line of ``hepgen.domains.tabular`` in ``hepgen.domains``); before that integration the
old trainer refuses TabularData, and these tests fail.
"""

import math

import numpy as np
import pytest

import hepgen.domains.tabular  # noqa: F401  (registers the kind until hepgen.domains imports it)
from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.tabular import TabularData
from hepgen.domains.base import domain_of_checkpoint


def _toy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    proc = rng.integers(0, 2, n)
    z = rng.multivariate_normal([0, 0], [[1, 0.7], [0.7, 1]], n)
    z[:, 0] += proc
    return TabularData(np.column_stack([np.exp(z[:, 0]), z[:, 1]]), ["a", "b"], ["GeV", ""], proc, ["tth", "ttbb"])


@pytest.mark.parametrize("family,model", [("tabular_wgan", {"hidden": 16, "n_hidden": 2, "latent_dim": 4}),
                                          ("tabular_flow", {"transforms": 1, "hidden_features": 16})])
def test_train_two_epochs_and_reload(tmp_path, family, model):
    from hepgen.train.trainer import train

    data = _toy()
    gen = train(data, TrainConfig(family=family, model=model, epochs=2, batch_size=64, seed=0, n_eval=100,
                                  tensorboard=False), tmp_path, progress=False)
    payload = load_checkpoint(tmp_path / "best.pt")
    assert payload["kind"] == "tabular" and payload["family"] == family
    assert payload["meta"]["columns"] == ["a", "b"] and payload["meta"]["epoch"] >= 1
    back = domain_of_checkpoint(payload).from_payload(payload, "best.pt")
    fake = back.sample_like(data, seed=0)
    assert isinstance(fake, TabularData) and fake.columns == data.columns
    np.testing.assert_array_equal(fake.process, data.process)
    np.testing.assert_allclose(fake.values, gen.sample_like(data, seed=0).values, rtol=1e-5)
    assert all(math.isfinite(v) for v in fake.values.ravel())


def test_train_refuses_a_family_of_another_kind(tmp_path):
    from hepgen.train.trainer import train

    with pytest.raises(ValueError, match=r"^TrainConfig: key 'family': 'flow' generates showers, the data are tabular"):
        train(_toy(), TrainConfig(family="flow", epochs=1), tmp_path, progress=False)


def test_cli_train_sample_evaluate_dispatch_by_kind(tmp_path, capsys):
    """`hepgen train/sample/evaluate` know tabular files only through the domain registry."""
    import json

    from hepgen.cli import main
    from hepgen.data.tabular import read_tabular, write_tabular

    write_tabular(tmp_path / "real.h5", _toy(400, seed=1))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("family: tabular_flow\nmodel: {transforms: 1, hidden_features: 16}\nconditions: [process]\n"
                   "epochs: 2\nbatch_size: 64\ntensorboard: false\n")
    assert main(["train", str(tmp_path / "real.h5"), "-o", str(tmp_path / "run"), "--config", str(cfg), "-q"]) == 0
    assert "trained tabular_flow on 400 tabular" in capsys.readouterr().out
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "gen.h5"), "--like",
                 str(tmp_path / "real.h5"), "--n", "300", "--seed", "3"]) == 0
    gen = read_tabular(tmp_path / "gen.h5")
    assert len(gen) == 300 and gen.columns == ["a", "b"]
    np.testing.assert_array_equal(gen.process, read_tabular(tmp_path / "real.h5").process[:300])
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "-o", str(tmp_path / "ev")]) == 0
    head = json.loads(capsys.readouterr().out.split("metrics:")[0])
    stored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert head["mean_separation"] == stored["mean_separation"] and head["two_sample_auc"] == stored["two_sample_auc"]
    # a shower option on a tabular file is refused by name
    assert main(["evaluate", str(tmp_path / "real.h5"), str(tmp_path / "gen.h5"), "-o", str(tmp_path / "ev2"),
                 "--binning", "x.xml"]) == 2
    assert "--binning does not apply to tabular files" in capsys.readouterr().err
    # the tabular sampling paths: auto (the fast MADE sampler) and model (the flow's own inverse), the same
    # events to float rounding; a shower path name is refused
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "g3.h5"), "--like",
                 str(tmp_path / "real.h5"), "--n", "300", "--seed", "3", "--path", "model"]) == 0
    np.testing.assert_allclose(read_tabular(tmp_path / "g3.h5").values, gen.values, rtol=1e-3, atol=1e-3)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "g4.h5"), "--like",
                 str(tmp_path / "real.h5"), "--path", "bf16"]) == 2
    assert "key 'path': expected one of ('auto', 'model'), found 'bf16'" in capsys.readouterr().err
    # without --like a tabular checkpoint says what it needs
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "g2.h5")]) == 2
    assert "a tabular checkpoint samples at the conditions of a file of its kind: give --like" in capsys.readouterr().err
