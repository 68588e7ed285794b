"""The profile moments (`match_profile`; hepgen.refine.moments.ResponseMoments(cross=True))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.cli import main
from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.moments import ResponseMoments
from hepgen.refine.refiner import RefinerConfig, load_refiner, train_refiner
from hepgen.simulate.calorimeter import simulate_dataset

TINY = ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]
GROUPS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)     # three one-voxel "layers"


def _data(n=4000, rho=0.6, seed=0):
    """ln E_inc uniform in [7, 11]; log responses of groups 1 and 2 correlated with ρ, group 3 independent."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(7.0, 11.0, (n, 1))
    z1, z2, z3 = rng.standard_normal((3, n))
    q = np.stack([-2.0 + 0.1 * z1, -3.0 + 0.2 * (rho * z1 + np.sqrt(1 - rho**2) * z2), -4.0 + 0.3 * z3], 1)
    x = np.log1p(np.exp(q + y))                                       # E_g = E_inc · e^q, features log(1 + E)
    return x.astype(np.float32), y.astype(np.float32)


def test_cross_moments_fit_data_exactly_and_by_an_independent_least_squares():
    x, y = _data()
    m = ResponseMoments(GROUPS, y.mean(0), y.std(0), cross=True)
    m.fit(x, y)
    assert m.pairs.tolist() == [[0, 0, 1], [1, 2, 2]]
    # independent: numpy's least squares of the standardised residuals' products on [1, ŷ, ŷ² − 1]
    q = np.log1p(np.expm1(x.astype(np.float64))) - y                  # log(1 + E_g) − ln E_inc
    yn = (y[:, 0] - y.mean()) / y.std()
    a = np.stack([np.ones_like(yn), yn, yn**2 - 1], 1)
    res = q - a @ np.linalg.lstsq(a, q, rcond=None)[0]
    r = res / res.std(0, ddof=1)
    prod = np.stack([r[:, 0] * r[:, 1], r[:, 0] * r[:, 2], r[:, 1] * r[:, 2]], 1)
    np.testing.assert_allclose(m.coef_cross.numpy(), np.linalg.lstsq(a, prod, rcond=None)[0].T, rtol=1e-4, atol=1e-5)
    assert m.coef_cross[0, 0].item() == pytest.approx(0.6, abs=0.03)   # the correlation put in
    # the fitting sample satisfies every normal equation: its loss is zero
    assert m.loss(torch.from_numpy(x), torch.from_numpy(y)).item() < 1e-8


def test_cross_term_sees_a_lost_correlation_that_means_and_spreads_do_not():
    x, y = _data()
    plain, cross = (ResponseMoments(GROUPS, y.mean(0), y.std(0), cross=c) for c in (False, True))
    plain.fit(x, y)
    cross.fit(x, y)
    q = np.log(np.expm1(x.astype(np.float64))) - y                   # the log responses put in
    q[:, 1] = q[np.random.default_rng(1).permutation(len(q)), 1]     # same marginals, no correlation
    xs, ys = torch.from_numpy(np.log1p(np.exp(q + y)).astype(np.float32)), torch.from_numpy(y)
    assert plain.loss(xs, ys).item() < 0.01                           # each group's mean and spread still data's
    assert cross.loss(xs, ys).item() > 0.3                            # ≈ ρ² = 0.36 from the intercept term


def test_match_profile_refusals_and_cli(tmp_path, monkeypatch):
    x, y = _data(64)
    with pytest.raises(ValueError, match=r"^refiner config key 'match_profile': expected a number >= 0, found -1"):
        RefinerConfig(match_profile=-1)
    with pytest.raises(ValueError, match=r"^refiner config key 'match_profile': expected at least 2 sum groups "
                                         r"\(layers\) from the adapter and a label \(the incident energy\), found "
                                         r"None groups and 1 labels$"):
        train_refiner(x, y, x, y, RefinerConfig(match_profile=1.0, epochs=1, hidden=8, critic_hidden=8), progress=False)
    geo = CylindricalBinning.regular(3, [0.0, 10.0, 40.0], n_alpha=2)  # 3 layers × 4 voxels
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    calls = []                                                        # which moment terms training used
    loss = ResponseMoments.loss
    monkeypatch.setattr(ResponseMoments, "loss", lambda self, *a: calls.append(tuple(self.groups.shape)) or loss(self, *a))
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", *TINY, "--match-profile", "0.5"]) == 0
    _, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["match_profile"] == 0.5
    assert calls and set(calls) == {(4, 12)}                          # 3 layers and the total, every refiner step
