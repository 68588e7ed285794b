"""The EPiC-GAN family (``epic_gan``): permutation symmetry of critic and generator, zero
padding, seeded sampling, the LSGAN / WGAN-GP losses against hand values, exact resume,
learning a conditional toy cloud, and hyper-parameter validation.

The trainer's jet path (every jets family alike) is tested in ``tests/test_jets_models.py``.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from hepgen.models import MODEL_FAMILIES, build_model
from hepgen.models.epic import jet_mask
from hepgen.models.epic_gan import JetGAN

P, F = 6, 3


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gan(n_conditions=3, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("epic_gan", n_features=P * F, n_conditions=n_conditions, **{**JetGAN.tiny_hparams(), **kw})


def _conditions(n_real=(4, 6, 2)):
    """Multiplicities ``n_real``, then two other condition columns."""
    n = torch.tensor(n_real, dtype=torch.float32)[:, None]
    other = torch.tensor([[1.0, -0.5], [0.0, 0.8], [-1.2, 0.3]])[: len(n_real)]
    return torch.cat([n, other], dim=1)


def _cloud(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(len(c), P, F, generator=g) * jet_mask(c, P)).reshape(len(c), -1)


def _permute_real(x, c, width, seed=1):
    """Permute the first n slots (of ``width`` numbers each) of every row; padding stays."""
    g = torch.Generator().manual_seed(seed)
    pts = x.reshape(len(x), P, width).clone()
    for i, n in enumerate(c[:, 0].long().tolist()):
        perm = torch.randperm(n, generator=g)
        while n > 1 and torch.equal(perm, torch.arange(n)):
            perm = torch.randperm(n, generator=g)
        pts[i, :n] = pts[i, perm]
    return pts.reshape(len(x), -1)


# --- interface --------------------------------------------------------------------------------
def test_registered_with_the_jets_interface_and_hparams_round_trip():
    model = _gan(latent_local=3, latent_global=5, n_critic=2)
    assert MODEL_FAMILIES["epic_gan"] is JetGAN
    assert JetGAN.data_kind == "jets" and JetGAN.has_log_prob is False
    assert model.noise_dim == P * 3 + 5
    hp = json.loads(json.dumps(model.hparams))  # JSON-able
    assert hp["n_particles"] == P and hp["n_critic"] == 2 and hp["loss"] == "lsgan" and hp["betas"] == [0.5, 0.9]
    again = build_model("epic_gan", **hp)
    assert again.hparams == model.hparams
    assert [k for k, _ in again.named_parameters()] == [k for k, _ in model.named_parameters()]
    # generator and critic partition the parameters (DDP wraps each on its own)
    mods = model.ddp_modules()
    assert set(mods) == {"generator", "critic"}
    ids = [{id(p) for p in m.parameters()} for m in mods.values()]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {id(p) for p in model.parameters()}
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    assert set(opts) == {"generator", "critic"}
    x, c = _cloud(_conditions()), _conditions()
    assert math.isnan(float(model.validation_loss(x, c)))
    assert math.isfinite(model.loss(x, c).item())


# --- permutation symmetry -----------------------------------------------------------------------
@torch.no_grad()
def test_critic_is_permutation_invariant_and_blind_to_padding():
    model = _gan(n_layers=2).eval()
    c = _conditions()
    x = _cloud(c)
    s = model.critic(x, c)
    assert s.shape == (3,)
    xp = _permute_real(x, c, F)
    assert not torch.equal(xp, x)
    np.testing.assert_allclose(model.critic(xp, c).numpy(), s.numpy(), rtol=0, atol=1e-5)
    junk = x.clone().reshape(3, P, F)
    junk[0, 4:] = 1e3  # jet 0 has 4 real particles, jet 2 has 2
    junk[2, 2:] = torch.tensor([float("inf"), -7.0, float("nan")])
    assert torch.equal(model.critic(junk.reshape(3, -1), c), s)
    # ... but it does look at the real particles and the conditions
    moved = x.clone()
    moved[0, 0] += 1.0
    assert abs(float(model.critic(moved, c)[0] - s[0])) > 1e-4
    c2 = c.clone()
    c2[0, 1] += 1.0
    assert abs(float(model.critic(x, c2)[0] - s[0])) > 1e-4


@torch.no_grad()
def test_generator_is_permutation_equivariant_in_the_particle_noise():
    model = _gan(n_layers=2).eval()
    c = _conditions()
    z = torch.randn(3, model.noise_dim, generator=torch.Generator().manual_seed(3))
    n_local = P * model.latent_local
    y = model.sample_from_noise(c, z)
    # permuting the real slots' noise permutes the generated particles the same way
    zp = z.clone()
    zp[:, :n_local] = _permute_real(z[:, :n_local], c, model.latent_local, seed=4)
    yp = model.sample_from_noise(c, zp)
    np.testing.assert_allclose(yp.numpy(), _permute_real(y, c, F, seed=4).numpy(), rtol=0, atol=1e-5)
    # the noise of padding slots is ignored; the global noise is not
    zj = z.clone().reshape(3, -1)
    zj[0, 4 * model.latent_local:n_local] = 100.0
    assert torch.equal(model.sample_from_noise(c, zj), y)
    zg = z.clone()
    zg[:, n_local:] += 1.0
    assert (model.sample_from_noise(c, zg) - y).abs().max() > 1e-3
    # different particles of one jet differ (the per-particle noise reaches the output)
    pts = y.reshape(3, P, F)
    assert (pts[1, 0] - pts[1, 1]).abs().max() > 1e-3


# --- sampling -----------------------------------------------------------------------------------
def test_samples_are_zero_padded_seeded_and_equal_sample_from_noise():
    model = _gan().eval()
    c = _conditions()
    rng_state = torch.get_rng_state()
    with torch.no_grad():
        a = model.sample(c, torch.Generator().manual_seed(4))
        b = model.sample_from_noise(c, torch.randn(3, model.noise_dim, generator=torch.Generator().manual_seed(4)))
        again = model.sample(c, torch.Generator().manual_seed(4))
        other = model.sample(c, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    assert a.shape == (3, P * F) and torch.equal(a, b) and torch.equal(a, again)
    assert not torch.equal(a, other)
    pts = a.reshape(3, P, F)
    real = jet_mask(c, P)[..., 0] > 0
    assert torch.all(pts[~real] == 0) and not torch.signbit(pts[~real]).any()  # exactly +0
    assert torch.all(pts[real] != 0) and torch.isfinite(pts).all()
    # double precision: noise in the dtype of c
    m64 = _gan().double().eval()
    with torch.no_grad():
        s64 = m64.sample(c.double(), torch.Generator().manual_seed(4))
    assert s64.dtype == torch.float64 and torch.all(s64.reshape(3, P, F)[~real] == 0)
    with pytest.raises(ValueError, match="z must have shape"):
        model.sample_from_noise(c, torch.zeros(3, model.noise_dim + 1))


def test_untrained_generator_starts_with_unit_spread():
    model = _gan(hidden=32, n_layers=2)
    c = torch.cat([torch.full((500, 1), float(P)), torch.zeros(500, 2)], dim=1)
    with torch.no_grad():
        pts = model.sample(c, torch.Generator().manual_seed(1)).reshape(-1, F)
    np.testing.assert_allclose(pts.std(dim=0).numpy(), 1.0, atol=0.1)  # 3000 particles: ±0.03 statistical


# --- losses -------------------------------------------------------------------------------------
class _LinearCritic(nn.Module):
    """D(x, c) = x·w + b."""

    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x, c):
        return x @ self.w + self.b


def test_lsgan_and_wgan_gp_losses_equal_hand_values():
    c = _conditions()
    x_real, x_fake = _cloud(c, seed=1), _cloud(c, seed=2)
    w = torch.linspace(-0.5, 0.5, P * F)
    lsgan = _gan()
    lsgan.critic = _LinearCritic(w, 0.3)
    d_real, d_fake = x_real @ w + 0.3, x_fake @ w + 0.3
    loss, parts = lsgan.critic_loss(x_real, x_fake, c)
    expected = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * ((d_fake + 1) ** 2).mean()  # labels: real +1, fake −1
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["critic_real"] == pytest.approx(float(d_real.mean()), rel=1e-6)
    assert lsgan.generator_loss(x_fake, c).item() == pytest.approx((0.5 * ((d_fake - 1) ** 2).mean()).item(), rel=1e-6)

    wgan = _gan(loss="wgan-gp", gp_weight=2.0)
    wgan.critic = _LinearCritic(w, 0.3)
    loss, parts = wgan.critic_loss(x_real, x_fake, c, torch.Generator().manual_seed(0))
    gp = (w.norm() - 1) ** 2  # the gradient of a linear critic is w everywhere
    assert parts["gp"] == pytest.approx(float(gp), rel=1e-5)
    assert loss.item() == pytest.approx((d_fake.mean() - d_real.mean() + 2.0 * gp).item(), rel=1e-5)
    assert wgan.generator_loss(x_fake, c).item() == pytest.approx(-d_fake.mean().item(), rel=1e-6)


# --- training -----------------------------------------------------------------------------------
def _toy(n, seed):
    """Clouds of 2…6 particles; feature k ~ N(a_k + b_k·u, s_k) with u ~ U(−1, 1) in condition column 1."""
    g = torch.Generator().manual_seed(seed)
    n_real = torch.randint(2, P + 1, (n, 1), generator=g).float()
    u = torch.rand(n, 1, generator=g) * 2 - 1
    c = torch.cat([n_real, u], dim=1)
    a, b, s = torch.tensor([1.0, -0.5, 0.5]), torch.tensor([1.0, 0.0, -0.5]), torch.tensor([0.5, 1.0, 0.3])
    pts = a + b * u[:, :, None] + s * torch.randn(n, P, F, generator=g)
    return (pts * jet_mask(c, P)).reshape(n, -1), c


def _moments(x, c):
    """Over real particles: per-feature mean, regression slope on u and residual std."""
    real = jet_mask(c, P)[..., 0] > 0
    pts = x.reshape(len(x), P, F)[real]
    u = c[:, 1:2].expand(-1, P)[real]
    slope = ((pts - pts.mean(0)) * (u - u.mean())[:, None]).mean(0) / u.var(correction=0)
    return torch.stack([pts.mean(0), slope, (pts - slope * u[:, None]).std(0)])


def test_generator_updates_every_n_critic_th_step():
    model = _gan(n_conditions=2, n_critic=3)
    x, c = _toy(64, 0)
    opts = model.configure_optimizers(lr=1e-3, weight_decay=0.0)
    changed = []
    for step in range(6):
        g0 = [p.detach().clone() for p in model.generator.parameters()]
        c0 = [p.detach().clone() for p in model.critic.parameters()]
        logs = model.training_step(x, c, opts, step, grad_clip=None)
        moved_g = any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(c0, model.critic.parameters()))
        assert ("generator_loss" in logs) == moved_g and logs["loss"] == logs["critic_loss"]
        changed.append(moved_g)
    assert changed == [False, False, True, False, False, True]


@pytest.mark.parametrize("loss", ["lsgan", "wgan-gp"])
def test_training_resumes_exactly_from_a_checkpoint(loss):
    """6 steps straight = 3 steps, checkpoint (model + optimisers), rebuild, load, 3 more steps;
    n_critic = 2, so the split falls between a critic-only and a generator step."""
    x, c = _toy(256, 0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, len(x), (64,), generator=g) for _ in range(6)]

    def run(model, opts, steps):
        for step in steps:
            model.training_step(x[batches[step]], c[batches[step]], opts, step, 1.0)

    straight = _gan(n_conditions=2, loss=loss, n_critic=2)
    opts = straight.configure_optimizers(lr=1e-3, weight_decay=0.0)
    run(straight, opts, range(6))

    first = _gan(n_conditions=2, loss=loss, n_critic=2)
    first_opts = first.configure_optimizers(lr=1e-3, weight_decay=0.0)
    run(first, first_opts, range(3))
    model_state = {k: v.clone() for k, v in first.state_dict().items()}
    opt_states = {k: o.state_dict() for k, o in first_opts.items()}
    # rebuild from the JSON hparams with other initial weights (and noise seed), then load
    torch.manual_seed(123)
    resumed = build_model("epic_gan", **json.loads(json.dumps(first.hparams)))
    assert not torch.equal(resumed.noise_seed, first.noise_seed)
    resumed.load_state_dict(model_state)
    resumed_opts = resumed.configure_optimizers(lr=1e-3, weight_decay=0.0)
    for k, o in resumed_opts.items():
        o.load_state_dict(opt_states[k])
    run(resumed, resumed_opts, range(3, 6))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    for k in opts:
        sa, sb = opts[k].state_dict()["state"], resumed_opts[k].state_dict()["state"]
        assert sa.keys() == sb.keys() and sa
        for i in sa:
            assert torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]), (k, i)
    # and the weights did move in the second half (the comparison is not vacuous)
    assert any(not torch.equal(a, b) for a, b in zip(model_state.values(), resumed.state_dict().values()))


def test_mixed_precision_paths():
    x, c = _toy(64, 0)
    # fp16 path: a GradScaler at scale 1 changes nothing (scale, unscale by 1, finite grads)
    a, b = _gan(2, loss="wgan-gp", n_critic=1), _gan(2, loss="wgan-gp", n_critic=1)
    opts_a = a.configure_optimizers(lr=1e-3, weight_decay=0.0)
    opts_b = b.configure_optimizers(lr=1e-3, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1000)
    for step in range(2):
        la = a.training_step(x, c, opts_a, step, 1.0)
        lb = b.training_step(x, c, opts_b, step, 1.0, scaler=scaler)
        assert la == pytest.approx(lb, rel=1e-6)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    # bf16 autocast (the trainer's CPU amp): finite losses, float32 weights
    m = _gan(2)
    opts = m.configure_optimizers(lr=1e-3, weight_decay=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = m.training_step(x, c, opts, 0, 1.0)
    assert all(math.isfinite(v) for v in logs.values())
    assert all(p.dtype == torch.float32 for p in m.parameters())


def test_learns_a_conditional_toy_cloud():
    """300 LSGAN steps bring the generated moments much closer to the data's.

    Data: feature means 1 + u, −0.5, 0.5 − 0.5u and spreads 0.5, 1, 0.3, u ~ U(−1, 1).
    Measured over 10 initialisation seeds (this code, 300 steps): summed absolute error of
    the 9 moments 0.47–1.19 after vs 3.95–7.58 before (ratio ≤ 0.30), worst single moment
    ≤ 0.27, error of the slope of feature 0 ≤ 0.25, sanity metric down by ≥ 7×.
    Tolerances: sum < 0.4 × before, every moment within 0.4, slope of feature 0 within 0.3
    of its true value 1, sanity metric halved.  The evaluation set (4000 jets, ~16k
    particles) has statistical errors ≲ 0.02 on each moment.
    """
    x, c = _toy(4096, 0)
    xe, ce = _toy(4000, 1)
    model = _gan(n_conditions=2, hidden=32, global_dim=8, n_layers=2, latent_local=3, latent_global=4)
    truth = _moments(xe, ce)

    def error():
        with torch.no_grad():
            return (_moments(model.sample(ce, torch.Generator().manual_seed(7)), ce) - truth).abs()

    before = error()
    sanity_before = model.sanity_metric(xe, ce, torch.Generator().manual_seed(5))
    steps = 300
    opts = model.configure_optimizers(lr=2e-3, weight_decay=0.0)
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, steps) for o in opts.values()]
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        model.training_step(x[idx], c[idx], opts, step, grad_clip=5.0)
        for s in schedules:
            s.step()
    after = error()
    assert float(after.sum()) < 0.4 * float(before.sum()), (before, after)
    assert float(after.max()) < 0.4, after
    assert float(after[1, 0]) < 0.3, after  # the conditional mean of feature 0 follows u
    assert model.sanity_metric(xe, ce, torch.Generator().manual_seed(5)) < 0.5 * sanity_before


# --- hyper-parameter validation -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_particles": 4}, "'n_particles'"),  # 18 features are not 4 slots
        ({"n_particles": 0}, "'n_particles'"),
        ({"hidden": 0}, "'hidden'"),
        ({"global_dim": 2.5}, "'global_dim'"),
        ({"n_layers": 0}, "'n_layers'"),
        ({"latent_local": 0}, "'latent_local'"),
        ({"latent_global": -1}, "'latent_global'"),
        ({"n_critic": 0}, "'n_critic'"),
        ({"n_critic": True}, "'n_critic'"),
        ({"loss": "bce"}, "'loss'"),
        ({"gp_weight": 5.0}, "'gp_weight'"),  # LSGAN has no penalty
        ({"loss": "wgan-gp", "gp_weight": -1.0}, "'gp_weight'"),
        ({"betas": [0.5]}, "'betas'"),
        ({"betas": [0.5, 1.0]}, "'betas'"),
        ({"critic_lr_scale": 0.0}, "'critic_lr_scale'"),
        ({"critic_lr_scale": float("nan")}, "'critic_lr_scale'"),
        ({"n_conditions": 0}, "'n_conditions'"),
    ],
)
def test_bad_hparams_are_rejected_naming_the_hparam(kwargs, match):
    kw = {"n_features": P * F, "n_conditions": 3, **JetGAN.tiny_hparams(), **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model("epic_gan", **kw)
