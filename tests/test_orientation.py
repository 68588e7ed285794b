"""The azimuthal symmetry of a cylindrical binning: its voxel permutations, and how far a sample of showers
is from it (``orientation_asymmetry``, a row of the evaluation; issue 14)."""

import numpy as np

from hepgen.data.geometry import CylindricalBinning, LayerBinning, default_binning
from hepgen.metrics.observables import orientation_asymmetry
from hepgen.simulate.calorimeter import simulate_dataset



def _angle(a):
    """Angles mod 2π in [0, 2π), rounded so that 2π - 1e-15 counts as 0."""
    return np.round(np.mod(a, 2 * np.pi), 9) % np.round(2 * np.pi, 9)


def test_orientations_are_the_rotations_and_mirror_images_of_the_binning():
    b = default_binning()                                   # 8 layers x 6 angular x 8 radial bins
    perms = b.orientations()
    assert perms.shape == (12, 384)
    np.testing.assert_array_equal(perms[0], np.arange(384))
    assert all(np.array_equal(np.sort(p), np.arange(384)) for p in perms)
    rows = {tuple(p) for p in perms}
    assert len(rows) == 12
    assert all(tuple(p[q]) in rows for p in perms for q in perms)          # closed: a group
    alpha, r, layer = b.voxel_alpha(), b.voxel_r(), b.voxel_layer()
    for j in range(6):
        p, mirror = perms[j], perms[6 + j]
        # the cell at v holds what was at p[v]: turned by j * 60°, same ring and layer
        np.testing.assert_array_equal(_angle(alpha - alpha[p]), _angle(np.full(384, j * np.pi / 3)))
        # ... and its mirror image: turned by j * 60°, then α → −α
        np.testing.assert_array_equal(_angle(alpha + alpha[mirror]), _angle(np.full(384, -j * np.pi / 3)))
        for q in (p, mirror):
            np.testing.assert_array_equal(r[q], r)
            np.testing.assert_array_equal(layer[q], layer)
    assert b.orientations(reflections=False).shape == (6, 384)
    np.testing.assert_array_equal(b.orientations(reflections=False), perms[:6])


def test_orientations_of_layers_with_different_angular_bins_turn_by_their_common_step():
    # 4 and 6 angular bins share the half turn only (gcd 2); a layer of one bin never moves
    b = CylindricalBinning((LayerBinning(0, (0.0, 5.0), 4), LayerBinning(1, (0.0, 5.0, 9.0), 1),
                            LayerBinning(2, (0.0, 5.0), 6)))
    perms = b.orientations()
    assert perms.shape == (4, 4 + 2 + 6)
    np.testing.assert_array_equal(perms[1], [2, 3, 0, 1, 4, 5, 9, 10, 11, 6, 7, 8])    # half a turn, by hand
    np.testing.assert_array_equal(perms[2], [3, 2, 1, 0, 4, 5, 11, 10, 9, 8, 7, 6])    # mirror image
    np.testing.assert_array_equal(perms[:, 4:6], [[4, 5]] * 4)
    one_bin = CylindricalBinning.regular(2, [0.0, 5.0, 10.0], n_alpha=1)
    np.testing.assert_array_equal(one_bin.orientations(), [np.arange(4)])


def test_orientation_asymmetry_is_zero_for_symmetrised_showers_and_large_for_a_broken_symmetry():
    b = default_binning()
    perms = b.orientations()
    data = simulate_dataset(300, geometry=b, energy_range=(2e3, 2e4), seed=3, progress=False).showers
    symmetric = np.concatenate([data[:, p] for p in perms])                # every orientation of every shower
    chi2, ndof = orientation_asymmetry(symmetric, perms)
    assert ndof == 8 * 8 * 5                                               # 64 orbits of 6 cells (live ones)
    assert chi2 < 1e-18
    broken = symmetric.copy()
    sector0 = (np.arange(384) % 48) < 8
    broken[:, sector0] *= 1.3                                              # sector 0 of every layer brighter
    chi2, ndof = orientation_asymmetry(broken, perms)
    assert chi2 / ndof > 5.0
    # the same showers, untouched, turned at random (a symmetric sample of its own): χ²/ndof near 1
    g = np.random.default_rng(1).integers(0, 12, len(data))
    chi2, ndof = orientation_asymmetry(np.take_along_axis(data, perms[g], axis=1), perms)
    assert 0.3 < chi2 / ndof < 2.0


def test_evaluation_reports_how_far_each_sample_is_from_the_azimuthal_symmetry(tmp_path):
    from hepgen.domains.showers.evaluate import evaluate, write_outputs

    b = CylindricalBinning.regular(2, [0.0, 8.0, 20.0], n_alpha=4)
    real = simulate_dataset(3000, geometry=b, energy_range=(2e3, 2e4), seed=5, progress=False)
    skewed = simulate_dataset(3000, geometry=b, energy_range=(2e3, 2e4), seed=6, progress=False)
    skewed.showers[:, [0, 1, 8, 9]] *= 1.3                                # sector 0 of both layers brighter
    m = evaluate(real, skewed, classifier=False, groups=["features", "physics"])
    oa = m["orientation_asymmetry"]
    assert oa["symmetry"] == "dihedral" and oa["n_orientations"] == 8
    perms = b.orientations()
    for key, data in (("real", real), ("generated", skewed)):
        chi2, ndof = orientation_asymmetry(data.showers, perms)
        assert oa[key] == {"chi2": chi2, "ndof": ndof, "chi2_per_ndof": chi2 / ndof}
    assert oa["real"]["chi2_per_ndof"] < 2.0 < 10.0 < oa["generated"]["chi2_per_ndof"]
    html = write_outputs(m, real, skewed, tmp_path).read_text()
    assert "azimuthal symmetry (8 turns and mirror images): cell-mean χ²/ndof" in html
