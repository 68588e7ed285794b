"""Merging jet chunk files one at a time (``hepgen simulate jets``): the same file content as the in-memory
merge (``JetData.concatenate`` + ``write_jets``), with one part in memory."""

import h5py
import numpy as np
import pytest

import hepgen.data.jets as jets
from hepgen.data.jets import JetData, merge_jet_files, read_jets, write_jets


def _part(seed, n, jet_type, p=6):
    rng = np.random.default_rng(seed)
    k = rng.integers(1, p + 1, n)  # constituents per jet
    pf = np.zeros((n, p, 4), np.float32)
    for i in range(n):
        pf[i, : k[i], :3] = rng.normal(size=(k[i], 3)) * [0.2, 0.2, 0.0] + [0.0, 0.0, 1.0 / k[i]]
        pf[i, : k[i], 3] = 1.0
    jf = np.column_stack([rng.uniform(500, 1500, n), rng.normal(size=n), rng.uniform(10, 200, n), k + 2.0])
    return JetData(pf, jf, np.full(n, jet_type), {"n_events": int(seed * 10), "seconds": 0.5 * seed})


def _contents(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, {k: f.attrs[k] for k in f.attrs}


def test_merge_equals_the_in_memory_concatenation(tmp_path, monkeypatch):
    parts = [_part(1, 30, 0), _part(2, 25, 0), _part(3, 40, 2)]
    paths = []
    for i, d in enumerate(parts):
        paths.append(tmp_path / f"p{i}.h5")
        write_jets(paths[-1], d)
    attrs = {"seed": 7, "jet_types": "g,t"}
    write_jets(tmp_path / "memory.h5", JetData.concatenate(parts, attrs))
    held = []
    real_read = jets.read_jets
    monkeypatch.setattr(jets, "read_jets", lambda p: held.append(p) or real_read(p))
    res = merge_jet_files(tmp_path / "merged.h5", paths,
                          lambda pa: {**attrs, "n_events": sum(a["n_events"] for a in pa)})
    assert held == paths  # one part read at a time, in order
    assert res["n"] == 95 and res["n_particles"] == 6 and res["types_present"] == ["g", "t"]
    (a, a_attrs), (b, b_attrs) = _contents(tmp_path / "memory.h5"), _contents(tmp_path / "merged.h5")
    assert sorted(a) == sorted(b) == ["jet_features", "jet_type", "particle_features"]
    for key in a:
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])
    assert b_attrs.pop("n_events") == 60
    assert a_attrs == b_attrs
    d = read_jets(tmp_path / "merged.h5")
    assert len(d) == 95 and d.attrs["seed"] == 7


def test_merge_refuses_parts_that_disagree_and_writes_nothing(tmp_path):
    write_jets(tmp_path / "a.h5", _part(1, 10, 0, p=6))
    write_jets(tmp_path / "b.h5", _part(2, 10, 0, p=8))
    with pytest.raises(ValueError, match="b.h5: expected 6 particles per jet"):
        merge_jet_files(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "b.h5"], {})
    with pytest.raises(ValueError, match="expected at least one jet file to merge"):
        merge_jet_files(tmp_path / "m.h5", [], {})
    assert not (tmp_path / "m.h5").exists() and not list(tmp_path.glob(".m.h5*"))
