"""Issue 23 studies: SSIM by intensity scale (3DGAN definition) and the pieces of
benchmarks/study_3dgan.py and benchmarks/study_transfer.py at tiny settings (GFlash data, no Geant4)."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from _benchmarks import load_benchmark

from hepgen.data.formats import ShowerData, read_showers
from hepgen.data.geometry import CartesianGrid
from hepgen.metrics import ssim_by_scale
from hepgen.simulate.calorimeter import simulate_dataset

# --- SSIM by scale ------------------------------------------------------------------------------
def _showers(seed: int, n: int = 4, shape=(3, 12, 13)) -> np.ndarray:
    """Hand-built shower-like images: a Gaussian core at a random centre plus exponential noise."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    out = np.empty((n, *shape))
    for k in range(n):
        cy, cx = rng.uniform(4, 8, 2)
        core = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
        out[k] = core[None] * rng.uniform(0.5, 2, (nz, 1, 1)) * 1e-2 + rng.exponential(1e-4, shape)
    return out


def test_identical_showers_have_ssim_one_at_every_scale():
    a = _showers(0)
    b = np.stack([a[0]] * 4)  # every generated shower is the same image
    out = ssim_by_scale(b, b, n_pairs=10)
    for key in ("g4_g4", "gan_gan", "g4_gan"):
        assert out[key] == pytest.approx([1.0] * 4, abs=1e-12)
    assert out["scales"] == [1.0, 1e-2, 1e-4, 1e-6]


def test_ssim_by_scale_equals_skimage_mean_of_per_layer_gaussian_ssim():
    a, b = _showers(1), _showers(2)
    scales = (1.0, 1e-2, 1e-4, 1e-6)
    out = ssim_by_scale(a, b, scales=scales, n_pairs=30, seed=5)
    # the same pairs, recomputed independently: 2D SSIM of each (y, x) layer with skimage's
    # Gaussian window (sigma 1.5, population covariances), averaged over layers, then over pairs
    rng = np.random.default_rng(5)
    i = rng.integers(0, 4, 30)
    j = (i + rng.integers(1, 4, 30)) % 4
    ig = rng.integers(0, 4, 30)
    jg = (ig + rng.integers(1, 4, 30)) % 4
    ic, jc = rng.integers(0, 4, 30), rng.integers(0, 4, 30)

    def ref(x, y, ii, jj, L):
        vals = [np.mean([structural_similarity(x[u][z], y[v][z], data_range=L, gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=False)
                         for z in range(x.shape[1])]) for u, v in zip(ii, jj)]
        return float(np.mean(vals))

    for k, L in enumerate(scales):
        assert out["g4_g4"][k] == pytest.approx(ref(a, a, i, j, L), abs=1e-10)
        assert out["gan_gan"][k] == pytest.approx(ref(b, b, ig, jg, L), abs=1e-10)
        assert out["g4_gan"][k] == pytest.approx(ref(a, b, ic, jc, L), abs=1e-10)
    # the 3DGAN pattern: random pairs look alike at L = 1 and not at small L
    assert out["g4_g4"][0] > 0.9 > 0.6 > out["g4_g4"][-1]


def test_ssim_by_scale_hand_worked_constants():
    # two constant layers a and b: SSIM = (2ab + C1)/(a² + b² + C1) · (0 + C2)/(0 + C2)
    a = np.full((2, 1, 11, 11), 0.02)
    b = np.full((2, 1, 11, 11), 0.01)
    L = 0.1
    c1 = (0.01 * L) ** 2
    expected = (2 * 0.02 * 0.01 + c1) / (0.02**2 + 0.01**2 + c1)
    out = ssim_by_scale(a, b, scales=(L,), n_pairs=4)
    assert out["g4_gan"][0] == pytest.approx(expected, rel=1e-9)
    assert out["g4_g4"][0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("real", "gen", "kw", "match"),
    [
        (np.zeros((3, 11, 11)), np.zeros((3, 1, 11, 11)), {}, "real must be"),
        (np.zeros((3, 1, 11, 11)), np.zeros((3, 1, 11, 12)), {}, "same shower shape"),
        (np.zeros((3, 1, 9, 11)), np.zeros((3, 1, 9, 11)), {}, "11 x 11"),
        (np.zeros((1, 1, 11, 11)), np.zeros((3, 1, 11, 11)), {}, "at least 2"),
        (np.zeros((3, 1, 11, 11)), np.zeros((3, 1, 11, 11)), {"scales": (0.0,)}, "positive"),
    ],
)
def test_ssim_by_scale_refuses_bad_input(real, gen, kw, match):
    with pytest.raises(ValueError, match=match):
        ssim_by_scale(real, gen, **kw)


# --- 3DGAN study pieces -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_3dgan")


def _gflash(path, n, preset, particle, energies, theta_range, seed, workers, chunk_size, progress):
    """Stand-in for simulate_geant4 in tests: GFlash on an 11 x 11 x 4 grid."""
    from hepgen.data.formats import write_showers

    assert preset == "3dgan" and particle == "e-"
    data = simulate_dataset(n, CartesianGrid(nx=11, ny=11, nz=4, cell_size=5.1), energies=energies,
                            theta_range=theta_range, seed=seed)
    data.attrs["cpu_seconds"] = 0.01 * n
    write_showers(path, data)
    return data


def test_study_measures_are_zero_for_identical_sets_and_catch_a_shift(study, tmp_path):
    data = study.simulate_or_load(tmp_path / "a.h5", 40, 1, (10, 20), 30.0, "e-", 1, simulate=_gflash)
    assert read_showers(tmp_path / "a.h5").showers.shape == (40, 484)
    e = data.incident_energies[:, 0] / 1e3
    assert np.all((e >= 10) & (e <= 20)) and np.allclose(e, np.round(e))  # the 1 GeV grid
    assert np.abs(data.conditions["incident_theta"]).max() <= np.radians(30)
    again = study.simulate_or_load(tmp_path / "a.h5", 40, 1, (10, 20), 30.0, "e-", 1, simulate=None)  # cached
    np.testing.assert_array_equal(again.showers, data.showers)
    with pytest.raises(ValueError, match="holds 40 showers"):
        study.simulate_or_load(tmp_path / "a.h5", 41, 1, (10, 20), 30.0, "e-", 1)
    img = study.as_images(data)
    assert img.shape == (40, 4, 11, 11)
    assert img.sum() == pytest.approx(data.showers.sum() / 1e3)
    shapes = study.shower_shapes(img)
    assert shapes["z"].sum() == pytest.approx(img.sum() / 40) == shapes["x"].sum()
    assert study.shape_errors(shapes, shapes) == {"x": 0.0, "y": 0.0, "z": 0.0}
    # a generator that shifts every shower by one cell in x: the x profile error is large, z's zero
    shifted = {**shapes, "x": np.roll(shapes["x"], 1)}
    err = study.shape_errors(shapes, shifted)
    assert err["z"] == 0.0 and err["x"] > 0.1
    assert study.cell_spectrum_separation(data.showers, data.showers, 0.01) == 0.0
    assert study.cell_spectrum_separation(data.showers, 30 * data.showers, 0.01) > 0.3


def test_study_table_prints_published_and_reproduced_numbers(study):
    ssim = {"scales": [1, 1e-2, 1e-4, 1e-6], "g4_g4": [0.9, 0.2, 0.05, 0.04], "gan_gan": [0.91, 0.3, 0.1, 0.09],
            "g4_gan": [0.8, 0.1, 0.02, 0.01]}
    res = {"gan": {"ssim": ssim, "shape_error": {"x": 0.1, "y": 0.2, "z": 0.3}, "cell_separation": 0.05,
                   "cas": {"accuracy": 0.7, "baseline_accuracy": 0.8}, "auc": 0.9, "showers_per_s": 500.0}}
    table = study.format_table(res, g4_rate=2.5)
    assert "0.940" in table and "0.061" in table  # published
    assert "G4 vs gan" in table and "0.300" in table  # reproduced
    assert "200.0" in table  # speed-up 500 / 2.5
    assert study.flat_energies(10, 100).shape == (91,)
    with pytest.raises(ValueError, match="energy-range"):
        study.flat_energies(100, 10)


def test_study_gan_config_builds_the_3dgan_model(study):
    from hepgen.models.base import build_model

    cfg = study.gan_config((4, 11, 11), minutes=0.1, threads=1)
    m = build_model(cfg.family, n_features=4 + 484, n_conditions=2, **cfg.model)
    assert m.arch == "conv3d" and m.aux_energy and m.aux_conditions and m.ecal_sum_weight
    assert cfg.conditions == ["incident_theta"]


# --- transfer-learning study pieces -------------------------------------------------------------
@pytest.fixture(scope="module")
def transfer():
    return load_benchmark("study_transfer")


def test_transfer_fidelity_is_chance_for_one_distribution_and_high_for_another(transfer):
    a = simulate_dataset(400, energies=transfer.flat(10, 50), seed=1)
    b = simulate_dataset(400, energies=transfer.flat(10, 50), seed=2)
    same = transfer.fidelity(a, b)
    assert abs(same["auc"] - 0.5) < 0.1 and same["separation"] < 0.05
    scaled = ShowerData(a.showers * 1.5, a.incident_energies, a.conditions, a.geometry)
    other = transfer.fidelity(b, scaled)
    assert other["auc"] > 0.9 and other["separation"] > same["separation"] + 0.02
    assert transfer.flat(100, 200).shape == (101,)


def test_transfer_fine_tune_scores_every_epoch_from_a_pretrained_start(transfer, tmp_path):
    from hepgen.models.gan import GAN
    from hepgen.train.trainer import train

    tiny = {"arch": "mlp", "n_critic": 1, **GAN.tiny_hparams()}
    pre = simulate_dataset(120, energies=transfer.flat(100, 200), seed=1)
    full = simulate_dataset(120, energies=transfer.flat(10, 200), seed=2)
    test = simulate_dataset(60, energies=transfer.flat(10, 200), seed=3)
    cfg = transfer.config("gan", 1, None, 1, 0, model=tiny)
    train(pre, cfg, tmp_path / "pre", progress=False)
    cfg2 = transfer.config("gan", 2, None, 1, 0, model=tiny)
    rows = transfer.fine_tune(train, full, test, cfg2, tmp_path / "ft", init_from=tmp_path / "pre" / "best.pt")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["auc"] <= 1.0 and 0.0 <= r["separation"] <= 1.0 for r in rows)
    table = transfer.format_table(rows, rows, {"auc": 0.9, "separation": 0.2})
    assert table.count("\n") == 3 and "0.900" in table
