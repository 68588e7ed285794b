"""L1 events: ADC2021 layout and padding, the one-lepton pre-selection, HDF5 I/O, the object model."""

import h5py
import numpy as np
import pytest

from hepgen.data.l1 import (
    N_FEATURES,
    L1Events,
    is_l1_file,
    layout_event,
    one_lepton_preselection,
    read_l1,
    validate_l1,
    write_l1,
)
from hepgen.simulate.l1 import L1ObjectModel, event_objects, split_counts


def test_layout_slots_sorting_truncation_and_padding():
    electrons = [(10.0, 0.1, 0.2), (50.0, -0.3, 1.0), (5.0, 2.0, -1.0), (30.0, 0.0, 0.0), (7.0, 1.0, 1.0)]
    muons = [(4.0, 1.0, -3.0)]
    jets = [(float(pt), 0.5, -0.5) for pt in range(20, 140, 10)]  # 12 jets: 10 kept
    ev = layout_event((45.0, -2.0), electrons, muons, jets)
    assert ev.shape == (19, 3) and ev.dtype == np.float32
    assert ev[0].tolist() == [45.0, 0.0, -2.0]
    # e/γ: the 4 leading by pT; the 5 GeV one is dropped
    np.testing.assert_allclose(ev[1:5, 0], [50.0, 30.0, 10.0, 7.0])
    np.testing.assert_allclose(ev[1], [50.0, -0.3, 1.0], rtol=1e-6)
    # muons: one object then padding
    np.testing.assert_allclose(ev[5], [4.0, 1.0, -3.0], rtol=1e-6)
    assert np.all(ev[6:9] == 0)
    # jets: the 10 leading of 12, descending
    np.testing.assert_allclose(ev[9:19, 0], np.arange(130, 30, -10))
    # the flat view is object-major
    flat = L1Events(ev[None], np.array([0]), ("x",)).features
    assert flat.shape == (1, N_FEATURES)
    np.testing.assert_allclose(flat[0, 3:6], ev[1])
    np.testing.assert_allclose(flat[0, 27:30], ev[9])


def test_layout_empty_event_is_all_zero_and_bad_objects_refused():
    assert np.all(layout_event(None, [], [], []) == 0)
    with pytest.raises(ValueError, match=r"layout_event: muons: expected finite \(pT > 0, eta, phi\) triples, "
                                         r"found \[\[-1.0, 0.0, 0.0\]\]"):
        layout_event(None, [], [(-1.0, 0.0, 0.0)], [])
    with pytest.raises(ValueError, match=r"layout_event: met: expected \(\|MET\| >= 0, phi\), found \(nan, 0.0\)"):
        layout_event((float("nan"), 0.0), [], [], [])


@pytest.mark.parametrize("electrons, muons, passed", [
    ([(23.5, 2.9, 0.0)], [], True),           # electron above 23 GeV inside |eta| < 3
    ([(22.9, 0.0, 0.0)], [], False),          # below threshold
    ([(23.0, 0.0, 0.0)], [], False),          # threshold is strict: pT > 23
    ([(40.0, 3.1, 0.0)], [], False),          # outside the e acceptance
    ([], [(30.0, 2.0, 0.0)], True),           # muon inside |eta| < 2.1
    ([], [(30.0, 2.2, 0.0)], False),          # muon outside 2.1 (an electron at 2.2 would pass)
    ([(10.0, 0.0, 0.0)], [(10.0, 0.0, 0.0), (24.0, -1.0, 1.0)], True),  # the second muon fires
])
def test_one_lepton_preselection(electrons, muons, passed):
    ev = layout_event((100.0, 0.0), electrons, muons, [(200.0, 0.0, 1.0)])
    assert bool(one_lepton_preselection(ev)) is passed
    assert one_lepton_preselection(np.stack([ev, ev])).tolist() == [passed, passed]


def test_preselection_bad_shape():
    with pytest.raises(ValueError, match=r"one_lepton_preselection: expected shape \(N, 19, 3\), found \(2, 57\)"):
        one_lepton_preselection(np.zeros((2, 57)))


def _sample():
    a = layout_event((10.0, 1.0), [(30.0, 0.5, 0.5)], [], [(20.0, 1.0, 1.0)])
    b = layout_event((20.0, -1.0), [], [(40.0, -0.5, 2.0)], [])
    return L1Events(np.stack([a, b, a]), np.array([0, 1, 1]), ("W_lnu", "A_4l"), {"seed": 3, "note": "toy"})


def test_io_round_trip_subset_concatenate(tmp_path):
    data = _sample()
    path = tmp_path / "l1.h5"
    write_l1(path, data)
    assert is_l1_file(path)
    back = read_l1(path)
    np.testing.assert_array_equal(back.objects, data.objects)
    assert back.process.tolist() == [0, 1, 1] and back.processes == ("W_lnu", "A_4l")
    assert back.attrs["seed"] == 3 and back.attrs["note"] == "toy"
    with h5py.File(path) as f:
        assert f.attrs["kind"] == "l1"
    assert len(read_l1(path, process="A_4l")) == 2
    sub = data.subset(np.array([2, 0]))
    assert len(sub) == 2 and sub.process.tolist() == [1, 0]
    other = L1Events(data.objects[:1], np.array([0]), ("A_4l",))
    joined = L1Events.concatenate([data, other])
    assert joined.processes == ("W_lnu", "A_4l") and joined.process.tolist() == [0, 1, 1, 1]
    assert joined.process_names.tolist() == ["W_lnu", "A_4l", "A_4l", "A_4l"]


def test_bad_files_and_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5: L1 events file not found"):
        read_l1(tmp_path / "nope.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["kind"] = "jets"
        f["objects"] = np.zeros((1, 19, 3))
    assert not is_l1_file(other)
    with pytest.raises(ValueError, match=r"other.h5: attribute 'kind': expected 'l1', found 'jets'"):
        read_l1(other)
    nokey = tmp_path / "nokey.h5"
    with h5py.File(nokey, "w") as f:
        f.attrs["kind"] = "l1"
        f["objects"] = np.zeros((1, 19, 3))
    with pytest.raises(ValueError, match=r"nokey.h5: key 'process': missing \(found keys \['objects'\]\)"):
        read_l1(nokey)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5: not a readable HDF5 file"):
        read_l1(text)
    d = _sample()
    d.objects[1, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"x.h5: key 'objects': expected eta = 0 in the MET slot 0, found event 1"):
        validate_l1(d, "x.h5")
    d = _sample()
    d.objects[0, 12, 0] = -3.0
    with pytest.raises(ValueError, match=r"x.h5: key 'objects': expected pT >= 0, found event 0 slot 12"):
        validate_l1(d, "x.h5")
    with pytest.raises(ValueError, match=r"x.h5: key 'objects': expected shape \(N, 19, 3\), found \(2, 57\)"):
        validate_l1(L1Events(np.zeros((2, 57)), np.zeros(2), ("a",)), "x.h5")
    d = _sample()
    d.process[0] = 5
    with pytest.raises(ValueError, match=r"x.h5: key 'process': expected indices 0 … 1 into \['W_lnu', 'A_4l'\], "
                                         r"found 1 … 5"):
        validate_l1(d, "x.h5")
    with pytest.raises(ValueError, match=r"process 'QCD' not in this sample; known: \['W_lnu', 'A_4l'\]"):
        _sample().of_process("QCD")


def test_object_model_isolation_overlap_met_without_smearing():
    # pid, pt, eta, phi of stable visible particles
    pid = np.array([11, 211, 13, 211, 22, 211])
    pt = np.array([30.0, 10.0, 25.0, 1.0, 50.0, 60.0])
    eta = np.array([0.0, 0.1, 1.0, 1.1, -2.0, 3.5])
    phi = np.array([0.0, 0.1, 2.0, 2.0, -1.0, 0.0])
    # electron: 10 GeV of pions inside 0.3 → 10/30 > 0.15, not isolated; muon: 1/25 < 0.25 isolated;
    # photon: isolated; jets: one at the electron (kept: the electron is not selected), one on the
    # photon (removed by overlap), one at eta 4.2 (outside 4.0), one of 12 GeV (below 15)
    jets = np.array([[41.0, 0.05, 0.05], [50.0, -2.0, -1.0], [60.0, 4.2, 0.0], [12.0, 0.0, 3.0]])
    ev = event_objects(pid, pt, eta, phi, jets, rng=None)
    np.testing.assert_allclose(ev[1], [50.0, -2.0, -1.0])   # the photon is the only e/γ
    assert np.all(ev[2:5] == 0)
    np.testing.assert_allclose(ev[5], [25.0, 1.0, 2.0])     # the muon
    np.testing.assert_allclose(ev[9], [41.0, 0.05, 0.05], rtol=1e-6)
    assert np.all(ev[10:] == 0)
    # MET: minus the vector sum of all particles with |eta| < 5
    px, py = (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum()
    np.testing.assert_allclose(ev[0], [np.hypot(px, py), 0.0, np.arctan2(-py, -px)], rtol=1e-5)


def test_object_model_smearing_is_seeded_and_moves_thresholds():
    m = L1ObjectModel()
    args = (np.array([13]), np.array([30.0]), np.array([0.0]), np.array([1.0]), np.zeros((0, 3)))
    a = event_objects(*args, rng=np.random.default_rng(1), model=m)
    b = event_objects(*args, rng=np.random.default_rng(1), model=m)
    c = event_objects(*args, rng=np.random.default_rng(2), model=m)
    np.testing.assert_array_equal(a, b)
    assert a[5, 0] != c[5, 0] and a[5, 0] != 30.0
    # 15 % resolution: over many seeds the smeared pT has mean ≈ 30 and std ≈ 4.5
    pts = [event_objects(*args, rng=np.random.default_rng(s), model=m)[5, 0] for s in range(400)]
    assert abs(np.mean(pts) - 30.0) < 0.6 and abs(np.std(pts) - 4.5) < 0.6


def test_split_counts():
    assert split_counts(10, {"a": 0.5, "b": 0.3, "c": 0.2}) == {"a": 5, "b": 3, "c": 2}
    assert sum(split_counts(7, {"a": 0.592, "b": 0.338, "c": 0.067, "d": 0.003}).values()) == 7
