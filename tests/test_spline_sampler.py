"""The fast inverse of spline coupling flows (hepgen.domains.showers.spline_sampler) against zuko,
and the sampling helper the demo uses (hepgen.domains.showers.inference.sample_through_path)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from zuko.transforms import MonotonicRQSTransform

from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import (ShowerSampler, build_sampler, prepare_path, quantize_int8,
                                              sample_through_path, spline_network)
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.domains.showers.spline_sampler import SplineCouplingSampler, rqs_inverse
from hepgen.models import build_model
from hepgen.models.flow import CaloFlow, ConditionalFlow


def _phi(seed, n, f, bins, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    phi = 3 * torch.randn(n, f, 3 * bins - 1, generator=g, dtype=dtype)
    # inside, outside and exactly on the bound B = 5 (the identity tails)
    y = 7 * torch.rand(n, f, generator=g, dtype=dtype) - 3.5
    y[0, : min(f, 4)] = torch.tensor([-5.0, 5.0, 6.5, -9.0], dtype=dtype)[: min(f, 4)]
    return phi, y


@pytest.mark.parametrize("bins", [2, 4, 8])
def test_rqs_inverse_is_zukos_inverse_in_float64(bins):
    phi, y = _phi(bins, 300, 5, bins)
    ref = MonotonicRQSTransform(phi[..., :bins], phi[..., bins:2 * bins], phi[..., 2 * bins:]).inv(y)
    out = rqs_inverse(phi, y, bins)
    # the same function: in float64 only rounding separates them
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-11)
    assert torch.equal(out[0, 2:4], y[0, 2:4])  # outside [-B, B]: the identity, exactly
    # and it inverts zuko's forward map
    fwd = MonotonicRQSTransform(phi[..., :bins], phi[..., bins:2 * bins], phi[..., 2 * bins:])(out)
    torch.testing.assert_close(fwd, y, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("bins", [2, 8])
@pytest.mark.parametrize("branch", ["compile", "export", "autograd"])
def test_rqs_inverse_branches_for_graph_capture_are_the_same_function(monkeypatch, branch, bins):
    # under torch.compile rqs_inverse_planes is a gather-free chain of where (fused by inductor),
    # under export and autograd it has no in-place updates; run them eagerly here (compiling and
    # exporting take minutes on a CPU) against zuko in float64
    phi, y = _phi(3, 300, 5, bins)
    ref = MonotonicRQSTransform(phi[..., :bins], phi[..., bins:2 * bins], phi[..., 2 * bins:]).inv(y)
    if branch == "compile":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    elif branch == "export":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    else:
        phi.requires_grad_(True)
    out = rqs_inverse(phi, y, bins)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-11)
    assert torch.equal(out[0, 2:4], y[0, 2:4])  # outside [-B, B]: the identity, exactly
    if branch == "autograd":  # and the gradient flows back to the parameters of values inside the bound
        out.sum().backward()
        inside = (y > -5) & (y < 5)  # (outside, the unused branch's root has a NaN gradient, as in zuko)
        assert bool(torch.isfinite(phi.grad[inside]).all()) and float(phi.grad[inside].abs().sum()) > 0


def test_rqs_inverse_float32_error_is_zukos_float32_error():
    phi, y = _phi(0, 500, 7, 8)
    ref64 = MonotonicRQSTransform(phi[..., :8], phi[..., 8:16], phi[..., 16:]).inv(y)
    phi32, y32 = phi.float(), y.float()
    err_zuko = (MonotonicRQSTransform(phi32[..., :8], phi32[..., 8:16], phi32[..., 16:]).inv(y32) - ref64).abs().max()
    err_ours = (rqs_inverse(phi32, y32, 8) - ref64).abs().max()
    # measured: 2.9e-5 (zuko) and 6.3e-5 (ours, parameter-major planes) on these 3500 values; both are
    # rounding in steep bins
    assert err_ours < 3 * err_zuko + 1e-6
    with pytest.raises(ValueError, match="3 \\* 8 - 1 = 23 parameters per feature, found 22"):
        rqs_inverse(phi32[..., :22], y32, 8)


def _perturbed_flow(features, context, bins, transforms=3, seed=0, mix=0):
    torch.manual_seed(seed)
    flow = ConditionalFlow(features, context, transforms=transforms, hidden_features=16, n_hidden=2,
                           spline_bins=bins, coupling=True, mix=mix)
    with torch.no_grad():  # away from the identity-like initialisation
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow.eval()


@pytest.mark.parametrize("features,bins,mix", [(2, 4, 0), (7, 8, 0), (7, 4, 2)])
def test_spline_coupling_sampler_is_the_flows_inverse(features, bins, mix):
    # mix 2: LinearMix layers before couplings 0 and 2 (perturbed away from the identity below)
    flow = _perturbed_flow(features, 2, bins, mix=mix)
    assert sum(type(t).__name__ == "LinearMix" for t in flow.flow.transform.transforms) == mix
    c, z = torch.randn(400, 2), 2 * torch.randn(400, features)
    fast = SplineCouplingSampler(flow.flow, features).eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(c, z), flow.sample_from_noise(c, z), atol=2e-4, rtol=1e-4)
        # in float64 the two agree to rounding: the same function
        f64 = copy.deepcopy(flow).double()
        fast64 = SplineCouplingSampler(f64.flow, features).double()
        x64 = fast64(c.double(), z.double())
        torch.testing.assert_close(x64, f64.sample_from_noise(c.double(), z.double()), atol=1e-10, rtol=1e-10)
    # plain nn.Linear conditioners: the int8 path really quantises them (zuko's Linear is not nn.Linear)
    q = quantize_int8(fast)
    assert not any(type(m) is nn.Linear for m in q.modules())
    with torch.no_grad():
        diff = (q(c, z) - fast(c, z)).abs()
    # int8 weights move the outputs (measured mean 0.05 on outputs of spread ~2), but not far
    assert float(diff.max()) > 0 and float(diff.mean()) < 0.2


def test_features_travel_in_working_orders_and_a_mix_writes_the_next_couplings():
    # mix 2 on 3 couplings: forward mix, c0, c1, mix, c2; inverted: c2, mix, c1, c0, mix
    flow = _perturbed_flow(7, 2, 4, mix=2)
    fast = SplineCouplingSampler(flow.flow, 7)
    assert [type(m).__name__ for m in fast.layers] == ["_Layer", "_Mix", "_Layer", "_Layer", "_Mix"]
    c2, c1, c0 = fast.layers[0], fast.layers[2], fast.layers[3]
    # c1 reads the mix's output as two slices; c2 (on the noise) and c0 (after c1) gather
    assert c1.sliced and not c2.sliced and not c0.sliced
    # the mix's matrix is W⁻¹ with its rows in c1's order and its columns in c2's
    w_inv = torch.linalg.inv(flow.flow.transform.transforms[3].weight().double()).float()
    torch.testing.assert_close(fast.layers[1].inverse, w_inv[c1.order_out][:, c2.order_out])
    # the last step is a mix into the natural order: nothing left to put back
    assert fast.unpermute is None
    # without mixes every coupling leaves its own order, and the sampler puts it back once
    plain = SplineCouplingSampler(_perturbed_flow(7, 2, 4).flow, 7)
    assert torch.equal(plain.unpermute, torch.argsort(plain.layers[-1].order_out))


def test_build_sampler_picks_it_and_refuses_others():
    torch.manual_seed(0)
    model = CaloFlow(n_features=10, n_conditions=1, n_layers=2,
                     energy_flow={"transforms": 2, "hidden_features": 8, "spline_bins": 4, "coupling": True},
                     shape_flow={"transforms": 2, "hidden_features": 8, "spline_bins": 4, "coupling": True}).eval()
    s = build_sampler(model)
    assert isinstance(s.energy, SplineCouplingSampler) and isinstance(s.shape, SplineCouplingSampler)
    c, z = torch.randn(50, 1), torch.randn(50, 10)
    with torch.no_grad():
        torch.testing.assert_close(s(c, z), model.sample_from_noise(c, z), atol=2e-4, rtol=1e-4)
    affine = ConditionalFlow(4, 1, transforms=2, hidden_features=8, coupling=True)
    with pytest.raises(TypeError, match="spline coupling layers only"):
        SplineCouplingSampler(affine.flow, 4)


def _tiny_generator():
    rng = np.random.default_rng(0)
    e_inc = rng.uniform(1e3, 1e4, (200, 1))
    pre = ShowerPreprocessor([3, 3]).fit(rng.exponential(1.0, (200, 6)) * e_inc / 12, e_inc)
    torch.manual_seed(0)
    model = build_model("flow", n_features=pre.n_features, n_conditions=1, transforms=2, hidden_features=8,
                        n_hidden=1, spline_bins=4, coupling=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ShowerGenerator(model.eval(), pre, None), e_inc[:, 0]


def test_sample_through_path_is_generator_sample_on_the_same_noise():
    gen, e = _tiny_generator()
    assert isinstance(ShowerSampler.from_generator(gen).sampler, SplineCouplingSampler)
    ref = gen.sample(e, seed=5, batch_size=64)
    out = sample_through_path(gen, e, seed=5, batch_size=64, path="fp32")
    assert out.shape == ref.shape == (200, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * float(ref.max()))
    # the compile path pads a short last batch (200 = 3 x 64 + 8) to the compiled shape; the
    # padding logic checked with the uncompiled module standing in for the compiled one
    padded = sample_through_path(gen, e, seed=5, batch_size=64, path="compile", module=ShowerSampler.from_generator(gen))
    np.testing.assert_allclose(padded, out, rtol=1e-5, atol=1e-5 * float(out.max()))
    bf16 = sample_through_path(gen, e, seed=5, batch_size=64, path="bf16")
    assert not np.array_equal(bf16, out) and np.all(bf16 >= 0)
    with pytest.raises(ValueError, match="expected one of .* found 'fp64'"):
        sample_through_path(gen, e, path="fp64")
    with pytest.raises(ValueError, match="finite and > 0"):
        sample_through_path(gen, np.array([1e3, -1.0]))


def test_bf16_path_keeps_the_spline_in_float32():
    flow = _perturbed_flow(6, 1, 4)
    fast = SplineCouplingSampler(flow.flow, 6).eval()
    gen, _ = _tiny_generator()
    s = prepare_path(ShowerSampler.from_generator(gen), "bf16")
    e, z = torch.full((30, 1), 5e3), torch.randn(30, s.noise_dim)
    with torch.no_grad():
        assert s(e, z).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = fast(torch.randn(30, 1), torch.randn(30, 6))
    assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())


def _zuko_path_sample(gen, e, seed, batch_size):
    """ShowerGenerator.sample as it was before it used the fast sampler: model.sample per batch."""
    c = gen.preprocessor.transform_conditions(e, None)
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for s in range(0, len(e), batch_size):
            x = gen.model.sample(torch.from_numpy(c[s:s + batch_size]), generator=g).float().numpy()
            out.append(gen.preprocessor.inverse(x, e[s:s + batch_size]))
    return np.concatenate(out)


def _tiny_caloflow_generator(coupling=True, mix=0):
    rng = np.random.default_rng(1)
    e_inc = rng.uniform(1e3, 1e4, (300, 1))
    pre = ShowerPreprocessor([4, 4]).fit(rng.exponential(1.0, (300, 8)) * e_inc / 16, e_inc)
    torch.manual_seed(1)
    stage = {"transforms": 2, "hidden_features": 16, "n_hidden": 2, "spline_bins": 8, "coupling": coupling}
    model = build_model("caloflow", n_features=pre.n_features, n_conditions=1, n_layers=2,
                        energy_flow=stage, shape_flow=dict(stage, mix=mix))
    with torch.no_grad():  # away from the identity-like initialisation
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return ShowerGenerator(model.eval(), pre, None), e_inc[:, 0]


def _tiny_caloflow_mixed_generator():
    return _tiny_caloflow_generator(mix=2)   # a LinearMix before each of the shape flow's couplings


@pytest.mark.parametrize("make", [_tiny_generator, _tiny_caloflow_generator, _tiny_caloflow_mixed_generator])
def test_generator_sample_uses_the_fast_sampler_and_gives_the_zuko_paths_showers(make, monkeypatch):
    gen, e = make()
    assert spline_network(gen.model) is not None
    ref = _zuko_path_sample(gen, e, seed=3, batch_size=128)
    out = gen.sample(e, seed=3, batch_size=128)
    # the same function and the same noise: only float32 rounding differs (measured: max 8e-7 of
    # the largest voxel for both models); another seed's showers differ by 0.8-0.9 of it
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(ref.max()))
    assert not np.array_equal(gen.sample(e, seed=4, batch_size=128), out)
    # and the fast path is the one taken: with model.sample broken, sample still works
    monkeypatch.setattr(type(gen.model), "sample", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    np.testing.assert_array_equal(gen.sample(e, seed=3, batch_size=128), out)


def test_spline_network_is_none_for_other_models():
    affine = build_model("flow", n_features=6, n_conditions=1, transforms=2, hidden_features=8, coupling=True)
    made_spline = build_model("flow", n_features=6, n_conditions=1, transforms=2, hidden_features=8, spline_bins=4)
    calo_made = CaloFlow(n_features=6, n_conditions=1, **CaloFlow.tiny_hparams())
    for m in (affine, made_spline, calo_made):
        assert spline_network(m) is None
    gen, _ = _tiny_caloflow_generator(coupling=False)
    assert spline_network(gen.model) is None


@pytest.mark.parametrize("mix", [0, 2])
def test_onnx_export_of_the_spline_sampler_matches_pytorch(tmp_path, mix):
    # under export rqs_inverse_planes takes its functional branch (no in-place updates, no uint8 view);
    # mix 2: the shape flow's LinearMix layers export as a matrix product with W⁻¹
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from hepgen.data.geometry import CylindricalBinning
    from hepgen.export import check_onnx, export_onnx

    gen, _ = _tiny_caloflow_generator(mix=mix)
    gen.geometry = CylindricalBinning.regular(n_layers=2, r_edges=[0, 5, 10, 20, 30], n_alpha=1)
    export_onnx(gen, tmp_path / "m.onnx")
    res = check_onnx(tmp_path / "m.onnx", gen, n=500, seed=1)
    # measured: max relative difference 1.7e-4 (onnxruntime's vectorised exp), tolerance 1e-3
    assert res["ok"] and res["n_outside_tolerance"] == 0, res


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch._dynamo's import
def test_compile_bf16_path_is_the_bf16_module_compiled():
    # compiling takes minutes on a CPU: check what would be compiled, and run it eagerly
    gen, e = _tiny_generator()
    base = ShowerSampler.from_generator(gen)
    m = prepare_path(base, "compile-bf16")
    inner = m._orig_mod  # torch.compile's wrapper keeps the module it compiles
    assert inner.sampler.dtype == torch.bfloat16 and isinstance(inner.sampler.inner, SplineCouplingSampler)
    x, z = torch.full((30, 1), 5e3), torch.randn(30, base.noise_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_array_equal(inner(x, z).numpy(), prepare_path(base, "bf16")(x, z).numpy())
