"""Sampling paths of event generators (hepgen.domains.events.inference): each path's images equal
the float32 reference within a stated tolerance on a tiny model, the noise stream is the model's,
and bad paths are refused."""

import numpy as np
import pytest
import torch

from _toy_events import toy_events
from hepgen.config import TrainConfig
from hepgen.domains.events import DOMAIN
from hepgen.domains.events.inference import EVENT_SAMPLING_PATHS, EventSampler, prepare_event_path
from hepgen.models.dcgan import symmetry_from_noise

TINY = {"noise_dim": 8, "filters": 4, "image_shape": [1, 16, 16]}


def _generator(seed=0, **model):
    torch.manual_seed(seed)
    data = toy_events(8, side=16)
    cfg = TrainConfig(family="dcgan", model={**TINY, **model})
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    for m in model.generator.modules():  # batch-norm statistics away from (0, 1), so that they matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    last = model.generator.net[-1]
    with torch.no_grad():  # logits spread over ±2 around the threshold's (sparse images, as trained ones)
        last.weight.mul_(20.0)
        last.bias.fill_(-3.0)
    return DOMAIN.generator(model, pre, data, DOMAIN.meta(data, cfg)), data


def _reference(gen, conditions, seed, batch_size):
    """The pipeline before the sampling paths: model.sample per batch + the float64 numpy inverse."""
    c = torch.from_numpy(gen.preprocessor.transform_conditions(conditions))
    g = torch.Generator()
    with torch.no_grad():
        parts = [gen.preprocessor.inverse(gen.model.sample(c[i:i + batch_size], g.manual_seed(seed + i)).numpy())
                 for i in range(0, len(c), batch_size)]
    return np.concatenate(parts)


def test_fp32_path_equals_model_sample_and_numpy_inverse():
    gen, data = _generator()
    cond = np.repeat(data.conditions, 5, axis=0)  # 40 events, batches of 16: a short last batch
    ref = _reference(gen, cond, seed=3, batch_size=16)
    out = gen.sample(cond, seed=3, batch_size=16).images
    assert out.shape == ref.shape == (40, 1, 16, 16)
    # the same noise and network; the inverse in float32 instead of float64: relative 1e-6
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(out == 0, ref == 0)
    assert (ref > 0).any() and (ref == 0).any()


def test_critic_augment_sampler_applies_the_symmetry_its_noise_draws():
    """A ``critic_augment`` DCGAN's sampler: the network's image on the first ``noise_dim − 2`` noise
    numbers, rolled in φ and mirrored in η as the last two say (its critic only saw such views);
    every sampling path and the domain's generator take the longer noise."""
    gen, data = _generator(critic_augment=True)
    model = gen.model.eval()
    assert model.noise_dim == TINY["noise_dim"] + 2
    c = torch.from_numpy(gen.preprocessor.transform_conditions(np.repeat(data.conditions, 8, axis=0))).float()
    z = torch.randn(len(c), model.noise_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model.generator(z[:, :-2], c)  # (64, 1, 16, 16)
        out = model.sample_from_noise(c, z).reshape(plain.shape)
    cdf = 0.5 * (1 + torch.erf(z[:, -2] / np.sqrt(2)))
    for k in range(len(c)):  # by hand with numpy: roll by ⌊Φ(u₀)·16⌋, mirror the η rows where u₁ > 0
        want = np.roll(plain[k].numpy(), int(cdf[k] * 16), axis=2)
        want = want[:, ::-1] if z[k, -1] > 0 else want
        np.testing.assert_array_equal(out[k].numpy(), want)
    assert len({int(v * 16) for v in cdf}) > 8 and 0 < int((z[:, -1] > 0).sum()) < len(c)  # both vary here
    torch.testing.assert_close(symmetry_from_noise(plain, z[:, -2:]), out)
    with pytest.raises(ValueError, match=r"dcgan: noise: expected \(B, 10\) \(8 for the network, 2 for the symmetry\), "
                                         r"found \(64, 8\)"):
        model.sample_from_noise(c, z[:, :-2])
    # the domain's generator and the channels_last path draw the same (longer) noise stream
    cond = np.repeat(data.conditions, 4, axis=0)
    ref = _reference(gen, cond, seed=1, batch_size=32)
    np.testing.assert_allclose(gen.sample(cond, seed=1, batch_size=32).images, ref, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(gen.sample(cond, seed=1, batch_size=32, path="channels_last").images, ref,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path, rtol", [("channels_last", 1e-5), ("bf16", 0.05)])
def test_paths_match_fp32_within_tolerance(path, rtol):
    """channels_last: the same function (float rounding); bf16: convolutions on bf16 inputs
    (8-bit mantissa) with float32 accumulation; the sigmoid stays float32, so pixels are within a
    few % of fp32 (the energy is exp(x·log(1 + E_max)): a logit error δ moves E by ≈ δ·σ'·log(1 + E_max))."""
    gen, data = _generator()
    cond = np.repeat(data.conditions, 4, axis=0)
    ref = gen.sample(cond, seed=1, batch_size=32).images
    out = gen.sample(cond, seed=1, batch_size=32, path=path)
    assert out.attrs["sampling_path"] == path
    both = (ref > 0) & (out.images > 0)
    rel = np.abs(out.images[both] / ref[both] - 1)
    assert rel.max() < rtol, rel.max()
    # pixels that cross the threshold: none for channels_last, a small fraction for bf16
    cross = ((ref == 0) != (out.images == 0)).mean()
    assert cross <= (0.0 if path == "channels_last" else 0.01)
    if path == "bf16":
        assert rel.max() > 1e-6  # it does run in bf16


def test_sampler_module_and_refusals():
    gen, data = _generator()
    s = gen.sampler()
    assert isinstance(s, EventSampler) and s.noise_dim == 8
    c = torch.from_numpy(gen.preprocessor.transform_conditions(data.conditions))
    z = torch.randn(len(c), 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        e = s(c, z)
        x = gen.model.sample_from_noise(c, z).numpy()
    np.testing.assert_allclose(e.numpy(), gen.preprocessor.inverse(x), rtol=2e-6, atol=1e-6)
    # prepare_event_path returns a new module: the original stays float32 / contiguous
    bf = prepare_event_path(s, "bf16")
    assert bf is not s and s.autocast_dtype is None and bf.autocast_dtype == torch.bfloat16
    w = next(s.model.generator.parameters())
    assert w.is_contiguous()
    with pytest.raises(ValueError, match=r"sampling path: expected one of \('fp32', 'channels_last', 'bf16', "
                                         r"'compile', 'bf16-compile'\), found 'fp16'"):
        gen.sample(data.conditions, path="fp16")
    with pytest.raises(ValueError, match="sampling path: expected one of"):
        prepare_event_path(s, "int8")
    assert set(EVENT_SAMPLING_PATHS) == {"fp32", "channels_last", "bf16", "compile", "bf16-compile"}


def test_sample_like_takes_a_path():
    gen, data = _generator()
    a = gen.sample_like(data, seed=2)
    b = gen.sample_like(data, seed=2, path="channels_last")
    np.testing.assert_allclose(a.images, b.images, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a.conditions, data.conditions)


def test_cli_sample_passes_the_path_to_event_generators(tmp_path, capsys):
    from hepgen.cli import main

    gen, data = _generator()
    gen.save(tmp_path / "g.pt")
    DOMAIN.write(tmp_path / "like.h5", data)
    assert main(["sample", str(tmp_path / "g.pt"), "-o", str(tmp_path / "bf16.h5"), "--like", str(tmp_path / "like.h5"),
                 "--seed", "2", "--path", "bf16"]) == 0
    got = DOMAIN.read(tmp_path / "bf16.h5")
    want = gen.sample_like(data, seed=2, path="bf16")
    np.testing.assert_array_equal(got.images, want.images)
    assert got.attrs["sampling_path"] == "bf16"
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "g.pt"), "-o", str(tmp_path / "x.h5"), "--like", str(tmp_path / "like.h5"),
                 "--path", "compile-bf16"]) == 2  # the showers' name for it; events call it bf16-compile
    assert "sampling path: expected one of" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()
