"""Pythia 8 + the L1 object model: pre-selection holds, seeds reproduce, chunks resume."""

import json

import numpy as np
import pytest

from hepgen.data.l1 import one_lepton_preselection, read_l1
from hepgen.simulate.l1 import (
    PROCESSES,
    SIGNALS,
    SM_FRACTIONS,
    L1ObjectModel,
    generate_l1,
    l1_pythia_settings,
    simulate_l1,
)

SMALL = L1ObjectModel(events_per_batch=10)  # small Pythia batches: tests generate few events


def test_generate_w_events_pass_preselection_and_reproduce():
    a = generate_l1("W_lnu", 8, seed=5, model=SMALL)
    b = generate_l1("W_lnu", 8, seed=5, model=SMALL)
    np.testing.assert_array_equal(a.objects, b.objects)
    assert len(a) == 8 and a.processes == ("W_lnu",)
    assert np.all(one_lepton_preselection(a.objects))
    assert a.attrs["n_generated"] >= 8
    assert np.all(a.objects[:, 0, 0] > 0)                           # MET present
    assert np.all(np.abs(a.objects[:, 9:, 1]) < 4.0)                # jet acceptance
    assert np.all(a.objects[:, 9:, 0][a.objects[:, 9:, 0] > 0] > 15.0)


def test_simulate_mix_and_signal_files(tmp_path):
    out = tmp_path / "sig.h5"
    d = simulate_l1(out, 6, ("A_4l",), seed=1, model=SMALL, chunk_size=3, progress=False)  # 2 chunks
    back = read_l1(out)
    assert len(back) == 6 and back.processes == ("A_4l",)
    eff = json.loads(back.attrs["preselection_efficiency"])
    assert 0 < eff["A_4l"] <= 1
    # A → 4ℓ: most events have ≥ 2 leptons
    n_lep = (back.objects[:, 1:9, 0] > 0).sum(axis=1)
    assert np.mean(n_lep >= 2) > 0.5
    np.testing.assert_array_equal(d.objects, back.objects)
    assert not (tmp_path / ".sig.h5.chunks").exists()


def test_settings_and_bad_input():
    assert set(SIGNALS) | set(SM_FRACTIONS) == set(PROCESSES)
    assert abs(sum(SM_FRACTIONS.values()) - 1) < 1e-9
    lines = l1_pythia_settings("LQ_btau", 7)
    assert "42:m0 = 80" in lines and "Random:seed = 7" in lines
    with pytest.raises(ValueError, match=r"process: expected one of \['W_lnu', .*\], found 'Zprime'"):
        l1_pythia_settings("Zprime", 1)
    with pytest.raises(ValueError, match=r"processes: expected names from .* or 'sm'/'signals', found 'x'"):
        simulate_l1("/nonexistent/x.h5", 5, ("x",))
    with pytest.raises(ValueError, match=r"seed: expected 1 … 900000000 \(Pythia's range\), found 0"):
        generate_l1("W_lnu", 1, seed=0)
