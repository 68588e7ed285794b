"""The l1 kind through hepgen's one trainer (passes once the integrator has registered the
domain in hepgen.domains and the trainer dispatches by domain_of_data)."""

import numpy as np

from _toy_l1 import toy_anomaly, toy_background
from hepgen.config import TrainConfig
from hepgen.data.l1 import L1Events
from hepgen.domains.anomaly import L1Detector, load_detector
from hepgen.train.trainer import train


def test_train_l1_vae_with_the_trainer(tmp_path):
    data = toy_background(600, seed=0)
    gen = train(data, TrainConfig(family="l1_vae", epochs=2, batch_size=64, seed=0), tmp_path)
    assert isinstance(gen, L1Detector) and gen.model.family == "l1_vae"
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    back = load_detector(tmp_path / "best.pt")
    test = L1Events.concatenate([toy_background(50, seed=1), toy_anomaly()])
    np.testing.assert_allclose(back.scores(test)["mse"], gen.scores(test)["mse"], rtol=1e-6)
    assert back.meta["n_events"] > 0


def test_train_l1_ae_learns(tmp_path):
    data = toy_background(600, seed=0)
    gen = train(data, TrainConfig(family="l1_ae", epochs=8, batch_size=64, lr=3e-3, seed=0), tmp_path)
    test = L1Events.concatenate([toy_background(200, seed=1), toy_anomaly()])
    s = gen.scores(test)["mse"]
    assert np.argmax(s) == len(test) - 1  # after 8 epochs the TeV event already stands out
