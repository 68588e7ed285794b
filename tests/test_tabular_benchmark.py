"""The benchmark classifier's ΔAUC with its paired-bootstrap error, the early-stopped MLP, and the
simulation cost per process behind the speed-ups (hepgen.metrics.tabular, hepgen.data.tabular,
hepgen.domains.tabular.evaluate)."""

import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from hepgen.data.tabular import COST_KEY, TabularData, merge_tabular_files, read_tabular, simulation_cost, write_tabular
from hepgen.domains.tabular.evaluate import evaluate_tabular
from hepgen.metrics.tabular import benchmark_classifier, paired_auc_difference


# --- paired bootstrap ---------------------------------------------------------------------------
def test_identical_scores_give_zero_difference_and_zero_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y
    r = paired_auc_difference(y, s, s.copy(), n_bootstrap=300)
    assert r["diff"] == 0.0 and r["diff_err"] == 0.0 and r["diff_ci95"] == [0.0, 0.0]
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["auc_a_err"] > 0.005  # each AUC alone does have an error; only the difference has none


def test_hand_worked_difference():
    # a ranks both signals above both backgrounds (AUC 1); b swaps one pair: 3 of 4 pairs (AUC 0.75)
    y = np.array([0, 0, 1, 1])
    r = paired_auc_difference(y, [0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4], n_bootstrap=500)
    assert (r["auc_a"], r["auc_b"], r["diff"]) == (1.0, 0.75, -0.25)
    assert r["diff_ci95"][0] <= -0.25 <= r["diff_ci95"][1] and r["diff_ci95"][1] <= 0.0


def _gauss_scores(rng, n, d_a, d_b, noise=0.3):
    """Two correlated scores: shared event noise u plus the class shift d, and a private noise."""
    y = rng.integers(0, 2, n)
    u = rng.normal(size=n)
    sa = u + rng.normal(0, noise, n) + d_a * y
    sb = u + rng.normal(0, noise, n) + d_b * y
    return y, sa, sb


def test_known_shift_and_bootstrap_error_matches_the_spread_over_test_samples():
    """AUC of N(d, σ²) vs N(0, σ²) is Φ(d / (σ√2)); σ² = 1 + 0.3² here.  The paired-bootstrap error of
    ΔAUC from one test sample must agree with the true spread of ΔAUC over independent test samples."""
    d_a, d_b, n, sigma = 0.8, 0.7, 1500, np.sqrt(1.09)
    expected = norm.cdf(d_b / (sigma * np.sqrt(2))) - norm.cdf(d_a / (sigma * np.sqrt(2)))  # -0.0237
    rng = np.random.default_rng(1)
    mc = []
    for _ in range(400):  # Monte Carlo truth: ΔAUC over independent test samples
        y, sa, sb = _gauss_scores(rng, n, d_a, d_b)
        mc.append(roc_auc_score(y, sb) - roc_auc_score(y, sa))
    mc = np.asarray(mc)
    assert mc.mean() == pytest.approx(expected, abs=0.002)
    errs, diffs = [], []
    for _ in range(6):
        y, sa, sb = _gauss_scores(rng, n, d_a, d_b)
        r = paired_auc_difference(y, sa, sb, n_bootstrap=400, seed=len(errs))
        errs.append(r["diff_err"])
        diffs.append(r["diff"])
        assert abs(r["diff"] - expected) < 4 * r["diff_err"]
        # pairing: the error of the difference is well below the error of either AUC alone
        assert r["diff_err"] < 0.6 * r["auc_a_err"]
    assert np.mean(errs) == pytest.approx(mc.std(ddof=1), rel=0.2)


def test_several_seeds_are_averaged_and_their_spread_reported():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    a = np.stack([rng.normal(size=400) + y for _ in range(3)])
    b = np.stack([rng.normal(size=400) + 0.8 * y for _ in range(3)])
    r = paired_auc_difference(y, a, b, n_bootstrap=100)
    per = [roc_auc_score(y, b[k]) - roc_auc_score(y, a[k]) for k in range(3)]
    assert r["seed_diffs"] == pytest.approx(per, abs=1e-12)
    assert r["diff"] == pytest.approx(np.mean(per), abs=1e-12)
    assert r["seed_std"] == pytest.approx(np.std(per, ddof=1), abs=1e-12)
    assert r["n_seeds"] == [3, 3]


def test_paired_bootstrap_bad_input():
    with pytest.raises(ValueError, match=r"^paired_auc_difference: y must hold both labels 0 and 1, found \[1\]$"):
        paired_auc_difference(np.ones(5), np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match=r"scores_b must be \(4,\) or \(S, 4\), found \(1, 3\)"):
        paired_auc_difference(np.array([0, 1, 0, 1]), np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="scores_a contains NaN"):
        paired_auc_difference(np.array([0, 1, 0, 1]), [0, np.nan, 0, 1], np.zeros(4))


# --- the MLP -----------------------------------------------------------------------------------------
def test_mlp_learns_an_imbalanced_heavy_tailed_task():
    """84 % signal, exponential tails (as the ttH:ttbb variables): the Bayes AUC is Φ(|δ| / √2) (the
    per-column exp is a bijection).  sklearn's accuracy-based early stopping stopped such a network
    near the majority classifier (AUC 0.512 on the real benchmark); the log-loss-stopped MLP learns."""
    rng = np.random.default_rng(3)
    n, k, shift = 5200, 8, 0.3
    y = (rng.random(n) < 0.84).astype(int)
    latent = rng.normal(size=(n, k)) + shift * y[:, None]
    x = np.exp(latent)  # heavy tails
    bayes = norm.cdf(shift * np.sqrt(k) / np.sqrt(2))  # 0.726
    r = benchmark_classifier(x[:1200], y[:1200], x[1200:], y[1200:], model="mlp", seed=0)
    assert r["auc"] > bayes - 0.03, (r["auc"], bayes)
    assert r["auc"] < bayes + 0.02  # 4000 test events: ±0.01; cannot beat the Bayes classifier
    assert r["training"]["epochs"] > 3 and r["score"].shape == (4000,)


# --- simulation cost per process -------------------------------------------------------------------
def _table(n, name, seed, **attrs):
    rng = np.random.default_rng(seed)
    return TabularData(rng.normal(size=(n, 2)), ["a", "b"], ["", "GeV"], np.zeros(n, int), [name], attrs)


def test_simulation_cost_survives_concatenation_subsets_and_merging(tmp_path):
    tth = _table(100, "tth", 0, cpu_seconds=7.0, process_seconds=5.0, n_generated=700)
    ttbb = _table(20, "ttbb", 1, cpu_seconds=80.0, process_seconds=52.0, n_generated=10_000)
    both = TabularData.concatenate([tth, ttbb])
    cost = simulation_cost(both)
    assert cost == {"tth": {"wall": 0.07, "cpu": 0.05, "events": 100}, "ttbb": {"wall": 4.0, "cpu": 2.6, "events": 20}}
    assert both.attrs["cpu_seconds"] == 87.0 and both.attrs["n_generated"] == 10_700
    half = both.subset(np.arange(0, 120, 2))  # the totals no longer describe these rows, the cost does
    assert simulation_cost(half) == cost
    # two files of one process: total seconds over total events
    more = TabularData.concatenate([tth, _table(300, "tth", 2, cpu_seconds=9.0, process_seconds=6.0)])
    assert simulation_cost(more)["tth"]["cpu"] == pytest.approx(11.0 / 400, abs=1e-12)
    # a two-process table without the record: unknown, not a wrong mix
    no_record = TabularData(both.values, both.columns, both.units, both.process, both.process_names,
                            {"cpu_seconds": 87.0})
    assert simulation_cost(no_record) == {}
    write_tabular(tmp_path / "tth.h5", tth)
    write_tabular(tmp_path / "ttbb.h5", ttbb)
    merged = merge_tabular_files([tmp_path / "tth.h5", tmp_path / "ttbb.h5"], tmp_path / "both.h5")
    back = read_tabular(tmp_path / "both.h5")
    assert simulation_cost(back) == cost == simulation_cost(merged)
    assert json.loads(back.attrs[COST_KEY])["ttbb"]["cpu"] == 2.6 and back.attrs["process_seconds"] == 57.0


def test_evaluate_speedups_per_process_and_for_the_mix():
    rng = np.random.default_rng(4)
    tth = _table(120, "tth", 5, cpu_seconds=12.0, process_seconds=6.0)      # 0.1 s wall, 0.05 s CPU per event
    ttbb = _table(40, "ttbb", 6, cpu_seconds=160.0, process_seconds=104.0)  # 4 s wall, 2.6 s CPU per event
    real = TabularData.concatenate([tth, ttbb]).subset(rng.permutation(160))  # as the benchmark passes it
    gen = TabularData(rng.normal(size=(80, 2)), ["a", "b"], ["", "GeV"], rng.integers(0, 2, 80), ["tth", "ttbb"],
                      {"sample_seconds": 0.008, "sample_cpu_seconds": 0.004})  # 100 µs wall, 50 µs CPU
    m, _ = evaluate_tabular(real, gen, n_permutations=0, critic_steps=0, classifiers=())
    assert m["speedup_by_process"]["tth"] == pytest.approx({"wall": 1000.0, "cpu": 1000.0}, rel=1e-9)
    assert m["speedup_by_process"]["ttbb"] == pytest.approx({"wall": 40_000.0, "cpu": 52_000.0}, rel=1e-9)
    # the mix of the real sample: (120 × 0.1 + 40 × 4) / 160 s wall per event over 100 µs
    assert m["speedup"] == pytest.approx((120 * 0.1 + 40 * 4.0) / 160 / 1e-4, rel=1e-9)
    assert m["speedup_cpu"] == pytest.approx((120 * 0.05 + 40 * 2.6) / 160 / 5e-5, rel=1e-9)


def test_evaluate_benchmark_reports_the_paired_difference():
    rng = np.random.default_rng(5)
    n = 600
    proc = (rng.random(n) < 0.3).astype(int)
    x = rng.normal(size=(n, 3)) + 0.8 * proc[:, None]
    real = TabularData(x, ["a", "b", "c"], ["", "", ""], proc, ["tth", "ttbb"])
    g_proc = (rng.random(3 * n) < 0.3).astype(int)
    gen = TabularData(rng.normal(size=(3 * n, 3)) + 0.8 * g_proc[:, None], real.columns, real.units, g_proc,
                      ["tth", "ttbb"])
    m, arrays = evaluate_tabular(real, gen, n_permutations=0, critic_steps=0, classifiers=("hgb",),
                                 classifier_seeds=2, n_bootstrap=200)
    b = m["benchmark"]
    assert b["n_train_real"] == b["n_train_generated"] == 300 and b["n_train_generated_all"] == 3 * n
    h = b["hgb"]
    assert h["auc_difference"] == pytest.approx(h["auc_generated_trained"] - h["auc_real_trained"], abs=1e-12)
    assert len(h["auc_difference_per_seed"]) == 2 and 0.0 < h["auc_difference_err"] < 0.05
    # same distribution for both training samples: ΔAUC compatible with 0
    assert abs(h["auc_difference"]) < 4 * h["auc_difference_err"] + 0.01
    assert "auc_difference_all" in h and set(arrays["roc"]["hgb"]) == {"real", "generated"}


# --- merging the finished chunks of an unfinished simulate_tth run ----------------------------------
def test_merge_finished_chunks_of_a_partial_run(tmp_path):
    from hepgen.simulate.tth import merge_finished_chunks

    cdir = tmp_path / ".ttbb.h5.chunks"
    cdir.mkdir()
    (cdir / "manifest.json").write_text(json.dumps({"process": "ttbb", "n_events": 10, "seed": 2, "chunk_size": 4,
                                                    "config": {"min_btags": 3}}))
    # chunks of 4, 4, 2 events: 0 and 2 finished, 1 missing (still being simulated)
    for c, n in ((0, 4), (2, 2)):
        write_tabular(cdir / f"ttbb_{c:05d}.h5",
                      _table(n, "ttbb", c, seconds=10.0 * n, process_seconds=2.5 * n, n_generated=100 * n, n_vetoed=90 * n))
    (cdir / "ttbb_00001.h5.tmp").write_bytes(b"partial")  # a write in progress is not a chunk
    out = merge_finished_chunks(cdir, tmp_path / "ttbb_partial.h5")
    back = read_tabular(tmp_path / "ttbb_partial.h5")
    assert len(out) == len(back) == 6
    a = back.attrs
    assert (a["chunks_merged"], a["chunks_planned"], a["n_events_planned"], bool(a["complete"])) == (2, 3, 10, False)
    assert json.loads(a["merged_chunk_indices"]) == [0, 2]
    assert (a["n_generated"], a["n_vetoed"], a["cpu_seconds"], a["process_seconds"]) == (600, 540, 60.0, 15.0)
    assert simulation_cost(back) == {"ttbb": {"wall": 10.0, "cpu": 2.5, "events": 6}}
    assert np.array_equal(back.values[:4], read_tabular(cdir / "ttbb_00000.h5").values)
    assert (cdir / "ttbb_00000.h5").exists()  # the run stays resumable
    # a chunk with the wrong number of events is not finished: skipped
    write_tabular(cdir / "ttbb_00001.h5", _table(3, "ttbb", 9, seconds=1.0))
    assert merge_finished_chunks(cdir, tmp_path / "again.h5").attrs["chunks_merged"] == 2
    with pytest.raises(ValueError, match=r"key 'manifest.json': expected the manifest of a simulate_tth run"):
        merge_finished_chunks(tmp_path, tmp_path / "x.h5")
    empty = tmp_path / ".e.chunks"
    empty.mkdir()
    (empty / "manifest.json").write_text((cdir / "manifest.json").read_text())
    with pytest.raises(ValueError, match="expected at least one finished ttbb chunk file, found none"):
        merge_finished_chunks(empty, tmp_path / "x.h5")


def test_evaluate_benchmark_with_the_generator_training_events():
    rng = np.random.default_rng(6)

    def table(n):
        proc = (rng.random(n) < 0.3).astype(int)
        return TabularData(rng.normal(size=(n, 3)) + 0.8 * proc[:, None], ["a", "b", "c"], ["", "", ""], proc,
                           ["tth", "ttbb"])

    real, train, gen = table(500), table(400), table(1000)
    m, _ = evaluate_tabular(real, gen, n_permutations=0, critic_steps=0, classifiers=("hgb",), classifier_seeds=1,
                            n_bootstrap=50, real_train=train)
    b = m["benchmark"]
    assert (b["n_test"], b["n_train_real"], b["n_train_generated"], b["n_train_generated_all"]) == (500, 400, 400, 1000)
    assert b["real_training"] == "real_train"
    with pytest.raises(ValueError, match="in real_train, found"):
        evaluate_tabular(real, gen, n_permutations=0, critic_steps=0, classifiers=("hgb",),
                         real_train=train.select_columns(["a", "b"]))
