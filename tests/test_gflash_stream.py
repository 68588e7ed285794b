"""``hepgen simulate showers`` (GFlash) chunk by chunk: the same showers as the in-memory simulator for one chunk,
seeded per chunk beyond, resumable after an interruption or a full disk, one chunk in memory."""

import errno

import numpy as np
import pytest

import hepgen.data.stream as stream
import hepgen.simulate.calorimeter as calorimeter
from hepgen.cli import main
from hepgen.data.formats import read_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.stream import chunk_seed, partial_path
from hepgen.simulate.calorimeter import simulate_dataset
from hepgen.simulate.gflash_stream import simulate_to_file

G = CylindricalBinning.regular(2, [0, 5, 10, 20], n_alpha=2)  # 12 voxels
KW = dict(geometry=G, energy_range=(2e3, 2e4), theta_range=(0.0, 0.2), position_range=(-3.0, 3.0))


def _same(a, b):
    np.testing.assert_array_equal(a.showers, b.showers)
    np.testing.assert_array_equal(a.incident_energies, b.incident_energies)
    assert sorted(a.conditions) == sorted(b.conditions)
    for key in a.conditions:
        np.testing.assert_array_equal(a.conditions[key], b.conditions[key])


def test_one_chunk_is_the_in_memory_simulator_and_later_chunks_have_their_own_seeds(tmp_path):
    simulate_to_file(tmp_path / "one.h5", 70, seed=5, chunk_size=100, **KW)
    got = read_showers(tmp_path / "one.h5")
    _same(got, simulate_dataset(70, seed=5, **KW))
    assert got.geometry.to_dict() == G.to_dict() and got.attrs["seed"] == 5
    assert got.attrs["generator"] == "hepgen.simulate.calorimeter" and got.attrs["hepgen_seed"] == 5
    simulate_to_file(tmp_path / "three.h5", 70, seed=5, chunk_size=30, **KW)
    three = read_showers(tmp_path / "three.h5")
    _same(three.subset(np.arange(30)), simulate_dataset(30, seed=5, **KW))
    _same(three.subset(np.arange(30, 60)), simulate_dataset(30, seed=chunk_seed(5, 1), **KW))
    _same(three.subset(np.arange(60, 70)), simulate_dataset(10, seed=chunk_seed(5, 2), **KW))
    assert len(np.unique(three.showers, axis=0)) == 70


def test_one_chunk_in_memory(tmp_path, monkeypatch):
    asked = []
    real = calorimeter.simulate_dataset

    def counting(n, **kw):
        asked.append(n)
        return real(n, **kw)

    monkeypatch.setattr(calorimeter, "simulate_dataset", counting)
    simulate_to_file(tmp_path / "a.h5", 250, seed=1, chunk_size=100, **KW)
    # one shower for the file's attributes, one for stream_showers' probe of the condition widths, then the chunks
    assert asked == [1, 1, 100, 100, 50]


def test_interrupted_or_disk_full_job_resumes_bit_identically(tmp_path, monkeypatch, capsys):
    args = ["simulate", "showers", "--n", "250", "--chunk-size", "60", "--seed", "3", "--binning", "{}",
            "--energy-range", "2000", "20000", "-q"]
    binning = tmp_path / "g.json"
    from hepgen.data.geometry import save_geometry

    save_geometry(G, binning)
    args[args.index("{}")] = str(binning)
    assert main([*args, "-o", str(tmp_path / "ref.h5")]) == 0
    ref = read_showers(tmp_path / "ref.h5")
    out = tmp_path / "gen.h5"
    # a full disk at the 3rd chunk: one line, the two finished chunks kept
    real_write = stream._write_chunk

    def full(f, start, stop, arrays):
        if start == 120:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(f, start, stop, arrays)

    monkeypatch.setattr(stream, "_write_chunk", full)
    capsys.readouterr()
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"hepgen: error: {out}: no space left on device while writing; the 120 showers finished before are "
                   f"kept in {partial_path(out)}; free some space and rerun the same command (it resumes unless "
                   "--no-resume) to continue\n")
    monkeypatch.undo()
    # then Ctrl-C in the 4th chunk
    real_sim = calorimeter.simulate_dataset

    def interrupted(n, **kw):
        if kw["seed"] == chunk_seed(3, 3):
            raise KeyboardInterrupt
        return real_sim(n, **kw)

    monkeypatch.setattr(calorimeter, "simulate_dataset", interrupted)
    assert main([*args, "-o", str(out)]) == 130
    assert not out.exists() and partial_path(out).exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "-o", str(out)]) == 0  # simulate resumes by default
    assert "(resumed at 180)" in capsys.readouterr().out
    _same(read_showers(out), ref)
    # --no-resume discards what an interrupted run left
    monkeypatch.setattr(calorimeter, "simulate_dataset", interrupted)
    assert main([*args, "-o", str(tmp_path / "x.h5")]) == 130
    monkeypatch.undo()
    assert main([*args, "-o", str(tmp_path / "x.h5"), "--no-resume"]) == 0
    assert "resumed" not in capsys.readouterr().out
    _same(read_showers(tmp_path / "x.h5"), ref)


def test_a_different_job_on_the_partial_file_is_refused(tmp_path, monkeypatch):
    def interrupted(n, **kw):
        if kw["seed"] != 1:
            raise KeyboardInterrupt
        return simulate_dataset(n, **kw)

    monkeypatch.setattr(calorimeter, "simulate_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        simulate_to_file(tmp_path / "a.h5", 100, seed=1, chunk_size=40, **KW)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="belongs to a different job"):
        simulate_to_file(tmp_path / "a.h5", 100, seed=1, chunk_size=40, **{**KW, "energy_range": (2e3, 3e4)})
    with pytest.raises(ValueError, match="n: expected a number of showers >= 1, found 0"):
        simulate_to_file(tmp_path / "b.h5", 0, **KW)
