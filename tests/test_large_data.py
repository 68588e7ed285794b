"""Data larger than memory: showers read chunk by chunk from one or several HDF5 files
(:mod:`hepgen.data.chunked`), the preprocessing fitted on a streamed pass, streamed training
(order, exact resume inside an epoch, the data-parallel shards) and ``hepgen train`` with
several files or a glob."""

import functools
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.chunked import ShowerFileSet, default_chunk_rows, expand_paths, fits_in_memory
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.domains import get_domain
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train import trainer
from hepgen.train.trainer import _split, train

from _toy_models import FakeClock, run_ddp_jobs

GEOMETRY = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)  # 18 voxels
SMALL_FLOW = {"transforms": 2, "hidden_features": 16, "n_hidden": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two files of one data set (130 + 170 showers) and the whole set in memory."""
    d = tmp_path_factory.mktemp("large")
    data = simulate_dataset(300, geometry=GEOMETRY, energy_range=(5e3, 5e4), seed=3)
    a, b = d / "a.h5", d / "b.h5"
    write_showers(a, data.subset(np.arange(130)))
    write_showers(b, data.subset(np.arange(130, 300)))
    return a, b, data


def _rows_sorted(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


def _identity(buffer, rng):
    return buffer.showers, buffer.incident_energies


def _collect(s: ShowerFileSet, **kw):
    n, it = s.batches(_identity, batch_size=kw.pop("batch_size", 16), **kw)
    batches = list(it)
    return n, batches


# --- reading ------------------------------------------------------------------------------


def test_several_files_load_as_their_concatenation(files):
    a, b, data = files
    s = ShowerFileSet([a, b], chunk_rows=7)
    loaded = s.load()
    np.testing.assert_array_equal(loaded.showers, data.showers.astype(np.float32))
    np.testing.assert_array_equal(loaded.incident_energies, data.incident_energies)
    assert loaded.geometry == GEOMETRY and len(s) == 300
    # chunks: contiguous rows of one file, never across files (130 = 18 x 7 + 4)
    sizes = [c.stop - c.start for c in s.chunks()]
    assert sizes[:19] == [7] * 18 + [4] and sum(sizes) == 300 and len(sizes) == 19 + 25


def test_chunked_epoch_yields_exactly_the_rows_of_the_in_memory_file(files):
    a, b, data = files
    s = ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=3)
    n, batches = _collect(s, seed=5, epoch=0)
    assert n == len(batches) == -(-300 // 16)
    assert [len(x) for x, _ in batches] == [16] * 18 + [12]
    streamed = np.concatenate([x for x, _ in batches])
    np.testing.assert_array_equal(_rows_sorted(streamed), _rows_sorted(data.showers.astype(np.float32)))
    # energies travel with their showers
    e = np.concatenate([e for _, e in batches])
    order = {row.tobytes(): i for i, row in enumerate(data.showers.astype(np.float32))}
    idx = np.array([order[row.tobytes()] for row in streamed])
    np.testing.assert_array_equal(e, data.incident_energies[idx])
    # shuffled: not the file order
    assert not np.array_equal(streamed, data.showers.astype(np.float32))


def test_order_is_reproducible_for_a_seed_and_changes_with_seed_and_epoch(files):
    a, b, _ = files
    s = ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=3)
    first = np.concatenate([x for x, _ in _collect(s, seed=5, epoch=1)[1]])
    again = np.concatenate([x for x, _ in _collect(ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=3),
                                                   seed=5, epoch=1)[1]])
    np.testing.assert_array_equal(first, again)
    for other in (dict(seed=6, epoch=1), dict(seed=5, epoch=2)):
        assert not np.array_equal(first, np.concatenate([x for x, _ in _collect(s, **other)[1]]))


def test_resume_at_batch_b_gives_the_remaining_batches(files):
    a, b, _ = files
    s = ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=3)
    n, whole = _collect(s, seed=5, epoch=0)
    for start in (1, 7, n - 1):
        _, rest = _collect(s, seed=5, epoch=0, start_batch=start)
        assert len(rest) == n - start
        for (x, e), (y, f) in zip(whole[start:], rest):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(e, f)


def test_each_rank_reads_its_own_chunks_and_takes_as_many_batches(files):
    a, b, data = files
    s = ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=2)
    chunks = s.chunks()
    order = np.random.default_rng([5, 0, 0]).permutation(len(chunks))
    per_rank = []
    for rank in (0, 1):
        n, batches = _collect(s, seed=5, epoch=0, rank=rank, world=2)
        per_rank.append((n, np.concatenate([x for x, _ in batches])))
        mine = np.concatenate([data.showers[c.rows] for c in (chunks[i] for i in order[rank::2])]).astype(np.float32)
        got = per_rank[-1][1]
        # padded by wrapping around to its first rows: the extra rows are rows it already had
        np.testing.assert_array_equal(_rows_sorted(np.unique(got, axis=0)), _rows_sorted(np.unique(mine, axis=0)))
    (n0, x0), (n1, x1) = per_rank
    assert n0 == n1 and len(x0) == len(x1) >= 150
    together = np.unique(np.concatenate([x0, x1]), axis=0)
    np.testing.assert_array_equal(_rows_sorted(together), _rows_sorted(np.unique(data.showers.astype(np.float32), axis=0)))


def test_a_view_reads_only_its_rows(files):
    a, b, data = files
    tr, va = _split(300, 0.1, 7)
    s = ShowerFileSet([a, b], chunk_rows=7).subset(tr)
    _, batches = _collect(s, seed=1, epoch=0)
    streamed = np.concatenate([x for x, _ in batches])
    np.testing.assert_array_equal(_rows_sorted(streamed), _rows_sorted(data.showers[tr].astype(np.float32)))
    np.testing.assert_array_equal(ShowerFileSet([a, b]).subset(va).load().showers, data.showers[va].astype(np.float32))


def test_files_of_another_geometry_or_voxel_count_are_refused_naming_the_file(files, tmp_path):
    a, _, data = files
    other = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=3)  # 27 voxels
    c = tmp_path / "c.h5"
    write_showers(c, simulate_dataset(10, geometry=other, energy_range=(5e3, 5e4), seed=1))
    with pytest.raises(ValueError, match=r"c\.h5: key 'showers': expected 18 voxels per shower as in .*a\.h5, found 27"):
        ShowerFileSet([a, c])
    same_count = CylindricalBinning.regular(3, [0.0, 9.0, 20.0, 60.0], n_alpha=2)  # 18 voxels, other edges
    d = tmp_path / "d.h5"
    write_showers(d, ShowerData(data.showers[:10], data.incident_energies[:10], geometry=same_count))
    with pytest.raises(ValueError, match=r"d\.h5: attribute 'hepgen_geometry': the geometry differs from .*a\.h5"):
        ShowerFileSet([a, d])


def test_bad_voxels_are_reported_with_the_file_and_rows_when_read(files, tmp_path):
    a, _, data = files
    bad = tmp_path / "bad.h5"
    write_showers(bad, data.subset(np.arange(20)), compression=None)
    with h5py.File(bad, "r+") as f:
        f["showers"][15, 3] = -1.0
    s = ShowerFileSet([a, bad], chunk_rows=7)
    with pytest.raises(ValueError, match=r"bad\.h5 \(rows 14-20\): key 'showers': expected energies >= 0 MeV"):
        list(s.iter_chunks())


def test_stopping_early_ends_the_reading_thread_and_errors_reach_the_consumer(files, tmp_path):
    import threading

    a, b, data = files
    s = ShowerFileSet([a, b], chunk_rows=7, buffer_chunks=1)
    _, it = s.batches(_identity, seed=0, epoch=0, batch_size=4)
    next(it)
    it.close()
    chunks = s.iter_chunks()
    next(chunks)
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name == "hepgen-prefetch"]
    bad = tmp_path / "bad.h5"
    write_showers(bad, data.subset(np.arange(20)), compression=None)
    with h5py.File(bad, "r+") as f:
        f["showers"][3, 0] = np.nan
    _, it = ShowerFileSet([bad], chunk_rows=7).batches(_identity, seed=0, epoch=0, batch_size=4)
    with pytest.raises(ValueError, match=r"bad\.h5 \(rows 0-7\): key 'showers': expected finite values"):
        list(it)


def test_impossible_responses_are_warned_once_per_chunk_not_every_epoch(files, tmp_path, caplog):
    a, _, data = files
    hot = tmp_path / "hot.h5"
    sub = data.subset(np.arange(20))
    write_showers(hot, ShowerData(sub.showers, sub.incident_energies, geometry=GEOMETRY))
    with h5py.File(hot, "r+") as f:
        f["showers"][9, :] = f["showers"][9, :] * 0 + 1e6  # 18 x 1e6 MeV >> E_inc
    s = ShowerFileSet([hot], chunk_rows=7)
    for epoch in range(3):
        list(s.batches(_identity, seed=0, epoch=epoch, batch_size=8)[1])
    warnings = [r.getMessage() for r in caplog.records if "deposit more than" in r.getMessage()]
    assert len(warnings) == 1 and "hot.h5 (rows 7-14)" in warnings[0] and "first at row 2" in warnings[0]


def test_globs_expand_sorted_and_an_empty_glob_is_an_error(files, tmp_path):
    a, b, _ = files
    assert expand_paths([str(a.parent / "*.h5")]) == [a, b]
    with pytest.raises(ValueError, match=r"nomatch\*\.h5: the pattern matches no file"):
        expand_paths([str(tmp_path / "nomatch*.h5")])


def test_memory_rule_and_chunk_sizes():
    # N x voxels x 16 bytes against the budget (GB = 1e9 bytes)
    assert fits_in_memory(1000, 1000, budget_gb=0.016) and not fits_in_memory(1001, 1000, budget_gb=0.016)
    assert not fits_in_memory(1, 1, budget_gb=0)
    # 4 GB / 16 = 250 MB of float32 per buffer of 8 chunks: 250e6 / (8 * 40500 * 4) = 192.9 rows
    assert default_chunk_rows(10**6, 40_500) == 192
    with pytest.raises(ValueError, match="memory-budget-gb"):
        fits_in_memory(1, 1, budget_gb=-1)


def test_domain_reads_a_large_data_set_as_a_file_set(files):
    a, b, _ = files
    dom = get_domain("showers")
    assert isinstance(dom.read(str(a)), ShowerData)
    assert isinstance(dom.read(str(a), memory_budget_gb=0), ShowerFileSet)
    both = dom.read([str(a), str(b)])
    assert isinstance(both, ShowerData) and len(both) == 300
    assert isinstance(dom.read([str(a), str(b)], memory_budget_gb=0), ShowerFileSet)


# --- preprocessing fitted on a streamed pass ---------------------------------------------------


def test_streamed_preprocessing_fit_equals_the_in_memory_fit(files):
    a, b, data = files
    dom = get_domain("showers")
    config = TrainConfig(family="flow", seed=11)
    tr, _ = _split(300, 0.1, 11)
    streamed = dom.fit_preprocessor(ShowerFileSet([a, b], chunk_rows=7).subset(tr), config)
    in_memory = ShowerData(np.concatenate([read_showers(a).showers, read_showers(b).showers]), data.incident_energies,
                           geometry=GEOMETRY)
    memory = dom.fit_preprocessor(in_memory.subset(tr), config)
    assert streamed.scale == memory.scale
    # same noise (one generator consumed row after row); sums merged chunk by chunk: rounding only
    for key in ("feat_mean", "feat_std", "cond_mean", "cond_std"):
        np.testing.assert_allclose(getattr(streamed, key), getattr(memory, key), rtol=1e-9, atol=1e-12, err_msg=key)
    # the tolerance discriminates: another seed's noise moves the means far more
    other = dom.fit_preprocessor(in_memory.subset(tr), TrainConfig(family="flow", seed=12))
    assert np.abs(other.feat_mean - memory.feat_mean).max() > 1e-6


def test_sliced_transform_equals_one_call():
    from hepgen.domains.showers import preprocessing as pp

    rng = np.random.default_rng(0)
    e = rng.uniform(1e3, 1e4, (50, 1))
    s = rng.exponential(1.0, (50, 8)) * e / 16
    pre = pp.ShowerPreprocessor([4, 4]).fit(s, e)
    whole = pre.transform(s, e, np.random.default_rng(1))
    original = pp.features_rows
    try:
        pp.features_rows = lambda n: 7  # 8 slices
        sliced = pre.transform(s, e, np.random.default_rng(1))
    finally:
        pp.features_rows = original
    np.testing.assert_array_equal(sliced, whole)


# --- streamed training --------------------------------------------------------------------------


def _config(**kw):
    base = dict(family="flow", model=SMALL_FLOW, epochs=2, batch_size=32, lr=2e-3, n_eval=100,
                tensorboard=False, threads=1, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")


def test_streamed_training_stopped_inside_an_epoch_resumes_exactly(files, tmp_path, monkeypatch):
    a, b, _ = files
    fileset = functools.partial(ShowerFileSet, [a, b], chunk_rows=10, buffer_chunks=2)
    # 270 training rows → 9 batches of 32 per epoch; the fake clock stops epoch 1 after batch 3
    run = tmp_path / "stopped"
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    train(fileset(), _config(max_minutes=2.5 / 60), run, progress=False)
    tstate = load_checkpoint(run / "last.pt")["trainer"]
    assert (tstate["epoch"], tstate["batch"], tstate["step"]) == (0, 3, 3)
    monkeypatch.setattr(trainer, "_clock", FakeClock())
    train(fileset(), _config(), run, resume=True, progress=False)
    train(fileset(), _config(), tmp_path / "whole", progress=False)
    x, y = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(run / "last.pt")
    assert y["trainer"]["step"] == 18 and y["meta"]["n_train"] == 270
    _same(x["model"], y["model"])
    # the streamed run trained on other batches than the in-memory one (the order differs)
    train(fileset().load(), _config(), tmp_path / "memory", progress=False)
    m = load_checkpoint(tmp_path / "memory" / "last.pt")["model"]
    assert max(float((m[k] - x["model"][k]).abs().max()) for k in m if m[k].is_floating_point()) > 1e-4


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_two_processes_stream_their_shards_and_resume_inside_an_epoch_exactly(files, tmp_path):
    """torchrun, 2 CPU processes (gloo), streamed data: a run stopped by the (fake) time limit
    after batch 3 of epoch 1 and resumed ends with the weights of an uninterrupted run."""
    a, b, _ = files
    cfg_dict = dict(family="flow", model=SMALL_FLOW, epochs=2, batch_size=16, lr=2e-3, n_eval=100,
                    tensorboard=False, threads=1, seed=7, ema=0.9)
    common = dict(data=[str(a), str(b)], chunk_rows=10, fake_clock=True)
    jobs = [
        dict(common, out=str(tmp_path / "stopped_only"), config=dict(cfg_dict, max_minutes=2.5 / 60)),
        dict(common, out=str(tmp_path / "stopped"), config=dict(cfg_dict, max_minutes=2.5 / 60)),
        dict(common, out=str(tmp_path / "stopped"), config=cfg_dict, resume=True),
        dict(common, out=str(tmp_path / "whole"), config=cfg_dict),
    ]
    run_ddp_jobs(jobs, tmp_path)
    stopped = load_checkpoint(tmp_path / "stopped_only" / "last.pt")["trainer"]
    assert (stopped["epoch"], stopped["batch"], stopped["step"]) == (0, 3, 3)
    assert len(stopped["epoch_partial_by_rank"]) == 2
    whole, resumed = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "stopped" / "last.pt")
    # 270 training rows in 27 chunks: 14 and 13 chunks (140 and 130 rows, the second padded to
    # 140) → 9 batches of 16 per process and epoch
    assert whole["meta"]["world_size"] == 2 and whole["trainer"]["step"] == 18
    assert resumed["trainer"]["step"] == 18 and resumed["trainer"]["batch"] == 0
    _same(whole["model"], resumed["model"])
    _same(whole["trainer"]["ema"], resumed["trainer"]["ema"])


# --- the command line ----------------------------------------------------------------------------


def test_hepgen_train_takes_several_files_a_glob_and_a_memory_budget(files, tmp_path, capsys):
    from hepgen.cli import main

    a, b, _ = files
    small = ["--family", "flow", "--epochs", "1", "--seed", "0", "-q", "--batch-size", "64",
             "--set", "model.transforms=2",
             "--set", "model.hidden_features=16", "--set", "model.n_hidden=1", "--set", "n_eval=50"]
    runs = {name: tmp_path / name for name in ("list", "glob", "streamed")}
    assert main(["train", str(a), str(b), "-o", str(runs["list"]), *small]) == 0
    assert main(["train", str(a.parent / "*.h5"), "-o", str(runs["glob"]), *small]) == 0
    assert main(["train", str(a), str(b), "-o", str(runs["streamed"]), "--memory-budget-gb", "0", *small]) == 0
    assert "trained flow on 300 showers" in capsys.readouterr().out
    ckpt = {name: load_checkpoint(path / "last.pt") for name, path in runs.items()}
    assert ckpt["list"]["meta"]["train_files"] == [str(a), str(b)] and len(ckpt["list"]["meta"]["train_files_sha256"]) == 2
    assert all(c["meta"]["n_train"] == 270 for c in ckpt.values())
    _same(ckpt["list"]["model"], ckpt["glob"]["model"])  # the glob is the same data set
    m, s = ckpt["list"]["model"], ckpt["streamed"]["model"]
    assert max(float((m[k] - s[k]).abs().max()) for k in m if m[k].is_floating_point()) > 0  # another order


def test_hepgen_train_refuses_a_file_of_another_geometry_in_one_line(files, tmp_path, capsys):
    from hepgen.cli import main

    a, _, data = files
    other = CylindricalBinning.regular(3, [0.0, 9.0, 20.0, 60.0], n_alpha=2)
    c = tmp_path / "c.h5"
    write_showers(c, ShowerData(data.showers[:10], data.incident_energies[:10], geometry=other))
    assert main(["train", str(a), str(c), "-o", str(tmp_path / "run"), "--epochs", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "c.h5: attribute 'hepgen_geometry': the geometry differs from" in err
    assert not (tmp_path / "run" / "last.pt").exists()


# --- evaluation of large files ---------------------------------------------------------------------


def test_streamed_evaluation_features_equal_the_in_memory_ones(files):
    from hepgen.domains.showers.large import features_of, streamed_features

    a, b, _ = files
    whole = ShowerFileSet([a, b]).load()
    expected = features_of(whole.showers, whole.incident_energies, GEOMETRY)
    got = streamed_features(ShowerFileSet([a, b], chunk_rows=7))
    assert got.keys() == expected.keys() and len(got) > 20
    for k in expected:  # per-shower functions: equal to the last bit
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_evaluate_files_above_the_budget_samples_voxels_and_streams_all_rows(files, tmp_path):
    from hepgen.domains.showers.evaluate import evaluate_files
    from hepgen.domains.showers.large import evaluation_cap

    a, b, _ = files
    kw = dict(classifier=False, groups="fast", seed=4)
    ref = evaluate_files(a, b, **kw)
    # a budget below both files' N x 18 voxels x 16 bytes: both streamed, voxel metrics on a
    # cap of 28800 / (2 samples x 18 x 16) = 50 seeded rows of each, separations on every row
    budget = 28_800 / 1e9
    assert evaluation_cap(18, 2, budget) == 50
    small = evaluate_files(a, b, memory_budget_gb=budget, **kw)
    assert small["n_real"] == 50 and small["n_generated"] == 50
    assert small["evaluated_rows"] == {"real": {"rows": 130, "evaluated": 50, "seed": 4},
                                       "generated": {"rows": 170, "evaluated": 50, "seed": 4}}
    assert small["separation_power"] != ref["separation_power"]
    every = small["separation_power_all_rows"]["values"]
    assert set(ref["separation_power"]) < set(every)  # the CaloChallenge set and the depth observables
    for k, v in ref["separation_power"].items():
        assert every[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    assert "evaluated_rows" not in ref


def test_hepgen_evaluate_passes_the_memory_budget(files, tmp_path, capsys, monkeypatch):
    import json

    from hepgen._io import write_metrics
    from hepgen.cli import main
    from hepgen.domains.showers import evaluate

    # the report's figures are tested elsewhere (test_evaluate_report); here only metrics.json
    monkeypatch.setattr(evaluate, "write_outputs", lambda metrics, real, generated, out_dir, **kw:
                        write_metrics(metrics, Path(out_dir) / "metrics.json"))
    a, b, _ = files
    out = tmp_path / "ev"
    assert main(["evaluate", str(a), str(b), "-o", str(out), "--fast", "--no-classifier",
                 "--memory-budget-gb", "2.88e-5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated_rows"]["real"] == {"rows": 130, "evaluated": 50, "seed": 0}
    assert metrics["n_real"] == 50


def test_several_files_are_for_showers_only_and_the_budget_option_for_showers(tmp_path, capsys):
    from _toy_jets import toy_jets

    from hepgen.cli import main
    from hepgen.data.jets import write_jets

    j1, j2 = tmp_path / "j1.h5", tmp_path / "j2.h5"
    write_jets(j1, toy_jets(20, seed=1))
    write_jets(j2, toy_jets(20, seed=2))
    assert main(["train", str(j1), str(j2), "-o", str(tmp_path / "run"), "-q"]) == 2
    assert "j2.h5: several training files make one data set for showers only; jets trains on one file" \
        in capsys.readouterr().err
    assert main(["train", str(j1), "-o", str(tmp_path / "run"), "-q", "--memory-budget-gb", "1"]) == 2
    assert "--memory-budget-gb does not apply to jets files" in capsys.readouterr().err
