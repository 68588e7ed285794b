"""The trainer on event images, through the domain registry."""

import numpy as np
import pytest
import torch

from _toy_events import toy_events
from hepgen.config import TrainConfig
from hepgen.domains.events import DOMAIN
from hepgen.models.dcgan import EventDCGAN, total_energy_feature
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


def test_dcgan_critic_energy_auto_is_the_preprocessors_log_range_and_a_critic_input():
    data = toy_events(8, side=16)
    cfg = TrainConfig(family="dcgan", model={"noise_dim": 8, "filters": 4, "critic_energy": "auto"})
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.critic_energy == pytest.approx(np.log1p(pre.e_max / pre.scale), rel=1e-12)
    assert model.hparams["critic_energy"] == model.critic_energy  # saved with the checkpoint
    assert model.critic.net[0].in_channels == 1 + 2 + 1  # image, the two masses, the total energy
    # the feature is each image's total energy, log-scaled like one pixel (the preprocessor's scaling)
    x = torch.from_numpy(pre.transform(data.images)).float().reshape(8, 1, 16, 16)
    s = total_energy_feature(x, model.critic_energy)
    want = np.log1p(data.images.reshape(8, -1).sum(1) / pre.scale) / pre.log_range
    np.testing.assert_allclose(s.numpy(), want, rtol=1e-5)
    # the critic sees it as one more constant channel after the masses
    c = torch.from_numpy(DOMAIN.conditions(pre, data)).float()
    model.eval()
    with torch.no_grad():
        inp = torch.cat([x, torch.cat([c, s[:, None]], 1)[:, :, None, None].expand(-1, -1, 16, 16)], 1)
        np.testing.assert_allclose(model.critic(x, c).numpy(), model.critic.net(inp).reshape(-1).numpy(), rtol=1e-6)
        inp[:, 3] += 0.1  # a different total energy, same image: a different score
        assert not torch.allclose(model.critic.net(inp).reshape(-1), model.critic(x, c))
    # off by default (the paper's critic); outside the domain "auto" has nothing to resolve it
    plain = DOMAIN.build_model(TrainConfig(family="dcgan", model={"filters": 4}), data, pre)
    assert plain.critic_energy == 0.0 and plain.critic.net[0].in_channels == 3
    with pytest.raises(ValueError, match=r"key 'critic_energy': expected a log range >= 0 \(0: off\), found 'auto'"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_energy="auto")
