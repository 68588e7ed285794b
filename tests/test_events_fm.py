"""The events_fm family: conditional flow matching with a U-Net velocity field on event images."""

import numpy as np
import pytest
import torch

from _toy_events import toy_events
from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.domains.events import DOMAIN
from hepgen.models import build_model
from hepgen.models.events_fm import EventFlowMatching
from hepgen.train import trainer as trainer_module

TINY = EventFlowMatching.tiny_hparams()  # 16 × 16 images, filters 8, two resolutions, 2 midpoint steps


def _model(**kw):
    torch.manual_seed(0)
    hp = {**TINY, **kw}
    shape = hp["image_shape"]
    return EventFlowMatching(int(np.prod(shape)), 2, **hp)


def _perturb(model):
    """Random output layer: a fresh model's velocity is exactly 0 (zero-initialised last conv)."""
    with torch.no_grad():
        torch.manual_seed(1)
        for net in (model.net, model.averaged.module):
            net.out.conv.weight.normal_(0, 0.3)
    return model


def test_shapes_sparse_output_and_registration():
    m = _perturb(_model(image_shape=[2, 16, 16]))
    assert build_model("events_fm", n_features=512, n_conditions=2, **{**TINY, "image_shape": [2, 16, 16]}).family \
        == "events_fm"
    y = torch.randn(5, 512)
    assert m.velocity(y, torch.rand(5), torch.rand(5, 2)).shape == (5, 512)
    x = m.eval().sample(torch.rand(5, 2), torch.Generator().manual_seed(0))
    assert x.shape == (5, 512)
    assert bool(((x == 0) | ((x >= m.floor) & (x <= 1))).all())
    assert 0 < float((x == 0).float().mean()) < 1  # random field: some pixels on, some off
    c = torch.rand(5, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(m.sample(c, torch.Generator().manual_seed(0)),
                               m.sample(c, torch.Generator().manual_seed(0)), rtol=0, atol=0)


def test_encode_decode_and_data_derived_cut():
    m = _model()
    x = torch.tensor([[0.0, 0.2, 0.7, 1.0]])
    np.testing.assert_allclose(m.encode(x).numpy(), [[-1.0, 0.2, 0.7, 1.0]])
    assert (m.floor, m.cut) == (0.05, 0.025)  # untrained: half of 0.05 (the 0.5 GeV floor of the bench data)
    # one training step on images whose smallest non-empty value is 0.2 → floor 0.2, cut 0.1
    img = torch.zeros(2, 256)
    img[0, 3], img[1, 7], img[1, 8] = 0.2, 0.9, 0.35
    opt = m.configure_optimizers(1e-3, 0.0)
    m.train().training_step(img, torch.zeros(2, 2), opt, 0, None)
    assert float(m.occupied_floor) == pytest.approx(0.2)
    assert m.floor == pytest.approx(0.2) and m.cut == pytest.approx(0.1)
    np.testing.assert_allclose(m.decode(torch.tensor([[-0.9, 0.09, 0.11, 0.25, 1.3]])).numpy(),
                               [[0.0, 0.0, 0.2, 0.25, 1.0]], rtol=1e-6)
    assert _model(cut=-0.2).cut == -0.2
    with pytest.raises(ValueError, match=r"events_fm: key 'cut': expected None or a value in \(empty_value=-1.0, 1\), "
                                         r"found -1.5"):
        _model(cut=-1.5)
    with pytest.raises(ValueError, match=r"events_fm: key 'image_shape': H and W must be divisible by "
                                         r"patch·2\^\(len\(mults\)-1\) = 4, found \[18, 18\]"):
        EventFlowMatching(324, 2, image_shape=[1, 18, 18], mults=[1, 2], patch=2)
    with pytest.raises(ValueError, match=r"events_fm: key 'image_shape': expected \[C, H, W\] with C·H·W = "
                                         r"n_features=4096, found \[1, 32, 32\]"):
        EventFlowMatching(4096, 2, image_shape=[1, 32, 32])
    with pytest.raises(ValueError, match="events_fm: key 'ema': expected a decay in"):
        EventFlowMatching(256, 2, image_shape=[1, 16, 16], ema=1.0)


def test_conditioning_changes_the_velocity_and_the_sample():
    m = _perturb(_model()).eval()
    y, t = torch.randn(4, 256, generator=torch.Generator().manual_seed(2)), torch.full((4,), 0.5)
    c0, c1 = torch.zeros(4, 2), torch.ones(4, 2)
    v0, v1 = m.velocity(y, t, c0), m.velocity(y, t, c1)
    assert float((v0 - v1).abs().max()) > 1e-3
    torch.testing.assert_close(m.velocity(y, t, c0), v0)  # deterministic
    s0 = m.sample(c0, torch.Generator().manual_seed(0))
    s1 = m.sample(c1, torch.Generator().manual_seed(0))
    assert not torch.equal(s0, s1)
    torch.testing.assert_close(m.sample(c0, torch.Generator().manual_seed(0)), s0)


def test_phi_axis_is_periodic():
    """Rolling the input along φ by a multiple of the total stride (patch·2 = 4) rolls the
    velocity alike (circular padding); along η (zero padding) it does not."""
    m = _perturb(_model()).eval()
    y, t, c = torch.randn(2, 256, generator=torch.Generator().manual_seed(4)), torch.full((2,), 0.3), torch.rand(2, 2)
    img = y.reshape(2, 1, 16, 16)
    v = m.velocity(y, t, c).reshape(2, 1, 16, 16)
    v_phi = m.velocity(img.roll(4, dims=-1).reshape(2, -1), t, c).reshape(2, 1, 16, 16)
    torch.testing.assert_close(v_phi, v.roll(4, dims=-1), atol=1e-5, rtol=1e-5)
    v_eta = m.velocity(img.roll(4, dims=-2).reshape(2, -1), t, c).reshape(2, 1, 16, 16)
    assert float((v_eta - v.roll(4, dims=-2)).abs().max()) > 1e-3


def test_ema_hand_worked_and_used_in_eval_mode():
    m = _model(ema=0.9)
    opt = m.configure_optimizers(1e-2, 0.0)
    assert all(p.requires_grad is False for p in m.averaged.parameters())
    assert {id(p) for g in opt["model"].param_groups for p in g["params"]} == {id(p) for p in m.net.parameters()}
    x, c = toy_events(4, side=16), None
    pre = DOMAIN.fit_preprocessor(x, TrainConfig(family="events_fm"))
    xt, c = torch.from_numpy(pre.transform(x.images)), torch.from_numpy(pre.transform_conditions(x.conditions))
    w = m.net.embed[0].weight
    m.train().training_step(xt, c, opt, 0, None)  # first update copies the weights
    torch.testing.assert_close(m.averaged.module.embed[0].weight, w)
    before = m.averaged.module.embed[0].weight.clone()
    m.training_step(xt, c, opt, 1, None)  # n = 1: decay min(0.9, 2/11) = 2/11
    d = 2.0 / 11.0
    torch.testing.assert_close(m.averaged.module.embed[0].weight, d * before + (1 - d) * w.detach())
    assert not torch.equal(m.averaged.module.embed[0].weight, w)
    y, t = torch.randn(2, 256), torch.full((2,), 0.5)
    m.eval()
    torch.testing.assert_close(m.velocity(y, t, c[:2]), m.averaged.module(y, t, c[:2]))
    m.train()
    torch.testing.assert_close(m.velocity(y, t, c[:2]), m.net(y, t, c[:2]))


def test_loss_decreases_on_a_tiny_toy_and_learns_the_condition():
    """Images with one 3 × 3 block at a random place, of value 0.3 (c = 0) or 0.9 (c = 1): the
    flow-matching loss falls and the samples at c = 1 carry clearly more intensity than at c = 0
    (3× in the toy)."""
    torch.manual_seed(0)
    m = EventFlowMatching(256, 1, image_shape=[1, 16, 16], filters=8, mults=[1, 2], patch=2, steps=4, ema=0.9)
    rng = np.random.default_rng(0)
    n = 64
    img = np.zeros((n, 1, 16, 16), np.float32)
    cond = (np.arange(n) % 2).astype(np.float32)[:, None]
    for i in range(n):
        r, col = rng.integers(0, 14, size=2)
        img[i, 0, r:r + 3, col:col + 3] = 0.3 + 0.6 * cond[i, 0] + rng.uniform(-0.05, 0.05)
    x, c = torch.from_numpy(img.reshape(n, -1)), torch.from_numpy(cond)
    val_before = float(m.eval().validation_loss(x, c))
    opt = m.configure_optimizers(1e-2, 0.0)
    m.train()
    for step in range(200):
        idx = torch.from_numpy(rng.choice(n, 32, replace=False))
        m.training_step(x[idx], c[idx], opt, step, 1.0)
    val_after = float(m.eval().validation_loss(x, c))
    assert val_after < 0.2 * val_before, (val_before, val_after)
    s0, s1 = (m.sample(torch.full((32, 1), v), torch.Generator().manual_seed(5)) for v in (0.0, 1.0))
    assert float(s1.sum()) > 1.5 * float(s0.sum()), (float(s0.sum()), float(s1.sum()))
    assert float(s1[s1 > 0].mean()) > float(s0[s0 > 0].mean()) + 0.1


def test_save_load_round_trip_gives_identical_samples(tmp_path):
    data = toy_events(8, side=16)
    cfg = TrainConfig(family="events_fm", model={k: v for k, v in TINY.items() if k != "image_shape"}, batch_size=4)
    DOMAIN.check(data, cfg)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.image_shape == [1, 16, 16]  # data-derived
    x = torch.from_numpy(DOMAIN.features(pre, data, np.random.default_rng(0)))
    c = torch.from_numpy(DOMAIN.conditions(pre, data))
    opt = model.configure_optimizers(1e-3, 0.0)
    model.train()
    for step in range(3):
        model.training_step(x[step:step + 4], c[step:step + 4], opt, step, None)
    gen = DOMAIN.generator(model, pre, data, DOMAIN.meta(data, cfg))
    a = gen.sample_like(data, seed=3)
    gen.save(tmp_path / "m.pt")
    payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["family"] == "events_fm" and any(k.startswith("averaged.") for k in payload["model"])
    again = DOMAIN.from_payload(payload, "m.pt")
    assert float(again.model.occupied_floor) == float(model.occupied_floor) < 1
    b = again.sample_like(data, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == data.images.shape and (a.images >= 0).all()


def test_train_through_the_trainer_and_sample(tmp_path):
    data = toy_events(24, side=16)
    model = {k: v for k, v in TINY.items() if k != "image_shape"}
    cfg = TrainConfig(family="events_fm", model=model, epochs=2, batch_size=8, seed=0, n_eval=24, lr=1e-3,
                      tensorboard=False)
    gen = trainer_module.train(data, cfg, tmp_path)
    assert gen.kind == "events" and gen.model.family == "events_fm" and gen.meta["selected_by"] == "physics"
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    fake = gen.sample_like(data, seed=0)
    assert fake.images.shape == data.images.shape
    np.testing.assert_array_equal(fake.conditions, data.conditions)
    assert np.isfinite(DOMAIN.selection_score(gen, data, seed=0))
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and "val_physics" in log[0]


def test_packaged_preset_is_what_family_events_fm_starts_from():
    from hepgen.config import family_config

    cfg = family_config("events_fm")
    assert (cfg.family, cfg.batch_size, cfg.lr, cfg.select_by, cfg.ema) == ("events_fm", 32, 2e-3, "physics", None)
    m = build_model("events_fm", n_features=4096, n_conditions=2, image_shape=[1, 64, 64], **cfg.model)
    assert (m.hparams["patch"], m.sample_method, m.sample_steps) == (4, "midpoint", 8)
    # 16 × 16 after the fold: three resolutions 16, 8, 4 with widths 16, 32, 32
    assert [b.conv2.conv.out_channels for b in m.net.down] == [16, 32, 32]
