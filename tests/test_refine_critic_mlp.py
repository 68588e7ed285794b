"""The shared critic MLP builder: the layouts of the stacks it replaced, and its refusals."""

import pytest
import torch
from torch import nn

from hepgen.refine.critic_mlp import critic_mlp
from hepgen.refine.refiner import Critic
from hepgen.refine.stations import StationCritic


def test_critic_mlp_is_the_written_out_stack_with_the_same_weights():
    # the stack the event critic and the station critic's dense branch were written as
    torch.manual_seed(3)
    written = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Dropout(0.25),
                            nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Dropout(0.25), nn.Linear(8, 1))
    torch.manual_seed(3)
    built = critic_mlp([6, 8, 8, 1], dropout=0.25)
    assert repr(built) == repr(written)
    assert list(built.state_dict()) == list(written.state_dict())
    for a, b in zip(built.state_dict().values(), written.state_dict().values()):
        assert torch.equal(a, b)  # same construction order: the same initial weights
    built.eval(), written.eval()
    x = torch.randn(5, 6)
    assert torch.equal(built(x), written(x))


def test_critics_keep_their_state_dict_keys():
    # a checkpoint written before the builder (keys spelled out here) still loads
    assert list(Critic(4, 8).state_dict()) == [f"net.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    c = StationCritic(1, (2, 2), 3, 0.1, 4, dropout=0.1, dense=True)
    keys = [k for k in c.state_dict() if k.startswith(("phi.", "head.", "dense_net."))]
    assert keys == ([f"phi.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")]
                    + [f"head.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")]
                    + [f"dense_net.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")])


@pytest.mark.parametrize("widths, dropout, match", [([4], 0.0, "at least two widths"), ([4, 0, 1], 0.0, "each >= 1"),
                                                    ([4, 1], 1.0, r"dropout must be in \[0, 1\)")])
def test_critic_mlp_refuses_bad_arguments(widths, dropout, match):
    with pytest.raises(ValueError, match=match):
        critic_mlp(widths, dropout)
