"""Tests of the Auger-like toy (hepgen.simulate.auger_toy) and the traces container (hepgen.data.traces)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hepgen.data.traces import TraceData, is_traces_file, kind, read_traces, write_traces
from hepgen.refine.adapters import get_adapter
from hepgen.simulate.auger_toy import AugerToyConfig, simulate_auger, simulate_auger_file


def test_toy_is_seeded_and_shaped():
    a, b = simulate_auger(20, "sim", seed=3), simulate_auger(20, "sim", seed=3)
    np.testing.assert_array_equal(a.traces, b.traces)
    assert a.traces.shape == (20, 9, 9, 80) and a.energy.shape == (20, 1) and kind == "traces"
    assert not np.array_equal(a.traces, simulate_auger(20, "sim", seed=4).traces)
    assert np.all((a.energy >= 3.0) & (a.energy <= 100.0))
    assert np.all((a.zenith >= 0) & (a.zenith <= np.radians(60)))


def test_toy_modes_have_the_study_mismatch():
    """Same seed = same showers (energies, angles, cores): data has muon-richer, spikier traces and
    more noise.  Baseline noise: a triggered station's last bins are noise only (EM and muons have
    long arrived), with σ 0.03 (sim) and 0.08 VEM (data) by construction."""
    s, d = simulate_auger(200, "sim", seed=5), simulate_auger(200, "data", seed=5)
    np.testing.assert_array_equal(s.energy, d.energy)
    assert AugerToyConfig.for_mode("sim").em_fraction == 0.7 and AugerToyConfig.for_mode("data").em_fraction == 0.3

    def tail_noise(t):
        live = np.any(t != 0, axis=-1)
        return t[live][:, -10:].std()

    assert tail_noise(s.traces) == pytest.approx(0.03, rel=0.15)
    assert tail_noise(d.traces) == pytest.approx(0.08, rel=0.15)
    a = get_adapter("traces")
    rs, rd = a.summaries(s)["risetime_10_50"], a.summaries(d)["risetime_10_50"]
    assert rd.mean() < rs.mean()  # muons arrive earlier and sharper than the EM component


def test_traces_round_trip(tmp_path):
    d = simulate_auger(5, "data", seed=1)
    write_traces(tmp_path / "t.h5", d)
    back = read_traces(tmp_path / "t.h5")
    np.testing.assert_array_equal(back.traces, d.traces)
    np.testing.assert_array_equal(back.zenith, d.zenith)
    assert back.layout() == d.layout() and back.attrs["mode"] == "data" and is_traces_file(tmp_path / "t.h5")


def test_chunked_file_is_resumable_and_independent_of_workers(tmp_path):
    out = simulate_auger_file(25, tmp_path / "a.h5", mode="sim", seed=2, chunk_size=10, progress=False)
    again = simulate_auger_file(25, tmp_path / "b.h5", mode="sim", seed=2, chunk_size=10, progress=False)
    a, b = read_traces(out), read_traces(again)
    assert len(a) == 25 and a.attrs["n_chunks"] == 3
    np.testing.assert_array_equal(a.traces, b.traces)
    assert not (tmp_path / ".a.h5.chunks").exists()


def test_bad_trace_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.h5: file not found$"):
        read_traces(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["traces"] = np.zeros((2, 9, 9, 80))
        f["energy"] = np.ones((2, 1))
    with pytest.raises(ValueError, match=r"bad\.h5: missing dataset 'zenith'; expected 'traces', 'energy' and 'zenith'"):
        read_traces(tmp_path / "bad.h5")
    bad = TraceData(np.zeros((2, 9, 9, 80)), [[1.0], [-1.0]], [[0.1], [0.1]])
    with pytest.raises(ValueError, match=r"x\.h5: key 'energy': expected energies > 0 EeV, found minimum -1$"):
        write_traces(tmp_path / "x.h5", bad)
    with pytest.raises(ValueError, match=r"^mode: expected one of \['data', 'sim'\], found 'mc'$"):
        simulate_auger(2, "mc")
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, found -1$"):
        simulate_auger(-1)
