"""The generator-level b-quark filter of the ttH/ttbb simulation (hepgen.simulate.tth): hand-made
Pythia event records, and a few real Pythia events checked against their weakly decaying b hadrons."""

import awkward as ak
import numpy as np
import pytest

pythia8mc = pytest.importorskip("pythia8mc")

from hepgen.simulate.tth import (  # noqa: E402
    TTHGenConfig,
    _BQuarkFilter,
    count_final_b_quarks,
    generate_tth,
    pythia_settings,
)

# weakly decaying b hadrons (PDG): B0, B+, Bs, Bc, Λb, Ξb0, Ξb-, Ωb
_WEAK_B = {511, 521, 531, 541, 5122, 5232, 5132, 5332}


def _event(entries):
    """A hand-made parton-level record: (pid, status) rows, one massive 10-GeV parton each."""
    ev = pythia8mc.Event()
    for pid, status in entries:
        ev.append(pid, status, 0, 0, 0, 0, 0, 0, 1.0, 2.0, 9.0, 10.0, 4.0)
    return ev


# tt̄ → b b̄ + W's: the top-decay b's radiated (negative-status copies, then final copies), a gluon
_TT = [(2212, -12), (2212, -12), (6, -22), (-6, -22), (5, -23), (-5, -23), (5, 51), (-5, 52), (21, 51),
       (1, 51), (-2, 51)]
# the same with a g → bb̄ splitting in the shower: the gluon is now a (negative) mother of b b̄
_TTBB = [*_TT[:8], (21, -51), (1, 51), (-2, 51), (5, 51), (-5, 51)]


def test_count_and_veto_on_hand_made_records():
    tt, ttbb = _event(_TT), _event(_TTBB)
    assert count_final_b_quarks(tt) == 2  # the intermediate b copies (status < 0) do not count
    assert count_final_b_quarks(ttbb) == 4
    hook = _BQuarkFilter(4)
    assert hook.canVetoPartonLevel()
    assert hook.doVetoPartonLevel(tt) is True  # too few b quarks: dropped
    assert hook.doVetoPartonLevel(ttbb) is False  # tt̄ + 2 extra b: kept
    assert (hook.tried, hook.vetoed) == (2, 1)
    # three final b quarks fail a 4-b filter and pass a 3-b one
    assert _BQuarkFilter(4).doVetoPartonLevel(_event(_TTBB[:-1])) is True
    assert _BQuarkFilter(3).doVetoPartonLevel(_event(_TTBB[:-1])) is False


def test_pythia_ttbb_kept_events_have_four_weak_b_hadrons():
    py = pythia8mc.Pythia("", False)
    for line in pythia_settings("ttbb", 11, TTHGenConfig()):
        assert py.readString(line)
    hook = _BQuarkFilter(4)
    py.setUserHooksPtr(hook)
    assert py.init()
    batch = py.nextBatch(4)
    assert len(batch) == 4
    # independent of the parton-level count: b number survives hadronisation and decays, so every
    # kept event has ≥ 4 weakly decaying b hadrons (2 from the tops, ≥ 2 extra) at hadron level
    n_weak_b = np.array([np.isin(np.abs(ak.to_numpy(ids)), list(_WEAK_B)).sum() for ids in batch.prt.id])
    assert (n_weak_b >= 4).all(), n_weak_b
    # ~ 93 % of tt̄ events have only the two top-decay b quarks: many events were vetoed to keep 4
    assert hook.tried == hook.vetoed + 4 and hook.vetoed >= 10


def test_filter_is_a_no_op_for_tth_and_recorded():
    on = generate_tth("tth", 1, seed=3, config=TTHGenConfig(min_b_quarks=4))
    off = generate_tth("tth", 1, seed=3, config=TTHGenConfig(min_b_quarks=0))
    # H → bb̄ + t t̄ → b b̄: four b quarks in every event (up to t → W s/d), the same events come out
    np.testing.assert_array_equal(on.values, off.values)
    assert off.attrs["n_vetoed"] == 0 and on.attrs["n_vetoed"] <= 0.01 * on.attrs["n_generated"]


def test_bad_min_b_quarks():
    with pytest.raises(ValueError, match=r"^min_b_quarks: expected an integer >= 0, found -1$"):
        TTHGenConfig(min_b_quarks=-1)
