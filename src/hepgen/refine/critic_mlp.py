"""The one multilayer perceptron every refiner critic is built from.

The event critic (:class:`hepgen.refine.refiner.Critic`), the grouped critic's per-group network
and head (:class:`~hepgen.refine.refiner.GroupCritic`) and the station critic's networks
(:class:`hepgen.refine.stations.StationCritic`: per-station network, head, dense branch) are the
same stack: ``Linear`` layers with ``LeakyReLU(0.2)`` between them (the slope of the DCGAN
discriminator, Radford et al., arXiv:1511.06434, common in GAN critics since) and, optionally,
``Dropout`` after each activation.  They were written out five times; this module is the one
place, below both
:mod:`hepgen.refine.refiner` and :mod:`hepgen.refine.stations` so that both can use it without
an import cycle.  The station critic's convolutions and the per-layer critic's batched
networks (:class:`hepgen.refine.critic_layers.LayerCritic`) are not such stacks, but take their
slope from :data:`NEGATIVE_SLOPE` too.  The layout (module order, hence the state-dict keys ``0.weight``, ``2.weight``,
…) is exactly that of the written-out stacks, so checkpoints saved before load unchanged.

Example:
    >>> net = critic_mlp([5, 8, 8, 1], dropout=0.1)
    >>> [type(m).__name__ for m in net]
    ['Linear', 'LeakyReLU', 'Dropout', 'Linear', 'LeakyReLU', 'Dropout', 'Linear']
    >>> [k for k in net.state_dict()]
    ['0.weight', '0.bias', '3.weight', '3.bias', '6.weight', '6.bias']
    >>> critic_mlp([5, 8], activate_last=True)
    Sequential(
      (0): Linear(in_features=5, out_features=8, bias=True)
      (1): LeakyReLU(negative_slope=0.2)
    )
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["NEGATIVE_SLOPE", "critic_mlp"]

#: LeakyReLU slope of every refiner critic
NEGATIVE_SLOPE = 0.2


def critic_mlp(widths: Sequence[int], dropout: float = 0.0, activate_last: bool = False) -> nn.Sequential:
    """``Linear(widths[0], widths[1])``, ``LeakyReLU(0.2)``, [``Dropout``], … ``Linear(widths[-2], widths[-1])``.

    Arguments:
        widths: the layer widths, input first (at least two numbers, each ≥ 1).
        dropout: probability in ``[0, 1)``; a ``Dropout`` follows each activation when > 0
            (none at 0: the modules, and the state-dict keys, of a network without dropout).
        activate_last: the last ``Linear`` is also followed by the activation (and dropout), for
            a network whose output is a feature vector rather than a score.

    Returns:
        ``nn.Sequential`` mapping ``(..., widths[0])`` to ``(..., widths[-1])``.
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"critic_mlp: expected at least two widths, each >= 1, found {widths}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"critic_mlp: dropout must be in [0, 1), found {dropout!r}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or activate_last:
            layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
