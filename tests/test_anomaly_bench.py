"""benchmarks/bench_anomaly.py: join_backgrounds, which makes one test background out of several
``hepgen simulate l1`` files (issue 19: a 20 000-event test sample from two seeds)."""

import json

import numpy as np
import pytest

from _benchmarks import load_benchmark
from _toy_l1 import toy_background
from hepgen.data.l1 import L1Events, read_l1, write_l1

def _sample(n, seed, names, cpu, counts, generated):
    d = toy_background(n, seed)
    proc = np.arange(n, dtype=np.int16) % len(names)
    return L1Events(d.objects, proc, tuple(names), {"seed": seed, "cpu_seconds": cpu, "counts": json.dumps(counts),
                                                     "n_generated": json.dumps(generated),
                                                     "preselection_efficiency": json.dumps({"W_lnu": 0.3})})


def test_join_two_files_sums_cpu_counts_and_keeps_events(tmp_path):
    bench = load_benchmark("bench_anomaly")
    a = _sample(5, 3, ["W_lnu", "QCD"], 10.0, {"W_lnu": 3, "QCD": 2}, {"W_lnu": 9, "QCD": 4})
    b = _sample(4, 4, ["QCD", "Z_ll"], 6.5, {"QCD": 2, "Z_ll": 2}, {"QCD": 5, "Z_ll": 3})
    # through files, as the bench reads them
    write_l1(tmp_path / "a.h5", a)
    write_l1(tmp_path / "b.h5", b)
    j = bench.join_backgrounds([read_l1(tmp_path / "a.h5"), read_l1(tmp_path / "b.h5")])
    assert len(j) == 9
    np.testing.assert_array_equal(j.objects, np.concatenate([a.objects, b.objects]))
    # process labels re-mapped onto the union of names, by name
    assert j.processes == ("W_lnu", "QCD", "Z_ll")
    names = [j.processes[i] for i in j.process]
    assert names == [a.processes[i] for i in a.process] + [b.processes[i] for i in b.process]
    # hand-summed attributes: 10.0 + 6.5 s; counts and generated per process
    assert j.attrs["cpu_seconds"] == pytest.approx(16.5, abs=1e-12)
    assert json.loads(j.attrs["counts"]) == {"W_lnu": 3, "QCD": 4, "Z_ll": 2}
    assert json.loads(j.attrs["n_generated"]) == {"W_lnu": 9, "QCD": 9, "Z_ll": 3}
    assert json.loads(j.attrs["seed"]) == [3, 4]
    assert "preselection_efficiency" not in j.attrs  # a ratio: not carried over
    # per accepted event, as the bench prints it: 16.5 s / 9 events
    assert j.attrs["cpu_seconds"] / len(j) == pytest.approx(16.5 / 9, rel=1e-12)


def test_join_drops_attributes_that_a_file_lacks():
    bench = load_benchmark("bench_anomaly")
    a = _sample(3, 1, ["W_lnu"], 2.0, {"W_lnu": 3}, {"W_lnu": 7})
    b = _sample(2, 2, ["W_lnu"], 1.0, {"W_lnu": 2}, {"W_lnu": 5})
    del b.attrs["cpu_seconds"], b.attrs["n_generated"]
    j = bench.join_backgrounds([a, b])
    assert "cpu_seconds" not in j.attrs and "n_generated" not in j.attrs  # not a partial sum
    assert json.loads(j.attrs["counts"]) == {"W_lnu": 5}
    assert a.attrs["cpu_seconds"] == 2.0  # inputs untouched


def test_join_one_file_is_that_file_and_none_is_an_error():
    bench = load_benchmark("bench_anomaly")
    a = _sample(3, 1, ["W_lnu"], 2.0, {"W_lnu": 3}, {"W_lnu": 7})
    assert bench.join_backgrounds([a]) is a
    with pytest.raises(ValueError, match="at least one background sample"):
        bench.join_backgrounds([])
