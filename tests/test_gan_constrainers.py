"""HGCAL-WGAN additions of the GAN family: separate energy / position constrainers, their
pre-training on real showers, and the 'max' gradient penalty (issue 23)."""

import pytest
import torch
from torch import nn

from hepgen.models.gan import GAN

D, C = 6, 3  # features; conditions: energy + impact position (x, y)


def _model(**kw) -> GAN:
    torch.manual_seed(0)
    return GAN(n_features=D, n_conditions=C, hidden=16, n_hidden=1, latent_dim=4, **kw)


def _exact(model: GAN, name: str, cols: list[int]) -> None:
    """Replace constrainer ``name`` by a linear map that reads its labels from features ``cols``."""
    lin = nn.Linear(D, len(cols), bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        for r, col in enumerate(cols):
            lin.weight[r, col] = 1.0
    getattr(model, name).net = lin


def test_constrainer_term_is_zero_for_real_showers_and_k_times_mse_when_labels_are_violated():
    m = _model(constrainer_energy=0.01, constrainer_position=0.01)
    assert m.active_constrainers() == ["constrainer_energy", "constrainer_position"]
    _exact(m, "constrainer_energy", [0])
    _exact(m, "constrainer_position", [1, 2])
    c = torch.randn(32, C)
    x_real = torch.cat([c, torch.randn(32, D - C)], dim=1)  # features 0..2 carry the labels exactly
    assert m.constrainer_term(x_real, x_real.clone(), c).item() == 0.0
    # hand-worked: energy off by 1 everywhere -> L_E(fake) = 1, L_E(real) = 0 -> K_e * 1
    fake = x_real.clone()
    fake[:, 0] += 1.0
    assert m.constrainer_term(x_real, fake, c).item() == pytest.approx(0.01, rel=1e-6)
    # position off by 2 in x only: MSE over the 2 position columns = 4 / 2 = 2 -> K_p * 2
    fake = x_real.clone()
    fake[:, 1] += 2.0
    assert m.constrainer_term(x_real, fake, c).item() == pytest.approx(0.02, rel=1e-6)
    # K is per constrainer
    m.constrainer_weights["constrainer_position"] = 0.5
    assert m.constrainer_term(x_real, fake, c).item() == pytest.approx(1.0, rel=1e-6)


def test_constrainer_gradient_reaches_the_generator_only_through_the_generated_showers():
    m = _model(constrainer_energy=0.01, constrainer_position=0.01)
    c = torch.randn(16, C)
    x_real = torch.randn(16, D, requires_grad=True)
    x_fake = m.generator(torch.randn(16, 4), c)
    m.constrainer_term(x_real, x_fake, c).backward()
    assert x_real.grad is None  # the real side is evaluated without gradients
    g = torch.cat([p.grad.flatten() for p in m.generator.parameters() if p.grad is not None])
    assert g.abs().sum() > 0
    assert all(p.grad is None for p in m.critic.parameters())
    # the generator's loss: without constrainers its gradient differs by exactly the term's
    m.zero_grad(set_to_none=True)
    z = torch.randn(16, 4)
    loss_with, _ = m.generator_loss(x_real.detach(), m.generator(z, c), c)
    loss_with.backward()
    g_with = [p.grad.clone() for p in m.generator.parameters()]
    m.zero_grad(set_to_none=True)
    m.constrainer_weights = dict.fromkeys(m.constrainer_weights, 0.0)
    loss_without, _ = m.generator_loss(x_real.detach(), m.generator(z, c), c)
    loss_without.backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(g_with, m.generator.parameters()))


def test_pretraining_steps_train_only_the_constrainers_on_real_showers():
    m = _model(constrainer_energy=0.01, constrainer_position=0.01, constrainer_pretrain_steps=2)
    opts = m.configure_optimizers(lr=1e-2, weight_decay=0.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    c = torch.randn(64, C)
    x = torch.cat([c, torch.randn(64, D - C)], dim=1)
    out = m.training_step(x, c, opts, step=0)
    assert set(out) >= {"constrainer_energy_real", "constrainer_position_real", "constrainer_pretrain"}
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"constrainer_energy", "constrainer_position"}
    # the constrainers learn: 100 more pre-training steps lower their loss on these showers
    m2 = _model(constrainer_energy=0.01, constrainer_position=0.01, constrainer_pretrain_steps=10**6)
    opts2 = m2.configure_optimizers(lr=1e-2, weight_decay=0.0)
    first = m2.training_step(x, c, opts2, step=0)["constrainer_pretrain"]
    for s in range(1, 100):
        last = m2.training_step(x, c, opts2, step=s)["constrainer_pretrain"]
    assert last < 0.5 * first
    # after the pre-training the GAN trains: critic and generator move
    m.training_step(x, c, opts, step=1)
    out = m.training_step(x, c, opts, step=2)
    assert "critic_loss" in out and "constrainer_energy_real" in out
    m.training_step(x, c, opts, step=3)
    m.training_step(x, c, opts, step=4)
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert {"critic", "generator"} <= changed


def test_max_gradient_penalty_is_the_largest_two_sided_term():
    torch.manual_seed(0)
    m = GAN(n_features=2, n_conditions=1, gp="max", hidden=8, n_hidden=1, latent_dim=2)
    # a linear critic D(x, c) = w·x: ∇_x D = w for every sample -> every term (|w| − 1)²
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 7.0]]))
    m.critic.net = lin
    xr, xf, c = torch.randn(8, 2), torch.randn(8, 2), torch.randn(8, 1)
    assert m.gradient_penalty(xr, xf, c).item() == pytest.approx(16.0, rel=1e-5)  # (5 − 1)²
    # a critic whose gradient differs per sample: D = 0.5·x0² -> ∇ = (x0, 0); max of (|x0| − 1)²
    m.critic = _Quadratic()
    eps = torch.full((8, 1), 0.5)
    x_hat = 0.5 * (xr + xf)
    expected = ((x_hat[:, 0].abs() - 1.0) ** 2).max()
    assert m.gradient_penalty(xr, xf, c, eps=eps).item() == pytest.approx(float(expected), rel=1e-4)
    m.gp_type = "two-sided"
    assert m.gradient_penalty(xr, xf, c, eps=eps).item() < float(expected)


class _Quadratic(nn.Module):
    def forward(self, x, c):
        return 0.5 * x[:, :1] ** 2


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"constrainer_position": 0.01, "position_columns": [0]}, "position_columns"),
        ({"constrainer_position": 0.01, "position_columns": [3]}, "position_columns"),
        ({"constrainer_pretrain_steps": 5}, "needs a constrainer"),
        ({"constrainer_energy": 0.01, "constrainer_pretrain_steps": -1}, "constrainer_pretrain_steps"),
        ({"gp": "maximum"}, "gp"),
    ],
)
def test_bad_constrainer_settings_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as err:
        _model(**kw)
    assert "\n" not in str(err.value)


def test_checkpoint_round_trip_keeps_the_constrainers():
    m = _model(constrainer_energy=0.01, constrainer_position=0.02, position_columns=[2])
    m2 = GAN(n_features=D, n_conditions=C, **{k: v for k, v in m.hparams.items()
                                              if k not in ("n_features", "n_conditions")})
    m2.load_state_dict(m.state_dict())
    x = torch.randn(4, D)
    assert torch.equal(m.constrainer_position(x), m2.constrainer_position(x))
    assert m2.position_columns == [2] and m2.constrainer_weights["constrainer_position"] == 0.02
