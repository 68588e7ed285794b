"""Pythia 8 ttH simulation to a tabular file (hepgen.simulate.tth), on a handful of events."""

import numpy as np
import pytest

from hepgen.data.tabular import read_tabular
from hepgen.simulate.chunks import chunk_dir_for
from hepgen.simulate.tth import PROCESS_NAMES, TTHGenConfig, simulate_tth
from hepgen.simulate.tth_variables import HIGH_LEVEL


def test_simulate_tth_small_is_selected_and_merged(tmp_path):
    out = tmp_path / "tth.h5"
    simulate_tth(out, "tth", 2, seed=3, chunk_size=1, progress=False)
    back = read_tabular(out)
    assert back.columns == HIGH_LEVEL and len(back) == 2 and back.process_names == PROCESS_NAMES
    assert (back.process == 0).all() and back.attrs["n_generated"] >= 2 and back.attrs["cpu_seconds"] > 0
    assert not chunk_dir_for(out).exists()
    # ≥ 6 jets of pT > 25 GeV: H_T > 150 GeV; the Higgs candidate mass is positive
    assert (back.column("jet_sum_pt") > 150).all() and (back.column("m_bb_closest_125") > 0).all()
    assert np.all(np.abs(back.column("w_had_helicity")) <= 1)


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "x.h5"
    cdir = chunk_dir_for(out)
    cdir.mkdir()
    (cdir / "manifest.json").write_text('{"process": "ttbb"}')
    with pytest.raises(ValueError, match=r"holds chunks of an interrupted run with other settings"):
        simulate_tth(out, "tth", 2, seed=1, progress=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^process: expected one of \['tth', 'ttbb'\], found 'tt'$"):
        simulate_tth("x.h5", "tt", 2)
    with pytest.raises(ValueError, match=r"^min_jets: expected >= 6 \(the χ² assignment needs six jets\), found 4$"):
        TTHGenConfig(min_jets=4)
