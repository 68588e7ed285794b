"""The GAN family: penalties and losses against hand computations, training on toys,
architectures, reproducibility/resumability and the duality-gap estimate."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from hepgen.models import MODEL_FAMILIES, build_model
from hepgen.models.gan import GAN, duality_gap


def _gan(n_features=2, n_conditions=1, **kw):
    torch.manual_seed(0)
    return build_model(
        "gan", n_features=n_features, n_conditions=n_conditions, **{**GAN.tiny_hparams(), **kw}
    )


def _toy(n=2048, d=2, seed=0):
    """x = 2 + c + 0.5 ε in every dimension, c ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 1, generator=g)
    return 2.0 + c + 0.5 * torch.randn(n, d, generator=g), c


def _moments(model, n=4000):
    """Generated mean, residual std (x − c) and regression slope on c, per dimension."""
    ce = torch.randn(n, 1, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        s = model.sample(ce, torch.Generator().manual_seed(7))
    slope = ((s - s.mean(0)) * (ce - ce.mean())).mean(0) / ce.var(correction=0)
    return s.mean(0), (s - ce).std(0), slope


def _train(model, x, c, steps, lr, batch=256, seed=1):
    opts = model.configure_optimizers(lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        out = model.training_step(x[idx], c[idx], opts, step, grad_clip=5.0)
    return out


class _LinearCritic(nn.Module):
    """D(x, c) = w·x + b, with no auxiliary outputs."""

    def __init__(self, w, b=0.3):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x, c):
        return (x @ self.w + self.b)[:, None]


class _QuadraticCritic(nn.Module):
    """D(x, c) = ½‖x‖² + c₀: ∇ₓD = x."""

    def forward(self, x, c):
        return (0.5 * x.pow(2).sum(1) + c[:, 0])[:, None]


# --- gradient penalty and losses against hand computations -----------------------------------------
@pytest.mark.parametrize("gp", ["two-sided", "one-sided"])
@pytest.mark.parametrize("w, norm", [([0.3, 0.4], 0.5), ([1.2, 1.6], 2.0)])
def test_gradient_penalty_of_linear_critic_equals_hand_value(gp, w, norm):
    model = _gan(gp=gp)
    model.critic = _LinearCritic(w)
    g = torch.Generator().manual_seed(0)
    xr, xf, c = (
        torch.randn(16, 2, generator=g),
        torch.randn(16, 2, generator=g),
        torch.randn(16, 1, generator=g),
    )
    # ∇D = w everywhere, whatever the interpolation
    expected = (norm - 1.0) ** 2 if (gp == "two-sided" or norm > 1.0) else 0.0
    assert model.gradient_penalty(xr, xf, c, generator=g).item() == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize(
    "gp, expected", [("two-sided", (1.5**2 + 0.5**2) / 2), ("one-sided", 1.5**2 / 2)]
)
def test_gradient_penalty_uses_the_interpolates(gp, expected):
    # x̂ = ε x_real + (1-ε) x_fake = (1.5, 2.0) and (0.3, 0.4): ‖∇D‖ = ‖x̂‖ = 2.5 and 0.5
    model = _gan(gp=gp)
    model.critic = _QuadraticCritic()
    xr, xf = torch.tensor([[3.0, 4.0], [0.6, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.8]])
    eps = torch.tensor([[0.5], [0.5]])
    gp_value = model.gradient_penalty(xr, xf, torch.zeros(2, 1), eps=eps)
    assert gp_value.item() == pytest.approx(expected, abs=1e-6)


def test_wgan_critic_and_generator_losses_equal_hand_values():
    model = _gan(gp_weight=10.0)
    model.critic = _LinearCritic([1.2, 1.6], b=0.0)  # ‖w‖ = 2: GP = 1 everywhere
    xr, xf, c = (
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        torch.zeros(2, 1),
    )
    loss, parts = model.critic_loss(xr, xf, c, torch.Generator().manual_seed(0))
    # D(real) = (1.2, 1.6) → mean 1.4; D(fake) = (0, 2.8) → mean 1.4
    assert parts["wasserstein"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.0 + 10.0 * 1.0, abs=1e-5)
    g_loss, _ = model.generator_loss(xr, xf, c)
    assert g_loss.item() == pytest.approx(-1.4, abs=1e-6)


def test_bce_losses_equal_hand_values():
    model = _gan(loss="bce", label_smoothing=0.1)
    model.critic = _LinearCritic([1.0, 0.0], b=0.0)
    xr, xf, c = torch.tensor([[2.0, 0.0]]), torch.tensor([[-1.0, 0.0]]), torch.zeros(1, 1)
    sig = lambda t: 1 / (1 + math.exp(-t))
    bce = lambda logit, y: -(y * math.log(sig(logit)) + (1 - y) * math.log(1 - sig(logit)))
    loss, _ = model.critic_loss(xr, xf, c)
    assert loss.item() == pytest.approx(bce(2.0, 0.9) + bce(-1.0, 0.0), abs=1e-6)
    g_loss, _ = model.generator_loss(xr, xf, c)
    assert g_loss.item() == pytest.approx(-math.log(sig(-1.0)), abs=1e-6)  # non-saturating
    assert model.adversarial_value(xr, xf, c).item() == pytest.approx(
        math.log(sig(2.0)) + math.log(1 - sig(-1.0)), abs=1e-6
    )


def test_label_flip_flips_the_stated_fraction_reproducibly():
    model = _gan(loss="bce", label_flip=0.2, label_smoothing=0.1)
    n = 20_000
    real = model.bce_targets(n, True, torch.Generator().manual_seed(3))
    fake = model.bce_targets(n, False, torch.Generator().manual_seed(4))
    assert torch.all((real == 0.0) | torch.isclose(real, torch.tensor(0.9)))
    # binomial σ = sqrt(0.2·0.8/n) ≈ 0.0028: ±0.012 is > 4σ
    assert (real == 0.0).float().mean().item() == pytest.approx(0.2, abs=0.012)
    assert (fake > 0.5).float().mean().item() == pytest.approx(0.2, abs=0.012)
    assert torch.allclose(fake[fake > 0.5], torch.tensor(0.9))
    again = model.bce_targets(n, True, torch.Generator().manual_seed(3))
    assert torch.equal(real, again)
    assert not torch.equal(real, model.bce_targets(n, True, torch.Generator().manual_seed(5)))
    assert torch.equal(_gan(loss="bce").bce_targets(100, True, torch.Generator()), torch.ones(100))


def test_ecal_sum_loss_hand_case_and_zero_for_identical_batches():
    model = _gan(ecal_sum=1.0)
    real = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    fake = torch.tensor([[1.0, -3.0], [1.0, 7.0]])
    c = torch.tensor([[-1.0], [1.0]])
    # means equal (1 = 1); std 0 vs 1 → 1; cov(x0, c) 0 vs 1 → 1
    assert model.ecal_sum_loss(real, fake, c).item() == pytest.approx(2.0, abs=1e-6)
    assert model.ecal_sum_loss(real, real, c).item() == 0.0
    # only the total-energy feature (feature 0) is constrained
    fake.requires_grad_(True)
    model.ecal_sum_loss(real, fake, c).backward()
    assert fake.grad[:, 1].abs().sum() == 0 and fake.grad[:, 0].abs().sum() > 0


def test_constrainer_term_vanishes_for_real_showers_and_the_constrainer_learns():
    x, c = _toy(n=1024, d=4)
    model = _gan(n_features=4, constrainer=2.0, hidden=32)
    assert model.constrainer_term(x, x, c).item() == 0.0
    assert model.constrainer_term(x, x + 1.0, c).item() > 0.0
    before = model.constrainer_loss(x, c).item()
    _train(model, x, c, steps=150, lr=2e-3)
    with torch.no_grad():
        after = model.constrainer_loss(x, c).item()
    assert after < 0.5 * before
    # its parameters sit in the critic's optimiser (trained in the critic step, on real data)
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    critic_params = {id(p) for g in opts["critic"].param_groups for p in g["params"]}
    assert {id(p) for p in model.constrainer.parameters()} <= critic_params
    assert not critic_params & {id(p) for p in model.generator.parameters()}


def test_aux_energy_head_loss_decreases():
    x, c = _toy(n=1024, d=4)
    model = _gan(n_features=4, aux_energy=1.0, hidden=32)
    with torch.no_grad():
        before = model.aux_loss(model.critic_outputs(x, c)[1], c).item()
    out = _train(model, x, c, steps=150, lr=2e-3)
    assert "aux_critic" in out
    with torch.no_grad():
        _, pred = model.critic_outputs(x, c)
    after = model.aux_loss(pred, c).item()
    assert pred.shape == (len(x), 1)
    assert after < 0.3 * before


# --- training on toys ---------------------------------------------------------------------------
def test_wgan_gp_learns_a_conditional_gaussian():
    x, c = _toy()
    model = _gan(gp="one-sided", n_critic=2, hidden=32, n_hidden=2)
    mean0, _, _ = _moments(model)
    assert (mean0 - 2.0).abs().min() > 1.5  # the untrained generator is far off
    _train(model, x, c, steps=600, lr=1e-3)
    mean, std, slope = _moments(model)
    # data: mean 2, residual std 0.5, slope 1 in both dimensions
    assert torch.allclose(mean, torch.full((2,), 2.0), atol=0.3)
    assert torch.allclose(std, torch.full((2,), 0.5), atol=0.2)
    assert torch.allclose(slope, torch.ones(2), atol=0.25)


def test_bce_gan_with_label_smoothing_moves_toward_the_data():
    # the non-saturating BCE game circles around its solution (swings of ≈ 0.5 in the mean
    # were seen over seeds on this toy), hence looser tolerances than for WGAN-GP
    x, c = _toy()
    model = _gan(loss="bce", label_smoothing=0.1, hidden=32, n_hidden=2)
    mean0, _, _ = _moments(model)
    assert (mean0 - 2.0).abs().min() > 1.5
    _train(model, x, c, steps=500, lr=1e-3)
    mean, std, slope = _moments(model)
    assert torch.allclose(mean, torch.full((2,), 2.0), atol=0.65)
    assert torch.allclose(std, torch.full((2,), 0.5), atol=0.25)
    assert torch.allclose(slope, torch.ones(2), atol=0.35)


def test_generator_updates_every_n_critic_th_batch():
    x, c = _toy(n=64)
    model = _gan(n_critic=3)
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    gen_updates = []
    for step in range(6):
        before = [p.detach().clone() for p in model.generator.parameters()]
        out = model.training_step(x, c, opts, step, grad_clip=1.0)
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))
        gen_updates.append(changed)
        assert changed == ("generator_loss" in out)
    assert gen_updates == [False, False, True, False, False, True]


def test_training_resumes_exactly_from_step():
    x, c = _toy(n=64)

    def fresh():
        model = _gan(n_critic=2, aux_energy=0.5, constrainer=1.0)
        return model, model.configure_optimizers(lr=1e-3, weight_decay=0.0)

    model, opts = fresh()
    for step in range(6):
        model.training_step(x, c, opts, step, grad_clip=1.0)
    # interrupted after 3 steps, rebuilt from the state dicts, continued
    first, first_opts = fresh()
    for step in range(3):
        first.training_step(x, c, first_opts, step, grad_clip=1.0)
    resumed = build_model("gan", **json.loads(json.dumps(first.hparams)))
    resumed.load_state_dict(first.state_dict())
    resumed_opts = resumed.configure_optimizers(lr=1e-3, weight_decay=0.0)
    for k in resumed_opts:
        resumed_opts[k].load_state_dict(first_opts[k].state_dict())
    state = torch.get_rng_state()
    for step in range(3, 6):
        resumed.training_step(x, c, resumed_opts, step, grad_clip=1.0)
    assert torch.equal(state, torch.get_rng_state())  # training noise never used the global RNG
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


# --- architectures ------------------------------------------------------------------------------
ARCHS = [
    ("mlp", 10, {}),
    ("layered", 3 + 12, {"layer_sizes": [4, 6, 2]}),
    ("conv3d", 3 + 3 * 4 * 5, {"grid_shape": [3, 4, 5]}),
]


@pytest.mark.parametrize("arch, d, extra", ARCHS)
def test_architectures_shapes_and_a_finite_training_step(arch, d, extra):
    model = _gan(
        n_features=d, n_conditions=2, arch=arch, aux_energy=1.0, aux_conditions=0.5, **extra
    )
    c = torch.randn(5, 2)
    x = model.sample(c, torch.Generator().manual_seed(0))
    assert x.shape == (5, d) and torch.isfinite(x).all()
    assert model.critic(x, c).shape == (5, 1 + 2)
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    out = model.training_step(
        torch.randn(8, d), torch.randn(8, 2), opts, step=model.n_critic - 1, grad_clip=1.0
    )
    assert all(math.isfinite(v) for v in out.values()) and "generator_loss" in out


def test_layered_generator_conditions_each_layer_on_the_previous_ones():
    model = _gan(n_features=3 + 12, arch="layered", layer_sizes=[4, 6, 2])
    z, c = torch.randn(4, model.latent_dim), torch.randn(4, 1)
    base = model.sample_from_noise(c, z)
    # perturb the last layer's generator: earlier layers and energies are unchanged
    with torch.no_grad():
        model.generator.layers[2][0].bias.add_(1.0)
    out = model.sample_from_noise(c, z)
    assert torch.equal(out[:, : 3 + 4 + 6], base[:, : 3 + 4 + 6])
    assert not torch.equal(out[:, -2:], base[:, -2:])
    # …whereas changing layer 0 changes every later layer, through the conditioning
    with torch.no_grad():
        model.generator.layers[0][0].bias.add_(1.0)
    out2 = model.sample_from_noise(c, z)
    assert not torch.equal(out2[:, 3 + 4 : 3 + 10], out[:, 3 + 4 : 3 + 10])


def test_spectral_norm_bounds_the_critic_layers():
    model = _gan(n_features=6, spectral_norm=True, hidden=32, n_hidden=2)
    x, c = torch.randn(32, 6), torch.randn(32, 1)
    model.train()
    for _ in range(30):  # power iterations run in training-mode forward passes
        model.critic(x, c)
    linears = [m for m in model.critic.modules() if isinstance(m, nn.Linear)]
    assert linears
    for lin in linears:
        assert torch.linalg.matrix_norm(lin.weight.detach(), ord=2).item() == pytest.approx(
            1.0, abs=0.05
        )


@pytest.mark.parametrize("arch, d, extra", ARCHS)
def test_sampling_reproducible_leaves_global_rng_and_matches_sample_from_noise(arch, d, extra):
    model = _gan(n_features=d, arch=arch, **extra)
    c = torch.randn(6, 1)
    state = torch.get_rng_state()
    a = model.sample(c, torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, model.sample(c, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, model.sample(c, torch.Generator().manual_seed(4)))
    z = torch.randn(6, model.noise_dim, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, model.sample_from_noise(c, z))


def test_hparams_json_round_trip_and_interface_flags():
    model = _gan(n_features=15, arch="layered", layer_sizes=[4, 6, 2], loss="bce", label_flip=0.1)
    again = build_model("gan", **json.loads(json.dumps(model.hparams)))
    again.load_state_dict(model.state_dict())
    c = torch.randn(4, 1)
    assert torch.equal(
        model.sample(c, torch.Generator().manual_seed(1)),
        again.sample(c, torch.Generator().manual_seed(1)),
    )
    assert MODEL_FAMILIES["gan"] is GAN and GAN.has_log_prob is False
    assert math.isnan(model.validation_loss(torch.randn(4, 15), c).item())
    with pytest.raises(NotImplementedError):
        model.log_prob(torch.randn(4, 15), c)
    opts = model.configure_optimizers(lr=2e-4, weight_decay=0.0)
    assert set(opts) == {"generator", "critic"}
    assert opts["generator"].param_groups[0]["betas"] == (0.5, 0.9)
    assert _gan().configure_optimizers(1e-4, 0.0)["critic"].param_groups[0]["betas"] == (0.0, 0.9)
    assert _gan(critic_lr_scale=2.0).configure_optimizers(1e-4, 0.0)["critic"].param_groups[0][
        "lr"
    ] == pytest.approx(2e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "hinge"}, "'loss' must be one of"),
        ({"gp": "both"}, "'gp' must be one of"),
        ({"arch": "gnn"}, "'arch' must be one of"),
        ({"loss": "bce", "label_flip": 0.6}, r"'label_flip' must be in \[0.0, 0.5\)"),
        ({"label_flip": 0.1}, "apply to loss='bce' only"),
        ({"n_critic": 0}, "'n_critic' must be >= 1"),
        ({"aux_conditions": 1.0}, "needs conditions besides the energy"),
        ({"arch": "layered"}, "needs hparam 'layer_sizes'"),
        (
            {"arch": "layered", "layer_sizes": [4, 5]},
            "len \\+ sum = n_features = 10, found \\[4, 5\\]",
        ),
        ({"arch": "conv3d"}, "needs hparam 'grid_shape'"),
        ({"arch": "conv3d", "grid_shape": [1, 2, 2]}, "nz \\+ nz\\*ny\\*nx = n_features = 10"),
        ({"betas": [0.5]}, "'betas' must be two numbers"),
        ({"ecal_sum": -1.0}, "'ecal_sum' must be in"),
        ({"loss": "bce", "gp_weight": 1.0}, "belongs to loss='wgan-gp'"),
    ],
)
def test_bad_hparams_are_rejected_with_a_clear_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("gan", n_features=10, n_conditions=1, **kwargs)


# --- duality gap ----------------------------------------------------------------------------------
class _AffineGenerator(nn.Module):
    """G(z, c) = c + shift + scale·z (trainable): scale 0.5, shift 0 reproduces the data."""

    def __init__(self, shift, scale):
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(float(shift)))
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, z, c):
        return c + self.shift + self.scale * z[:, :2]


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_duality_gap_is_small_at_equilibrium_and_large_for_a_bad_generator(loss):
    g = torch.Generator().manual_seed(0)
    c = torch.randn(512, 1, generator=g)
    x = c + 0.5 * torch.randn(512, 2, generator=g)
    gaps = {}
    for name, gen in [("good", _AffineGenerator(0.0, 0.5)), ("bad", _AffineGenerator(3.0, 0.1))]:
        model = _gan(loss=loss, latent_dim=2, hidden=32, n_hidden=2)
        model.generator = gen
        with torch.no_grad():  # an indifferent critic: D ≡ 0 (the equilibrium critic)
            model.critic.net[-1].weight.zero_()
            model.critic.net[-1].bias.zero_()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        gaps[name] = duality_gap(model, x, c, steps=25, lr=1e-2, seed=0)
        assert all(
            torch.equal(before[k], v) for k, v in model.state_dict().items()
        )  # model untouched
    assert gaps["good"] >= 0.0 and gaps["bad"] >= 0.0
    assert gaps["bad"] > 1.0  # BCE: the critic can reach ≈ 2 log 2 = 1.39; WGAN: ≈ the W1 distance
    assert gaps["good"] < 0.1 * gaps["bad"]
    assert duality_gap(model, x, c, steps=0) == 0.0


def test_gan_config_preset_builds_for_the_default_binning():
    from hepgen.config import TrainConfig, load_config
    from hepgen.data.geometry import default_binning

    path = Path(__file__).parents[1] / "src" / "hepgen" / "configs" / "gan.yaml"
    config = load_config(path)
    assert isinstance(config, TrainConfig) and config.family == "gan"
    geometry = default_binning()
    n_features = geometry.n_layers + geometry.n_voxels
    from hepgen.domains.showers import model_hparams

    hparams = model_hparams(config, geometry)
    assert hparams["layer_sizes"] == [48] * 8  # filled in from the geometry, as the trainer does
    model = build_model(config.family, n_features=n_features, n_conditions=1, **hparams)
    assert model.sample(torch.zeros(3, 1), torch.Generator().manual_seed(0)).shape == (
        3,
        n_features,
    )


def test_conv3d_gan_exports_to_onnx_with_a_free_batch_size(tmp_path):
    # the export traces sample_from_noise with batch 2 and runs it with 50 rows
    import numpy as np

    from hepgen.data.geometry import CartesianGrid
    from hepgen.domains.showers.generator import ShowerGenerator
    from hepgen.domains.showers.preprocessing import ShowerPreprocessor
    from hepgen.export import check_onnx, export_onnx

    geometry = CartesianGrid(nx=5, ny=4, nz=3)
    rng = np.random.default_rng(0)
    showers = rng.exponential(size=(64, geometry.n_voxels)).astype(np.float32)
    energies = rng.uniform(1e3, 2e3, size=(64, 1))
    pre = ShowerPreprocessor([20, 20, 20]).fit(showers, energies)
    model = _gan(n_features=pre.n_features, arch="conv3d", grid_shape=[3, 4, 5])
    gen = ShowerGenerator(model, pre, geometry, {"energy_range": [1e3, 2e3]})
    export_onnx(gen, tmp_path / "gan.onnx")
    assert check_onnx(tmp_path / "gan.onnx", gen, n=50)["ok"]
