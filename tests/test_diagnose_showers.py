"""benchmarks/diagnose_showers.py: the energy-binned spreads, the brightest cell's share and the
flow's latent tails, against cases worked out by hand or recomputed independently."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

from _benchmarks import load_benchmark
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import default_binning
from hepgen.domains.showers import ShowerGenerator, layer_sizes
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.models import build_model
from hepgen.simulate.calorimeter import simulate_dataset

diag = load_benchmark("diagnose_showers")


def test_spread_ratios_scale_with_the_generated_spread_bin_by_bin():
    rng = np.random.default_rng(0)
    e = rng.uniform(1.0, 100.0, 2000)
    ref = rng.normal(0.0, 1.0, 2000)
    edges = np.array([1.0, 10.0, 100.0])
    gen = np.where(e < 10.0, 1.5 * ref + 7.0, 0.5 * ref)   # shifts do not change a spread
    np.testing.assert_allclose(diag.spread_ratios(ref, gen, e, e, edges), [1.5, 0.5], rtol=1e-12)
    # a bin with fewer than two showers of a sample, or a constant reference: NaN
    out = diag.spread_ratios(np.array([1.0, 1.0, 2.0]), np.array([0.0, 3.0, 5.0]), np.array([1.0, 2.0, 50.0]),
                             np.array([1.0, 2.0, 50.0]), edges)
    assert np.isnan(out).all()


def test_largest_share_is_the_brightest_cell_over_the_layer():
    rng = np.random.default_rng(1)
    showers = rng.exponential(1.0, (50, 7)) * (rng.uniform(size=(50, 7)) < 0.6)
    got = diag.largest_share(showers, [3, 4])
    for i, row in enumerate(showers):   # a plain loop, shower by shower
        for l, (a, b) in enumerate([(0, 3), (3, 7)]):
            total = row[a:b].sum()
            assert got[i, l] == pytest.approx(row[a:b].max() / total if total > 0 else 0.0, rel=1e-12)


def test_tail_rate_of_a_normal_sample_is_near_one():
    z = np.random.default_rng(2).standard_normal((4000, 500))   # 2e6 entries, ~127 beyond |z| = 4
    rate, ratio = diag.tail_rate(z)
    assert rate == pytest.approx(float((np.abs(z) > 4).mean()), rel=0) and 0.75 < ratio < 1.25   # ~9 % Poisson error
    assert diag.tail_rate(z, cut=2.0)[1] == pytest.approx(1.0, abs=0.02)   # 2 Φ(−2) = 4.55 %, 9.1e4 entries


def _bins_of_pairs(rng, n, rho):
    """(2 n, 3) rows: columns 0 and 1 correlated by rho[0] in the first n rows (bin 0) and rho[1]
    in the next n (bin 1), column 2 independent; their energies 1-10 and 10-100 (MeV)."""
    rows = []
    for r in rho:
        a, b = rng.standard_normal((2, n))
        rows.append(np.stack([a, r * a + np.sqrt(1 - r * r) * b, rng.standard_normal(n)], axis=1))
    return np.concatenate(rows), np.concatenate([rng.uniform(1, 10, n), rng.uniform(10, 100, n)])


def test_binned_correlations_are_the_fisher_z_test_of_each_bin_and_find_the_changed_pair():
    rng = np.random.default_rng(5)
    ref, e_ref = _bins_of_pairs(rng, 3000, (0.5, 0.5))
    gen, e_gen = _bins_of_pairs(rng, 3000, (0.5, 0.0))       # bin 1 loses the pair's correlation
    edges, names = np.array([1.0, 10.0, 100.0]), ["a", "b", "c"]
    rows = diag.binned_correlations(ref, gen, e_ref, e_gen, edges, names, top=1)
    # recomputed independently for bin 1: normal scores of the bin's rows, then the Fisher-z test
    m_r, m_g = e_ref >= 10, e_gen >= 10
    pooled = stats.norm.ppf((stats.rankdata(np.concatenate([ref[m_r], gen[m_g]]), axis=0) - 0.5) / (m_r.sum() + m_g.sum()))
    ca, cb = np.corrcoef(pooled[: m_r.sum()].T), np.corrcoef(pooled[m_r.sum():].T)
    iu = np.triu_indices(3, 1)
    z = (np.arctanh(ca[iu]) - np.arctanh(cb[iu])) / np.sqrt(2 / (3000 - 3))
    assert rows[1]["chi2_per_ndof"] == pytest.approx(float((z ** 2).mean()), rel=1e-9)
    name_i, name_j, r_ref, r_gen, z_top = rows[1]["top"][0]
    assert (name_i, name_j) == ("a", "b") and z_top > 10                     # z > 0: generated below
    assert r_ref == pytest.approx(0.48, abs=0.04) and abs(r_gen) < 0.04       # normal scores of rho 0.5, 0
    # bin 0 draws both samples from one law: chi2/ndof of order 1, as its floor
    assert rows[0]["chi2_per_ndof"] < 4 and rows[0]["floor_chi2_per_ndof"] < 4 and rows[1]["chi2_per_ndof"] > 50
    assert diag.binned_correlations(ref[:5], gen, e_ref[:5], e_gen, edges, names) == [None, None]   # < 8 rows


def test_binned_auc_sees_the_shifted_bin_only():
    rng = np.random.default_rng(6)
    ref, e_ref = _bins_of_pairs(rng, 800, (0.0, 0.0))
    gen, e_gen = _bins_of_pairs(rng, 800, (0.0, 0.0))
    gen[e_gen >= 10, 2] += 1.0                              # one standard deviation in bin 1: AUC Φ(1/√2) = 0.76
    rows = diag.binned_auc(ref, gen, e_ref, e_gen, np.array([1.0, 10.0, 100.0]), seeds=(1, 2))
    assert abs(rows[0]["mean"] - 0.5) < 0.07 and rows[1]["mean"] == pytest.approx(0.76, abs=0.06)
    assert rows[1]["n"] == 800 and rows[1]["mean"] == pytest.approx(np.mean(rows[1]["aucs"]), rel=1e-12)
    assert rows[1]["sd"] == pytest.approx(np.std(rows[1]["aucs"], ddof=1), rel=1e-12)
    assert diag.binned_auc(ref[:10], gen, e_ref[:10], e_gen, np.array([1.0, 10.0, 100.0]), seeds=(1,)) == [None, None]


def test_layer_auc_sees_the_changed_layer_only():
    # two layers of independent unit normals, E_inc log-uniform; the generated layer 1 has its radial
    # centre shifted by one standard deviation: AUC Φ(1/√2) = 0.76 there, 0.5 in layer 0
    rng = np.random.default_rng(8)

    def sample(n, shift):
        f = {f"{name}_{l}": rng.normal(size=n) for name in ("EC_r", "width_r", "sparsity") for l in (0, 1)}
        f.update({f"E_layer_{l}": np.exp(rng.normal(size=n)) for l in (0, 1)})
        f["EC_r_1"] = f["EC_r_1"] + shift
        f["E_tot_over_E_inc"] = rng.normal(size=n) + 5.0 * shift     # not a layer's: left out of both
        return f, np.exp(rng.uniform(0.0, 3.0, n))

    (ref, e_ref), (gen, e_gen) = sample(1500, 0.0), sample(1500, 1.0)
    rows = diag.layer_auc(ref, gen, e_ref, e_gen, seeds=(1, 2))
    assert sorted(rows) == [0, 1]
    assert abs(rows[0]["mean"] - 0.5) < 0.05 and rows[1]["mean"] == pytest.approx(0.76, abs=0.05)
    assert rows[1]["sd"] == pytest.approx(np.std(rows[1]["aucs"], ddof=1), rel=1e-12)


def _files(tmp_path, occupancy=False):
    geometry = default_binning()
    data = simulate_dataset(400, geometry=geometry, energy_range=(1e3, 1e5), seed=3)
    write_showers(tmp_path / "ref.h5", data)
    pre = ShowerPreprocessor(layer_sizes(geometry), occupancy=occupancy).fit(data.showers, data.incident_energies)
    torch.manual_seed(0)
    stage = {"transforms": 2, "hidden_features": 16, "n_hidden": 1, "spline_bins": 4, "coupling": True}
    model = build_model("caloflow", n_features=pre.n_features, n_conditions=1, n_layers=pre.n_energy_features,
                        energy_flow=stage, shape_flow=stage)
    generator = ShowerGenerator(model.eval(), pre, geometry)
    generator.save(tmp_path / "model.pt")
    return data, generator


def test_main_on_the_reference_against_itself_and_its_latents(tmp_path):
    data, generator = _files(tmp_path)
    summary = diag.main([str(tmp_path / "ref.h5"), str(tmp_path / "ref.h5"), "--checkpoint", str(tmp_path / "model.pt"),
                         "--bins", "2", "--encode-per-bin", "150", "--classifier-seeds", "2", "--layer-seeds", "1",
                         "-o", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["latents"] == summary["latents"] and saved["edges_MeV"] == summary["edges_MeV"]
    # the same showers on both sides: every spread ratio is 1, the brightest-cell percentiles agree
    for key in ("EC_r", "width_r"):
        ratios = np.array(list(saved["spread_ratio"][key].values()), dtype=float)
        assert ratios.shape == (8, 2) and np.allclose(ratios, 1.0, rtol=1e-12)
    assert saved["largest_share_p90"]["reference"] == saved["largest_share_p90"]["generated"]
    # identical samples: identical correlations in every bin, and a classifier that cannot tell
    assert [row["chi2_per_ndof"] for row in saved["correlations"]] == [0.0, 0.0]
    assert all(abs(row["mean"] - 0.5) < 0.1 for row in saved["high_level_auc"])
    assert sorted(saved["layer_auc"]) == [str(l) for l in range(8)]
    assert all(abs(row["mean"] - 0.5) < 0.1 for row in saved["layer_auc"].values())
    # the latents of the first bin, recomputed: preprocessing with seed 0, then the model's transform
    e = data.incident_energies.reshape(-1)
    edges = np.geomspace(e.min(), e.max() * (1 + 1e-9), 3)
    rows = np.flatnonzero((e >= edges[0]) & (e < edges[1]))[:150]
    x = torch.as_tensor(generator.preprocessor.transform(data.showers[rows], e[rows], np.random.default_rng(0)))
    c = torch.as_tensor(generator.preprocessor.transform_conditions(e[rows]))
    with torch.no_grad():
        z = generator.model.transform(x, c).double().numpy()
    n_e = generator.preprocessor.n_energy_features
    first = saved["latents"][0]
    assert first["n"] == len(rows)
    assert first["shape_tail_rate"] == pytest.approx(float((np.abs(z[:, n_e:]) > 4).mean()), abs=1e-12)
    assert first["shape_tail_ratio"] == pytest.approx(first["shape_tail_rate"] / (2 * stats.norm.sf(4.0)), rel=1e-12)
    assert first["energy_latent_var"] == pytest.approx(float(z[:, :n_e].var(axis=0).mean()), rel=1e-5)
    assert (tmp_path / "out" / "spread_ratios.png").stat().st_size > 0
    # without lit-cell counts there is no count to agree with: not measured, and refused if asked
    assert "count_agreement" not in saved
    with pytest.raises(ValueError, match="key 'occupancy': expected a checkpoint whose preprocessor keeps lit-cell counts"):
        diag.layer_count_agreement(generator, e[:10])


def test_main_sees_a_narrower_generated_layer(tmp_path):
    # the "generated" file: the reference with layer 3's cells pulled to each shower's mean of the
    # layer (a radially flat layer: its centre and width lose their shower-to-shower spread)
    data, _ = _files(tmp_path)
    showers = data.showers.copy()
    layer = slice(3 * 48, 4 * 48)
    showers[:, layer] = 0.5 * showers[:, layer] + 0.5 * showers[:, layer].mean(axis=1, keepdims=True)
    write_showers(tmp_path / "gen.h5", ShowerData(showers, data.incident_energies, {}, data.geometry, {}))
    summary = diag.main([str(tmp_path / "ref.h5"), str(tmp_path / "gen.h5"), "--bins", "2", "-o", str(tmp_path / "o")])
    ratios = {l: np.array(v) for l, v in summary["spread_ratio"]["EC_r"].items()}
    assert np.all(ratios[3] < 0.9) and all(np.allclose(ratios[l], 1.0) for l in ratios if l != 3)
    assert read_showers(tmp_path / "gen.h5").showers.shape == data.showers.shape


def test_main_refuses_a_checkpoint_of_another_family(tmp_path, capsys):
    data, generator = _files(tmp_path)
    flow = build_model("flow", n_features=generator.preprocessor.n_features, n_conditions=1, transforms=2,
                       hidden_features=8, coupling=True)
    ShowerGenerator(flow, generator.preprocessor, data.geometry).save(tmp_path / "flow.pt")
    with pytest.raises(SystemExit):
        diag.main([str(tmp_path / "ref.h5"), str(tmp_path / "ref.h5"), "--checkpoint", str(tmp_path / "flow.pt"),
                   "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"{tmp_path / 'flow.pt'}: key 'family': expected a caloflow checkpoint (two flows to encode "
                        "with), found 'flow'")


def test_count_agreement_counts_cells_above_the_threshold_against_k():
    shares = np.array([[0.5, 0.3, 0.15, 0.05],     # 0.1 MeV: 0.05, 0.03, 0.015, 0.005 → 3 above 0.01
                       [0.7, 0.1, 0.1, 0.1],       # 0.05 MeV: 0.035, then three at 0.005 → 1 above
                       [0.0, 0.0, 0.0, 0.0]])      # an empty row: nothing above, nothing cut
    excess, cut = diag.count_agreement(shares, np.array([0.1, 0.05, 1.0]), np.array([2, 3, 0]), 0.01)
    assert excess.tolist() == [1, -2, 0]
    # k = 2 keeps 0.8 of row 0; k = 3 keeps 0.7 + 0.1 + 0.1 of row 1 (ties at the k-th value all kept: 1.0)
    np.testing.assert_allclose(cut, [0.2, 0.0, 0.0], atol=1e-12)


def test_true_energy_showers_keep_each_showers_layer_energies_and_lit_cells(tmp_path):
    data, generator = _files(tmp_path, occupancy=True)
    e = data.incident_energies.reshape(-1)
    out = diag.true_energy_showers(generator, data.showers, e, seed=2)
    assert out.shape == data.showers.shape and out.dtype == np.float32 and (out >= 0).all()
    pre = generator.preprocessor
    short = []
    for l, (a, b) in enumerate(zip(np.cumsum([0, *pre.layer_sizes])[:-1], np.cumsum(pre.layer_sizes))):
        true, got = data.showers[:, a:b].astype(np.float64), out[:, a:b].astype(np.float64)
        # the true number of lit cells (the model's shapes only choose which) — fewer only where the
        # untrained flow gives a kept cell a share of exactly 0 (its logit below the regulariser α = 1e-6),
        # which the inverse leaves empty (3.1 % of these 3,200 layers; ≤ 0.16 % of the demo model's) —
        # and the true layer energy plus at most the dequantisation noise's mass (n_cells × noise_level)
        n_got, n_true = (got > 0).sum(axis=1), (true > 0).sum(axis=1)
        assert np.all(n_got <= n_true)
        short.append(n_got < n_true)
        excess = got.sum(axis=1) - true.sum(axis=1)
        lit = (true > 0).any(axis=1)
        assert np.all(excess[lit] >= -1e-5 * true.sum(axis=1)[lit])
        assert np.all(excess[lit] <= (b - a) * pre.noise_level + 1e-5 * true.sum(axis=1)[lit])
        assert np.all(got[~lit] == 0)
    assert np.mean(short) < 0.05
    # the same seed, the same showers
    np.testing.assert_array_equal(diag.true_energy_showers(generator, data.showers, e, seed=2), out)
    flow = build_model("flow", n_features=pre.n_features, n_conditions=1, transforms=2, hidden_features=8, coupling=True)
    with pytest.raises(ValueError, match="expected a caloflow checkpoint \\(a shape flow to sample\\), found 'flow'"):
        diag.true_energy_showers(ShowerGenerator(flow, pre, data.geometry), data.showers, e)


def test_main_reports_count_agreement_and_the_shape_flow_on_true_energies(tmp_path, capsys):
    data, generator = _files(tmp_path, occupancy=True)
    ref = str(tmp_path / "ref.h5")
    summary = diag.main([ref, ref, "--checkpoint", str(tmp_path / "model.pt"), "--bins", "2", "--encode-per-bin", "50",
                         "--true-energies", ref, "--true-energies-seeds", "2", "-o", str(tmp_path / "out")])
    # count agreement recomputed row by row: the model's features at the test energies (seed 1, one batch)
    pre = generator.preprocessor
    e = data.incident_energies.reshape(-1)
    with torch.no_grad():
        x = generator.model.sample(torch.as_tensor(pre.transform_conditions(e)),
                                   generator=torch.Generator().manual_seed(1)).double().numpy()
    parts = pre.decode_parts(x, e)
    for l in (0, 7):
        shares, k = parts["shapes"][:, 48 * l : 48 * (l + 1)], parts["lit"][:, l]
        excess = []
        for row, e_l, k_i in zip(shares, parts["e_layer"][:, l], k):
            if k_i >= 2:
                excess.append(sum(v / row.sum() * e_l >= pre.threshold for v in row) - k_i)
        row = summary["count_agreement"][l]
        assert row["n"] == len(excess)
        assert row["differ"] == pytest.approx(np.mean(np.array(excess) != 0), abs=1e-12)
        assert row["mean_excess"] == pytest.approx(np.mean(excess), abs=1e-12)
    # the floor is the test file against itself (0.39 ± 0.07 at 400 showers: a classifier that cannot
    # tell); the untrained shape flow is told apart on all features (0.96)
    te = summary["true_energies"]
    assert te["n"] == 400 and len(te["all"]["aucs"]) == 2 and sorted(te["layers"]) == list(range(8))
    assert te["floor"]["mean"] < 0.6 and te["all"]["mean"] > 0.8
    assert "shape flow on the true layer energies and counts of 400 showers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        diag.main([ref, ref, "--true-energies", ref, "-o", str(tmp_path / "o")])
    assert capsys.readouterr().err.strip().endswith("--true-energies needs --checkpoint (the model whose shape flow is sampled)")
