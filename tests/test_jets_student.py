"""The one-pass jet student (issue 21): equivariance, its masked L1, `hepgen distill` of a jet teacher."""

import numpy as np
import pytest
import torch

from _toy_jets import toy_jets
from hepgen.cli import main
from hepgen.data.jets import write_jets
from hepgen.domains.jets import JetGenerator, JetPreprocessor
from hepgen.export_jets import check_jets_onnx, export_jets_onnx
from hepgen.models import build_model
from hepgen.models.base import MODEL_FAMILIES, check_family_kind
from hepgen.train.distill import distill, teacher_pairs

P = 6


@pytest.fixture(scope="module")
def jets():
    return toy_jets(400, n_particles=P, seed=4)


def _teacher(jets, path, family="epic_fm", conditions=("type", "pt", "eta")) -> JetGenerator:
    """An untrained but non-trivial jet flow-matching teacher, saved at ``path``."""
    torch.manual_seed(0)
    pre = JetPreprocessor(P, list(conditions)).fit(jets)
    model = build_model(family, n_features=3 * P, n_conditions=pre.n_conditions,
                        **MODEL_FAMILIES[family].tiny_hparams()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    gen = JetGenerator(model, pre, {"pt_range": [800.0, 1200.0], "eta_range": [-2.0, 2.0], "jet_types": ["g", "t"]})
    gen.save(path)
    return gen


def _student(seed=0, **hp):
    torch.manual_seed(seed)
    s = build_model("jet_student", n_features=3 * P, n_conditions=3, n_particles=P, **{
        "hidden": 8, "n_hidden": 2, "global_dim": 4, **hp}).eval()
    with torch.no_grad():
        for p in s.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return s


@pytest.mark.parametrize("network", ["epic", "transformer"])
def test_jet_student_is_permutation_equivariant_and_ignores_padding_noise(network):
    s = _student(network=network)
    c = torch.tensor([[4.0, 0.5, -1.0], [6.0, -0.2, 0.3], [1.0, 1.0, 0.0]])
    z = torch.randn(3, P, 3)
    with torch.no_grad():
        x = s.sample_from_noise(c, z.reshape(3, -1)).reshape(3, P, 3)
        perm = torch.tensor([2, 0, 3, 1, 4, 5])  # permutes the 4 real particles of jet 0
        xp = s.sample_from_noise(c, z[:, perm].reshape(3, -1)).reshape(3, P, 3)
        zpad = z.clone()
        zpad[0, 4:] = float("inf")  # padding noise of jet 0, even non-finite, changes nothing
        zpad[2, 1:] = 7.0
        xpad = s.sample_from_noise(c, zpad.reshape(3, -1)).reshape(3, P, 3)
    torch.testing.assert_close(xp[0], x[0, perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(xpad, x, atol=0, rtol=0)
    assert bool((x[0, 4:] == 0).all()) and bool((x[2, 1:] == 0).all())
    assert float(x[0, :4].abs().min()) > 0


def test_jet_student_l1_counts_real_particles_only_by_hand():
    s = build_model("jet_student", n_features=6, n_conditions=1, n_particles=2, hidden=4, n_hidden=1, global_dim=2)
    with torch.no_grad():
        for p in s.net.parameters():
            p.zero_()
        s.skip.copy_(torch.tensor([2.0, 1.0, 0.0]))
    c = torch.tensor([[1.0]])  # one real particle of two slots
    z = torch.tensor([[1.0, -1.0, 3.0, 9.0, 9.0, 9.0]])
    # S = (2·1, 1·(-1), 0·3) on the real slot, 0 on the padding slot
    torch.testing.assert_close(s.sample_from_noise(c, z), torch.tensor([[2.0, -1.0, 0.0, 0.0, 0.0, 0.0]]))
    # |2 - 1| + |-1 - 1| + |0 - 0.5| = 3.5 over the 3 real features; the padding entries (5) are ignored
    target = torch.tensor([[1.0, 1.0, 0.5, 5.0, 5.0, 5.0]])
    assert s.distill_loss(z, c, target).item() == pytest.approx(3.5 / 3)


def test_jet_student_refuses_data_training_and_bad_sizes():
    with pytest.raises(ValueError, match="distilled from a trained model"):
        check_family_kind("jet_student", "jets")
    with pytest.raises(ValueError, match="n_particles"):
        build_model("jet_student", n_features=10, n_conditions=1, n_particles=3)
    with pytest.raises(ValueError, match="must be >= 1, found 0, 1, 1"):
        build_model("jet_student", n_features=6, n_conditions=1, n_particles=2, hidden=0, n_hidden=1, global_dim=1)
    with pytest.raises(ValueError, match="'network': expected 'epic' or 'transformer', found 'mlp'"):
        build_model("jet_student", n_features=6, n_conditions=1, n_particles=2, network="mlp")
    with pytest.raises(NotImplementedError, match="hepgen distill"):
        _student().loss(torch.zeros(1, 3 * P), torch.ones(1, 3))


@pytest.mark.parametrize("family", ["epic_fm", "jet_transformer_fm"])
def test_distill_of_a_jet_teacher_writes_a_working_equivariant_student(jets, tmp_path, family):
    teacher = _teacher(jets, tmp_path / "teacher.pt", family)
    path = distill(tmp_path / "teacher.pt", jets, tmp_path / "student", rounds=3, n_pairs=1500, n_val=300,
                   epochs_per_round=3, batch_size=100, hidden=16, n_hidden=2, lr=3e-3, seed=0, progress=False)
    student = JetGenerator.load(path)
    assert student.model.family == "jet_student" and student.model.hparams["teacher_family"] == family
    assert student.model.hparams["n_particles"] == P and student.meta["distilled_from"]["family"] == family
    assert student.preprocessor.state_dict() == teacher.preprocessor.state_dict()
    log = np.genfromtxt(tmp_path / "student" / "distill_log.csv", delimiter=",", names=True)
    assert len(log) == 3 and log["val_l1"][-1] < 0.9 * log["val_l1"][0]
    # closer to the teacher on the same noise than an untrained student of the same size
    pool = torch.from_numpy(teacher.preprocessor.conditions_of(jets).astype(np.float32))
    z, c, x = teacher_pairs(teacher.model, pool, 300, torch.Generator().manual_seed(1))
    fresh = build_model("jet_student", n_features=3 * P, n_conditions=c.shape[1], n_particles=P, hidden=16,
                        n_hidden=2)
    with torch.no_grad():
        assert student.model.distill_loss(z, c, x) < 0.7 * fresh.distill_loss(z, c, x)
    out = student.sample_like(jets, seed=0)
    assert out.particle_features.shape == jets.particle_features.shape
    np.testing.assert_array_equal(out.mask.sum(axis=1), jets.mask.sum(axis=1))
    assert np.isfinite(out.particle_features).all()
    # a student is not a teacher
    with pytest.raises(ValueError, match="'jet_student' is already a student"):
        distill(path, jets, tmp_path / "again", rounds=1)


def test_distill_command_line_and_onnx_export_of_a_jet_student(jets, tmp_path):
    pytest.importorskip("onnxruntime")
    _teacher(jets, tmp_path / "teacher.pt")
    write_jets(tmp_path / "train.h5", jets)
    assert main(["distill", str(tmp_path / "teacher.pt"), "--data", str(tmp_path / "train.h5"), "-o",
                 str(tmp_path / "cli"), "--rounds", "1", "--n-pairs", "400", "--epochs-per-round", "2",
                 "--hidden", "8", "--n-hidden", "1", "--student-hparam", "network=transformer", "-q"]) == 0
    student = JetGenerator.load(tmp_path / "cli" / "best.pt")
    assert student.model.hparams["hidden"] == 8 and student.model.hparams["n_hidden"] == 1
    assert student.model.hparams["network"] == "transformer"
    assert student.meta["distilled_from"]["rounds"] == 1
    info = export_jets_onnx(student, tmp_path / "s.onnx")
    assert info["steps"] is None and info["noise_dim"] == 3 * P
    check = check_jets_onnx(tmp_path / "s.onnx", student, n=200)
    assert check["n_outside_tolerance"] == 0 and check["max_abs_diff"] < 1e-4, check


def test_adversarial_distillation_trains_a_critic_selects_by_the_physics_score_and_continues_a_student(jets, tmp_path):
    _teacher(jets, tmp_path / "teacher.pt")
    first = distill(tmp_path / "teacher.pt", jets, tmp_path / "s1", rounds=1, n_pairs=600, n_val=200,
                    batch_size=100, hidden=8, n_hidden=1, seed=0, progress=False)
    path = distill(tmp_path / "teacher.pt", jets, tmp_path / "adv", rounds=2, n_pairs=600, n_val=200,
                   batch_size=100, lr=1e-4, seed=0, progress=False, adversarial=0.1, init=first, n_select=30)
    student = JetGenerator.load(path)
    assert student.model.hparams["hidden"] == 8  # the init's size, not the default 128
    info = student.meta["distilled_from"]
    assert info["adversarial"] == 0.1 and info["init"] == str(first)
    log = np.genfromtxt(tmp_path / "adv" / "distill_log.csv", delimiter=",", names=True)
    assert len(log) == 2 and np.all(np.isfinite(log["critic_loss"])) and np.all(np.isfinite(log["score"]))
    # LSGAN with labels ±1: the critic's loss starts near ½(1² + 1²) = 1 and cannot be negative
    assert np.all((log["critic_loss"] > 0) & (log["critic_loss"] < 3))
    # the saved student is the round with the lowest physics score, and its score is recorded
    k = int(np.argmin(log["score"]))
    assert info["rounds"] == k + 1 and info["score"] == pytest.approx(log["score"][k])
    # a student of another teacher's shapes is refused (here: the teacher has one condition fewer)
    _teacher(jets, tmp_path / "t2.pt", conditions=["type", "pt"])
    with pytest.raises(ValueError, match="expected a jet_student of 18 features and 4 conditions .*found jet_student of 18 and 5"):
        distill(tmp_path / "t2.pt", jets, tmp_path / "x", rounds=1, init=first)
