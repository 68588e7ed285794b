"""Flat memory and a full disk while streaming showers (hepgen.data.stream, hepgen sample).

The growth of ``hepgen sample``'s resident memory with N came from the C heap, not from
Python objects (tracemalloc stayed flat; see :func:`hepgen._io.release_freed_memory`), so
the fast test here checks the mechanism (one chunk in memory, freed pages released after
every chunk) and the slow one measures resident memory in a fresh process.
"""

import errno
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import hepgen.data.stream as stream
from hepgen._io import disk_full_error
from hepgen.cli import main
from hepgen.config import TrainConfig
from hepgen.data.formats import read_showers
from hepgen.data.geometry import CylindricalBinning, default_binning
from hepgen.data.stream import EnergyRangeConditions, chunk_seed, partial_path, stream_showers
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.train.trainer import train

V = 8


def _fake_chunk(energies, conditions, index):
    rng = np.random.default_rng(chunk_seed(7, index))
    return (rng.random((len(energies), V)) * np.asarray(energies)[:, None] / 100).astype(np.float32)


def _stream(path, n=1000, chunk=128, **kw):
    source = EnergyRangeConditions(1e3, 1e4, seed=7, condition_ranges={"incident_theta": (0.0, 0.3)})
    return stream_showers(path, n, _fake_chunk, source, n_voxels=V, seed=7, chunk_size=chunk, **kw)


def _datasets(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


# --- flat memory ---------------------------------------------------------------------------------
def test_one_chunk_in_memory_and_freed_pages_released_after_each_chunk(tmp_path, monkeypatch):
    asked, released = [], []
    real_release = stream.release_freed_memory

    def sample_chunk(energies, conditions, index):
        asked.append(len(energies))
        return _fake_chunk(energies, conditions, index)

    def release():
        released.append(len(asked))
        return real_release()

    monkeypatch.setattr(stream, "release_freed_memory", release)
    source = EnergyRangeConditions(1e3, 1e4, seed=7)
    stream_showers(tmp_path / "a.h5", 1000, sample_chunk, source, n_voxels=V, seed=7, chunk_size=128)
    # 1000 showers in chunks of 128: 7 full chunks and one of 104, never more rows at once
    assert asked == [128] * 7 + [104]
    assert released == list(range(1, 9))  # after every chunk, once
    with h5py.File(tmp_path / "a.h5", "r") as f:
        # HDF5 chunks divide the job's chunk (128 rows; the 1 MiB cap allows more), so writes cover whole chunks
        assert f["showers"].chunks == (128, V) and f["showers"].shape == (1000, V)


def test_hdf5_chunk_rows_divide_the_job_chunk_where_possible(tmp_path):
    # 384 voxels: the 1 MiB cap is 682 rows; 10,000 = 16 x 625, so 625 rows
    stream._create_partial(tmp_path / "a.h5", {"chunk_size": 10_000}, 384, {}, {}, None)
    # 7,919 (prime) has no divisor in (341, 682]: the cap
    stream._create_partial(tmp_path / "b.h5", {"chunk_size": 7_919}, 384, {}, {}, None)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["showers"].chunks == (625, 384) and b["showers"].chunks == (682, 384)


_RSS_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from hepgen.data.stream import EnergyRangeConditions
    from hepgen.domains.showers.generator import ShowerGenerator, sample_to_file

    def rss_mib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    gen = ShowerGenerator.load(sys.argv[1])
    out = sys.argv[2]
    src = EnergyRangeConditions(2e3, 5e4, seed=1)
    sample_to_file(gen, out + ".warm.h5", 20_000, src, seed=1, chunk_size=10_000)  # allocator at steady state
    before = rss_mib()
    sample_to_file(gen, out, 100_000, src, seed=1, chunk_size=10_000)
    print(before, rss_mib())
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_resident_memory_does_not_grow_with_n(tmp_path):
    """100,000 showers of 384 voxels (147 MiB raw) after a 20,000-shower warm-up: resident memory grows by
    less than 4 MiB.  Measured (2 runs each): 0.2 MiB with the fix; 8 and 13 MiB without it (no
    ``malloc_trim``, HDF5's default chunk cache), and ~250 MiB over 300,000 showers by ``hepgen sample``."""
    data = simulate_dataset(1000, geometry=default_binning(), energy_range=(2e3, 5e4), seed=2)
    config = TrainConfig(model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=1, seed=0)
    train(data, config, tmp_path / "run", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(stream.__file__).parents[2])}
    res = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "run" / "best.pt"),
                          str(tmp_path / "gen.h5")], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    before, after = map(float, res.stdout.split())
    assert after - before < 4, f"resident memory grew from {before:.0f} to {after:.0f} MiB"


# --- a full disk ---------------------------------------------------------------------------------
def _failing_writer(at_chunk, chunk, exc):
    real = stream._write_chunk

    def write(f, start, stop, arrays):
        if start // chunk == at_chunk:
            raise exc
        return real(f, start, stop, arrays)

    return write


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    # what h5py raises when HDF5's own write fails (seen on a full tmpfs): no errno attribute, the text has it
    RuntimeError("Unable to flush dataset (file write failed: time = ..., filename = 'x', file descriptor = 3, "
                 "errno = 28, error message = 'No space left on device', buf = 0x1)"),
])
def test_disk_full_keeps_finished_chunks_and_resume_is_bit_identical(tmp_path, monkeypatch, exc):
    _stream(tmp_path / "ref.h5")
    path = tmp_path / "gen.h5"
    monkeypatch.setattr(stream, "_write_chunk", _failing_writer(3, 128, exc))
    with pytest.raises(ValueError) as info:
        _stream(path)
    message = str(info.value)
    assert message == (f"{path}: no space left on device while writing; the 384 showers finished before are kept "
                       f"in {partial_path(path)}; free some space and rerun with --resume to "
                       "continue")
    assert not path.exists()
    with h5py.File(partial_path(path), "r") as f:
        assert f.attrs["hepgen_n_done"] == 384
    monkeypatch.undo()  # space is back
    res = _stream(path, resume=True)
    assert res["n_resumed_from"] == 384
    ref, got = _datasets(tmp_path / "ref.h5"), _datasets(path)
    assert sorted(ref) == sorted(got) == ["incident_energies", "incident_theta", "showers"]
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
        assert got[key].dtype == ref[key].dtype


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "_write_chunk", _failing_writer(1, 128, OSError(errno.EIO, "Input/output error")))
    with pytest.raises(OSError, match="Input/output error"):
        _stream(tmp_path / "gen.h5")
    assert disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded"), "o.h5").args[0] == \
        "o.h5: disk quota exceeded while writing"
    assert disk_full_error(RuntimeError("Can't close dataset (errno = 2, 'No such file')"), "o.h5") is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("flat_model")
    geometry = CylindricalBinning.regular(3, [0, 5, 10, 20], n_alpha=2)
    data = simulate_dataset(400, geometry=geometry, energy_range=(2e3, 5e4), seed=2)
    config = TrainConfig(model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=1, seed=0)
    train(data, config, d / "run", progress=False)
    return d / "run" / "best.pt"


def test_cli_sample_on_a_full_disk_one_line_error_then_resume(tiny_run, tmp_path, monkeypatch, capsys):
    args = ["sample", str(tiny_run), "--n", "500", "--chunk-size", "100", "--seed", "4", "-q"]
    assert main([*args, "-o", str(tmp_path / "full.h5")]) == 0
    out = tmp_path / "gen.h5"
    monkeypatch.setattr(stream, "_write_chunk", _failing_writer(2, 100, OSError(errno.ENOSPC, "No space left")))
    capsys.readouterr()
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"hepgen: error: {out}: no space left on device while writing; the 200 showers finished")
    assert "--resume" in err and not out.exists() and partial_path(out).exists()
    monkeypatch.undo()
    assert main([*args, "-o", str(out), "--resume"]) == 0
    assert "resumed at 200" in capsys.readouterr().out
    ref, got = _datasets(tmp_path / "full.h5"), _datasets(out)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
    assert read_showers(out).attrs["hepgen_n_done"] == 500
    assert json.loads(read_showers(out).attrs["hepgen_job"])["n"] == 500


_FULL_DISK_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from hepgen.data.stream import EnergyRangeConditions, chunk_seed, stream_showers

    def sample_chunk(energies, conditions, index):
        rng = np.random.default_rng(chunk_seed(7, index))
        return rng.random((len(energies), 64), dtype=np.float32)

    path, resume = sys.argv[1], sys.argv[2] == "resume"
    try:
        res = stream_showers(path, 20_000, sample_chunk, EnergyRangeConditions(1e3, 1e4, seed=7), n_voxels=64,
                             seed=7, chunk_size=500, compression=None, resume=resume)
        print("done", res["n_resumed_from"])
    except ValueError as err:
        print("error", err)
""")


def _unshare_works(tmp_path) -> bool:
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"], capture_output=True)
    return probe.returncode == 0


def test_a_real_full_file_system_then_resume(tmp_path):
    """A 1 MiB tmpfs in a user and mount namespace (no root needed where unprivileged user namespaces are
    allowed; skipped elsewhere): HDF5's own write fails with ENOSPC; one error, no crash (with HDF5's chunk
    cache the failed flush on close segfaulted h5py 3.16 / HDF5 2.0), then the tmpfs grows to 16 MiB and the
    resumed file equals an uninterrupted one (written outside the tmpfs)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _unshare_works(mnt):
        pytest.skip("no unprivileged user+mount namespaces (unshare) here")
    env = {**os.environ, "PYTHONPATH": str(Path(stream.__file__).parents[2])}
    (tmp_path / "full.py").write_text(_FULL_DISK_SCRIPT)
    py = f"{shlex.quote(sys.executable)} {tmp_path / 'full.py'}"
    out = mnt / "gen.h5"
    script = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && {py} {out} new; echo rc=$?; "
              f"mount -o remount,size=16m {mnt} && {py} {out} resume; echo rc=$?; cp {out} {tmp_path / 'got.h5'}")
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                         capture_output=True, text=True, env=env, timeout=300)
    lines = res.stdout.splitlines()
    assert len(lines) == 4, (res.stdout, res.stderr)
    first, rc1, second, rc2 = lines
    assert rc1 == rc2 == "rc=0", (res.stdout, res.stderr)  # no segmentation fault (rc=139)
    assert first.startswith(f"error {out}: no space left on device while writing; the ")
    done = int(first.split("; the ")[1].split(" ")[0])
    assert 0 < done < 20_000 and done % 500 == 0
    assert second == f"done {done}"
    subprocess.run([sys.executable, str(tmp_path / "full.py"), str(tmp_path / "ref.h5"), "new"], env=env, check=True,
                   capture_output=True)
    ref, got = _datasets(tmp_path / "ref.h5"), _datasets(tmp_path / "got.h5")
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
