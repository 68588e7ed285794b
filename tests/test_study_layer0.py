"""benchmarks/study_layer0.py (issue 14): radial profile, widths and the real-vs-generated summary,
on hand-built showers."""

import numpy as np
import pytest

from _benchmarks import load_benchmark

from hepgen.data.formats import ShowerData
from hepgen.data.geometry import CylindricalBinning

GEO = CylindricalBinning.regular(2, [0.0, 4.0, 8.0, 16.0], n_alpha=2)   # centres 2, 6, 12 mm


@pytest.fixture(scope="module")
def study():
    return load_benchmark("study_layer0")


def test_radial_profile_and_width_hand_worked(study):
    # voxel order radial-fastest, then angular, then layer: layer 0 = [a0: r0 r1 r2, a1: r0 r1 r2]
    s = np.zeros((1, 12))
    s[0, 0], s[0, 5] = 3.0, 1.0          # layer 0: 3 MeV at r = 2 mm (alpha 0), 1 MeV at r = 12 mm (alpha 1)
    s[0, 7] = 2.0                        # layer 1: 2 MeV at r = 6 mm (alpha 0)
    np.testing.assert_allclose(study.radial_profile(s, GEO), [[[3.0, 0.0, 1.0], [0.0, 2.0, 0.0]]])
    f = study.layer_features(s, GEO)
    # layer 0: mean r = (3·2 + 12)/4 = 4.5, <r²> = (3·4 + 144)/4 = 39, width = sqrt(39 − 20.25) = 4.3301
    np.testing.assert_allclose(f[0], [np.log(4.001), np.log(2.001), np.sqrt(18.75), 0.0], rtol=1e-9)


def test_compare_identical_sets_and_an_emptied_outer_bin(study):
    rng = np.random.default_rng(0)
    s = rng.exponential(1.0, (400, 12)) * (rng.uniform(size=(400, 12)) < 0.6)
    wide = CylindricalBinning.regular(2, [0.0, 4.0, 8.0, 60.0], n_alpha=2)   # outer centre 34 mm
    real = ShowerData(s, np.full(400, 10.0), {}, wide, {})
    same = study.compare(real, s)
    assert same["occupancy_l0_gen"] == same["occupancy_l0_real"]
    assert same["pearson_l0_rows_max_abs_diff"] == pytest.approx(0.0, abs=1e-12)
    emptied = s.copy()
    emptied[:, [2, 5]] = 0.0                           # layer 0's outer radial bin, both angular bins
    out = study.compare(real, emptied)
    assert out["occupancy_l0_gen"][2] == 0.0 and out["occupancy_l0_real"][2] == pytest.approx(
        (s[:, [2, 5]] > 0.01).mean(), abs=1e-4)
    assert out["width_r0_above_10mm_real"] > 0 and out["width_r0_above_10mm_gen"] == 0.0
