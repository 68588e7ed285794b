"""JetNet-layout jet files: round trips, the public layout, and every bad-input case."""

import h5py
import numpy as np
import pytest

from hepgen.data.jets import (
    JET_TYPES,
    JetData,
    jet_type_index,
    read_jets,
    validate_jets,
    write_jets,
)


def _jets(n=12, p=8, seed=0, with_type=True):
    """Random zero-padded jets: k_i constituents sorted by pT_rel, the rest zeros."""
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, p, 4), dtype=np.float32)
    k = rng.integers(1, p + 3, n)  # some jets have more constituents than slots
    for i in range(n):
        m = min(k[i], p)
        pf[i, :m, 0] = rng.normal(0, 0.1, m)
        pf[i, :m, 1] = rng.normal(0, 0.1, m)
        pf[i, :m, 2] = np.sort(rng.exponential(0.05, m))[::-1]
        pf[i, :m, 3] = 1
    jf = np.stack([rng.uniform(800, 1600, n), rng.normal(0, 1, n), rng.uniform(10, 200, n), k], axis=1)
    jt = rng.integers(0, 5, n) if with_type else None
    return JetData(pf, jf, jt, {"generator": "test", "seed": 3})


def test_round_trip(tmp_path):
    d = _jets()
    write_jets(tmp_path / "j.h5", d)
    r = read_jets(tmp_path / "j.h5")
    np.testing.assert_array_equal(r.particle_features, d.particle_features)
    np.testing.assert_allclose(r.jet_features, d.jet_features, rtol=1e-6)  # stored as float32
    np.testing.assert_array_equal(r.jet_type, d.jet_type)
    assert r.attrs["generator"] == "test" and r.attrs["seed"] == 3 and r.attrs["units"] == "GeV"
    with h5py.File(tmp_path / "j.h5") as f:  # the public JetNet names, shapes and dtypes
        assert f["particle_features"].shape == (12, 8, 4) and f["particle_features"].dtype == np.float32
        assert f["jet_features"].shape == (12, 4)
    # the leading-N cut keeps the first slots
    r4 = read_jets(tmp_path / "j.h5", n_particles=4)
    np.testing.assert_array_equal(r4.particle_features, d.particle_features[:, :4])


def test_public_layout_reader(tmp_path):
    """A file as on Zenodo: no jet_type dataset, the type in the file name."""
    d = _jets(with_type=False)
    for name in ("t.hdf5", "g150.hdf5", "mine.hdf5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["particle_features"] = d.particle_features
            f["jet_features"] = d.jet_features.astype(np.float32)
    assert set(read_jets(tmp_path / "t.hdf5").jet_type) == {JET_TYPES.index("t")}
    assert set(read_jets(tmp_path / "g150.hdf5").jet_type) == {0}
    assert set(read_jets(tmp_path / "mine.hdf5").jet_type) == {-1}
    assert set(read_jets(tmp_path / "mine.hdf5", jet_type="W").jet_type) == {3}
    # jetnet's getData order: 5 jet features with the class index first
    with h5py.File(tmp_path / "five.h5", "w") as f:
        f["particle_features"] = d.particle_features
        f["jet_features"] = np.concatenate([np.full((len(d), 1), 4.0), d.jet_features], axis=1)
    r = read_jets(tmp_path / "five.h5")
    assert set(r.jet_type) == {4}
    np.testing.assert_allclose(r.jet_features, d.jet_features)
    # three particle features, no mask: zero padding marks the absent particles
    with h5py.File(tmp_path / "nomask.h5", "w") as f:
        f["particle_features"] = d.particle_features[..., :3]
    r = read_jets(tmp_path / "nomask.h5")
    np.testing.assert_array_equal(r.particle_features, d.particle_features)
    assert r.jet_features is None


def test_helpers():
    d = _jets(n=30)
    assert d.n_particles == 8 and d.particles.shape == (30, 8, 3)
    np.testing.assert_array_equal(d.mask, d.particle_features[..., 3] == 1)
    t = d.of_type("top")
    assert len(t) == int((d.jet_type == 2).sum()) and set(t.jet_type) <= {2}
    both = JetData.concatenate([d, t])
    assert len(both) == len(d) + len(t)
    assert [jet_type_index(x) for x in ("gluon", "Q", "top", "W", "z")] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="jet type 'h'"):
        jet_type_index("h")


@pytest.mark.parametrize("mutate, match", [
    (lambda d: setattr(d, "particle_features", d.particle_features[..., :3]), r"expected shape \(N, n_particles, 4\)"),
    (lambda d: d.particle_features.__setitem__((0, 0, 3), 0.5), "mask .* 0 or 1"),
    (lambda d: d.particle_features.__setitem__((0, -1, 0), 0.3), "all-zero features where mask = 0"),
    (lambda d: d.particle_features.__setitem__((2, 0, 2), -0.1), "pt_rel >= 0"),
    (lambda d: d.particle_features.__setitem__((1, 0, 0), np.nan), "NaN/Inf in 1 jet"),
    (lambda d: setattr(d, "jet_features", d.jet_features[:, :3]), r"'jet_features': expected shape \(12, 4\)"),
    (lambda d: d.jet_features.__setitem__((0, 3), 0), "num_particles"),
    (lambda d: d.jet_features.__setitem__((0, 2), -1), "mass >= 0"),
    (lambda d: d.jet_type.__setitem__(0, 7), "'jet_type'"),
])
def test_validation_errors(mutate, match):
    d = _jets()
    d.particle_features[0, -1] = 0  # jet 0: last slot is padding
    d.jet_features[0, 3] = max(d.jet_features[0, 3], 1)
    mutate(d)
    with pytest.raises(ValueError, match=match):
        validate_jets(d, "x.h5")


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_jets(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="expected an HDF5 file"):
        read_jets(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["showers"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"missing dataset 'particle_features'.*found keys \['showers'\]"):
        read_jets(tmp_path / "other.h5")
    write_jets(tmp_path / "ok.h5", _jets())
    with pytest.raises(ValueError, match="n_particles: expected 1 … 8"):
        read_jets(tmp_path / "ok.h5", n_particles=9)
    # a failed write leaves no file behind
    bad = _jets()
    bad.particle_features[0, 0, 3] = 0.5
    with pytest.raises(ValueError):
        write_jets(tmp_path / "bad.h5", bad)
    assert not (tmp_path / "bad.h5").exists() and not list(tmp_path.glob(".bad.h5*"))
