"""The transformer flow-matching family for jets (``jet_transformer_fm``): permutation
equivariance, padding that has no effect, attention checked against ``torch.nn.MultiheadAttention``,
the likelihood over real dimensions, hparam errors.

The trainer path (train → sample → checkpoint round trip, exact resume) runs for every jets
family, this one included, in ``tests/test_jets_models.py`` (``JET_FAMILIES``).
"""

import math

import numpy as np
import pytest
import torch

from hepgen.config import preset
from hepgen.models import MODEL_FAMILIES, build_model
from hepgen.models.epic import jet_mask
from hepgen.models.jet_transformer import JetTransformerFlowMatching, TransformerBlock

P, F = 6, 3


def _cloud(n_real=(4, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor([[float(n_real[0]), 1.0, 0.0, 0.3, -0.5], [float(n_real[1]), 0.0, 1.0, -1.0, 0.8]],
                     dtype=torch.float64)
    x = torch.randn(2, P, F, generator=g, dtype=torch.float64) * jet_mask(c, P)
    return x.reshape(2, -1), c


def _permute_real(x, c, seed=1):
    g = torch.Generator().manual_seed(seed)
    pts = x.reshape(len(x), P, F).clone()
    for i, n in enumerate(c[:, 0].long()):
        pts[i, :n] = pts[i, torch.randperm(int(n), generator=g)]
    return pts.reshape(len(x), -1)


# ode_log_prob's vmap(jacrev) has no batching rule for CPU flash attention: torch warns that it
# falls back to a loop (slower, same numbers)
_NO_BATCHING_RULE = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


@pytest.fixture(scope="module")
def fm():
    """A small model with every parameter random (adaLN-Zero would start it as v ≡ 0, which
    would make the symmetry checks trivial)."""
    torch.manual_seed(0)
    model = build_model("jet_transformer_fm", n_features=F * P, n_conditions=5, n_particles=P, hidden=8, heads=2,
                        n_layers=2, time_freqs=2).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    return model


def test_registered_as_a_jets_family():
    assert MODEL_FAMILIES["jet_transformer_fm"] is JetTransformerFlowMatching
    assert JetTransformerFlowMatching.data_kind == "jets"


@torch.no_grad()
def test_velocity_is_permutation_equivariant_and_ignores_padding(fm):
    x, c = _cloud()
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    v = fm.velocity(x, t, c)
    assert v.shape == (2, P * F) and torch.all(v.reshape(2, P, F)[0, :4] != 0)
    vp = fm.velocity(_permute_real(x, c), t, c)
    # permuting the real particles permutes the velocity the same way
    np.testing.assert_allclose(_permute_real(v, c).numpy(), vp.numpy(), atol=1e-12)
    junk = x.clone().reshape(2, P, F)
    junk[0, 4:] = 7.0  # garbage in the padding slots of jet 0 (4 real particles)
    junk[0, 5, 1] = float("inf")
    junk[0, 4, 2] = float("nan")
    vj = fm.velocity(junk.reshape(2, -1), t, c)
    np.testing.assert_allclose(vj.numpy(), v.numpy(), atol=1e-12)
    assert torch.all(v.reshape(2, P, F)[0, 4:] == 0)


@torch.no_grad()
def test_particles_interact_through_attention(fm):
    # moving one real particle changes every other real particle's velocity (a per-particle
    # network would leave them alone), and the other jet of the batch not at all
    x, c = _cloud()
    t = torch.tensor([0.5, 0.5], dtype=torch.float64)
    v = fm.velocity(x, t, c).reshape(2, P, F)
    moved = x.clone().reshape(2, P, F)
    moved[0, 0] += 1.0
    vm = fm.velocity(moved.reshape(2, -1), t, c).reshape(2, P, F)
    assert torch.all((vm[0, 1:4] - v[0, 1:4]).abs().amax(dim=-1) > 1e-6)
    assert torch.equal(vm[1], v[1])


@torch.no_grad()
def test_block_attention_matches_torch_multihead_attention():
    # independent reference: nn.MultiheadAttention with the block's weights and a key-padding mask
    torch.manual_seed(1)
    d, heads = 8, 2
    blk = TransformerBlock(d, heads).double()
    for p in blk.parameters():
        p.normal_(0.0, 0.3)
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True).double()
    mha.in_proj_weight.copy_(blk.qkv.weight)
    mha.in_proj_bias.copy_(blk.qkv.bias)
    mha.out_proj.weight.copy_(blk.proj.weight)
    mha.out_proj.bias.copy_(blk.proj.bias)
    h = torch.randn(3, 5, d, dtype=torch.float64)
    e = torch.randn(3, d, dtype=torch.float64)
    mask = (torch.arange(5)[None, :] < torch.tensor([[2], [5], [4]])).double()[..., None]
    s1, b1, g1, s2, b2, g2 = blk.ada(torch.nn.functional.silu(e))[:, None, :].chunk(6, dim=-1)
    a_in = blk.norm1(h) * (1 + s1) + b1
    attn, _ = mha(a_in, a_in, a_in, key_padding_mask=mask[..., 0] == 0, need_weights=False)
    h1 = h + g1 * attn
    expected = (h1 + g2 * blk.mlp(blk.norm2(h1) * (1 + s2) + b2)) * mask
    got = blk(h, e, (mask[..., 0] > 0)[:, None, None, :], mask)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-12)


@_NO_BATCHING_RULE
def test_untrained_model_is_the_identity_flow_and_likelihood_counts_real_dimensions():
    # adaLN-Zero: a freshly built model has v ≡ 0, so sampling returns the masked noise and
    # the density is the standard normal over the n·F real dimensions — worked out by hand
    model = build_model("jet_transformer_fm", n_features=F * P, n_conditions=5,
                        **JetTransformerFlowMatching.tiny_hparams()).double()
    x, c = _cloud()
    expected = -0.5 * x.square().sum(dim=1) - 0.5 * F * c[:, 0] * math.log(2 * math.pi)
    np.testing.assert_allclose(model.ode_log_prob(x, c, steps=3).numpy(), expected.numpy(), rtol=1e-12)
    z = torch.randn(2, P * F, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    m = jet_mask(c, P).expand(-1, -1, F).reshape(2, -1)
    assert torch.equal(model.sample_from_noise(c, z), z * m)


@_NO_BATCHING_RULE
def test_likelihood_is_permutation_invariant(fm):
    x, c = _cloud()
    lp = fm.ode_log_prob(x, c, steps=4)
    assert torch.isfinite(lp).all()
    np.testing.assert_allclose(fm.ode_log_prob(_permute_real(x, c), c, steps=4).numpy(), lp.numpy(),
                               rtol=1e-9, atol=1e-9)


def test_samples_have_zero_padding_are_seeded_and_solver_cost(fm):
    _, c = _cloud()
    a = fm.sample(c, torch.Generator().manual_seed(4))
    b = fm.sample_from_noise(c, torch.randn(2, fm.noise_dim, generator=torch.Generator().manual_seed(4),
                                            dtype=torch.float64))
    assert torch.equal(a, b)
    pts = a.reshape(2, P, F)
    assert torch.all(pts[0, 4:] == 0) and torch.all(pts[0, :4] != 0)
    calls = []
    handle = fm.net.register_forward_hook(lambda *args: calls.append(1))
    try:
        fm.sample(c, torch.Generator().manual_seed(4), steps=3, method="euler")
        n_euler = len(calls)
        fm.sample(c, torch.Generator().manual_seed(4), steps=3, method="midpoint")
    finally:
        handle.remove()
    assert (n_euler, len(calls) - n_euler) == (3, 6)  # network passes: steps (Euler), 2·steps (midpoint)


def test_loss_ignores_padding_and_decreases_with_training():
    torch.manual_seed(0)
    model = build_model("jet_transformer_fm", n_features=F * P, n_conditions=5,
                        **JetTransformerFlowMatching.tiny_hparams())
    x, c = _cloud()
    x, c = x.float(), c.float()
    junk = x.clone().reshape(2, P, F)
    junk[0, 4:] = 5.0
    g = torch.Generator().manual_seed(1)
    assert model.loss(junk.reshape(2, -1), c, generator=g).item() == pytest.approx(
        model.loss(x, c, generator=torch.Generator().manual_seed(1)).item(), rel=1e-6)
    # the same 2 jets over and over: the regression loss must fall well below its start
    xs, cs = x.repeat(64, 1), c.repeat(64, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(xs, cs, generator=torch.Generator().manual_seed(0)).item()
    for step in range(150):
        loss = model.loss(xs, cs, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = model.loss(xs, cs, generator=torch.Generator().manual_seed(0)).item()
    assert last < 0.6 * first, (first, last)


def test_preset_builds_at_30_particles():
    cfg = preset("jet_transformer_fm")
    assert cfg.family == "jet_transformer_fm"
    model = build_model(cfg.family, n_features=90, n_conditions=5, **{"n_particles": 30, **cfg.model})
    assert model.noise_dim == 90 and model.hparams["heads"] == cfg.model["heads"]


def test_bad_hparams_name_the_key():
    with pytest.raises(ValueError, match="'heads': expected a divisor of hidden=10"):
        build_model("jet_transformer_fm", n_features=18, n_conditions=5, n_particles=6, hidden=10, heads=4)
    with pytest.raises(ValueError, match="'n_particles': expected a divisor of n_features=18"):
        build_model("jet_transformer_fm", n_features=18, n_conditions=5, n_particles=4)
