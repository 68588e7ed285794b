"""The trainer on event images, through the domain registry."""

import numpy as np
import pytest

from _toy_events import toy_events
from hepgen.config import TrainConfig
from hepgen.domains.events import DOMAIN
from hepgen.train import trainer as trainer_module


@pytest.mark.parametrize("family", ["dcgan", "dcgan_wgan_gp"])
def test_train_two_epochs_selects_by_ks_score(tmp_path, family):
    data = toy_events(40)
    cfg = TrainConfig(family=family, model={"noise_dim": 8, "filters": 4}, epochs=2, batch_size=8, seed=0,
                      n_eval=40, tensorboard=False)
    gen = trainer_module.train(data, cfg, tmp_path)
    assert gen.kind == "events" and gen.meta["selected_by"] == "physics"
    assert (tmp_path / "best.pt").is_file()
    fake = gen.sample_like(data, seed=0)
    assert fake.images.shape == data.images.shape
    np.testing.assert_array_equal(fake.conditions, data.conditions)
    assert np.isfinite(DOMAIN.selection_score(gen, data, seed=0))
