"""Issue 23, study 3: the pieces of benchmarks/study_hgcal.py (HGCAL conditional WGAN) against
hand-made showers, and a tiny end-to-end run on GFlash data (no Geant4)."""

import json

import numpy as np
import pytest

from _benchmarks import load_benchmark

from hepgen.data.formats import ShowerData
from hepgen.data.geometry import HexagonalGrid
from hepgen.simulate.calorimeter import simulate_dataset


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_hgcal")


# --- labels -------------------------------------------------------------------------------------
def test_beam_energies_have_the_spread_about_each_beam(study):
    e = study.beam_energies((20.0, 32.0, 90.0), spread=0.01, per_beam=20_000, seed=3)
    assert e.shape == (60_000,)
    for k, nominal in enumerate((20e3, 32e3, 90e3)):
        part = e[k * 20_000:(k + 1) * 20_000]
        # mean within 5 sigma of the sample mean's error (1 % / sqrt(20000) = 7e-5), spread within 2 %
        assert part.mean() / nominal == pytest.approx(1.0, abs=5 * 0.01 / np.sqrt(20_000))
        assert part.std() / nominal == pytest.approx(0.01, rel=0.02)
    assert study.nearest_beam(e, (20.0, 32.0, 90.0)).tolist() == [0] * 20_000 + [1] * 20_000 + [2] * 20_000
    exact = study.beam_energies((20.0, 50.0), spread=0.0, per_beam=3)
    assert exact.tolist() == [20e3] * 3 + [50e3] * 3
    with pytest.raises(ValueError, match="--spread"):
        study.beam_energies(spread=0.5)
    with pytest.raises(ValueError, match="--beam-energies"):
        study.beam_energies((20.0, -1.0))


# --- reconstruction against hand-made showers ---------------------------------------------------
GRID = HexagonalGrid(n_layers=3, radius=1, pitch_mm=10.0)  # 7 cells per layer; cell 3 is the centre


def test_energy_reconstruction_of_hand_made_showers(study):
    # three showers with cell sums 2, 4 and 6 MeV at 100, 200 and 300 MeV: f = 0.02 exactly
    s = np.zeros((3, GRID.n_voxels))
    s[0, [3, 10]] = 1.0
    s[1, [3, 10, 17, 4]] = 1.0
    s[2, [3, 10, 17]] = 2.0
    e = np.array([[100.0], [200.0], [300.0]])
    f = study.fit_sampling_fraction(s, e)
    assert f == pytest.approx(0.02, rel=1e-12)
    np.testing.assert_allclose(study.reconstruct_energy(s, f), [100.0, 200.0, 300.0], rtol=1e-12)
    # with noise: f = Σ S·E / Σ E² (hand-worked: sums 3, 4, 6 → (300 + 800 + 1800) / 140000)
    s[0, 4] = 1.0
    assert study.fit_sampling_fraction(s, e) == pytest.approx(2900.0 / 140_000.0, rel=1e-12)
    with pytest.raises(ValueError, match="sampling fraction"):
        study.reconstruct_energy(s, 0.0)


def test_position_reconstruction_of_hand_made_showers(study):
    x, y = GRID.cell_centres()
    assert (x[3], y[3]) == (0.0, 0.0)
    s = np.zeros((2, GRID.n_voxels))
    # shower 0: 3 MeV in the centre cell, 1 MeV in each of its six neighbours (a symmetric
    # ring) in layer 0, plus a far-off deposit in layer 2 that a 2-layer centroid ignores
    s[0, 3] = 3.0
    s[0, GRID.neighbours(3)] = 1.0
    s[0, 2 * 7 + 0] = 50.0
    # shower 1: 1 MeV in cell 4 (layer 0) and 3 MeV in cell 2 (layer 1)
    s[1, 4] = 1.0
    s[1, 7 + 2] = 3.0
    xy = study.reconstruct_position(s, GRID, n_layers=2)
    np.testing.assert_allclose(xy[0], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(xy[1], [(x[4] + 3 * x[2]) / 4, (y[4] + 3 * y[2]) / 4], rtol=1e-12)
    # all three layers: the far deposit pulls shower 0 to cell 0's centre by 50 / 59
    xy3 = study.reconstruct_position(s, GRID, n_layers=3)
    np.testing.assert_allclose(xy3[0], [50 * x[0] / 59, 50 * y[0] / 59], rtol=1e-12)
    assert np.isnan(study.reconstruct_position(np.zeros((1, GRID.n_voxels)), GRID, 1)).all()
    with pytest.raises(ValueError, match="centroid-layers"):
        study.reconstruct_position(s, GRID, n_layers=4)
    with pytest.raises(ValueError, match="expected showers"):
        study.reconstruct_position(s[:, :5], GRID, n_layers=1)


def _point_showers(energies, xy, f=0.01):
    """Each shower: f·E in the cell under its impact point, in every layer equally."""
    cells = GRID.cell_at(xy[:, 0], xy[:, 1])
    s = np.zeros((len(energies), GRID.n_voxels))
    for i, c in enumerate(cells):
        s[i, [c, 7 + c, 14 + c]] = f * energies[i] / 3
    return ShowerData(s, np.asarray(energies, float)[:, None], {"impact_position": xy}, GRID)


def test_label_response_bias_and_resolution(study):
    x, y = GRID.cell_centres()
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 7, 40)
    xy = np.stack([x[cells], y[cells]], 1)
    e = np.resize([20e3, 50e3], 40) * (1 + 0.01 * rng.standard_normal(40))
    data = _point_showers(e, xy)
    r = study.label_response(data, 0.01, n_layers=1, nominal_gev=(20.0, 50.0))
    assert r["energy"]["bias"] == pytest.approx(0.0, abs=1e-12) and r["energy"]["resolution"] < 1e-12
    assert r["energy"]["corr"] == pytest.approx(1.0, abs=1e-12)
    assert r["x"]["corr"] == pytest.approx(1.0, abs=1e-12) and r["x"]["bias"] == pytest.approx(0.0, abs=1e-9)
    assert set(r["energy"]["per_beam"]) == {"20", "50"}
    # a sampling fraction 10 % too low: every E_rec / E − 1 = 1/0.9 − 1
    low = study.label_response(data, 0.009, n_layers=1, nominal_gev=(20.0, 50.0))
    assert low["energy"]["bias"] == pytest.approx(1 / 0.9 - 1, rel=1e-9)
    # labels shifted by +3 mm in y: bias −3 mm, resolution 0
    shifted = ShowerData(data.showers, data.incident_energies, {"impact_position": xy + [0.0, 3.0]}, GRID)
    ry = study.label_response(shifted, 0.01, 1, (20.0, 50.0))["y"]
    assert ry["bias"] == pytest.approx(-3.0, abs=1e-9) and ry["resolution"] == pytest.approx(0.0, abs=1e-9)


def test_layer_correlations_zero_for_identical_sets_large_for_decorrelated(study):
    rng = np.random.default_rng(1)
    depth = rng.uniform(0, 1, 300)  # a common depth variable correlates the three layers
    s = np.zeros((300, GRID.n_voxels))
    s[:, 3], s[:, 10], s[:, 17] = 1 + depth, 1 + depth + 0.1 * rng.random(300), 2 - depth
    a = ShowerData(s, np.ones((300, 1)), {}, GRID)
    same = study.layer_correlations(a, a, n_permutations=20)
    assert same["mean_abs_dr"] == pytest.approx(0.0, abs=1e-12) and same["chi2_ndof"] == pytest.approx(0.0, abs=1e-9)
    s2 = s.copy()
    s2[:, 17] = rng.permutation(s2[:, 17])  # layer 2 decorrelated from the others
    other = study.layer_correlations(a, ShowerData(s2, np.ones((300, 1)), {}, GRID), n_permutations=20)
    # pairs (0, 2) and (1, 2) lose r ≈ −1: mean |Δr| over the 3 pairs ≈ 2/3
    assert other["mean_abs_dr"] == pytest.approx(2 / 3, abs=0.1) and other["max_abs_dr"] > 0.85
    assert other["p_calibrated"] == pytest.approx(1 / 21)


# --- models and table ---------------------------------------------------------------------------
def test_gan_config_is_the_hgcal_wgan(study):
    from hepgen.models.base import build_model

    cfg = study.gan_config(minutes=0.1, threads=1)
    m = build_model(cfg.family, n_features=28 + 3556, n_conditions=3, **cfg.model)
    assert (m.loss_type, m.gp_type, m.gp_weight) == ("wgan-gp", "max", 50.0)
    assert m.constrainer_weights["constrainer_energy"] == m.constrainer_weights["constrainer_position"] == 0.01
    assert m.position_columns == [1, 2] and m.constrainer_pretrain_steps == 200
    assert cfg.conditions == ["impact_position"]
    pc = study.parameter_counts(m)
    # stated in the docstring: 0.50 M / 0.49 M against the paper's ≈ 672k / ≈ 477k
    assert pc["generator"] == 504_064 and pc["critic"] == 492_417


def test_format_table_prints_published_and_reproduced_numbers(study):
    lab = {"energy": {"corr": 0.99, "bias": 0.001, "resolution": 0.02, "per_beam": {"20": {"resolution": 0.03}}},
           "x": {"corr": 0.9, "bias": 0.1, "resolution": 2.0}, "y": {"corr": 0.8, "bias": -0.2, "resolution": 2.5}}
    res = {"wgan": {"labels": lab, "layer_correlations": {"mean_abs_dr": 0.05, "max_abs_dr": 0.2, "chi2_ndof": 3.0,
                                                          "null_chi2_ndof_mean": 1.0, "p_calibrated": 0.01},
                    "seconds_per_shower": {"1": 1e-3, "100": 1e-4, "1000": 2e-5},
                    "parameters": {"generator": 504_064, "critic": 492_417, "constrainers": 10}}}
    table = study.format_table(res, lab, g4_s=0.5)
    assert "x500 / x5,000 / x25,000" in table  # 0.5 s over 1 ms, 0.1 ms, 20 µs
    assert "x26,670" in table and "x280 to x3,750" in table and "1000 ms" in table  # published
    assert "504,064" in table and "~672k" in table
    assert "0.0300" in table  # per-beam resolution at 20 GeV


# --- tiny end-to-end on GFlash ------------------------------------------------------------------
def _gflash(path, n, preset, particle, energies, position_range, seed, workers, chunk_size, progress):
    """Stand-in for simulate_geant4: GFlash on the hgcal hexagonal grid (3 layers to stay fast)."""
    from hepgen.data.formats import write_showers

    assert preset == "hgcal" and particle == "e-"
    data = simulate_dataset(n, HexagonalGrid.from_cell_area(3, 2, 110.0), energies=energies,
                            position_range=position_range, seed=seed)
    data.attrs["cpu_seconds"] = 0.5 * n
    write_showers(path, data)
    return data


class _FakeEngine:
    def simulate(self, energies, particle, impact_position=None, seed=0):
        assert particle == "e-" and impact_position.shape == (len(energies), 2)
        return {"seconds": 0.25 * len(energies)}


# The constrainer pre-training (here longer than the one-batch epochs of 54 training showers)
# leaves the generator's optimiser unstepped when the trainer steps its cosine schedulers at
# the end of an epoch; torch warns about it (harmless: the schedule only starts later).
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_tiny_end_to_end_on_gflash(study, tmp_path):
    argv = ["--data-dir", str(tmp_path / "data"), "-o", str(tmp_path / "out"), "--n-train", "60", "--n-test", "30",
            "--minutes", "0.03", "--threads", "1", "--workers", "1", "--centroid-layers", "2",
            "--constrainer-pretrain-steps", "2", "--permutations", "5", "--g4-timing-n", "4", "--no-report"]
    summary = study.main(argv, simulate=_gflash, g4_engine=_FakeEngine())
    assert summary["geant4_s_per_shower"] == 0.25 and summary["geant4_s_per_shower_cache"] == 0.5
    ref = summary["geant4_labels"]
    # GFlash respects its labels: energy and position reconstruction correlate with them
    assert ref["energy"]["corr"] > 0.95 and ref["x"]["corr"] > 0.5 and abs(ref["energy"]["bias"]) < 0.05
    assert set(summary["results"]) == {"wgan", "caloflow"}
    for r in summary["results"].values():
        assert set(r["seconds_per_shower"]) == {"1", "100", "1000"}
        assert all(v > 0 for v in r["seconds_per_shower"].values())
        assert 0 <= r["layer_correlations"]["mean_abs_dr"] <= 2
    saved = json.loads((tmp_path / "out" / "study_hgcal.json").read_text())
    assert saved["settings"]["n_train"] == 60
    assert "speed-up vs Geant4" in (tmp_path / "out" / "study_hgcal.txt").read_text()
    assert (tmp_path / "out" / "layer_correlations.png").stat().st_size > 1000
