"""The fast inverse of MADE spline flows (hepgen.models.made_sampler) and the tabular sampling path.

Every comparison is against zuko's own inverse (``flow.transform(c).inv(z)``) on the same noise:
in float64 to 1e-9 (the same function), in float32 to the tolerances stated at each assert.
"""

import numpy as np
import pytest
import torch
import zuko

from hepgen.data.tabular import TabularData
from hepgen.domains.tabular import CDFGaussianiser, TabularGenerator
from hepgen.models import build_model
from hepgen.models.made_sampler import MadeSplineSampler, made_spline_sampler, unique_rows


def _nsf(d, c, passes, transforms=3, hidden=(16, 16), seed=0, perturb=0.3):
    torch.manual_seed(seed)
    flow = zuko.flows.NSF(d, c, transforms=transforms, hidden_features=list(hidden), passes=passes, randperm=True)
    with torch.no_grad():  # away from the near-identity initialisation: splines that bend
        for p in flow.parameters():
            p.add_(perturb * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("d,c,passes", [(7, 2, 2), (6, 3, 3), (4, 2, None), (5, 0, 2)])
def test_same_function_as_zuko_in_float64(d, c, passes):
    flow = _nsf(d, c, passes).double()
    gen = torch.Generator().manual_seed(1)
    n = 300
    cond = torch.eye(c, dtype=torch.float64)[torch.randint(0, c, (n,), generator=gen)] if c else None
    z = 2.0 * torch.randn(n, d, generator=gen, dtype=torch.float64)  # also values beyond the bound 5
    with torch.no_grad():
        ref = flow.transform(cond).inv(z)
        fast = MadeSplineSampler(flow, d, c).double()(cond if c else torch.zeros(n, 0, dtype=torch.float64), z)
    assert fast.shape == (n, d)
    assert torch.allclose(fast, ref, rtol=0, atol=1e-9), float((fast - ref).abs().max())
    # and it is the inverse: the forward transform maps it back to the noise
    with torch.no_grad():
        back = flow.transform(cond)(fast)
    assert torch.allclose(back, z, rtol=0, atol=1e-8)


def test_continuous_conditions_and_float32():
    flow = _nsf(8, 2, 2, perturb=0.1)
    gen = torch.Generator().manual_seed(2)
    cond, z = torch.randn(500, 2, generator=gen), torch.randn(500, 8, generator=gen)  # 500 distinct rows
    with torch.no_grad():
        ref, fast = flow.transform(cond).inv(z), MadeSplineSampler(flow, 8, 2)(cond, z)
    assert torch.allclose(fast, ref, rtol=0, atol=1e-4), float((fast - ref).abs().max())


def test_unique_rows_against_torch_unique():
    gen = torch.Generator().manual_seed(3)
    c = torch.randint(0, 3, (200, 3), generator=gen).float()
    u, idx = unique_rows(c)
    ref_u, ref_idx = torch.unique(c, dim=0, return_inverse=True)
    assert torch.equal(u, ref_u) and torch.equal(idx, ref_idx)
    assert torch.equal(u[idx], c)
    u0, i0 = unique_rows(torch.zeros(4, 0))
    assert u0.shape == (1, 0) and i0.tolist() == [0, 0, 0, 0]


def test_which_models_get_the_fast_sampler():
    assert isinstance(made_spline_sampler(build_model("tabular_flow", n_features=4, n_conditions=2,
                                                      **build_model_hp())), MadeSplineSampler)
    assert made_spline_sampler(build_model("tabular_flow", n_features=4, n_conditions=2, coupling=True,
                                           **build_model_hp())) is None  # coupling: another sampler
    assert made_spline_sampler(build_model("flow", n_features=4, n_conditions=2, spline_bins=0)) is None  # affine
    assert made_spline_sampler(build_model("tabular_wgan", n_features=4, n_conditions=2, hidden=8, n_hidden=1)) is None
    with pytest.raises(TypeError, match="MonotonicRQSTransform"):
        MadeSplineSampler(zuko.flows.MAF(4, 2, transforms=1, hidden_features=[8]), 4, 2)


def build_model_hp():
    return {"transforms": 2, "hidden_features": 16, "n_hidden": 2, "spline_bins": 4}


def _toy(n=400, seed=0):
    rng = np.random.default_rng(seed)
    proc = rng.integers(0, 2, n)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.6, 0], [0.6, 1, 0.3], [0, 0.3, 1]], n)
    z[:, 0] += proc
    return TabularData(np.column_stack([np.exp(z[:, 0]), z[:, 1], 50 + 10 * z[:, 2]]), ["a", "b", "c"],
                       ["GeV", "", "GeV"], proc, ["tth", "ttbb"])


def test_tabular_generator_fast_path_gives_the_same_events():
    """Same seed → same events on the fast path and through the model's own sample (zuko)."""
    data = _toy()
    pre = CDFGaussianiser(process_names=data.process_names).fit(data.values, data.columns)
    torch.manual_seed(0)
    model = build_model("tabular_flow", n_features=3, n_conditions=2, transforms=4, hidden_features=32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    gen = TabularGenerator(model, pre, {"family": "tabular_flow"})
    fast = gen.generate(data.process, seed=5, batch_size=150, path="auto", block=64)
    ref = gen.generate(data.process, seed=5, batch_size=150, path="model")
    # compare in the Gaussianised space (physical units magnify the exponential tails)
    zf, zr = pre.transform(fast), pre.transform(ref)
    assert np.max(np.abs(zf - zr)) < 1e-4, np.max(np.abs(zf - zr))
    # a different seed gives different events (the check above can fail)
    other = pre.transform(gen.generate(data.process, seed=6, batch_size=150))
    assert np.max(np.abs(other - zr)) > 0.5
    with pytest.raises(ValueError, match="key 'path'"):
        gen.generate(data.process, path="fastest")


def test_a_shifted_base_distribution_is_refused():
    # the fast samplers map standard-normal noise: a flow with another base must not get one
    flow = zuko.flows.NSF(3, 1, transforms=1, hidden_features=[8])
    MadeSplineSampler(flow, 3, 1)  # N(0, 1): accepted
    with torch.no_grad():
        flow.base.loc.fill_(0.5)
    with pytest.raises(TypeError, match="MadeSplineSampler expects a standard-normal base distribution"):
        MadeSplineSampler(flow, 3, 1)
