"""Fast inference (hepgen.domains.showers.inference), ONNX export (hepgen.export) and the benchmark (hepgen.bench)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from hepgen.bench import matmul_flops, network_flops_per_shower, peak_rss, run_bench, time_calls
from hepgen.cli import main
from hepgen.config import TrainConfig
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.domains.showers.inference import (
    ConditionEncoder,
    FeatureDecoder,
    ModelSampler,
    NoiseSampler,
    PrunedAffineFlow,
    ShowerSampler,
    build_sampler,
    fold_masked_linear,
    prepare_path,
    quantize_int8,
)
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.export import ONNX_ATOL, ONNX_RTOL, check_onnx, export_onnx
from hepgen.models import GenerativeModel, build_model
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import train

TINY_FLOW = {"transforms": 3, "hidden_features": 32, "n_hidden": 2}


def _perturbed_flow(seed=0, **kw):
    torch.manual_seed(seed)
    model = build_model("flow", **kw)
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny flow trained for a few epochs on 32-voxel showers with an angle condition."""
    d = tmp_path_factory.mktemp("inference")
    geometry = CylindricalBinning.regular(4, [0, 5, 10, 20, 40], n_alpha=2)
    data = simulate_dataset(800, geometry=geometry, energy_range=(2e3, 5e4), theta_range=(0.0, 0.3), seed=3)
    config = TrainConfig(model=TINY_FLOW, conditions=["incident_theta"], epochs=3, batch_size=128, seed=0)
    train(data, config, d / "run", progress=False)
    return d, ShowerGenerator.load(d / "run" / "best.pt")


# --- the pruned flow and the torch pre/post-processing ------------------------------------------
@pytest.mark.parametrize("kw", [
    {"n_features": 7, "n_conditions": 2, "transforms": 3, "hidden_features": 16},  # coupling, 2 hidden
    {"n_features": 9, "n_conditions": 1, "transforms": 2, "hidden_features": 12, "n_hidden": 1,
     "passes": None},  # fully autoregressive
    {"n_features": 10, "n_conditions": 1, "transforms": 2, "hidden_features": 8, "n_hidden": 3, "passes": 3},
])
def test_pruned_flow_equals_zuko_inverse(kw):
    model = _perturbed_flow(**kw)
    fast = build_sampler(model)
    assert isinstance(fast, PrunedAffineFlow)
    g = torch.Generator().manual_seed(1)
    c, z = torch.randn(64, kw["n_conditions"], generator=g), torch.randn(64, kw["n_features"], generator=g)
    with torch.no_grad():
        ref = model.sample_from_noise(c, z)
        got = fast(c, z)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # and it does less work: fewer matmul FLOPs than zuko's full passes
    zuko_flops = network_flops_per_shower(NoiseSampler(model), (c, z), 64)
    assert network_flops_per_shower(fast, (c, z), 64) < 0.8 * zuko_flops


def test_caloflow_fast_sampler_equals_its_sample_from_noise():
    torch.manual_seed(0)
    model = build_model("caloflow", n_features=9, n_conditions=1, n_layers=3,
                        energy_flow={"transforms": 2, "hidden_features": 8, "spline_bins": 4},
                        shape_flow={"transforms": 2, "hidden_features": 16, "spline_bins": 0})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.eval()
    fast = build_sampler(model)
    assert isinstance(fast.shape, PrunedAffineFlow) and isinstance(fast.energy, NoiseSampler)
    c, z = torch.randn(40, 1), torch.randn(40, 9)
    with torch.no_grad():
        torch.testing.assert_close(fast(c, z), model.sample_from_noise(c, z), rtol=1e-4, atol=1e-4)


def test_flop_count_of_zuko_flow_matches_hand_count():
    # D=10, C=1, H=16, 2 hidden layers, 2 transforms, passes=2: each pass evaluates the whole
    # MADE: (D+C)·H + H·H + H·2D multiply-adds, 2 FLOPs each
    model = _perturbed_flow(n_features=10, n_conditions=1, transforms=2, hidden_features=16, n_hidden=2)
    c, z = torch.zeros(8, 1), torch.zeros(8, 10)
    per_pass = 2 * ((10 + 1) * 16 + 16 * 16 + 16 * 20)
    assert network_flops_per_shower(NoiseSampler(model), (c, z), 8) == 2 * 2 * per_pass


def test_flow_sample_is_sample_from_noise_of_the_generator_noise():
    model = _perturbed_flow(n_features=5, n_conditions=1, transforms=2, hidden_features=8)
    c = torch.randn(6, 1)
    with torch.no_grad():
        a = model.sample(c, torch.Generator().manual_seed(7))
        b = model.sample_from_noise(c, torch.randn(6, 5, generator=torch.Generator().manual_seed(7)))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("occupancy", [False, True])
@pytest.mark.parametrize("layer_sizes", [[4, 4, 4], [3, 6, 1, 2]])
def test_torch_decoder_and_encoder_match_numpy_preprocessor(layer_sizes, occupancy):
    rng = np.random.default_rng(0)
    v = sum(layer_sizes)
    showers = rng.exponential(5.0, size=(400, v)) * (rng.random((400, v)) < 0.7)
    energies = rng.uniform(1e3, 5e4, size=(400, 1))
    theta = rng.uniform(0, 0.3, size=(400, 1))
    pre = ShowerPreprocessor(layer_sizes, ["incident_theta"], occupancy=occupancy).fit(
        showers, energies, {"incident_theta": theta})
    feats = pre.transform(showers, energies, rng)
    feats[:50] += rng.normal(size=feats[:50].shape).astype(np.float32)  # off the training data too
    ref = pre.inverse(feats, energies)
    got = FeatureDecoder(pre)(torch.from_numpy(feats), torch.from_numpy(energies.astype(np.float32))).numpy()
    # float32 vs float64: values within rounding of the threshold may be cut in one and not the other
    flip = (got == 0) != (ref == 0)
    assert flip.mean() < 1e-3
    assert np.all(np.maximum(got, ref)[flip] < pre.threshold * 1.01)
    np.testing.assert_allclose(got[~flip], ref[~flip], rtol=1e-4, atol=1e-4)
    c_ref = pre.transform_conditions(energies[:, 0], {"incident_theta": theta})
    c_got = ConditionEncoder(pre)(torch.tensor(energies, dtype=torch.float32), torch.tensor(theta, dtype=torch.float32))
    np.testing.assert_allclose(c_got.numpy(), c_ref, rtol=1e-5, atol=1e-5)


def test_shower_sampler_matches_the_numpy_pipeline(trained):
    _, gen = trained
    sampler = ShowerSampler.from_generator(gen)
    rng = np.random.default_rng(2)
    e = rng.uniform(2e3, 5e4, size=200)
    theta = rng.uniform(0, 0.3, size=(200, 1))
    z = torch.randn(200, sampler.noise_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = sampler(torch.tensor(e, dtype=torch.float32).reshape(-1, 1), z, torch.tensor(theta, dtype=torch.float32))
        c = torch.from_numpy(gen.preprocessor.transform_conditions(e, {"incident_theta": theta}))
        ref = gen.preprocessor.inverse(gen.model.sample_from_noise(c, z).numpy(), e)
    got = got.numpy()
    flip = (got == 0) != (ref == 0)
    assert flip.mean() < 1e-3
    np.testing.assert_allclose(got[~flip], ref[~flip], rtol=1e-3, atol=1e-3)


# --- sampling paths -----------------------------------------------------------------------------
def test_fold_masked_linear_keeps_the_function():
    model = _perturbed_flow(n_features=6, n_conditions=1, transforms=2, hidden_features=12)
    c, z = torch.randn(20, 1), torch.randn(20, 6)
    with torch.no_grad():
        ref = model.sample_from_noise(c, z)
        folded = fold_masked_linear(NoiseSampler(model))
        got = folded(c, z)
    from zuko.nn import MaskedLinear

    assert not any(isinstance(m, MaskedLinear) for m in folded.modules())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_int8_quantised_sampler_is_close_to_fp32(trained):
    _, gen = trained
    for fast in (True, False):
        fp32 = build_sampler(gen.model, fast=fast)
        q = quantize_int8(fp32)
        kinds = {f"{type(m).__module__}.{type(m).__name__}" for m in q.modules()}
        assert any("quantized.dynamic" in k and k.endswith(".Linear") for k in kinds)
        assert not any(type(m) is nn.Linear or type(m).__name__ == "MaskedLinear" for m in q.modules())
        g = torch.Generator().manual_seed(0)
        c = torch.randn(500, gen.model.n_conditions, generator=g)
        z = torch.randn(500, gen.model.n_features, generator=g)
        with torch.no_grad():
            a, b = fp32(c, z), q(c, z)
        assert not torch.equal(a, b)  # it is a different computation ...
        # ... whose standardised features stay close: 8-bit weights on a 3-transform flow
        err = (a - b).abs()
        assert err.median() < 0.02 and torch.quantile(err.flatten(), 0.99) < 0.2
        assert np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1] > 0.999


def test_prepare_path_variants_run_and_refuse_bad_input(trained):
    _, gen = trained
    base = ShowerSampler.from_generator(gen)
    e = torch.full((8, 1), 1e4)
    z = torch.randn(8, base.noise_dim, generator=torch.Generator().manual_seed(0))
    th = torch.full((8, 1), 0.1)
    with torch.no_grad():
        ref = base(e, z, th)
        bf16 = prepare_path(base, "bf16")(e, z, th)
    assert bf16.shape == ref.shape and torch.isfinite(bf16).all() and (bf16 >= 0).all()
    # bf16 keeps ~3 significant digits in the network; the shower totals stay within a few %
    torch.testing.assert_close(bf16.sum(1), ref.sum(1), rtol=0.1, atol=1.0)
    with pytest.raises(ValueError, match="sampling path"):
        prepare_path(base, "fp8")
    with pytest.raises(ValueError, match="CPU only"):
        prepare_path(base, "int8", device="meta")


def test_families_without_noise_map_use_model_sample_and_cannot_be_exported(trained, tmp_path):
    _, gen = trained

    class NoNoise(GenerativeModel):  # not registered: keeps the family registry clean
        family = "no_noise_test"

        def sample(self, c, generator=None):
            return torch.zeros(c.shape[0], self.n_features)

    model = NoNoise(gen.model.n_features, gen.model.n_conditions)
    with pytest.raises(NotImplementedError, match="sample_from_noise"):
        model.sample_from_noise(torch.zeros(1, 2), torch.zeros(1, 3))
    assert isinstance(build_sampler(model), ModelSampler)
    other = ShowerGenerator(model, gen.preprocessor, gen.geometry, gen.meta)
    s = ShowerSampler.from_generator(other)
    out = s(torch.full((3, 1), 1e4), None, torch.zeros(3, 1), generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, gen.preprocessor.n_voxels)
    with pytest.raises(ValueError, match="cannot be exported"):
        export_onnx(other, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


# --- ONNX ---------------------------------------------------------------------------------------
def test_onnx_export_matches_pytorch_within_tolerance(trained):
    import onnx
    import onnxruntime as ort

    d, gen = trained
    path = d / "model.onnx"
    info = export_onnx(gen, path, checkpoint_sha256="abc")
    assert info["inputs"] == ["incident_energy", "conditions", "noise"]
    model = onnx.load(path)
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["hepgen_checkpoint_sha256"] == "abc"
    assert json.loads(meta["hepgen_condition_names"]) == ["incident_theta"]
    assert int(meta["hepgen_noise_dim"]) == gen.model.n_features
    assert json.loads(meta["hepgen_geometry"]) == gen.geometry.to_dict()
    res = check_onnx(path, gen, n=500, seed=1)
    assert res["ok"] and res["n_outside_tolerance"] == 0, res
    assert res["rtol"] == ONNX_RTOL and res["atol_mev"] == ONNX_ATOL
    # the batch dimension is dynamic, and the graph needs nothing but the inputs
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"incident_energy": np.full((3, 1), 1e4, np.float32),
                          "conditions": np.zeros((3, 1), np.float32),
                          "noise": np.zeros((3, gen.model.n_features), np.float32)})[0]
    assert out.shape == (3, gen.preprocessor.n_voxels) and (out >= 0).all()
    # a check that cannot pass: a different noise draw in PyTorch would be flagged
    sampler = ShowerSampler.from_generator(gen)
    with torch.no_grad():
        other = sampler(torch.full((3, 1), 1e4), torch.ones(3, gen.model.n_features), torch.zeros(3, 1)).numpy()
    assert np.abs(other - out).max() > ONNX_RTOL * np.abs(out).max() + ONNX_ATOL


def test_cli_export_with_check(trained, capsys):
    d, _ = trained
    out = d / "cli.onnx"
    assert main(["export", str(d / "run" / "best.pt"), "--format", "onnx", "-o", str(out), "--check",
                 "--check-n", "200"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and '"ok": true' in text


# --- the benchmark ------------------------------------------------------------------------------
def test_measurement_helpers():
    calls = []
    times = time_calls(lambda: calls.append(1), min_time=0.0, min_calls=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6 and (times >= 0).all()
    assert matmul_flops(n=128, min_time=0.01) > 1e6
    with peak_rss() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block[::512] = 2.0
    del block
    if mem["peak_rss_mib"] is not None:  # Linux
        assert mem["rss_increase_mib"] > 50


def test_run_bench_small_scan(trained, tmp_path):
    _, gen = trained
    paths = ["fp32", "int8", "ort", "ort-int8"]
    res = run_bench(gen, batch_sizes=[1, 32], threads=[1], devices=["cpu"], paths=paths,
                    simulator_n=20, min_time=0.01, checkpoint="x.pt")
    assert res["sampler"] == "PrunedAffineFlow" and res["onnx_export_s"] > 0
    assert {(r["path"], r["batch_size"]) for r in res["runs"]} == {(p, b) for p in paths for b in (1, 32)}
    for r in res["runs"]:
        assert r["showers_per_s"] > 0 and r["latency_ms_median"] > 0
        assert r["speedup_vs_simulator"] == pytest.approx(r["showers_per_s"] / res["simulator"]["1"]["showers_per_s"])
        assert r["roofline_ratio"] == pytest.approx(r["achieved_flops"] / res["matmul_flops"]["cpu:1"])
        assert r["achieved_flops"] == pytest.approx(res["flops_per_shower"] * r["showers_per_s"])
    assert res["flops_per_shower"] > 0
    json.dumps(res, allow_nan=False)  # strict JSON
    with pytest.raises(ValueError, match="paths"):
        run_bench(gen, paths=["fp64"])


def test_cli_bench_with_fidelity(trained, tmp_path, capsys):
    d, _ = trained
    out = tmp_path / "bench"
    assert main(["bench", str(d / "run" / "best.pt"), "-o", str(out), "--batch-sizes", "1,64", "--threads", "1",
                 "--device", "cpu", "--paths", "fp32,int8", "--fidelity", "300", "--simulator-n", "20",
                 "--min-time", "0.01", "-q"]) == 0
    res = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").stat().st_size > 1000
    fid = res["fidelity"]["paths"]
    assert set(fid) == {"fp32", "int8"}
    assert fid["fp32"]["delta_auc_low_level"] == 0 and fid["fp32"]["max_abs_diff_mev_vs_fp32"] == 0
    assert fid["int8"]["max_abs_diff_mev_vs_fp32"] > 0
    # each path's AUC shift is measured against the fp32 path of the same run
    assert fid["int8"]["delta_auc_low_level"] == pytest.approx(
        fid["int8"]["auc_low_level"] - fid["fp32"]["auc_low_level"], abs=1e-12)
    assert "x simulator" in capsys.readouterr().out
