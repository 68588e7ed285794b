"""Generated showers given the azimuthal symmetry of their binning (``TrainConfig.symmetry``, issue 14)."""

import numpy as np
import pytest
import scipy.stats
import torch

from hepgen.config import TrainConfig
from hepgen.data.geometry import CartesianGrid, CylindricalBinning, default_binning, orientation_permutations
from hepgen.domains.showers import ShowerDomain
from hepgen.domains.showers.inference import ShowerSampler, build_sampler, normal_cdf, orient
from hepgen.domains.showers.preprocessing import ShowerPreprocessor, _expit
from hepgen.simulate.calorimeter import simulate_dataset


def test_orientation_permutations_by_name_and_bad_names_or_geometries():
    b = default_binning()
    assert orientation_permutations(b, "none") is None
    assert orientation_permutations(b, "rotations").shape == (6, 384)
    assert orientation_permutations(b, "dihedral").shape == (12, 384)
    with pytest.raises(ValueError, match=r"symmetry: expected one of 'none', 'rotations', 'dihedral', found 'mirror'"):
        orientation_permutations(b, "mirror")
    with pytest.raises(ValueError, match=r"needs a cylindrical binning, found a 'cartesian' geometry"):
        orientation_permutations(CartesianGrid(nx=3, ny=3, nz=2), "rotations")
    with pytest.raises(ValueError, match=r"key 'symmetry': expected one of"):
        TrainConfig(symmetry="mirror")
    with pytest.raises(ValueError, match=r"key 'augment_symmetry': expected a symmetry .* found symmetry 'none'"):
        TrainConfig(augment_symmetry=True)


def test_preprocessor_orients_keeps_its_orientations_and_rejects_bad_ones():
    perms = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])
    pre = ShowerPreprocessor([2, 2], orientations=perms)
    x = np.array([[1.0, 2.0, 3.0, 4.0]] * 3)
    np.testing.assert_array_equal(pre.orient(x, np.array([0.0, 0.49, 0.5])),
                                  [[1, 2, 3, 4], [1, 2, 3, 4], [2, 1, 4, 3]])
    assert pre.orient(x, np.array([1.0, 1.0, 1.0]))[0, 0] == 2.0           # u = 1 is the last one
    assert ShowerPreprocessor([2, 2]).orient(x, np.zeros(3)) is x
    rng = np.random.default_rng(0)
    e = rng.uniform(1e3, 1e4, (50, 1))
    pre.fit(rng.exponential(1.0, (50, 4)) * e / 8, e)
    state = pre.state_dict()
    back = ShowerPreprocessor.from_state(state)
    np.testing.assert_array_equal(back.orientations, perms)
    assert back.augment_orientations is False
    del state["orientations"], state["augment_orientations"]                  # a checkpoint from before
    assert ShowerPreprocessor.from_state(state).orientations is None
    for bad in (np.array([[0, 1, 2, 2]]), np.array([[1, 0, 3, 2], [0, 1, 2, 3]]), np.array([[0, 1, 2]])):
        with pytest.raises(ValueError, match=r"orientations: expected \(G, 4\) voxel permutations with the identity first"):
            ShowerPreprocessor([2, 2], orientations=bad)
    with pytest.raises(ValueError, match="augment_orientations needs orientations"):
        ShowerPreprocessor([2, 2], augment_orientations=True)


def test_augmentation_turns_each_training_shower_to_a_uniform_orientation():
    b = CylindricalBinning.regular(1, [0.0, 5.0, 10.0], n_alpha=6)        # 6 sectors x 2 rings
    perms = b.orientations()                                               # 12 elements
    shower = np.zeros((1, 12))
    shower[0, 0] = 10.0     # sector 0, inner ring: turned by the 12 elements, it visits the 6 inner cells twice
    shower[0, 3] = 1.0      # sector 1, outer ring
    showers = np.repeat(shower, 6000, axis=0)
    e = np.full((6000, 1), 100.0)
    pre = ShowerPreprocessor([12], orientations=perms, augment_orientations=True).fit(showers, e)
    def shapes(p):  # the cells' shares of the layer energy (standardised logits undone)
        z = p.transform(showers, e, np.random.default_rng(1)).astype(np.float64) * p.feat_std + p.feat_mean
        return _expit(z, p.alpha)[:, 1:]
    feats = shapes(pre)
    hot = feats.argmax(axis=1)                                             # where the 10 MeV cell went
    counts = np.bincount(hot, minlength=12)
    np.testing.assert_array_equal(counts[1::2], 0)                         # always an inner-ring cell
    assert scipy.stats.chisquare(counts[0::2]).pvalue > 1e-3               # uniformly over the 6 of them
    # the 1 MeV cell sits one sector clockwise or anticlockwise of it (rotation or mirror image), half each
    second = np.argsort(feats, axis=1)[:, -2]
    step = ((second // 2) - (hot // 2)) % 6
    assert set(np.unique(step)) == {1, 5}
    assert abs((step == 1).mean() - 0.5) < 0.03
    plain = ShowerPreprocessor([12], orientations=perms).fit(showers, e)   # without augmentation: unturned
    assert (shapes(plain).argmax(axis=1) == 0).all()


def test_sampler_turns_each_shower_by_the_normal_cdf_of_its_last_noise_column():
    from hepgen.models import build_model

    x = np.array([-3.0, -1.0, 0.0, 0.3, 2.5])
    np.testing.assert_allclose(normal_cdf(torch.tensor(x, dtype=torch.float64)).numpy(),
                               scipy.stats.norm.cdf(x), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(orient(torch.tensor([[1.0, 2.0]]), torch.tensor([0.7]), torch.tensor([[0, 1], [1, 0]])),
                                  [[2.0, 1.0]])
    b = CylindricalBinning.regular(2, [0.0, 5.0, 10.0], n_alpha=4)
    rng = np.random.default_rng(0)
    e = rng.uniform(1e3, 1e4, (40, 1))
    perms = b.orientations()
    pre = ShowerPreprocessor([8, 8], orientations=perms).fit(rng.exponential(1.0, (40, 16)) * e / 30, e)
    plain_pre = ShowerPreprocessor.from_state({**pre.state_dict(), "orientations": None})
    model = build_model("flow", n_features=pre.n_features, n_conditions=1, transforms=2, hidden_features=8, n_hidden=1)
    sampler, plain = ShowerSampler(build_sampler(model), pre), ShowerSampler(build_sampler(model), plain_pre)
    assert sampler.noise_dim == plain.noise_dim + 1 == pre.n_features + 1
    g = torch.arange(8)
    z = torch.randn(8, sampler.noise_dim, generator=torch.Generator().manual_seed(1))
    z[:, -1] = torch.from_numpy(scipy.stats.norm.ppf((np.arange(8) + 0.5) / 8)).float()   # one of each element
    energies = torch.full((8, 1), 5e3)
    with torch.no_grad():
        got, base = sampler(energies, z), plain(energies, z[:, :-1])
    np.testing.assert_array_equal(got.numpy(), base.numpy()[np.arange(8)[:, None], perms[g.numpy()]])


def test_caloflow_with_a_symmetry_trains_samples_the_same_on_every_path_and_exports(tmp_path, caplog):
    """End to end: ``symmetry: dihedral`` with augmentation — logged check of the data, the saved
    preprocessor, ShowerGenerator.sample = the torch sampler, and the ONNX graph."""
    import logging

    from hepgen.domains.showers.generator import ShowerGenerator
    from hepgen.domains.showers.inference import sample_through_path
    from hepgen.export import check_onnx, export_onnx
    from hepgen.models.flow import CaloFlow
    from hepgen.train.trainer import train

    geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=4)
    data = simulate_dataset(400, geometry=geometry, energy_range=(2e3, 2e4), seed=5, progress=False)
    tiny = CaloFlow.tiny_hparams()
    config = TrainConfig(family="caloflow", model={"energy_flow": tiny["energy_flow"], "shape_flow": tiny["shape_flow"]},
                         symmetry="dihedral", augment_symmetry=True, epochs=1, batch_size=100, seed=0)
    with caplog.at_level(logging.INFO, logger="hepgen.domains.showers"):
        train(data, config, tmp_path / "run", progress=False)
    assert "symmetry 'dihedral' (8 orientations): the cell means of 360 training showers deviate" in caplog.text
    gen = ShowerGenerator.load(tmp_path / "run" / "best.pt")
    np.testing.assert_array_equal(gen.preprocessor.orientations, geometry.orientations())
    assert gen.preprocessor.augment_orientations is True
    e = np.geomspace(2e3, 2e4, 300)
    ref = gen.sample(e, seed=4, batch_size=100)
    got = sample_through_path(gen, e, path="fp32", seed=4, batch_size=100)
    flip = (got == 0) != (ref == 0)                                        # cells at the threshold
    assert flip.mean() < 2e-3
    np.testing.assert_allclose(got[~flip], ref[~flip], rtol=1e-3, atol=1e-3)
    export_onnx(gen, tmp_path / "m.onnx")
    res = check_onnx(tmp_path / "m.onnx", gen, n=200, seed=1)
    # a shower turned differently would move whole MeV cells; float rounding of this 1-epoch model
    # leaves a few faint cells (~0.01-0.6 MeV) 1-2 keV apart, just outside check_onnx's 1e-3 tolerance
    assert res["max_abs_diff_mev"] < 0.02 and res["n_outside_tolerance"] <= 4, res


def test_fit_preprocessor_warns_when_the_data_are_not_symmetric(caplog):
    import logging

    b = CylindricalBinning.regular(2, [0.0, 8.0, 20.0], n_alpha=4)
    data = simulate_dataset(2000, geometry=b, energy_range=(2e3, 2e4), seed=5, progress=False)
    data.showers[:, [0, 1, 8, 9]] *= 1.3                                  # sector 0 of both layers brighter
    with caplog.at_level(logging.INFO, logger="hepgen.domains.showers"):
        ShowerDomain().fit_preprocessor(data, TrainConfig(family="caloflow", symmetry="rotations"))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "the data do not look symmetric: check the symmetry key" in warned[0].getMessage()
