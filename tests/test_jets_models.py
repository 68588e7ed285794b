"""Jet generators (data_kind "jets"): preprocessing, permutation symmetry, the trainer's jet
path, checkpoints, and the CLI (train → sample-jets → evaluate-jets).

Every registered jets family goes through the same trainer tests (``JET_FAMILIES``);
family-specific tests of the EPiC-GAN are in ``tests/test_jets_gan.py``.
"""

import json
import math

import numpy as np
import pytest
import torch

from _toy_jets import toy_jets
from hepgen.checkpoint import load_checkpoint
from hepgen.cli import main
from hepgen.config import TrainConfig, preset
from hepgen.data.jets import read_jets, validate_jets, write_jets
from hepgen.domains.jets.generator import JetGenerator
from hepgen.domains.jets.preprocessing import JetPreprocessor
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.models import MODEL_FAMILIES, build_model
from hepgen.models.epic import jet_mask
from hepgen.train.trainer import StopTraining, train

JET_FAMILIES = sorted(f for f, cls in MODEL_FAMILIES.items() if cls.data_kind == "jets")
P = 6


@pytest.fixture(scope="module")
def jets():
    return toy_jets(400, n_particles=P, seed=1)


def _config(family, **kw):
    base = dict(family=family, model=MODEL_FAMILIES[family].tiny_hparams(), epochs=3, batch_size=64, lr=2e-3,
                n_eval=150, tensorboard=False, threads=1, seed=3, conditions=["type", "pt", "eta"])
    base.update(kw)
    return TrainConfig(**base)


# --- preprocessing -----------------------------------------------------------------------
def test_preprocessor_round_trip_conditions_and_state(jets):
    pre = JetPreprocessor(P, ["type", "pt", "eta"]).fit(jets)
    x = pre.transform(jets)
    assert x.shape == (len(jets), 3 * P) and pre.n_features == 3 * P
    z = x.reshape(len(jets), P, 3)
    assert np.all(z[~jets.mask] == 0.0)
    real = z[jets.mask]  # standardised: mean 0, std 1 over real particles
    np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(real.std(axis=0), 1.0, atol=1e-4)
    back = pre.inverse(x, jets.mask.sum(axis=1))
    np.testing.assert_allclose(back, jets.particle_features, rtol=1e-5, atol=1e-6)  # toy jets are pT-sorted
    c = pre.conditions_of(jets)
    assert pre.types == [0, 2] and c.shape == (len(jets), pre.n_conditions) == (len(jets), 1 + 2 + 2)
    np.testing.assert_array_equal(c[:, 0], jets.mask.sum(axis=1))
    np.testing.assert_array_equal(c[:, 1], jets.jet_type == 0)
    np.testing.assert_array_equal(c[:, 2], jets.jet_type == 2)
    np.testing.assert_allclose(c[:, 3].mean(), 0.0, atol=1e-5)  # log pT standardised
    again = JetPreprocessor.from_state(json.loads(json.dumps(pre.state_dict())))
    np.testing.assert_array_equal(again.transform(jets), x)
    np.testing.assert_array_equal(again.conditions_of(jets), c)


def test_preprocessor_inverse_sorts_by_pt_and_zeroes_padding():
    pre = JetPreprocessor(3, [])
    pre.fitted = True  # identity standardisation: feature_mean 0, std 1
    x = np.array([[0.1, 0.2, math.log(0.2), 0.3, 0.4, math.log(0.5), 9.0, 9.0, 9.0]])
    out = pre.inverse(x, [2])
    np.testing.assert_allclose(out[0], [[0.3, 0.4, 0.5, 1.0], [0.1, 0.2, 0.2, 1.0], [0, 0, 0, 0]], atol=1e-6)


def test_multiplicity_sampling_follows_training_distribution(jets):
    pre = JetPreprocessor(P, ["type"]).fit(jets)
    n = pre.sample_multiplicity(np.full(20_000, 2), np.random.default_rng(0))
    real = jets.mask.sum(axis=1)[jets.jet_type == 2]
    for k in range(1, P + 1):  # binomial errors on 20k draws: ≤ 0.011; tolerance 0.015
        assert abs(np.mean(n == k) - np.mean(real == k)) < 0.015, k


def test_preprocessor_errors_name_the_problem(jets):
    pre = JetPreprocessor(P, ["type", "pt"]).fit(jets)
    with pytest.raises(ValueError, match="trained on"):
        pre.transform_conditions(np.array([2]), np.array([4]), np.array([[1000.0, 0, 50, 2]]))
    with pytest.raises(ValueError, match="1 … 6"):
        pre.transform_conditions(np.array([7]), np.array([0]), np.array([[1000.0, 0, 50, 7]]))
    with pytest.raises(ValueError, match="jet_features"):
        JetPreprocessor(P, ["pt"]).fit(type(jets)(jets.particle_features, None, jets.jet_type))
    with pytest.raises(ValueError, match="jet_type"):
        JetPreprocessor(P, ["type"]).fit(type(jets)(jets.particle_features, jets.jet_features, None))
    with pytest.raises(ValueError, match="expected distinct names"):
        JetPreprocessor(P, ["colour"])


# --- permutation symmetry of the EPiC flow-matching model --------------------------------
def _cloud(n_real=(4, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor([[float(n_real[0]), 1.0, 0.0, 0.3, -0.5], [float(n_real[1]), 0.0, 1.0, -1.0, 0.8]])
    x = torch.randn(2, P, 3, generator=g) * jet_mask(c, P)
    return x.reshape(2, -1), c


def _permute_real(x, c, seed=1):
    g = torch.Generator().manual_seed(seed)
    pts = x.reshape(len(x), P, 3).clone()
    for i, n in enumerate(c[:, 0].long()):
        pts[i, :n] = pts[i, torch.randperm(int(n), generator=g)]
    return pts.reshape(len(x), -1)


@pytest.fixture(scope="module")
def fm():
    torch.manual_seed(0)
    return build_model("epic_fm", n_features=3 * P, n_conditions=5, n_particles=P, hidden=16, global_dim=4,
                       n_layers=2, time_freqs=2).double().eval()


@torch.no_grad()
def test_velocity_is_permutation_equivariant_and_ignores_padding(fm):
    x, c = _cloud()
    x, c = x.double(), c.double()
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    v = fm.velocity(x, t, c)
    xp = _permute_real(x, c)
    vp = fm.velocity(xp, t, c)
    # permuting the real particles permutes the velocity the same way
    np.testing.assert_allclose(_permute_real(v, c).numpy(), vp.numpy(), atol=1e-12)
    junk = x.clone().reshape(2, P, 3)
    junk[0, 4:] = 7.0  # garbage in the padding slots of jet 0 (4 real particles)
    junk[0, 5, 1] = float("inf")
    junk[0, 4, 2] = float("nan")
    vj = fm.velocity(junk.reshape(2, -1), t, c)
    np.testing.assert_allclose(vj.numpy(), v.numpy(), atol=1e-12)
    assert torch.all(v.reshape(2, P, 3)[0, 4:] == 0)


def test_likelihood_is_permutation_invariant(fm):
    x, c = _cloud()
    x, c = x.double(), c.double()
    lp = fm.ode_log_prob(x, c, steps=6)
    lpp = fm.ode_log_prob(_permute_real(x, c), c, steps=6)
    assert torch.isfinite(lp).all()
    np.testing.assert_allclose(lpp.numpy(), lp.numpy(), rtol=1e-9, atol=1e-9)


def test_likelihood_counts_only_real_dimensions(fm):
    # with the output layer zeroed the velocity is 0: the flow is the identity, and the
    # density is the standard normal over the n·3 real dimensions — worked out by hand
    zero = build_model("epic_fm", **fm.hparams).double()
    with torch.no_grad():
        zero.net.epic.local_out.weight.zero_()
        zero.net.epic.local_out.bias.zero_()
    x, c = _cloud()
    x, c = x.double(), c.double()
    expected = -0.5 * x.square().sum(dim=1) - 0.5 * 3 * c[:, 0] * math.log(2 * math.pi)
    np.testing.assert_allclose(zero.ode_log_prob(x, c, steps=4).numpy(), expected.numpy(), rtol=1e-12)


def test_samples_have_zero_padding_and_are_seeded(fm):
    c = _cloud()[1].double()
    a = fm.sample(c, torch.Generator().manual_seed(4))
    b = fm.sample_from_noise(c, torch.randn(2, fm.noise_dim, generator=torch.Generator().manual_seed(4),
                                            dtype=torch.float64))
    assert torch.equal(a, b)
    pts = a.reshape(2, P, 3)
    assert torch.all(pts[0, 4:] == 0) and torch.all(pts[0, :4] != 0)


# --- the trainer's jet path, every jets family --------------------------------------------
@pytest.mark.parametrize("family", JET_FAMILIES)
def test_jet_family_trains_samples_and_round_trips(tmp_path, jets, family):
    gen = train(jets, _config(family, epochs=4), tmp_path / "run", progress=False)
    assert isinstance(gen, JetGenerator)
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["epoch", "step"] and len(rows) == 5 and "val_physics" in rows[0]
    pre = gen.preprocessor
    x, c = torch.from_numpy(pre.transform(jets)), torch.from_numpy(pre.conditions_of(jets))
    torch.manual_seed(3)  # the trainer's initialisation
    untrained = build_model(family, **gen.model.hparams).eval()
    before = untrained.sanity_metric(x, c, torch.Generator().manual_seed(5))
    after = gen.model.sanity_metric(x, c, torch.Generator().manual_seed(5))
    assert after < before, (before, after)
    fake = gen.sample_like(jets.subset(slice(0, 200)), seed=2)
    validate_jets(fake, "generated")  # mask 0/1, zero padding, pt_rel >= 0
    np.testing.assert_array_equal(fake.mask.sum(axis=1), jets.mask[:200].sum(axis=1))
    np.testing.assert_array_equal(fake.jet_type, jets.jet_type[:200])
    pt = fake.particle_features[..., 2]
    assert np.all(np.diff(np.where(fake.mask, pt, -1.0), axis=1) <= 0)  # sorted by pt_rel, padding last
    np.testing.assert_allclose(fake.jet_features[:, :2], jets.jet_features[:200, :2])
    again = JetGenerator.load(tmp_path / "run" / "best.pt").sample_like(jets.subset(slice(0, 200)), seed=2)
    np.testing.assert_array_equal(again.particle_features, fake.particle_features)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["kind"] == "jets"


@pytest.mark.parametrize("family", JET_FAMILIES)
def test_jet_training_resumes_exactly(tmp_path, jets, family):
    cfg = _config(family, epochs=3, ema=0.9)
    train(jets, cfg, tmp_path / "straight", progress=False)

    def stop(epoch, record):
        if epoch == 1:
            raise StopTraining("test")

    train(jets, cfg, tmp_path / "split", progress=False, callbacks=[stop])
    assert load_checkpoint(tmp_path / "split" / "last.pt")["trainer"]["epoch"] == 1
    train(jets, cfg, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_wrong_family_for_the_data_and_wrong_checkpoint_kind(tmp_path, jets):
    with pytest.raises(ValueError, match="generates showers, the data are jets"):
        train(jets, TrainConfig(family="vae", epochs=1), tmp_path / "x", progress=False)
    gen = train(jets, _config("epic_fm", epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="expected a shower checkpoint"):
        ShowerGenerator.load(tmp_path / "run" / "best.pt")
    assert gen.model.family == "epic_fm"


def test_jet_presets_build():
    for name in ("epic_fm", "epic_gan", "jet_transformer_fm"):
        cfg = preset(name)
        assert MODEL_FAMILIES[cfg.family].data_kind == "jets"
        model = build_model(cfg.family, n_features=90, n_conditions=5, **{"n_particles": 30, **cfg.model})
        assert model.noise_dim is not None


# --- command line: train → sample-jets → evaluate-jets --------------------------------------
def test_cli_train_sample_evaluate_jets(tmp_path, jets, capsys):
    write_jets(tmp_path / "train.h5", jets)
    write_jets(tmp_path / "test.h5", toy_jets(300, n_particles=P, seed=9))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("family: epic_fm\nmodel: {hidden: 16, global_dim: 4, n_layers: 1, steps: 4}\n"
                   "epochs: 2\nbatch_size: 64\nn_eval: 100\ntensorboard: false\nthreads: 1\n")
    assert main(["train", str(tmp_path / "train.h5"), "-o", str(tmp_path / "run"), "--config", str(cfg), "-q"]) == 0
    assert "trained epic_fm on 400 jets" in capsys.readouterr().out
    assert main(["sample-jets", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "gen.h5"),
                 "--like", str(tmp_path / "test.h5"), "--steps", "2", "-q"]) == 0
    gen = read_jets(tmp_path / "gen.h5")
    assert len(gen) == 300 and sorted(set(gen.jet_type.tolist())) == [0, 2]
    assert main(["sample-jets", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "gen_t.h5"),
                 "--type", "t", "--n", "50", "-q"]) == 0
    assert set(read_jets(tmp_path / "gen_t.h5").jet_type.tolist()) == {2}
    assert main(["evaluate-jets", str(tmp_path / "test.h5"), str(tmp_path / "gen.h5"), "-o",
                 str(tmp_path / "ev"), "--no-efp", "--num-eval-samples", "100", "--num-batches", "2"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for jt in ("g", "t"):
        entry = metrics["types"][jt]["w1m"]
        assert entry["value"] > 0 and entry["floor"] > 0
    # shower options on a jets checkpoint: a clear message naming what it needs, not a traceback
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "s.h5"), "--n", "5"]) == 2
    assert "a jets checkpoint samples at the conditions of a file of its kind: give --like" in capsys.readouterr().err
    # the kind-generic `hepgen sample --like` gives the jets `sample-jets --like` gives
    assert main(["sample", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "s.h5"), "--like",
                 str(tmp_path / "test.h5"), "--n", "7", "--seed", "2"]) == 0
    assert main(["sample-jets", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "sj.h5"), "--like",
                 str(tmp_path / "test.h5"), "--n", "7", "--seed", "2"]) == 0
    np.testing.assert_array_equal(read_jets(tmp_path / "s.h5").particle_features,
                                  read_jets(tmp_path / "sj.h5").particle_features)


def test_jet_physics_score_hand_worked(jets):
    from hepgen.domains.jets.score import jet_w1_score as jet_physics_score

    class Stub:  # a "generator" returning given jets
        def __init__(self, out):
            self.out = out

        def sample_like(self, real, seed=0):
            return self.out

    assert jet_physics_score(Stub(jets), jets) == 0.0
    # a common shift δ of every particle's η_rel is a longitudinal boost: the mass, φ and pT
    # terms stay 0 and the η term is δ / std(η_rel); the score is the mean of the four terms
    shifted = jets.subset(slice(None))
    pf = shifted.particle_features.copy()
    delta = 0.01
    pf[..., 0] = np.where(jets.mask, pf[..., 0] + delta, 0.0)
    shifted.particle_features = pf
    expected = delta / jets.particles[..., 0][jets.mask].std() / 4
    assert jet_physics_score(Stub(shifted), jets) == pytest.approx(expected, rel=1e-4)


def test_generated_jet_features_are_marked_and_skipped_by_evaluation(tmp_path, jets):
    from hepgen.domains.jets.evaluate import evaluate_jets

    gen = train(jets, _config("epic_fm", epochs=1), tmp_path / "run", progress=False)
    fake = gen.sample_like(jets, seed=1)
    write_jets(tmp_path / "gen.h5", fake)
    assert read_jets(tmp_path / "gen.h5").attrs["jet_features_from"] == "conditions"
    kw = dict(efps=False, num_eval_samples=100, num_batches=2)
    m = evaluate_jets(jets, read_jets(tmp_path / "gen.h5"), **kw)["types"]["t"]
    assert m["jet_feature_observables"] is False and "jet_mass" not in m["observables"]
    real = evaluate_jets(jets, toy_jets(400, n_particles=P, seed=5), **kw)["types"]["t"]
    assert real["jet_feature_observables"] is True and "jet_mass" in real["observables"]
