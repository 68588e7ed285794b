"""PixelQuantileMap (hepgen.domains.events.calibration) and ``hepgen calibrate``: a generator whose
pixels are a scaled copy of the reference plus faint extra pixels is mapped back exactly; the
spectrum map agrees with two composed scikit-learn QuantileTransformers; the calibrated generator,
ensemble and checkpoint sample the mapped images; bad input is refused in one line."""

import copy

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from _toy_events import toy_events, untrained_dcgan
from hepgen.api import load_generator
from hepgen.checkpoint import load_checkpoint
from hepgen.cli import main
from hepgen.data.events import EventImages
from hepgen.domains.events import DOMAIN, EventEnsemble, PixelQuantileMap
from hepgen.domains.events.calibration import quantile_levels


def _sparse(rng, n=300, occupancy=0.1, shape=(1, 16, 16)):
    """Images with a fraction ``occupancy`` of lit pixels, energies exponential above 0.5 GeV."""
    x = np.zeros((n, *shape), np.float32)
    lit = rng.random(x.shape) < occupancy
    x[lit] = 0.5 + rng.exponential(2.0, lit.sum())
    return x


def test_scaled_reference_plus_faint_pixels_is_mapped_back_exactly():
    rng = np.random.default_rng(0)
    ref = _sparse(rng)
    gen = 1.3 * ref
    extra = (ref == 0) & (rng.random(ref.shape) < 0.02)  # ~2 % more lit pixels, fainter than any reference one
    gen[extra] = rng.uniform(0.05, 0.6, extra.sum())
    assert 0.6 < 1.3 * ref[ref > 0].min()
    cal = PixelQuantileMap.fit(ref, gen, n_quantiles=500)
    # the cut is the brightest extra pixel: exactly the reference's lit pixels survive
    assert cal.cut[0] == pytest.approx(gen[extra].max(), rel=0, abs=0)
    out = cal(gen)
    np.testing.assert_array_equal(out > 0, ref > 0)
    # the quantiles of 1.3 x are 1.3 × those of x, so the piecewise-linear map is x / 1.3 to rounding
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=0)
    s = cal.summary
    assert s["lit_pixels_per_image"]["calibrated"] == s["lit_pixels_per_image"]["reference"]
    assert s["lit_pixels_per_image"]["generated"] > s["lit_pixels_per_image"]["reference"]
    assert s["energy_per_image_gev"]["calibrated"] == pytest.approx(s["energy_per_image_gev"]["reference"], rel=1e-5)


def test_spectrum_map_agrees_with_composed_sklearn_quantile_transformers():
    rng = np.random.default_rng(1)
    r_on = rng.gamma(2.0, 1.5, 200_000) + 0.5
    g_on = rng.lognormal(0.8, 0.6, 200_000) + 0.4
    # as many lit pixels in both (no occupancy cut): one image of 400 000 pixels, half lit
    ref, gen = np.zeros((1, 1, 400, 1000)), np.zeros((1, 1, 400, 1000))
    ref.reshape(-1)[::2], gen.reshape(-1)[::2] = r_on, g_on
    cal = PixelQuantileMap.fit(ref, gen, n_quantiles=2000)
    assert cal.cut[0] == 0.0
    qt_g = QuantileTransformer(n_quantiles=2000, subsample=None).fit(g_on[:, None])
    qt_r = QuantileTransformer(n_quantiles=2000, subsample=None).fit(r_on[:, None])
    x = np.quantile(g_on, np.linspace(0.01, 0.99, 500))
    want = qt_r.inverse_transform(qt_g.transform(x[:, None]))[:, 0]
    got = cal(np.asarray(x, np.float32).reshape(1, 1, 1, -1)).reshape(-1)
    # two piecewise-linear maps through quantile pairs on 2000-level grids that differ by half a
    # step: they agree to the grid's resolution, a few 1e-4 of the energy here; 2e-3 allowed
    np.testing.assert_allclose(got, want, rtol=2e-3)
    # and the map sends the generated distribution onto the reference one (medians)
    assert np.median(cal(gen)[cal(gen) > 0]) == pytest.approx(np.median(r_on), rel=2e-3)


def test_map_is_monotone_keeps_empty_pixels_and_extrapolates_the_tail():
    rng = np.random.default_rng(2)
    ref, gen = _sparse(rng, occupancy=0.1), 2.0 * _sparse(rng, occupancy=0.05)  # generator too sparse: no cut
    cal = PixelQuantileMap.fit(ref, gen, n_quantiles=200)
    assert cal.cut[0] == 0.0
    x = np.concatenate([[0.0], np.linspace(0.01, 3 * gen.max(), 2000)]).astype(np.float32).reshape(1, 1, 1, -1)
    y = cal(x).reshape(-1)
    assert y[0] == 0.0 and (np.diff(y) >= 0).all()
    # above the highest quantile: the ratio of the highest quantiles
    top = x.reshape(-1) > cal.q_gen[0, -1]
    np.testing.assert_allclose(y[top], x.reshape(-1)[top] * cal.q_ref[0, -1] / cal.q_gen[0, -1], rtol=1e-6)
    # below the smallest generated pixel of the fit: the smallest reference pixel
    assert cal(np.full((1, 1, 1, 1), 0.9 * gen[gen > 0].min(), np.float32))[0, 0, 0, 0] == pytest.approx(
        ref[ref > 0].min(), rel=1e-6)
    assert quantile_levels(200)[0] == 0.0 and (np.diff(quantile_levels(200)) > 0).all()


def test_calibrated_generator_ensemble_and_checkpoint(tmp_path):
    data = toy_events(24, seed=4)
    gen = untrained_dcgan(data)
    raw = gen.sample_like(data, seed=5).images
    assert (raw > 0).any()
    ref = EventImages(0.5 * raw, data.conditions, None, data.process, {"eta_max": 2.5})
    cal = DOMAIN.calibrate(gen, ref, seed=5, n_quantiles=100)
    out = gen.sample_like(data, seed=5)
    np.testing.assert_allclose(out.images, ref.images, rtol=1e-5, atol=1e-6)
    assert out.attrs["calibration"] == "pixel quantile map"
    np.testing.assert_array_equal(gen.sample_like(data, seed=5, calibrated=False).images, raw)
    assert gen.meta["calibration"]["seed"] == 5 and cal.summary["n_reference"] == 24
    # refitting replaces the map (fitted on the raw images, not on the calibrated ones)
    DOMAIN.calibrate(gen, ref, seed=5, n_quantiles=100)
    np.testing.assert_allclose(gen.sample_like(data, seed=5).images, ref.images, rtol=1e-5, atol=1e-6)
    gen.save(tmp_path / "cal.pt")
    np.testing.assert_array_equal(load_generator(tmp_path / "cal.pt").sample_like(data, seed=9).images,
                                  gen.sample_like(data, seed=9).images)
    # an ensemble's own map acts after mixing; it round-trips through its checkpoint
    ens = EventEnsemble([untrained_dcgan(data), copy.deepcopy(gen)])
    mixed = ens.sample_like(data, seed=3).images
    ref2 = EventImages(0.25 * mixed, data.conditions, None, data.process, {"eta_max": 2.5})
    DOMAIN.calibrate(ens, ref2, seed=3, n_quantiles=100)
    np.testing.assert_allclose(ens.sample_like(data, seed=3).images, ref2.images, rtol=1e-5, atol=1e-6)
    ens.save(tmp_path / "ens.pt")
    np.testing.assert_array_equal(DOMAIN.from_payload(load_checkpoint(tmp_path / "ens.pt"), "ens.pt")
                                  .sample_like(data, seed=3).images, ens.sample_like(data, seed=3).images)


def test_cli_calibrate_and_bad_input(tmp_path, capsys):
    data = toy_events(20, seed=6)
    gen = untrained_dcgan(data)
    gen.save(tmp_path / "g.pt")
    raw = gen.sample_like(data.subset(slice(0, 12)), seed=0).images
    DOMAIN.write(tmp_path / "ref.h5", EventImages(np.concatenate([0.5 * raw, data.images[12:]]), data.conditions,
                                                  None, data.process, {"eta_max": 2.5}))
    assert main(["calibrate", str(tmp_path / "g.pt"), "--reference", str(tmp_path / "ref.h5"), "--n-events", "12",
                 "--quantiles", "50", "-o", str(tmp_path / "cal.pt")]) == 0
    assert "pixel quantile map from 12 events of" in capsys.readouterr().out
    cal = load_generator(tmp_path / "cal.pt")
    np.testing.assert_allclose(cal.sample_like(data.subset(slice(0, 12)), seed=0).images, 0.5 * raw,
                               rtol=1e-5, atol=1e-6)
    assert main(["info", str(tmp_path / "cal.pt")]) == 0
    assert '"calibration": {' in capsys.readouterr().out
    # bad input: one line each, nothing written
    assert main(["calibrate", str(tmp_path / "g.pt"), "--reference", str(tmp_path / "ref.h5"), "--n-events", "21",
                 "-o", str(tmp_path / "bad1.pt")]) == 2
    assert "--n-events: expected 1 … 20 (the events of" in capsys.readouterr().err
    DOMAIN.write(tmp_path / "small.h5", toy_events(4, seed=1, side=16))
    assert main(["calibrate", str(tmp_path / "g.pt"), "--reference", str(tmp_path / "small.h5"),
                 "-o", str(tmp_path / "bad2.pt")]) == 2
    assert "key 'images': expected images of shape (1, 64, 64) as the generator's, found (1, 16, 16)" in \
        capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "g.pt"), "--reference", str(tmp_path / "ref.h5"), "--quantiles", "1",
                 "-o", str(tmp_path / "bad3.pt")]) == 2
    assert "key 'n_quantiles': expected >= 2, found 1" in capsys.readouterr().err
    assert not any((tmp_path / f"bad{i}.pt").exists() for i in (1, 2, 3))


def test_bad_states_are_refused():
    with pytest.raises(ValueError, match=r"c.pt: key 'calibration': expected keys cut, q_gen, q_ref, missing \['q_ref'\]"):
        PixelQuantileMap.from_state({"cut": [0.0], "q_gen": [[0.0, 1.0]]}, "c.pt")
    with pytest.raises(ValueError, match="expected non-decreasing quantiles"):
        PixelQuantileMap([0.0], [[0.0, 2.0, 1.0]], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"expected two \(1, L\) arrays, found \(1, 2\) and \(1, 3\)"):
        PixelQuantileMap([0.0], [[0.0, 1.0]], [[0.0, 1.0, 2.0]])
    cal = PixelQuantileMap([0.0], [[0.0, 1.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"expected images \(N, 1, H, W\), found \(2, 3, 4, 4\)"):
        cal(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="the reference has no non-empty pixel"):
        PixelQuantileMap.fit(np.zeros((2, 1, 4, 4)), np.ones((2, 1, 4, 4)))
