"""The critic's head on the log sums alone (`critic_sums_head`, hepgen.refine.critic_sums)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _refine_resume import assert_resume_is_exact
from hepgen.cli import main
from hepgen.data.formats import write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.refine.critic_sums import SumsCritic
from hepgen.refine.refiner import Critic, RefinerConfig, load_refiner, train_refiner
from hepgen.simulate.calorimeter import simulate_dataset

TINY = ["--hidden", "8", "--critic-hidden", "8", "--batch-size", "8", "-q", "--critic-warmup", "1"]


class _Zero(nn.Module):
    def forward(self, z):
        return z[:, 0] * 0.0


def _critic(head):
    # 4 voxels in 2 groups (2 + 2) and the total; energies in MeV, E_inc = 1 GeV and 2 GeV
    e = np.array([[50.0, 50.0, 10.0, 30.0], [150.0, 50.0, 0.0, 90.0], [20.0, 80.0, 40.0, 40.0]])
    e_inc = np.array([1000.0, 2000.0, 1000.0])
    x, y = np.log1p(e).astype(np.float32), np.log(e_inc)[:, None].astype(np.float32)
    groups = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)
    xm, xs, ym, ys = x.mean(0), np.full(4, 0.5, np.float32), y.mean(0), np.full(1, 0.7, np.float32)
    torch.manual_seed(0)
    c = SumsCritic(_Zero(), groups, xm, xs, 1, x, ym, ys, y, head=head)
    z = torch.cat([(torch.from_numpy(x) - torch.from_numpy(xm)) / torch.from_numpy(xs),
                   (torch.from_numpy(y) - torch.from_numpy(ym)) / torch.from_numpy(ys)], dim=1)
    return c, e, e_inc, z, (xm, xs, ym, ys)


def test_the_head_sees_the_standardised_log_responses_and_labels_by_hand():
    c, e, e_inc, z, (_, _, ym, ys) = _critic(head=Critic(3 + 1, 5))
    sums = np.stack([e[:, :2].sum(1), e[:, 2:].sum(1), e.sum(1)], axis=1)
    s = np.log1p(sums) - np.log(e_inc)[:, None]                  # log(1 + ΣE) − ln E_inc per group
    s_hat = (s - s.mean(0)) / s.std(0, ddof=1)
    y_hat = (np.log(e_inc) - ym[0]) / ys[0]
    head_in = torch.from_numpy(np.concatenate([s_hat, y_hat[:, None]], axis=1).astype(np.float32))
    with torch.no_grad():
        expect = c.head(head_in)
        got = c(z)
    # float32 standardisation against numpy float64: head outputs agree to ~1e-6 absolute
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)   # the base (zero) adds nothing
    assert c.head.net[0].weight.shape == (5, 3 + 1)                  # 3 groups + 1 label in


def test_the_head_is_blind_to_how_energy_is_shared_within_a_group():
    c, e, _, z, (xm, xs, _, _) = _critic(head=Critic(3 + 1, 5))
    moved = e.copy()
    moved[:, 0], moved[:, 1] = e[:, 1], e[:, 0]                       # swap within group 1
    moved[0, 2], moved[0, 3] = 0.0, 40.0                              # move within group 2, same sum
    zm = z.clone()
    zm[:, :4] = (torch.from_numpy(np.log1p(moved).astype(np.float32)) - torch.from_numpy(xm)) / torch.from_numpy(xs)
    with torch.no_grad():
        torch.testing.assert_close(c(zm), c(z), rtol=1e-5, atol=1e-6)
        zm[0, 2] += 0.5                                                # more energy in group 2 of event 0
        assert abs(float(c(zm)[0] - c(z)[0])) > 1e-6


def test_no_head_keeps_the_sums_critic_and_its_state_as_before():
    c, *_ = _critic(head=None)
    assert c.head is None
    assert not any(k.startswith("head.") for k in c.state_dict())


def test_config_refuses_a_head_without_the_sums():
    with pytest.raises(ValueError, match=r"^refiner config key 'critic_sums_head': expected critic_sums=True \(the "
                                         r"head reads the critic's log sums\), found critic_sums=False$"):
        RefinerConfig(critic_sums_head=True)


def test_train_refiner_with_the_head_resumes_exactly_and_old_checkpoints_resume(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4)).astype(np.float32), rng.random((64, 1)).astype(np.float32)
    groups = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], np.float32)
    small = dict(hidden=8, critic_hidden=8, batch_size=16, critic_warmup=1, critic_sums=True, critic_sums_head=True)
    payload = assert_resume_is_exact(tmp_path, x, y, x + 0.3, y, small, sum_groups=groups)
    assert payload["hparams"]["critic_sums_head"] is True
    assert payload["trainer"]["critic"]["head.net.0.weight"].shape == (4, 3 + 1)   # width 8 // 2; 3 sums + 1 label
    # a checkpoint written before the option existed (no key) resumes as one without the head
    plain = {k: v for k, v in small.items() if k != "critic_sums_head"}
    train_refiner(x, y, x + 0.3, y, RefinerConfig(**plain, epochs=1), checkpoint=tmp_path / "c.pt",
                  progress=False, sum_groups=groups)
    old = torch.load(tmp_path / "c.pt", weights_only=False)
    del old["hparams"]["critic_sums_head"]
    torch.save(old, tmp_path / "c.pt")
    _, hist = train_refiner(x, y, x + 0.3, y, RefinerConfig(**plain, epochs=2), checkpoint=tmp_path / "c.pt",
                            progress=False, sum_groups=groups)
    assert hist["epoch"] == [1, 2]


def test_cli_critic_sums_head_on_showers(tmp_path, capsys):
    """`hepgen refine train --critic-sums --critic-sums-head` on a 3-layer binning: the head reads
    4 sums (3 layers and the total) and the label; without --critic-sums the command refuses."""
    geo = CylindricalBinning.regular(3, [0.0, 10.0, 40.0], n_alpha=2)  # 3 layers × 4 voxels
    for name, seed in (("sim", 1), ("data", 2)):
        write_showers(tmp_path / f"{name}.h5", simulate_dataset(24, geometry=geo, seed=seed, progress=False))
    args = ["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "--epochs", "1", *TINY]
    assert main([*args, "-o", str(tmp_path / "run"), "--critic-sums", "--critic-sums-head"]) == 0
    _, payload = load_refiner(tmp_path / "run" / "refiner.pt")
    assert payload["hparams"]["critic_sums_head"] is True
    assert payload["trainer"]["critic"]["head.net.0.weight"].shape == (4, 4 + 1)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "run2"), "--critic-sums-head"]) == 2
    assert capsys.readouterr().err.strip() == ("hepgen: error: refiner config key 'critic_sums_head': expected "
                                               "critic_sums=True (the head reads the critic's log sums), found "
                                               "critic_sums=False")
    assert not (tmp_path / "run2" / "refiner.pt").exists()
