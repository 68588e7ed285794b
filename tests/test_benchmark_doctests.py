"""The docstring examples of the benchmark scripts (``benchmarks/`` is outside the suite's doctest
collection, ``testpaths``): each script's examples run here, with the number it holds as a floor so that
a script whose examples stop being found fails instead of passing with none. ``bench_events`` and
``profile_sampling`` run theirs in their own test files."""

import doctest

import pytest

from _benchmarks import load_benchmark

# script: examples it holds today (`grep -c ">>> "` counts example lines, testmod counts examples)
SCRIPTS = {"bench_anomaly": 5, "bench_jet_models": 3, "diag_refine_auger_stations": 2, "diagnose_jets": 11,
           "diagnose_showers": 7, "study_3dgan": 7,
           "study_hgcal": 9, "study_transfer": 1}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_benchmark_script_doctests(name):
    res = doctest.testmod(load_benchmark(name))
    assert res.failed == 0 and res.attempted >= SCRIPTS[name], (name, res)
