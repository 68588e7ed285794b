"""The events domain: preprocessing, the mass-conditioning path, DCGAN/WGAN-GP steps, save/load,
selection score, evaluation report."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

import hepgen.domains.events as events_domain
from _toy_events import toy_events
from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.events import PROCESSES, EventImages, write_events
from hepgen.domains.base import domain_of_data
from hepgen.domains.events import DOMAIN, EventPreprocessor
from hepgen.metrics.event_jets import event_observables
from hepgen.models.dcgan import EventDCGAN

TINY = {"noise_dim": 8, "filters": 4}


def test_domain_is_registered_and_sniffs_files(tmp_path):
    data = toy_events(4)
    assert domain_of_data(data) is DOMAIN
    path = tmp_path / "e.h5"
    write_events(path, data)
    assert DOMAIN.accepts_file(path) and len(DOMAIN.read(path)) == 4
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    assert not DOMAIN.accepts_file(tmp_path / "x.h5")


def test_preprocessing_hand_worked_and_round_trip():
    data = toy_events(6)
    pre = DOMAIN.fit_preprocessor(data, TrainConfig(family="dcgan"))
    c = pre.transform_conditions(np.array([[1000.0, 300.0, 0.0], [1400.0, 600.0, 0.0], [1200.0, 450.0, 5.0]]))
    np.testing.assert_allclose(c, [[0, 0], [1, 1], [0.5, 0.5]], atol=1e-6)  # (m − 1000)/400, (m − 300)/300
    x = DOMAIN.features(pre, data, np.random.default_rng(0))
    assert x.shape == (6, 4096) and x.dtype == np.float32 and x.min() == 0.0 and x.max() == pytest.approx(1.0)
    np.testing.assert_allclose(pre.inverse(x), data.images, rtol=1e-4, atol=1e-4)
    state = json.loads(json.dumps(pre.state_dict()))
    again = DOMAIN.preprocessor_from_state(state)
    np.testing.assert_array_equal(again.transform(data.images), x)
    with pytest.raises(ValueError, match=r"conditions: expected names from \['m_gluino', 'm_neutralino', 'mu'\], "
                                         r"found \['mass'\]"):
        EventPreprocessor(["mass"])


def test_check_refuses_other_kinds_and_tiny_data():
    data = toy_events(4)
    with pytest.raises(ValueError, match="TrainConfig: key 'family': 'gan' generates showers, the data are events; "
                                         r"families for events: \['dcgan', 'dcgan_wgan_gp', 'events_fm'\]"):
        DOMAIN.check(data, TrainConfig(family="gan"))
    with pytest.raises(ValueError, match="need at least 2 training events, found 1"):
        DOMAIN.check(data.subset([0]), TrainConfig(family="dcgan"))


def test_dcgan_architecture_and_bad_hparams():
    m = EventDCGAN(4096, 2)
    convt = [l for l in m.generator.net if isinstance(l, torch.nn.ConvTranspose2d)]
    convs = [l for l in m.critic.net if isinstance(l, torch.nn.Conv2d)]
    assert len(convt) == 5 and len(convs) == 5  # the paper's five and five
    assert convt[0].in_channels == 64 + 2 and convs[0].in_channels == 1 + 2  # masses in both nets
    with pytest.raises(ValueError, match=r"dcgan: key 'image_shape': expected \[C, H, W\] with H = W and "
                                         r"C·H·W = n_features=4096, found \[1, 32, 32\]"):
        EventDCGAN(4096, 2, image_shape=[1, 32, 32])
    with pytest.raises(ValueError, match="dcgan: key 'flip_rate': expected a fraction in"):
        EventDCGAN(4096, 2, flip_rate=0.7)
    with pytest.raises(ValueError, match="expected square images of side 2"):
        EventDCGAN(3 * 48 * 48, 2, image_shape=[3, 48, 48])


@pytest.mark.parametrize("family", ["dcgan", "dcgan_wgan_gp"])
def test_mass_conditioning_path_and_training_steps(family):
    torch.manual_seed(0)
    data = toy_events(16)
    cfg = TrainConfig(family=family, model=TINY, batch_size=8)
    DOMAIN.check(data, cfg)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    assert model.hparams["image_shape"] == [1, 64, 64] and model.n_conditions == 2
    x = torch.from_numpy(DOMAIN.features(pre, data, np.random.default_rng(0)))
    c = torch.from_numpy(DOMAIN.conditions(pre, data))
    assert set(np.unique(c.numpy()[:, 0]).tolist()) == {0.0, 1.0}
    opts = model.configure_optimizers(2e-4, 0.0)
    g_first = next(model.generator.parameters()).detach().clone()
    logs = [model.training_step(x[:8], c[:8], opts, step, 5.0) for step in range(3)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    n_gen_steps = sum("loss_generator" in log for log in logs)
    assert n_gen_steps == (3 if family == "dcgan" else 1)  # WGAN-GP: one generator step per n_critic=5
    assert not torch.equal(g_first, next(model.generator.parameters()))
    # the masses reach the generator: the condition input weights received gradients, and the
    # same noise at the two mass points gives different images
    w = model.generator.net[0].weight  # (noise_dim + 2, 8F, 4, 4)
    model.zero_grad()
    model.generator_loss(c[:8]).backward()
    assert w.grad[TINY["noise_dim"]:].abs().sum() > 0
    z = torch.randn(4, TINY["noise_dim"], generator=torch.Generator().manual_seed(1))
    lo = model.sample_from_noise(torch.zeros(4, 2), z)
    hi = model.sample_from_noise(torch.ones(4, 2), z)
    assert not torch.allclose(lo, hi)
    # ... and the discriminator: constant condition channels change its output
    model.eval()
    img = x[:4].reshape(4, 1, 64, 64)
    assert not torch.allclose(model.critic(img, torch.zeros(4, 2)), model.critic(img, torch.ones(4, 2)))
    assert torch.isnan(model.validation_loss(x[:4], c[:4]))


def test_generator_save_load_sample_and_selection_score(tmp_path):
    torch.manual_seed(0)
    data = toy_events(8)
    cfg = TrainConfig(family="dcgan", model=TINY)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    meta = DOMAIN.meta(data, cfg)
    json.dumps(meta)
    gen = DOMAIN.generator(model, pre, data, meta)
    gen.meta.update(epoch=1, step=4)
    gen.save(tmp_path / "best.pt", trainer_state={"epoch": 1})
    payload = load_checkpoint(tmp_path / "best.pt")
    assert payload["kind"] == "events" and payload["meta"]["epoch"] == 1
    again = DOMAIN.from_payload(payload, "best.pt")
    a, b = gen.sample_like(data, seed=3), again.sample_like(data, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.conditions, data.conditions)
    assert a.images.shape == data.images.shape and (a.images >= 0).all()
    with pytest.raises(ValueError, match="best.pt: key 'kind': expected 'events', found 'jets'"):
        DOMAIN.from_payload({**payload, "kind": "jets"}, "best.pt")
    score = DOMAIN.selection_score(gen, data, seed=0)
    assert np.isfinite(score) and score > 0

    class Identity:  # a "generator" that returns the real events: score 0
        def sample_like(self, d, seed=0):
            return d

    assert DOMAIN.selection_score(Identity(), data, 0) == 0.0

    class Darker:  # no jets on either side: for pile-up images the energy terms still see the difference
        def sample_like(self, d, seed=0):
            return EventImages(d.images * 0.5, d.conditions, None, d.process, d.attrs)

    soft = toy_events(30, seed=5)
    soft.images *= 0.02  # no 200 GeV jets left
    soft.process[:] = PROCESSES.index("pileup")
    assert event_observables(soft.images)["n_jets"].sum() == 0
    o_r, o_g = event_observables(soft.images), event_observables(soft.images * 0.5)
    want = -np.log(stats.ks_2samp(o_r["total_energy"], o_g["total_energy"]).pvalue)  # sparsity is unchanged
    assert DOMAIN.selection_score(Darker(), soft, 0) == pytest.approx(want, rel=1e-9)
    soft.process[0] = PROCESSES.index("signal")  # not pure pile-up: the paper's three jet terms only
    assert DOMAIN.selection_score(Darker(), soft, 0) == 0.0


def test_evaluate_files_report_with_floor(tmp_path):
    real, gen = toy_events(60, seed=1), toy_events(60, seed=2)
    bad = toy_events(60, seed=3)
    bad.images *= 0.5  # half the energy: jets at half the pT and mass
    write_events(tmp_path / "real.h5", real)
    write_events(tmp_path / "gen.h5", gen)
    write_events(tmp_path / "bad.h5", bad)
    m = DOMAIN.evaluate_files(tmp_path / "real.h5", tmp_path / "gen.h5", tmp_path / "out")
    mb = DOMAIN.evaluate_files(tmp_path / "real.h5", tmp_path / "bad.h5", tmp_path / "outb", no_classifier=True)
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["selection_score"] == pytest.approx(m["selection_score"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # observables, average images, Figure 3 (2 mass points)
    obs = m["observables"]["summed_mass"]
    assert obs["w1_floor"] is not None and obs["ks_floor"] > 0
    # same generator process → near the floor; halved energies → far off
    assert mb["selection_score"] > 10 * max(m["selection_score"], 1.0)
    assert mb["observables"]["ht"]["mean_gen"] == pytest.approx(0.5 * mb["observables"]["ht"]["mean_real"], rel=0.35)
    assert 0.3 < m["classifier_auc"] < 0.75
    assert {p["m_gluino"] for p in m["mass_points"]} == {1000.0, 1400.0}
    assert "classifier_auc" not in mb


def test_overlay_shift_hand_case():
    hard = toy_events(10, seed=4)
    empty = hard.subset(slice(None))
    empty.images = np.zeros_like(hard.images)
    res = events_domain.overlay_shift(hard, empty, empty)
    assert res["n_jets"]["shift_real"] == 0.0 and res["n_jets"]["shift_gen"] == 0.0
    res = events_domain.overlay_shift(hard, hard, empty)  # "pile-up" = the events themselves: masses double
    assert res["summed_mass"]["shift_real"] > 0 and res["summed_mass"]["shift_gen"] == 0.0
    assert res["summed_mass"]["shift_gen_err"] == 0.0 and res["summed_mass"]["shift_real_err"] > 0
    # hand-worked: the shifts differ by −shift_real on every event → relative difference −1; its paired
    # error is std(−Δ)/√n / shift_real, with Δ the per-event doubling of the summed mass
    sm = res["summed_mass"]
    assert sm["shift_rel_diff"] == pytest.approx(-1.0)
    assert sm["shift_rel_diff_err"] == pytest.approx(sm["shift_real_err"] / sm["shift_real"], rel=1e-9)
    with pytest.raises(ValueError, match="overlay_shift: need >= 10 pile-up images of each kind, found 3 real"):
        events_domain.overlay_shift(hard, hard.subset([0, 1, 2]), empty)
