"""Streamed, resumable sampling to HDF5 (hepgen.data.stream, pipeline.sample_to_file, hepgen sample)."""

import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hepgen.cli import main
from hepgen.config import TrainConfig
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.stream import (
    EnergyListConditions,
    EnergyRangeConditions,
    FileConditions,
    chunk_seed,
    file_sha256,
    partial_path,
    stream_showers,
)
from hepgen.domains.showers.generator import ShowerGenerator, sample_to_file
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import train

V = 6


def _fake_chunk(energies, conditions, index, seed=5):
    """Deterministic in (seed, chunk index) like the real sampler; every row distinct."""
    rng = np.random.default_rng(chunk_seed(seed, index))
    return (rng.random((len(energies), V)) * np.asarray(energies)[:, None] / 100).astype(np.float32)


class Interrupt(Exception):
    pass


def _interrupting(at_chunk):
    def sample_chunk(energies, conditions, index):
        if index == at_chunk:
            raise Interrupt
        return _fake_chunk(energies, conditions, index)

    return sample_chunk


def _stream(path, sample_chunk=_fake_chunk, n=1000, chunk=128, resume=False, source=None, **kw):
    source = source or EnergyRangeConditions(1e3, 1e4, seed=5, condition_ranges={"incident_theta": (0.0, 0.3)})
    return stream_showers(path, n, sample_chunk, source, n_voxels=V, seed=5, chunk_size=chunk, resume=resume, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted job: the file every resumed job must reproduce exactly."""
    path = tmp_path_factory.mktemp("stream") / "ref.h5"
    _stream(path)
    return read_showers(path)


def test_uninterrupted_job_writes_n_unique_events_with_provenance(reference):
    assert len(reference) == 1000
    assert len(np.unique(reference.showers, axis=0)) == 1000
    theta = reference.conditions["incident_theta"]
    assert theta.shape == (1000, 1) and 0 <= theta.min() and theta.max() <= 0.3
    a = reference.attrs
    for key in ("hepgen_seed", "hepgen_version", "hepgen_conditions", "hepgen_created", "hepgen_n_done",
                "hepgen_chunk_size"):
        assert key in a
    assert a["hepgen_n_done"] == 1000 and a["hepgen_seed"] == 5
    cond = json.loads(a["hepgen_conditions"])
    assert cond["mode"] == "energy_range" and cond["energy_range_mev"] == [1e3, 1e4]


@pytest.mark.parametrize("at_chunk", [0, 3, 7])
def test_interrupted_job_resumes_without_duplicates_or_losses(tmp_path, reference, at_chunk):
    path = tmp_path / "gen.h5"
    with pytest.raises(Interrupt):
        _stream(path, _interrupting(at_chunk))
    assert not path.exists()  # never under the final name before it is complete
    with h5py.File(partial_path(path), "r") as f:
        assert f.attrs["hepgen_n_done"] == at_chunk * 128 == f["showers"].shape[0]
    res = _stream(path, resume=True)
    assert res["n_resumed_from"] == at_chunk * 128 and not partial_path(path).exists()
    got = read_showers(path)
    np.testing.assert_array_equal(got.showers, reference.showers)
    np.testing.assert_array_equal(got.incident_energies, reference.incident_energies)
    np.testing.assert_array_equal(got.conditions["incident_theta"], reference.conditions["incident_theta"])


def test_rows_beyond_the_done_count_are_truncated_on_resume(tmp_path, reference):
    path = tmp_path / "gen.h5"
    with pytest.raises(Interrupt):
        _stream(path, _interrupting(2))
    with h5py.File(partial_path(path), "r+") as f:  # a chunk half-written when the job was killed
        for key in f:
            f[key].resize(f[key].shape[0] + 50, axis=0)
            f[key][-50:] = 7.0
    _stream(path, resume=True)
    got = read_showers(path)
    assert len(got) == 1000
    np.testing.assert_array_equal(got.showers, reference.showers)


def test_partial_file_needs_resume_and_the_same_job(tmp_path):
    path = tmp_path / "gen.h5"
    with pytest.raises(Interrupt):
        _stream(path, _interrupting(1))
    with pytest.raises(ValueError, match="--resume"):
        _stream(path)
    with pytest.raises(ValueError, match=r"different job.*'n'"):
        _stream(path, n=999, resume=True)
    with pytest.raises(ValueError, match=r"different job.*'chunk_size'"):
        _stream(path, chunk=64, resume=True)
    with pytest.raises(ValueError, match="different job.*'conditions'"):
        _stream(path, resume=True, source=EnergyListConditions([5e3], seed=5))
    (partial_path(path)).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot resume"):
        _stream(path, resume=True)


def test_memory_stays_flat(tmp_path):
    n, chunk, v = 40_000, 500, 64

    def sample_chunk(energies, conditions, index):
        rng = np.random.default_rng(chunk_seed(1, index))
        return rng.random((len(energies), v), dtype=np.float32)

    tracemalloc.start()
    try:
        stream_showers(tmp_path / "big.h5", n, sample_chunk, EnergyRangeConditions(1e3, 1e4, seed=1), n_voxels=v,
                       seed=1, chunk_size=chunk, compression=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = n * v * 4  # 10.2 MB of showers written
    assert peak < total / 5, f"peak traced memory {peak / 2**20:.1f} MiB for {total / 2**20:.1f} MiB written"
    with h5py.File(tmp_path / "big.h5", "r") as f:
        assert f["showers"].shape == (n, v)


def test_file_conditions_are_read_in_order_and_cap_n(tmp_path):
    geometry = CylindricalBinning.regular(2, [0, 1, 2, 3], n_alpha=1)
    data = simulate_dataset(300, geometry=geometry, theta_range=(0.0, 0.2), seed=1)
    write_showers(tmp_path / "cond.h5", data)
    source = FileConditions(tmp_path / "cond.h5", ["incident_theta"])
    assert source.describe()["sha256"] == file_sha256(tmp_path / "cond.h5")
    res = _stream(tmp_path / "out.h5", n=10_000, chunk=64, source=source)
    assert res["n"] == 300
    got = read_showers(tmp_path / "out.h5")
    np.testing.assert_array_equal(got.incident_energies, data.incident_energies)
    np.testing.assert_array_equal(got.conditions["incident_theta"], data.conditions["incident_theta"])
    with pytest.raises(ValueError, match="missing dataset 'impact_position'"):
        FileConditions(tmp_path / "cond.h5", ["impact_position"])


# --- with a trained generator -------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream_model")
    geometry = CylindricalBinning.regular(3, [0, 5, 10, 20], n_alpha=2)
    data = simulate_dataset(500, geometry=geometry, energy_range=(2e3, 5e4), seed=2)
    config = TrainConfig(model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=1, seed=0)
    train(data, config, d / "run", progress=False)
    return d / "run" / "best.pt"


def test_sample_to_file_barely_depends_on_batch_size_and_records_the_checkpoint(run, tmp_path):
    gen = ShowerGenerator.load(run)
    src = EnergyRangeConditions(2e3, 5e4, seed=3)
    sample_to_file(gen, tmp_path / "a.h5", 300, src, seed=3, chunk_size=128, batch_size=7, checkpoint=run)
    sample_to_file(gen, tmp_path / "b.h5", 300, src, seed=3, chunk_size=128, batch_size=1000, checkpoint=run)
    a, b = read_showers(tmp_path / "a.h5"), read_showers(tmp_path / "b.h5")
    # same noise and conditions; only float rounding differs (BLAS kernels are not batch-invariant)
    flip = (a.showers == 0) != (b.showers == 0)
    assert flip.mean() < 1e-3
    np.testing.assert_allclose(a.showers[~flip], b.showers[~flip], rtol=1e-4, atol=1e-4)
    assert a.attrs["hepgen_checkpoint_sha256"] == file_sha256(run)
    assert a.attrs["hepgen_family"] == "flow" and a.geometry.to_dict() == gen.geometry.to_dict()
    sample_to_file(gen, tmp_path / "c.h5", 300, src, seed=4, chunk_size=128, checkpoint=run)
    assert not np.array_equal(read_showers(tmp_path / "c.h5").showers, a.showers)


def test_cli_sample_resumes_an_interrupted_job(run, tmp_path, monkeypatch, capsys):
    from hepgen.domains.showers import generator as pipeline

    args = ["sample", str(run), "--n", "700", "--chunk-size", "100", "--seed", "9", "-q"]
    assert main([*args, "-o", str(tmp_path / "full.h5")]) == 0
    real = pipeline._chunk_sampler

    def flaky(gen, seed, batch_size, fast=True, **kw):
        fn, job = real(gen, seed, batch_size, fast, **kw)

        def sample_chunk(e, c, index):
            if index == 4:
                raise KeyboardInterrupt
            return fn(e, c, index)

        return sample_chunk, job

    monkeypatch.setattr(pipeline, "_chunk_sampler", flaky)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "gen.h5")]) == 130  # Ctrl-C: exit 130, one line, no traceback
    assert capsys.readouterr().err == "hepgen: interrupted\n"
    assert not (tmp_path / "gen.h5").exists()  # nothing under the final name; the partial file keeps the chunks
    monkeypatch.setattr(pipeline, "_chunk_sampler", real)
    assert main([*args, "-o", str(tmp_path / "gen.h5")]) == 2  # a partial file needs --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "gen.h5"), "--resume"]) == 0
    assert "resumed at 400" in capsys.readouterr().out
    full, got = read_showers(tmp_path / "full.h5"), read_showers(tmp_path / "gen.h5")
    np.testing.assert_array_equal(got.showers, full.showers)
    np.testing.assert_array_equal(got.incident_energies, full.incident_energies)
    assert len(np.unique(got.showers, axis=0)) == 700
    assert got.attrs["hepgen_checkpoint_sha256"] == file_sha256(run) and got.attrs["hepgen_seed"] == 9


def test_sample_paths_keep_the_noise_and_are_recorded(run, tmp_path, monkeypatch, capsys):
    from hepgen.domains.showers import generator as pipeline

    args = ["sample", str(run), "--n", "300", "--chunk-size", "150", "--batch-size", "64", "--seed", "3", "-q"]
    assert main([*args, "-o", str(tmp_path / "fp32.h5")]) == 0
    assert main([*args, "-o", str(tmp_path / "bf16.h5"), "--path", "bf16"]) == 0
    ref, bf16 = read_showers(tmp_path / "fp32.h5"), read_showers(tmp_path / "bf16.h5")
    np.testing.assert_array_equal(bf16.incident_energies, ref.incident_energies)
    # same noise, bfloat16 matrix products: close to the fp32 showers in total energy, not equal
    assert not np.array_equal(bf16.showers, ref.showers)
    rel = np.abs(bf16.showers.sum(1) - ref.showers.sum(1)) / ref.showers.sum(1)
    assert np.median(rel) < 0.05
    assert "sampling_path" not in json.loads(ref.attrs["hepgen_job"])  # fp32 jobs are described as before
    assert json.loads(bf16.attrs["hepgen_job"])["sampling_path"] == "bf16"

    # a compiled path pads each chunk's short last batch (150 = 2 x 64 + 22) to the compiled shape:
    # the eager sampler stands in for the compiled one (compiling takes minutes on a CPU)
    shapes = []

    class Recording(torch.nn.Module):
        def __init__(self, sampler):
            super().__init__()
            self.sampler = sampler

        def forward(self, e, z, extra):
            shapes.append(len(e))
            return self.sampler(e, z, extra)

    monkeypatch.setattr(pipeline, "prepare_path", lambda sampler, path, device: Recording(sampler))
    sample_to_file(ShowerGenerator.load(run), tmp_path / "c.h5", 300, EnergyRangeConditions(2e3, 5e4, seed=3),
                   seed=3, chunk_size=150, batch_size=64, sampling_path="compile")
    assert shapes == [64] * 6
    padded = read_showers(tmp_path / "c.h5")
    assert json.loads(padded.attrs["hepgen_job"])["sampling_path"] == "compile"
    monkeypatch.undo()
    sample_to_file(ShowerGenerator.load(run), tmp_path / "f.h5", 300, EnergyRangeConditions(2e3, 5e4, seed=3),
                   seed=3, chunk_size=150, batch_size=64)
    unpadded = read_showers(tmp_path / "f.h5")
    flip = (padded.showers == 0) != (unpadded.showers == 0)
    assert flip.mean() < 1e-3
    np.testing.assert_allclose(padded.showers[~flip], unpadded.showers[~flip], rtol=1e-4, atol=1e-4)

    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "x.h5"), "--path", "fp64"]) == 2
    assert "sampling path: expected one of" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()


def test_cli_sample_refuses_broken_or_empty_condition_files(run, tmp_path, capsys):
    """--conditions-from: truncated file, counts that differ, no rows, and --n 0 are one-line errors (exit 2),
    with nothing written."""
    geometry = ShowerGenerator.load(run).geometry
    good = tmp_path / "good.h5"
    write_showers(good, simulate_dataset(200, geometry=geometry, energy_range=(2e3, 5e4), seed=3), compression=None)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    mismatch = tmp_path / "mismatch.h5"
    with h5py.File(mismatch, "w") as f:
        f["incident_energies"] = np.full((5, 1), 5e3)
        f["showers"] = np.ones((4, geometry.n_voxels), np.float32)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["incident_energies"] = np.zeros((0, 1))
        f["showers"] = np.zeros((0, geometry.n_voxels), np.float32)
    cases = [
        (["--conditions-from", str(truncated)], "truncated.h5: could not read HDF5 file ("),
        (["--conditions-from", str(mismatch)], "mismatch.h5: key 'showers': expected 5 rows like 'incident_energies', "
                                               "found shape (4, "),
        (["--conditions-from", str(empty)], "empty.h5: key 'incident_energies': expected at least one row, found 0"),
        (["--n", "0", "--energies", "5000"], "--n: expected a number of showers >= 1, found 0"),
    ]
    for extra, message in cases:
        out = tmp_path / "out.h5"
        assert main(["sample", str(run), "-o", str(out), "-q", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not out.exists() and not Path(f"{out}.partial").exists()
