"""Generator and critic networks of the GAN family (:mod:`hepgen.models.gan`).

Every network here takes and returns plain tensors so that it can be wrapped in
``DistributedDataParallel`` or exported to ONNX on its own:

* generators: ``forward(z: (B, latent_dim), c: (B, C)) -> (B, D)`` preprocessed features;
* critics: ``forward(x: (B, D), c: (B, C)) -> (B, 1 + n_aux)``; column 0 is the
  adversarial score (a logit for the BCE loss, a real number for WGAN-GP), columns
  ``1:`` the auxiliary regression of the conditions (AC-GAN head, empty if unused);
* the constrainer: ``forward(x: (B, D)) -> (B, C)``, a regression of the conditions.

Feature layout (see :class:`hepgen.domains.showers.preprocessing.ShowerPreprocessor`):
``x[:, :n_layers]`` are the per-layer energy-fraction features, ``x[:, n_layers:]`` the
voxel shape features in layer order.

References:
    M. Paganini, L. de Oliveira, B. Nachman, "CaloGAN", arXiv:1705.02355 and
    arXiv:1712.10321 (layer-by-layer generation conditioned on the previous layers).
    G. R. Khattak, S. Vallecorsa, F. Carminati, G. M. Khan, "Fast simulation of a high
    granularity calorimeter by generative adversarial networks", arXiv:2109.07388 (3DGAN).
    A. Radford, L. Metz, S. Chintala, "DCGAN", arXiv:1511.06434.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = [
    "Constrainer",
    "Conv3dCritic",
    "Conv3dGenerator",
    "LayeredCritic",
    "LayeredGenerator",
    "MLPCritic",
    "MLPGenerator",
    "mlp",
]

_SLOPE = 0.2  # LeakyReLU slope (DCGAN)


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return _spectral_norm(module) if on else module


def mlp(
    sizes: Sequence[int],
    layer_norm: bool = False,
    spectral_norm: bool = False,
    final_activation: bool = False,
) -> nn.Sequential:
    """Fully connected network ``sizes[0] → … → sizes[-1]`` with LeakyReLU(0.2) activations.

    Arguments:
        sizes: layer widths, input first; ``len(sizes) >= 2``.
        layer_norm: LayerNorm before every hidden activation (the normalisation WGAN-GP
            allows in the critic: it acts on each sample alone, unlike BatchNorm).
        spectral_norm: spectral normalisation of every Linear (Miyato et al.,
            arXiv:1802.05957).
        final_activation: also apply (norm +) activation after the last Linear.
    """
    layers: list[nn.Module] = []
    n = len(sizes) - 1
    for i in range(n):
        layers.append(_sn(nn.Linear(sizes[i], sizes[i + 1]), spectral_norm))
        if i < n - 1 or final_activation:
            if layer_norm:
                layers.append(nn.LayerNorm(sizes[i + 1]))
            layers.append(nn.LeakyReLU(_SLOPE))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """Conditional MLP generator: ``[z, c] → x``.

    Arguments:
        n_features: output dimension D.
        n_conditions: condition dimension C.
        latent_dim, hidden, n_hidden: latent size, hidden width and number of hidden layers.
        layer_norm: LayerNorm in the hidden layers.
    """

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        latent_dim: int,
        hidden: int,
        n_hidden: int,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        self.net = mlp([latent_dim + n_conditions, *[hidden] * n_hidden, n_features], layer_norm)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)``, ``c: (B, C)`` → ``(B, D)``."""
        return self.net(torch.cat([z, c], dim=1))


class MLPCritic(nn.Module):
    """Conditional MLP critic: ``[x, c] → (score, aux…)``.

    Arguments:
        n_features: input dimension D.
        n_conditions: condition dimension C.
        n_out: 1 + number of auxiliary outputs.
        hidden, n_hidden: hidden width and number of hidden layers.
        layer_norm, spectral_norm: normalisation of the hidden / all linear layers.
    """

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        n_out: int,
        hidden: int,
        n_hidden: int,
        layer_norm: bool,
        spectral_norm: bool,
    ) -> None:
        super().__init__()
        self.net = mlp(
            [n_features + n_conditions, *[hidden] * n_hidden, n_out], layer_norm, spectral_norm
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x: (B, D)``, ``c: (B, C)`` → ``(B, n_out)``."""
        return self.net(torch.cat([x, c], dim=1))


class LayeredGenerator(nn.Module):
    """CaloGAN-style layer-by-layer generator.

    An energy network maps ``[z, c]`` to the ``n_layers`` energy-fraction features;
    then the generator of layer ``l`` maps ``[z, c, energies, layer_0 … layer_{l-1}]``
    to the shape features of layer ``l``, so every layer sees what was generated in
    front of it (CaloGAN passes the previous layer's image through a learned transfer
    function; here the previous layers' features are simply concatenated).

    Arguments:
        layer_sizes: voxels per layer; D = len(layer_sizes) + sum(layer_sizes).
        n_conditions, latent_dim, hidden, n_hidden, layer_norm: as for :class:`MLPGenerator`.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        n_conditions: int,
        latent_dim: int,
        hidden: int,
        n_hidden: int,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        n_in = latent_dim + n_conditions
        self.energy = mlp([n_in, *[hidden] * n_hidden, len(sizes)], layer_norm)
        self.layers = nn.ModuleList(
            mlp([n_in + len(sizes) + sum(sizes[:l]), *[hidden] * n_hidden, sizes[l]], layer_norm)
            for l in range(len(sizes))
        )

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)``, ``c: (B, C)`` → ``(B, n_layers + n_voxels)``."""
        h = torch.cat([z, c], dim=1)
        energies = self.energy(h)
        parts: list[torch.Tensor] = [energies]
        for net in self.layers:
            parts.append(net(torch.cat([h, *parts], dim=1)))
        return torch.cat(parts, dim=1)


class LayeredCritic(nn.Module):
    """Locally connected critic for layered binnings.

    Each layer's shape features go through their own small MLP (weights are not shared
    between layers: a locally connected first stage); the per-layer embeddings, the
    energy-fraction features and the conditions then feed a common MLP head.

    Arguments:
        layer_sizes: voxels per layer.
        n_conditions, n_out, hidden, n_hidden, layer_norm, spectral_norm: as for
            :class:`MLPCritic`.
        embed: width of each layer's embedding.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        n_conditions: int,
        n_out: int,
        hidden: int,
        n_hidden: int,
        layer_norm: bool,
        spectral_norm: bool,
        embed: int,
    ) -> None:
        super().__init__()
        self.layer_sizes = [int(s) for s in layer_sizes]
        self.embed = nn.ModuleList(
            mlp([s, embed, embed], layer_norm, spectral_norm, final_activation=True)
            for s in self.layer_sizes
        )
        n_l = len(self.layer_sizes)
        self.head = mlp(
            [n_l * embed + n_l + n_conditions, *[hidden] * n_hidden, n_out],
            layer_norm,
            spectral_norm,
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x: (B, n_layers + n_voxels)``, ``c: (B, C)`` → ``(B, n_out)``."""
        n_l = len(self.layer_sizes)
        shapes = torch.split(x[:, n_l:], self.layer_sizes, dim=1)
        emb = [net(s) for net, s in zip(self.embed, shapes)]
        return self.head(torch.cat([*emb, x[:, :n_l], c], dim=1))


def _conv_norm(channels: int, layer_norm: bool) -> list[nn.Module]:
    # GroupNorm with one group normalises each sample over (C, z, y, x): a layer norm
    return [nn.GroupNorm(1, channels)] if layer_norm else []


class Conv3dGenerator(nn.Module):
    """3DGAN-style generator for Cartesian grids ``(nz, ny, nx)`` (layers along z).

    ``[z, c]`` → MLP trunk → (a) a linear head for the ``nz`` energy-fraction features,
    (b) a linear map to a coarse ``channels × ⌈nz/2⌉ × ⌈ny/2⌉ × ⌈nx/2⌉`` volume,
    nearest-neighbour up-sampling ×2, cropping to the grid and three 3×3×3 convolutions
    to one channel: the voxel shape features in C order of ``(nz, ny, nx)``.

    Arguments:
        grid_shape: ``(nz, ny, nx)``.
        n_conditions, latent_dim, hidden: condition size, latent size, trunk width.
        channels: convolution channels.
        layer_norm: GroupNorm(1, ·) / LayerNorm after the hidden convolutions / trunk.
    """

    def __init__(
        self,
        grid_shape: Sequence[int],
        n_conditions: int,
        latent_dim: int,
        hidden: int,
        channels: int,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        self.grid_shape = tuple(int(s) for s in grid_shape)
        self.coarse = tuple((s + 1) // 2 for s in self.grid_shape)
        self.channels = int(channels)
        self.trunk = mlp(
            [latent_dim + n_conditions, hidden, hidden], layer_norm, final_activation=True
        )
        self.energy = nn.Linear(hidden, self.grid_shape[0])
        self.to_volume = nn.Linear(hidden, self.channels * math.prod(self.coarse))
        ch = self.channels
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Sequential(
            nn.Conv3d(ch, ch, 3, padding=1),
            *_conv_norm(ch, layer_norm),
            nn.LeakyReLU(_SLOPE),
            nn.Conv3d(ch, ch, 3, padding=1),
            *_conv_norm(ch, layer_norm),
            nn.LeakyReLU(_SLOPE),
            nn.Conv3d(ch, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``z: (B, latent_dim)``, ``c: (B, C)`` → ``(B, nz + nz·ny·nx)``."""
        h = self.trunk(torch.cat([z, c], dim=1))
        nz, ny, nx = self.grid_shape
        vol = self.to_volume(h).reshape(-1, self.channels, *self.coarse)
        vol = self.up(vol)[:, :, :nz, :ny, :nx]
        voxels = self.conv(vol).flatten(1)  # not len(h): that would fix the batch size in torch.export
        return torch.cat([self.energy(h), voxels], dim=1)


class Conv3dCritic(nn.Module):
    """3DGAN-style 3D convolutional critic for Cartesian grids ``(nz, ny, nx)``.

    Three 3×3×3 convolutions (the second with stride 2) and adaptive average pooling to
    at most 4×4×4 cells; the pooled map, the ``nz`` energy-fraction features and the
    conditions feed an MLP head with ``n_out`` outputs.

    Arguments:
        grid_shape: ``(nz, ny, nx)``.
        n_conditions, n_out, hidden: condition size, number of outputs, head width.
        channels: convolution channels (the deeper ones have twice as many).
        layer_norm, spectral_norm: GroupNorm(1, ·) after the hidden convolutions /
            spectral normalisation of every convolution and linear layer.
    """

    def __init__(
        self,
        grid_shape: Sequence[int],
        n_conditions: int,
        n_out: int,
        hidden: int,
        channels: int,
        layer_norm: bool,
        spectral_norm: bool,
    ) -> None:
        super().__init__()
        self.grid_shape = tuple(int(s) for s in grid_shape)
        ch, sn = int(channels), spectral_norm
        pool = tuple(min(4, (s + 1) // 2) for s in self.grid_shape)
        self.conv = nn.Sequential(
            _sn(nn.Conv3d(1, ch, 3, padding=1), sn),
            nn.LeakyReLU(_SLOPE),
            _sn(nn.Conv3d(ch, 2 * ch, 3, stride=2, padding=1), sn),
            *_conv_norm(2 * ch, layer_norm),
            nn.LeakyReLU(_SLOPE),
            _sn(nn.Conv3d(2 * ch, 2 * ch, 3, padding=1), sn),
            *_conv_norm(2 * ch, layer_norm),
            nn.LeakyReLU(_SLOPE),
            nn.AdaptiveAvgPool3d(pool),
        )
        n_flat = 2 * ch * math.prod(pool)
        self.head = mlp([n_flat + self.grid_shape[0] + n_conditions, hidden, n_out], layer_norm, sn)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x: (B, nz + nz·ny·nx)``, ``c: (B, C)`` → ``(B, n_out)``."""
        nz = self.grid_shape[0]
        vol = x[:, nz:].reshape(-1, 1, *self.grid_shape)
        feat = self.conv(vol).flatten(1)
        return self.head(torch.cat([feat, x[:, :nz], c], dim=1))


class Constrainer(nn.Module):
    """Regression network ``x → c`` trained on real showers (HGCAL conditional WGAN).

    Arguments:
        n_features, n_conditions: input and output sizes.
        hidden, n_hidden: width and depth.

    References:
        M. Erdmann, J. Glombitza, T. Quast, "Precise simulation of electromagnetic
        calorimeter showers using a Wasserstein Generative Adversarial Network",
        arXiv:1807.01954.
    """

    def __init__(self, n_features: int, n_conditions: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        self.net = mlp([n_features, *[hidden] * n_hidden, n_conditions], layer_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, D)`` → ``(B, C)`` predicted (preprocessed) conditions."""
        return self.net(x)
