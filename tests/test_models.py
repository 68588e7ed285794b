import os

import numpy as np
import pytest
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.models import MODEL_FAMILIES, build_model

# shower families; the jet families (data_kind "jets") have their own suite, tests/test_jets_models.py
FAMILIES = sorted(f for f, cls in MODEL_FAMILIES.items() if cls.data_kind == "showers")


def _build(family, **kw):
    return build_model(family, **{**MODEL_FAMILIES[family].tiny_hparams(), **kw})


def _toy(n=512, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 1, generator=g)
    x = 0.5 * torch.randn(n, d, generator=g) + c  # the mean follows the condition
    return x, c


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases_and_sample_shape(family):
    torch.manual_seed(0)
    model = _build(family, n_features=6, n_conditions=1)
    x, c = _toy()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = model.loss(x, c).item()
    for _ in range(60):
        loss = model.loss(x, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = model.loss(x, c).item()
    assert after < before - 0.1
    s = model.sample(torch.zeros(7, 1), generator=torch.Generator().manual_seed(1))
    assert s.shape == (7, 6) and torch.isfinite(s).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(family):
    model = _build(family, n_features=4, n_conditions=1)
    c = torch.zeros(5, 1)
    state = torch.get_rng_state()
    a = model.sample(c, generator=torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state())
    b = model.sample(c, generator=torch.Generator().manual_seed(3))
    d = model.sample(c, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, d)


def test_flow_log_prob_integrates_to_one():
    torch.manual_seed(0)
    flow = build_model("flow", n_features=2, n_conditions=1, transforms=3, hidden_features=16)
    # perturb the weights away from the identity-like initialisation
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    grid = torch.linspace(-12, 12, 601)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.ravel(), yy.ravel()], dim=1)
    with torch.no_grad():
        dens = flow.log_prob(pts, torch.full((len(pts), 1), 0.7)).exp()
    integral = dens.sum().item() * (grid[1] - grid[0]).item() ** 2
    assert integral == pytest.approx(1.0, abs=0.02)


def _generator(family="flow"):
    geometry = CylindricalBinning.regular(2, [0, 1, 2], n_alpha=2)
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(64, 8)).astype(np.float32)
    e = rng.uniform(1e3, 2e3, size=(64, 1))
    pre = ShowerPreprocessor([4, 4]).fit(x, e)
    model = _build(family, n_features=pre.n_features, n_conditions=1)
    return ShowerGenerator(model, pre, geometry, {"energy_range": [1e3, 2e3]})


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_gives_identical_samples(tmp_path, family):
    gen = _generator(family)
    gen.save(tmp_path / "m.pt")
    again = ShowerGenerator.load(tmp_path / "m.pt")
    e = np.full(10, 1500.0)
    a, b = gen.sample(e, seed=5), again.sample(e, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 8) and (a >= 0).all()
    assert again.geometry == gen.geometry


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "hepgen.checkpoint/1", "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="evil.pt: not a loadable hepgen checkpoint"):
        load_checkpoint(path)


def test_checkpoint_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.pt"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"format": "something/else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="key 'format': expected 'hepgen.checkpoint/1'"):
        load_checkpoint(tmp_path / "other.pt")


def test_generator_rejects_bad_energies():
    gen = _generator()
    with pytest.raises(ValueError, match="incident energies"):
        gen.sample(np.array([1000.0, -5.0]))
