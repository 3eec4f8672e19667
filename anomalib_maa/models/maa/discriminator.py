"""The Markov (PatchGAN) discriminator; an intermediate feature map is the Markov encoder f(x)."""

from __future__ import annotations

import torch
from torch import nn


class MarkovDiscriminator(nn.Module):
    """PatchGAN with 4x4 convolutions (paper, Fig. 5): 64-128-256-512-1-1 channels.

    Layers (``n_features=64``): conv s2 + LeakyReLU(0.1); conv s2 + BN + LeakyReLU; conv s2 + BN +
    LeakyReLU; conv s1 + BN + LeakyReLU; conv s1 to one channel; conv s1 1->1 (the patch logits).
    For 256x256 input the 512-channel map is 31x31 patches.

    Args:
        in_channels: Image channels.
        n_features: Width of the first layer (64 in the paper).
        feature_layer: Which of the four feature layers (1-4) is the Markov encoder f(x);
            4 is the 512-channel layer used in the paper.
    """

    def __init__(self, in_channels: int = 3, n_features: int = 64, feature_layer: int = 4) -> None:
        super().__init__()
        if feature_layer not in {1, 2, 3, 4}:
            msg = f"feature_layer must be 1, 2, 3 or 4 (the 4 feature layers of the PatchGAN), got {feature_layer}"
            raise ValueError(msg)
        nf = n_features
        act = nn.LeakyReLU(0.1, inplace=True)

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 4, stride, 1, bias=False), nn.BatchNorm2d(cout), act)

        self.features = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(in_channels, nf, 4, 2, 1), act),
                block(nf, 2 * nf, 2),
                block(2 * nf, 4 * nf, 2),
                block(4 * nf, 8 * nf, 1),
            ]
        )
        self.head = nn.Sequential(nn.Conv2d(8 * nf, 1, 4, 1, 1), nn.Conv2d(1, 1, 4, 1, 1))
        self.feature_layer = feature_layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the patch logits and the Markov feature map f(x)."""
        markov = x
        for index, layer in enumerate(self.features, start=1):
            x = layer(x)
            if index == self.feature_layer:
                markov = x
        return self.head(x), markov

    def markov_features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) alone, without computing the layers after the chosen one."""
        for layer in self.features[: self.feature_layer]:
            x = layer(x)
        return x
