"""EventImages container and its HDF5 files."""

import h5py
import numpy as np
import pytest

from hepgen.data.events import EventImages, is_event_file, read_events, write_events


def _data(n=5):
    rng = np.random.default_rng(0)
    img = rng.exponential(1.0, (n, 1, 64, 64)).astype(np.float32) * (rng.random((n, 1, 64, 64)) < 0.05)
    cond = np.tile([[1400.0, 400.0, 0.0]], (n, 1))
    tj = np.zeros((n, 3, 4), np.float32)
    tj[:, 0] = [500.0, 0.1, 0.2, 80.0]
    return EventImages(img, cond, tj, np.zeros(n, np.int8), {"seed": 3})


def test_round_trip_and_subset(tmp_path):
    d = _data()
    path = tmp_path / "ev.h5"
    write_events(path, d)
    assert is_event_file(path)
    r = read_events(path)
    np.testing.assert_array_equal(r.images, d.images)
    np.testing.assert_array_equal(r.conditions, d.conditions)
    np.testing.assert_array_equal(r.truth_jets, d.truth_jets)
    assert r.attrs["seed"] == 3 and r.eta_max == 2.5 and r.shape == (1, 64, 64)
    with h5py.File(path) as f:
        assert f.attrs["kind"] == "events"
    s = d.subset([4, 1])
    assert len(s) == 2 and s.images[0].sum() == d.images[4].sum()
    both = EventImages.concatenate([s, d.subset(slice(0, 1))])
    assert len(both) == 3 and both.truth_jets.shape == (3, 3, 4)
    assert not list(tmp_path.glob(".ev.h5.*"))  # atomic write leaves no temporary file


def test_bad_inputs(tmp_path):
    d = _data()
    with pytest.raises(ValueError, match=r"<EventImages>: key 'conditions': expected shape \(5, 3\) "
                                         r"\[m_gluino, m_neutralino, mu\], found \(5, 2\)"):
        EventImages(d.images, d.conditions[:, :2])
    with pytest.raises(ValueError, match=r"key 'images': expected shape \(N, C, H, W\), found \(5, 64, 64\)"):
        EventImages(d.images[:, 0], d.conditions)
    neg = d.images.copy()
    neg[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="key 'images': expected finite energies >= 0 GeV, found min -1.0"):
        EventImages(neg, d.conditions)
    with pytest.raises(FileNotFoundError, match="nope.h5: event-image file not found"):
        read_events(tmp_path / "nope.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((1, 1, 2, 2))
        f.attrs["kind"] = "jets"
    assert not is_event_file(other)
    with pytest.raises(ValueError, match="other.h5: attribute 'kind': expected 'events', found 'jets'"):
        read_events(other)
    bad = tmp_path / "bad.h5"
    write_events(bad, d)
    with h5py.File(bad, "a") as f:
        del f["conditions"]
        f["conditions"] = np.zeros((5, 4))
    with pytest.raises(ValueError, match=r"bad.h5: key 'conditions': expected shape \(5, 3\)"):
        read_events(bad)
