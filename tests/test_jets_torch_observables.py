"""Differentiable jet observables (hepgen.domains.jets.torch_observables) against FastJet contrib
and by hand, and the physics terms of `hepgen distill --observables` and `--data-observables`
(issue 21)."""

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from _toy_jets import toy_jets
from hepgen.domains.jets import DOMAIN, JetGenerator, JetPreprocessor
from hepgen.domains.jets.torch_observables import energy_correlation_d2, nsubjettiness, substructure
from hepgen.metrics.jets import energy_correlation_d2 as energyflow_d2
from hepgen.metrics.jets import jet_mass as fastjet_free_mass
from hepgen.metrics.jets import nsubjettiness as contrib_nsubjettiness
from hepgen.models import build_model
from hepgen.models.base import MODEL_FAMILIES
from hepgen.train.distill import batch_w1, distill, grouped_w1, sliced_w1, teacher_pairs, unit_directions


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _split(pf: np.ndarray):
    """(N, P, 4) JetNet particles → pt, eta, phi, mask tensors."""
    return _t(pf[..., 2]), _t(pf[..., 0]), _t(pf[..., 1]), _t(pf[..., 3])


def _prong_jets(n=300, p=30, seed=0) -> np.ndarray:
    """Jets of 1–3 prongs (random directions within 0.5, Gaussian spread 0.03–0.1), 4…P constituents."""
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, p, 4))
    for i in range(n):
        k, n_prong = rng.integers(4, p + 1), rng.integers(1, 4)
        centre = rng.uniform(-0.5, 0.5, (n_prong, 2))
        which = rng.integers(0, n_prong, k)
        pf[i, :k, :2] = centre[which] + rng.normal(0, rng.uniform(0.03, 0.1), (k, 2))
        pf[i, :k, 2] = np.sort(rng.dirichlet(np.full(k, 0.8)))[::-1]
        pf[i, :k, 3] = 1.0
    return pf


def test_nsubjettiness_and_mass_agree_with_fastjet_contrib_one_pass_axes():
    pf = _prong_jets()
    ref = contrib_nsubjettiness(pf)                     # FastJet contrib, OnePass_KT_Axes, β = 1, R0 = 0.8
    mine = nsubjettiness(*_split(pf)).numpy()
    err = np.abs(mine - ref)
    # same definition; the axes differ by the recombination (pT-weighted vs E-scheme) and the
    # minimiser's convergence: measured median 1e-5, 95 % below 1e-3 on such jets
    assert np.median(err) < 1e-4 and np.percentile(err, 95) < 5e-3, (np.median(err), np.percentile(err, 95))
    obs = substructure(*_split(pf)).numpy()
    np.testing.assert_allclose(obs[:, 0], fastjet_free_mass(pf), rtol=1e-9, atol=1e-12)
    tau21 = np.where(ref[:, 0] > 0, ref[:, 1] / np.maximum(ref[:, 0], 1e-12), 0.0)
    assert np.median(np.abs(obs[:, 1] - tau21)) < 1e-3
    # D2 has no axes: it equals energyflow's EFP form up to the 1e-12 under each √ (≈ 1e-9 relative)
    np.testing.assert_allclose(energy_correlation_d2(*_split(pf)).numpy(), energyflow_d2(pf), rtol=1e-7)
    np.testing.assert_array_equal(obs[:, 3], energy_correlation_d2(*_split(pf)).numpy())


def test_nsubjettiness_hand_worked_values_and_gradient():
    r0 = 0.8
    # three unit particles at φ = −0.05, 0.05, 0.6 (η = 0): the β = 1 axis of all three is the
    # median particle (φ = 0.05), τ1 = (0.1 + 0 + 0.55) / (3 R0); the two axes split {A, B}, {C}:
    # τ2 = 0.1 / (3 R0); τ3 = 0 (three constituents)
    pf = np.zeros((1, 3, 4))
    pf[0] = [[0, -0.05, 1, 1], [0, 0.05, 1, 1], [0, 0.6, 1, 1]]
    pt, eta, phi, mask = _split(pf)
    phi.requires_grad_(True)
    tau = nsubjettiness(pt, eta, phi, mask, r0=r0)
    np.testing.assert_allclose(tau.detach().numpy(), [[0.65 / (3 * r0), 0.1 / (3 * r0), 0.0]], atol=1e-6)
    # dτ1/dφ_i = sign(φ_i − axis) / (3 R0) with the axis held (it minimises τ1); B sits on the
    # axis, where |φ − axis| has a kink: any value in [−1, 1] / (3 R0) is a subgradient
    tau[0, 0].backward()
    g = phi.grad.numpy()[0] * 3 * r0
    np.testing.assert_allclose(g[[0, 2]], [-1.0, 1.0], atol=1e-6)
    assert abs(g[1]) <= 1.0
    # padding is ignored whatever it holds; an all-padding jet gives zeros
    pad = np.concatenate([pf, np.array([[[3.0, -2.0, 5.0, 0.0]]])], axis=1)
    np.testing.assert_allclose(nsubjettiness(*_split(pad), r0=r0).numpy(), tau.detach().numpy(), atol=1e-12)
    np.testing.assert_array_equal(nsubjettiness(*_split(np.zeros((1, 3, 4)))).numpy(), [[0.0, 0.0, 0.0]])
    # a ratio whose denominator vanishes is 0, not NaN, and so is its gradient
    two = np.zeros((1, 2, 4))
    two[0] = [[0, 0.2, 0.5, 1], [0, -0.2, 0.5, 1]]
    pt, eta, phi, mask = _split(two)
    phi.requires_grad_(True)
    obs = substructure(pt, eta, phi, mask)
    np.testing.assert_allclose(obs.detach().numpy(), [[np.sin(0.2), 0.0, 0.0, 0.0]], atol=1e-12)  # e3 = 0: D2 = 0
    obs.sum().backward()
    assert torch.isfinite(phi.grad).all()


def test_jet_domain_observables_of_model_space_match_the_physical_jets():
    jets = toy_jets(200, n_particles=8, seed=3)
    pre = JetPreprocessor(8).fit(jets)
    x = torch.from_numpy(pre.transform(jets))
    c = torch.from_numpy(pre.conditions_of(jets))
    obs = DOMAIN.distill_observables(pre, x, c).numpy()
    pf = np.concatenate([jets.particles, jets.mask[..., None]], axis=2).astype(np.float64)
    np.testing.assert_allclose(obs[:, 0], fastjet_free_mass(pf), rtol=1e-4, atol=2e-5)  # float32 model space
    direct = substructure(*_split(pf)).numpy()
    np.testing.assert_allclose(obs[:, 1:3], direct[:, 1:3], atol=2e-3)
    np.testing.assert_allclose(obs[:, 3], direct[:, 3], rtol=2e-3)
    np.testing.assert_allclose(obs[:, 4], (jets.particles[..., 2] * jets.mask).sum(1), rtol=1e-5)  # Σ pT_rel
    # mean and spread of log pT_rel, mean ΔR: numpy over each jet's real constituents only
    logpt = [np.log(p[m, 2]) for p, m in zip(jets.particles, jets.mask)]
    dr = [np.hypot(p[m, 0], p[m, 1]) for p, m in zip(jets.particles, jets.mask)]
    np.testing.assert_allclose(obs[:, 5], [v.mean() for v in logpt], rtol=1e-5)
    np.testing.assert_allclose(obs[:, 6], [v.std() for v in logpt], rtol=1e-4)
    np.testing.assert_allclose(obs[:, 7], [v.mean() for v in dr], rtol=1e-4)
    # axis ratio: the eigenvalues of each jet's (η, φ) covariance by numpy (ddof 0)
    eig = [np.linalg.eigvalsh(np.cov(p[m, :2].T, ddof=0)) for p, m in zip(jets.particles, jets.mask)]
    np.testing.assert_allclose(obs[:, 8], [lo / hi for lo, hi in eig], rtol=1e-3, atol=1e-5)


def _toy_teacher(tmp_path):
    """400 toy jets of 6 particles and a tiny untrained EPiC flow-matching teacher saved as
    ``tmp_path / "teacher.pt"``: returns ``(jets, preprocessor, teacher model)``."""
    jets = toy_jets(400, n_particles=6, seed=4)
    torch.manual_seed(0)
    pre = JetPreprocessor(6).fit(jets)
    model = build_model("epic_fm", n_features=18, n_conditions=pre.n_conditions,
                        **MODEL_FAMILIES["epic_fm"].tiny_hparams()).eval()
    JetGenerator(model, pre, {"pt_range": [800.0, 1200.0], "eta_range": [-2.0, 2.0],
                              "jet_types": ["g", "t"]}).save(tmp_path / "teacher.pt")
    return jets, pre, model


def test_distill_with_observables_logs_the_physics_term_and_selects_on_the_sum(tmp_path):
    jets, _, _ = _toy_teacher(tmp_path)
    path = distill(tmp_path / "teacher.pt", jets, tmp_path / "s", rounds=3, n_pairs=600, n_val=200,
                   batch_size=100, hidden=8, n_hidden=1, seed=0, progress=False, observables=0.5)
    log = np.genfromtxt(tmp_path / "s" / "distill_log.csv", delimiter=",", names=True)
    assert np.all(np.isfinite(log["train_obs"])) and np.all(log["val_obs"] >= 0)
    k = int(np.argmin(log["val_l1"] + 0.5 * log["val_obs"]))
    info = JetGenerator.load(path).meta["distilled_from"]
    assert info["observables"] == 0.5 and info["rounds"] == k + 1
    assert info["val_obs"] == pytest.approx(log["val_obs"][k])
    assert len(info["observable_scales"]) == 9 and min(info["observable_scales"]) > 0  # mass … axis ratio


def test_batch_w1_equals_scipy_wasserstein_per_column_and_has_gradients():
    rng = np.random.default_rng(5)
    a = torch.tensor(rng.normal(size=(64, 3)), requires_grad=True)
    b = torch.tensor(np.round(rng.exponential(size=(64, 3)), 1))  # ties in b
    w = batch_w1(a, b)
    want = [wasserstein_distance(a[:, k].detach().numpy(), b[:, k].numpy()) for k in range(3)]
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=1e-12)
    w.sum().backward()
    assert torch.all(a.grad.abs().sum(0) > 0)
    with pytest.raises(ValueError, match="one shape"):
        batch_w1(a[:10], b)


def test_distill_with_data_observables_matches_the_data_rows_of_its_conditions(tmp_path):
    jets, pre, model = _toy_teacher(tmp_path)
    path = distill(tmp_path / "teacher.pt", jets, tmp_path / "s", rounds=3, n_pairs=600, n_val=200,
                   batch_size=100, hidden=8, n_hidden=1, seed=0, progress=False, data_observables=2.0)
    log = np.genfromtxt(tmp_path / "s" / "distill_log.csv", delimiter=",", names=True)
    assert "train_obs" not in log.dtype.names and np.all(np.isfinite(log["train_data_w1"]))
    k = int(np.argmin(log["val_l1"] + 2.0 * log["val_data_w1"]))
    student = JetGenerator.load(path)
    info = student.meta["distilled_from"]
    assert info["data_observables"] == 2.0 and info["rounds"] == k + 1 and "val_obs" not in info
    # the validation term again, independently: the same validation pairs (their own generator),
    # the kept student's observables against the data rows drawn, W1 by scipy, in units of σ_k
    pool = torch.from_numpy(pre.conditions_of(jets))
    z, c, x, idx = teacher_pairs(model, pool, 200, torch.Generator().manual_seed(0), index=True)
    with torch.no_grad():
        o_s = DOMAIN.distill_observables(pre, student.model.sample_from_noise(c, z), c).numpy()
        o_t = DOMAIN.distill_observables(pre, x, c).numpy()
        o_r = DOMAIN.distill_observables(pre, torch.from_numpy(pre.transform(jets)), pool).numpy()[idx.numpy()]
    scale = np.maximum(o_t.std(0, ddof=1), 1e-6)
    np.testing.assert_allclose(info["observable_scales"], scale, rtol=1e-5)
    want = sum(wasserstein_distance(o_s[:, j], o_r[:, j]) / scale[j] for j in range(9))
    assert info["val_data_w1"] == pytest.approx(want, rel=1e-4)


def test_the_data_term_moves_the_student(tmp_path):
    """One round with and without the data term, everything else equal (the term draws no random
    numbers): the students differ, so the term's gradient reaches the weights."""
    jets, pre, model = _toy_teacher(tmp_path)
    kw = dict(rounds=1, n_pairs=600, n_val=200, batch_size=100, hidden=8, n_hidden=1, seed=0, progress=False)
    plain = JetGenerator.load(distill(tmp_path / "teacher.pt", jets, tmp_path / "p", **kw)).model.state_dict()
    data = JetGenerator.load(distill(tmp_path / "teacher.pt", jets, tmp_path / "d", data_observables=2.0,
                                     **kw)).model.state_dict()
    assert plain.keys() == data.keys()
    assert max(float((plain[k] - data[k]).abs().max()) for k in plain if plain[k].is_floating_point()) > 1e-4


def test_sliced_w1_equals_scipy_along_each_direction_and_has_gradients():
    rng = np.random.default_rng(6)
    a = torch.tensor(rng.normal(size=(50, 4)), requires_grad=True)
    b = torch.tensor(rng.exponential(size=(50, 4)))
    u = unit_directions(4, 7, torch.Generator().manual_seed(3)).double()
    np.testing.assert_allclose(u.norm(dim=0).numpy(), 1.0, rtol=1e-6)  # float32 draws
    an, bn, un = a.detach().numpy(), b.numpy(), u.numpy()
    want = 4 * np.mean([wasserstein_distance(an @ un[:, j], bn @ un[:, j]) for j in range(7)])
    w = sliced_w1(a, b, u)
    assert w.item() == pytest.approx(want, rel=1e-12)
    w.backward()
    assert torch.all(a.grad.abs().sum(0) > 0)


def _joint_term_student(tmp_path, option: str):
    """A toy student distilled with the data term and ``option`` = 4 (slices or groups), the
    name of the option missing its data term refused; its meta, and its observables and those of
    the data rows on the 200 validation pairs (same pairs as :func:`distill` draws)."""
    jets, pre, model = _toy_teacher(tmp_path)
    with pytest.raises(ValueError, match=f"{option}: expected it with data_observables > 0"):
        distill(tmp_path / "teacher.pt", jets, tmp_path / "x", rounds=1, **{option: 4})
    path = distill(tmp_path / "teacher.pt", jets, tmp_path / "s", rounds=2, n_pairs=600, n_val=200,
                   batch_size=100, hidden=8, n_hidden=1, seed=0, progress=False, data_observables=1.0,
                   **{option: 4})
    student = JetGenerator.load(path)
    pool = torch.from_numpy(pre.conditions_of(jets))
    z, c, x, idx = teacher_pairs(model, pool, 200, torch.Generator().manual_seed(0), index=True)
    with torch.no_grad():
        o_s = DOMAIN.distill_observables(pre, student.model.sample_from_noise(c, z), c).numpy()
        o_r = DOMAIN.distill_observables(pre, torch.from_numpy(pre.transform(jets)), pool).numpy()[idx.numpy()]
    return student.meta["distilled_from"], o_s, o_r


def test_distill_with_data_slices_adds_the_sliced_term_over_64_fixed_directions(tmp_path):
    info, o_s, o_r = _joint_term_student(tmp_path, "data_slices")
    assert info["data_slices"] == 4 and "data_groups" not in info
    scale = np.asarray(info["observable_scales"])
    s, r = o_s / scale, o_r / scale
    # the validation directions: 64 drawn from the seed + 2 generator (independently of training)
    u = unit_directions(9, 64, torch.Generator().manual_seed(2)).numpy().astype(np.float64)
    marginals = sum(wasserstein_distance(s[:, j], r[:, j]) for j in range(9))
    slices = 9 * np.mean([wasserstein_distance(s @ u[:, j], r @ u[:, j]) for j in range(64)])
    assert slices > 0.1 * marginals  # the slices are a term of their own size, not a rounding
    assert info["val_data_w1"] == pytest.approx(marginals + slices, rel=1e-4)


def test_grouped_w1_equals_scipy_within_groups_of_the_first_column():
    rng = np.random.default_rng(7)
    a = torch.tensor(rng.normal(size=(60, 3)), requires_grad=True)
    b = torch.tensor(rng.exponential(size=(60, 3)))
    an, bn = a.detach().numpy(), b.numpy()
    sa, sb = an[np.argsort(an[:, 0])], bn[np.argsort(bn[:, 0])]
    want = [np.mean([wasserstein_distance(sa[g * 15:(g + 1) * 15, k], sb[g * 15:(g + 1) * 15, k]) for g in range(4)])
            for k in (1, 2)]
    w = grouped_w1(a, b, 4)
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=1e-12)
    w.sum().backward()
    assert torch.all(a.grad[:, 1:].abs().sum(0) > 0)
    with pytest.raises(ValueError, match="one shape"):
        grouped_w1(a[:10], b, 2)


def test_distill_with_data_groups_adds_the_term_given_the_first_observable(tmp_path):
    with pytest.raises(ValueError, match="data_groups: expected at most batch_size // 2 = 50 groups, found 51"):
        distill(tmp_path / "teacher.pt", None, tmp_path / "x", batch_size=100, data_observables=1.0, data_groups=51)
    info, o_s, o_r = _joint_term_student(tmp_path, "data_groups")
    assert info["data_groups"] == 4 and "data_slices" not in info
    scale = np.asarray(info["observable_scales"])
    marginals = sum(wasserstein_distance(o_s[:, j], o_r[:, j]) / scale[j] for j in range(9))
    # the groups: 4 × 50 validation rows of each sample, ordered by the mass (column 0)
    gs, gr = o_s[np.argsort(o_s[:, 0])], o_r[np.argsort(o_r[:, 0])]
    grouped = sum(np.mean([wasserstein_distance(gs[g * 50:(g + 1) * 50, j], gr[g * 50:(g + 1) * 50, j])
                           for g in range(4)]) / scale[j] for j in range(1, 9))
    assert grouped > marginals / 2  # a term of its own size
    assert info["val_data_w1"] == pytest.approx(marginals + grouped, rel=1e-4)
