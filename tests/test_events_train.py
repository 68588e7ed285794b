"""The trainer on event images, through the domain registry."""

import numpy as np
import pytest
import torch

from _toy_events import toy_events
from hepgen.config import TrainConfig
from hepgen.domains.events import DOMAIN
from hepgen.metrics.event_jets import pixel_centers
from hepgen.models.dcgan import (EventDCGAN, lead_window_feature, symmetry_augment, total_energy_feature,
                                 transverse_energy_feature)
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


def test_dcgan_critic_et_auto_is_the_datas_eta_max_and_the_transverse_energy_a_critic_input():
    data = toy_events(8, side=16)
    cfg = TrainConfig(family="dcgan", model={"noise_dim": 8, "filters": 4, "critic_energy": "auto",
                                             "critic_et": "auto"})
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.critic_et == data.eta_max and model.hparams["critic_et"] == data.eta_max
    assert model.critic.net[0].in_channels == 1 + 2 + 2  # image, the two masses, total E and total E_T
    # the feature against numpy: Σ E / cosh(η) with η the jet code's row centres, log-scaled like a pixel
    x = torch.from_numpy(pre.transform(data.images)).float().reshape(8, 1, 16, 16)
    et = transverse_energy_feature(x, model.critic_energy, model.critic_et)
    eta, _ = pixel_centers(16, 16, data.eta_max)
    want_et = (data.images[:, 0] / np.cosh(eta)[None, :, None]).sum((1, 2))
    np.testing.assert_allclose(et.numpy(), np.log1p(want_et / pre.scale) / pre.log_range, rtol=1e-5)
    assert (et.numpy() < total_energy_feature(x, model.critic_energy).numpy()).all()  # E_T < E off η = 0
    c = torch.from_numpy(DOMAIN.conditions(pre, data)).float()
    model.eval()
    with torch.no_grad():
        cols = torch.cat([c, total_energy_feature(x, model.critic_energy)[:, None], et[:, None]], 1)
        inp = torch.cat([x, cols[:, :, None, None].expand(-1, -1, 16, 16)], 1)
        np.testing.assert_allclose(model.critic(x, c).numpy(), model.critic.net(inp).reshape(-1).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"key 'critic_et': needs 'critic_energy' \(its log range\), found "
                                         r"critic_energy=0.0"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_et=2.5)
    with pytest.raises(ValueError, match=r"key 'critic_et': expected the images' eta_max > 0 \(0: off\), found 'auto'"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_energy=4.0, critic_et="auto")


def test_dcgan_critic_lead_is_the_hardest_window_energy_against_a_brute_force_search():
    data = toy_events(8, side=16)
    cfg = TrainConfig(family="dcgan", model={"noise_dim": 8, "filters": 4, "critic_energy": "auto", "critic_lead": 5})
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.critic_lead == 5 and model.hparams["critic_lead"] == 5
    assert model.critic.net[0].in_channels == 1 + 2 + 2  # image, the two masses, total E, hardest-window E
    x = torch.from_numpy(pre.transform(data.images)).float().reshape(8, 1, 16, 16)
    got = lead_window_feature(x, model.critic_energy, 5).numpy()
    # brute force in numpy: every 5 x 5 square, wrapping in phi (columns), not in eta (rows)
    img = data.images[:, 0]
    best = np.zeros(8)
    for r in range(16 - 5 + 1):
        for col in range(16):
            cols = [(col + k) % 16 for k in range(5)]
            best = np.maximum(best, img[:, r:r + 5][:, :, cols].sum((1, 2)))
    np.testing.assert_allclose(got, np.log1p(best / pre.scale) / pre.log_range, rtol=1e-5)
    assert (got <= total_energy_feature(x, model.critic_energy).numpy() + 1e-6).all()
    c = torch.from_numpy(DOMAIN.conditions(pre, data)).float()
    model.eval()
    with torch.no_grad():
        cols = torch.cat([c, total_energy_feature(x, model.critic_energy)[:, None], torch.from_numpy(got)[:, None]], 1)
        inp = torch.cat([x, cols[:, :, None, None].expand(-1, -1, 16, 16)], 1)
        np.testing.assert_allclose(model.critic(x, c).numpy(), model.critic.net(inp).reshape(-1).numpy(), rtol=1e-6)
    # gradients reach the generator's pixels through the max
    xg = x.clone().requires_grad_(True)
    lead_window_feature(xg, model.critic_energy, 5).sum().backward()
    assert (xg.grad != 0).any()
    with pytest.raises(ValueError, match=r"key 'critic_lead': needs 'critic_energy' \(its log range\), found "
                                         r"critic_energy=0.0"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_lead=4)
    with pytest.raises(ValueError, match=r"key 'critic_lead': expected a window of 0 \(off\) ... 16 pixels, found 17"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_energy=4.0, critic_lead=17)


def test_symmetry_augment_is_a_phi_roll_and_maybe_an_eta_mirror_of_each_image_and_passes_gradients():
    x = torch.rand(400, 2, 4, 8, requires_grad=True)
    y = symmetry_augment(x, torch.Generator().manual_seed(3))
    xs, ys = x.detach().numpy(), y.detach().numpy()
    shifts, flips = [], []
    for a, b in zip(xs, ys):  # exactly one (shift, mirror) reproduces each image, both channels alike
        found = [(k, f) for k in range(8) for f in (False, True)
                 if np.array_equal(np.roll(a[:, ::-1] if f else a, k, axis=2), b)]
        assert len(found) == 1
        shifts.append(found[0][0])
        flips.append(found[0][1])
    assert set(shifts) == set(range(8))  # every roll occurs in 400 images (each has p = 1/8)
    assert 0.4 < np.mean(flips) < 0.6  # binomial(400, 1/2): 0.5 ± 0.025
    (g,) = torch.autograd.grad((y * torch.arange(y.numel()).reshape(y.shape)).sum(), x)
    assert sorted(g.flatten().tolist()) == list(range(y.numel()))  # a permutation: each pixel's weight once


@pytest.mark.parametrize("family", ["dcgan", "dcgan_wgan_gp"])
def test_dcgan_critic_augment_changes_what_the_critic_sees_and_trains(tmp_path, family):
    data = toy_events(40)
    torch.manual_seed(0)
    plain = EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], noise_dim=8, filters=4, flip_rate=0.0)
    aug = EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], noise_dim=8, filters=4, flip_rate=0.0, critic_augment=True)
    aug.load_state_dict(plain.state_dict())
    assert aug.hparams["critic_augment"] is True and plain.hparams["critic_augment"] is False
    x, c = torch.rand(16, 256), torch.rand(16, 2)
    torch.manual_seed(1)
    lp = plain.critic_loss(x, c)
    torch.manual_seed(1)
    la = aug.critic_loss(x, c)
    assert not torch.isclose(lp, la)  # same weights, same noise: the augmented views score differently
    # the generator still gets gradients through the roll and the mirror
    aug.generator_loss(c).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in aug.generator.parameters())
    with pytest.raises(ValueError, match=r"key 'critic_augment': expected true or false, found 'yes'"):
        EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], critic_augment="yes")
    # through the trainer and the domain
    cfg = TrainConfig(family=family, model={"noise_dim": 8, "filters": 4, "critic_augment": True}, epochs=1,
                      batch_size=8, seed=0, n_eval=40, tensorboard=False)
    gen = trainer_module.train(data, cfg, tmp_path)
    assert gen.model.critic_augment is True
    assert np.isfinite(DOMAIN.selection_score(gen, data, seed=0))
