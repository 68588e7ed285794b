"""Issue 14's fast sampler pieces: the coupling spline flow, the faster RQS transform,
the one-pass student and its distillation, and the config parsing they need."""

import math

import numpy as np
import pytest
import torch
from zuko.transforms import DependentTransform, MonotonicRQSTransform

from hepgen.cli import main
from hepgen.config import TrainConfig, apply_overrides, preset
from hepgen.data.formats import write_showers
from hepgen.data.geometry import default_binning
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.domains.showers.spline_sampler import rqs_inverse
from hepgen.models import build_model
from hepgen.models.base import MODEL_FAMILIES, check_family_kind
from hepgen.models import flow as flow_module
from hepgen.models.flow import (ConditionalFlow, FastRQSTransform, FusedRQSTransform, LinearMix, SplineCoupling,
                                coupling_flow)
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.distill import distill, teacher_pairs
from hepgen.train.trainer import train


def _spline_params(seed=0, n=200, bins=8):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(n, bins, generator=g), 3 * torch.randn(n, bins, generator=g),
            3 * torch.randn(n, bins - 1, generator=g), 4 * torch.randn(n, generator=g))


def test_fast_rqs_is_zukos_spline():
    w, h, d, x = _spline_params()
    ref, fast = MonotonicRQSTransform(w, h, d), FastRQSTransform(w, h, d)
    torch.testing.assert_close(fast(x), ref(x), atol=1e-5, rtol=2e-5)
    torch.testing.assert_close(fast.inv(x), ref.inv(x), atol=1e-5, rtol=2e-5)
    # the sampler's inverse from the raw block (hepgen.domains.showers.spline_sampler), same tolerance
    phi = torch.cat([w, h, d], dim=-1).unsqueeze(1)
    torch.testing.assert_close(rqs_inverse(phi, x.unsqueeze(1), 8).squeeze(1), ref.inv(x), atol=1e-5, rtol=2e-5)
    y, ladj = fast.call_and_ladj(x)
    torch.testing.assert_close(ladj, ref.call_and_ladj(x)[1], atol=5e-5, rtol=2e-5)
    # outside the bound B = 5 the spline is the identity with log-Jacobian 0
    assert torch.equal(fast(torch.tensor([7.0] * 200)), torch.tensor([7.0] * 200))


def test_fast_rqs_knots_are_a_partition_of_the_bound():
    w, h, d, _ = _spline_params(1)
    t = FastRQSTransform(w, h, d, bound=5.0)
    torch.testing.assert_close(t.horizontal[:, 0], torch.full((200,), -5.0))
    torch.testing.assert_close(t.horizontal[:, -1], torch.full((200,), 5.0))
    assert bool((t.horizontal.diff(dim=-1) > 0).all()) and bool((t.vertical.diff(dim=-1) > 0).all())


@pytest.mark.parametrize("bins,mix", [(0, 0), (4, 0), (4, 2)])
def test_coupling_flow_inverts_and_is_normalised(bins, mix):
    # mix 2: a LinearMix before each coupling layer, perturbed away from the identity below
    torch.manual_seed(0)
    flow = ConditionalFlow(2, 1, transforms=2, hidden_features=16, spline_bins=bins, coupling=True, mix=mix)
    with torch.no_grad():  # away from the identity-like initialisation
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    c = torch.full((1, 1), 0.3)
    z = torch.randn(100, 2)
    with torch.no_grad():
        x = flow.sample_from_noise(c.expand(100, 1), z)
        torch.testing.assert_close(flow.flow(c.expand(100, 1)).transform(x), z, atol=1e-4, rtol=0)
        grid = torch.linspace(-12, 12, 481)
        xx, yy = torch.meshgrid(grid, grid, indexing="ij")
        pts = torch.stack([xx.ravel(), yy.ravel()], dim=1)
        dens = flow.log_prob(pts, c.expand(len(pts), 1)).exp()
    assert dens.sum().item() * (grid[1] - grid[0]).item() ** 2 == pytest.approx(1.0, abs=0.02)


def test_coupling_masks_come_in_complementary_pairs():
    flow = coupling_flow(7, 0, transforms=4, hidden_features=[8], spline_bins=0)
    masks = [t.mask for t in flow.transform.transforms]
    assert [int(m.sum()) for m in masks] == [3, 4, 3, 4]
    assert torch.equal(masks[1], ~masks[0]) and torch.equal(masks[3], ~masks[2])
    # each MLP outputs parameters for the transformed half only (2 per feature for affine)
    assert [t.hyper[-1].out_features for t in flow.transform.transforms] == [8, 6, 8, 6]
    # LinearMix layers go in front of evenly spaced couplings and leave the masks as they were
    mixed = coupling_flow(7, 0, transforms=4, hidden_features=[8], spline_bins=0, mix=2).transform.transforms
    assert [type(t).__name__ for t in mixed] == ["LinearMix", "GeneralCouplingTransform", "GeneralCouplingTransform"] * 2
    assert [torch.equal(a.mask, b) for a, b in zip([t for t in mixed if hasattr(t, "mask")], masks)] == [True] * 4


def test_linear_mix_log_det_and_inverse_against_torch_linalg():
    torch.manual_seed(0)
    mix = LinearMix(5)
    with torch.no_grad():
        for p in mix.parameters():
            p.add_(0.5 * torch.randn_like(p))
    w = mix.weight().detach()
    t = mix()
    x = torch.randn(20, 5)
    # y = W x row by row; log|det W| from torch's LU (slogdet), to float32 rounding
    torch.testing.assert_close(t(x), x @ w.T)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, t(x)), torch.full((20,), float(torch.linalg.slogdet(w)[1])),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(t.inv(t(x)), x, atol=1e-5, rtol=0)
    x3 = torch.randn(3, 4, 5)  # leading batch dimensions
    torch.testing.assert_close(t.inv(t(x3)), x3, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="mix must be between 0 and transforms = 2, found 3"):
        coupling_flow(4, 0, transforms=2, hidden_features=[8], mix=3)
    with pytest.raises(ValueError, match="expected coupling: true with mix 2, found coupling: False"):
        ConditionalFlow(4, 1, transforms=2, hidden_features=8, mix=2)
    with pytest.raises(ValueError, match="at least 2 features"):
        coupling_flow(1, 0, transforms=2, hidden_features=[8])


def test_student_refuses_data_training_and_yaml_config_parsing():
    with pytest.raises(ValueError, match="distilled from a trained model"):
        check_family_kind("student", "showers")
    c = apply_overrides(TrainConfig(), ["noise_level=1e-5", "lr=2e-4", "model.shape_flow.coupling=true",
                                        "model.shape_flow.transforms=6"])
    assert c.noise_level == 1e-5 and c.lr == 2e-4
    assert c.model == {"shape_flow": {"coupling": True, "transforms": 6}}
    # a nested key merges into the preset's mapping instead of replacing it
    p = apply_overrides(preset("caloflow"), ["model.shape_flow.transforms=6"])
    assert p.model["shape_flow"]["transforms"] == 6 and p.model["shape_flow"]["spline_bins"] == 8
    with pytest.raises(ValueError, match="not a mapping"):
        apply_overrides(TrainConfig(model={"hidden": 8}), ["model.hidden.x=1"])


def test_student_fits_a_known_map_and_distill_writes_a_working_checkpoint(tmp_path):
    torch.manual_seed(0)
    data = simulate_dataset(300, geometry=default_binning(), energy_range=(1e3, 1e5), seed=3, progress=False)
    cfg = apply_overrides(preset("caloflow"), [
        "epochs=1", "batch_size=100", "threads=1",
        "model.shape_flow={transforms: 2, hidden_features: 16, coupling: true, spline_bins: 4}",
        "model.energy_flow={transforms: 1, hidden_features: 8}"])
    train(data, cfg, tmp_path / "teacher", progress=False)
    path = distill(tmp_path / "teacher" / "best.pt", data, tmp_path / "student", rounds=3, n_pairs=2000,
                   n_val=500, hidden=64, n_hidden=2, lr=3e-3, seed=0, progress=False)
    student = ShowerGenerator.load(path)
    teacher = ShowerGenerator.load(tmp_path / "teacher" / "best.pt")
    assert student.model.family == "student" and student.model.hparams["teacher_family"] == "caloflow"
    assert student.meta["distilled_from"]["family"] == "caloflow"
    assert student.preprocessor.state_dict() == teacher.preprocessor.state_dict()
    log = np.genfromtxt(tmp_path / "student" / "distill_log.csv", delimiter=",", names=True)
    assert len(log) == 3 and log["val_l1"][-1] < log["val_l1"][0]
    # the student's features are closer to the teacher's on the same noise than an untrained student's
    gen = torch.Generator().manual_seed(1)
    pool = torch.from_numpy(teacher.preprocessor.transform_conditions(data.incident_energies))
    z, c, x = teacher_pairs(teacher.model, pool, 500, gen)
    fresh = build_model("student", n_features=x.shape[1], n_conditions=c.shape[1], hidden=64, n_hidden=2)
    with torch.no_grad():
        assert student.model.distill_loss(z, c, x) < 0.8 * fresh.distill_loss(z, c, x)
    showers = student.sample(np.full(4, 2e4), seed=0)
    assert showers.shape == (4, 384) and np.all(showers >= 0) and np.all(np.isfinite(showers))
    # the command line: same function, options mapped
    write_showers(tmp_path / "train.h5", data)
    assert main(["distill", str(tmp_path / "teacher" / "best.pt"), "--data", str(tmp_path / "train.h5"),
                 "-o", str(tmp_path / "cli"), "--rounds", "1", "--n-pairs", "500", "--hidden", "16",
                 "--n-hidden", "1", "-q"]) == 0
    cli_student = ShowerGenerator.load(tmp_path / "cli" / "best.pt")
    assert cli_student.model.hparams["hidden"] == 16 and cli_student.meta["distilled_from"]["rounds"] == 1


def test_distill_refuses_a_student_teacher_and_empty_data(tmp_path):
    data = simulate_dataset(50, geometry=default_binning(), energy_range=(1e3, 1e5), seed=3, progress=False)
    pre = ShowerPreprocessor([48] * 8).fit(data.showers, data.incident_energies)
    model = build_model("student", n_features=pre.n_features, n_conditions=1, hidden=8, n_hidden=1)
    ShowerGenerator(model, pre, data.geometry).save(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="already a student"):
        distill(tmp_path / "s.pt", data, tmp_path / "out", rounds=1)
    flow = build_model("flow", n_features=pre.n_features, n_conditions=1, **MODEL_FAMILIES["flow"].tiny_hparams())
    ShowerGenerator(flow, pre, data.geometry).save(tmp_path / "f.pt")
    with pytest.raises(ValueError, match="the 'student' student has no critic"):
        distill(tmp_path / "f.pt", data, tmp_path / "out", rounds=1, n_pairs=100, n_val=50, adversarial=0.1)
    with pytest.raises(ValueError, match="observables: expected a kind with differentiable observables .*found kind 'showers'"):
        distill(tmp_path / "f.pt", data, tmp_path / "out", rounds=1, n_pairs=100, n_val=50, observables=1.0)


def test_student_l1_is_mean_absolute_error_by_hand():
    s = build_model("student", n_features=2, n_conditions=1, hidden=4, n_hidden=1)
    with torch.no_grad():
        for p in s.net.parameters():
            p.zero_()
        s.skip.fill_(2.0)
    z, c = torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1)
    # S(z) = 2 z = (2, -2); |2 - 1| + |-2 - 0| = 3 over 2 entries
    assert s.distill_loss(z, c, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.5)
    assert math.isclose(s.sample_from_noise(c, z)[0, 1].item(), -2.0)


def test_spline_coupling_layer_is_zukos_coupling_layer_with_the_same_weights():
    from zuko.flows.coupling import GeneralCouplingTransform

    from hepgen.models.flow import SplineCoupling

    torch.manual_seed(0)
    mask = torch.tensor([True, False, True, False, False])
    ours = SplineCoupling(5, 2, mask, 4, hidden_features=[16])
    ref = GeneralCouplingTransform(5, 2, mask=mask, univariate=MonotonicRQSTransform,
                                   shapes=[(4,), (4,), (3,)], hidden_features=[16])
    ref.load_state_dict(ours.state_dict())  # same parameters and buffer names
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.3 * torch.randn_like(p))
        ref.load_state_dict(ours.state_dict())
        c, x = torch.randn(64, 2), 3 * torch.randn(64, 5)
        y, ladj = ours(c).call_and_ladj(x)
        y_ref, ladj_ref = ref(c).call_and_ladj(x)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ladj, ladj_ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(ours(c).inv(y), x, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="3 \\* 4 - 1 parameters"):
        FastRQSTransform.from_block(torch.zeros(3, 10), 4)


def test_spline_coupling_fuses_only_training_batches_of_its_size_and_falls_back_when_compiling_fails(
        monkeypatch, caplog):
    """compile_for_batch(5): with gradients on, a batch of 5 rows gets the fused spline; a batch of 4
    or a call without gradients the eager one.  A compiler failure (a stand-in that raises) is said once,
    and every later call runs eagerly, with the eager spline's numbers.  (That the compiled graph
    equals the eager one is tested in tests/test_trainer.py, where the trainer compiles it.)"""
    gen = torch.Generator().manual_seed(0)
    layer = SplineCoupling(6, 2, torch.tensor([True, False] * 3), 4, hidden_features=[16])
    x, c = torch.randn(5, 6, generator=gen), torch.randn(5, 2, generator=gen)
    x_a = x[:, :3]
    y_ref, ladj_ref = layer(c).call_and_ladj(x)
    layer.compile_for_batch(5)
    assert isinstance(layer.meta(c, x_a), FusedRQSTransform)
    assert isinstance(layer.meta(c[:4], x_a[:4]), DependentTransform)
    with torch.no_grad():
        assert isinstance(layer.meta(c, x_a), DependentTransform)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setitem(flow_module._FUSED, "fn", broken)
    monkeypatch.setitem(flow_module._FUSED, "failed", None)
    for _ in range(2):
        y, ladj = layer(c).call_and_ladj(x)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
        torch.testing.assert_close(ladj, ladj_ref, rtol=0, atol=0)
    assert calls == [1]  # tried once, then eager
    assert flow_module._FUSED["failed"] == "RuntimeError: no C++ compiler"
    assert "torch.compile of the spline failed (RuntimeError: no C++ compiler)" in caplog.text
    # the fused transform's other methods are the eager spline's: forward, inverse, log-Jacobian
    fused = FusedRQSTransform(layer.hyper(torch.cat([x_a, c], -1)).unflatten(-1, (-1, 11)), 4)
    eager = DependentTransform(FastRQSTransform.from_block(fused.phi, 4), 1)
    x_b = x[:, 3:]
    torch.testing.assert_close(fused(x_b), eager(x_b))
    torch.testing.assert_close(fused.inv(fused(x_b)), x_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.log_abs_det_jacobian(x_b, None), eager.call_and_ladj(x_b)[1])
    layer.compile_for_batch(None)
    assert layer.fused_batch is None and isinstance(layer.meta(c, x_a), DependentTransform)
