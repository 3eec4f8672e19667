"""Building blocks of the MAA generator (paper, Table I): encoder, ResNet blocks, decoder."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    """A convolution followed by batch norm and ReLU."""
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity shortcut.

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):  # noqa: D102
        return x + self.block(x)


class Encoder(nn.Module):
    """Conv 1x7, conv 7x1, three stride-2 3x3 convs (x8 downsampling), then ResNet blocks.

    Widths with ``n_features=16`` (Table I): 16, 32, 64, 128, 256.

    Args:
        in_channels: Image channels.
        n_features: Width of the first convolution; every other width is a multiple.
        n_blocks: ResNet blocks at the latent width.
    """

    def __init__(self, in_channels: int, n_features: int, n_blocks: int = 3) -> None:
        super().__init__()
        nf = n_features
        self.layers = nn.Sequential(
            conv_bn_relu(nn.Conv2d(in_channels, nf, (1, 7), padding=(0, 3), bias=False), nf),
            conv_bn_relu(nn.Conv2d(nf, 2 * nf, (7, 1), padding=(3, 0), bias=False), 2 * nf),
            conv_bn_relu(nn.Conv2d(2 * nf, 4 * nf, 3, stride=2, padding=1, bias=False), 4 * nf),
            conv_bn_relu(nn.Conv2d(4 * nf, 8 * nf, 3, stride=2, padding=1, bias=False), 8 * nf),
            conv_bn_relu(nn.Conv2d(8 * nf, 16 * nf, 3, stride=2, padding=1, bias=False), 16 * nf),
            *[ResnetBlock(16 * nf) for _ in range(n_blocks)],
        )

    def forward(self, x):  # noqa: D102
        return self.layers(x)


class Decoder(nn.Module):
    """ResNet blocks, three stride-2 transposed convs, conv 7x1, conv 1x7, tanh (mirror of the encoder).

    Args:
        out_channels: Image channels.
        n_features: Width of the encoder's first convolution.
        n_blocks: ResNet blocks at the latent width.
    """

    def __init__(self, out_channels: int, n_features: int, n_blocks: int = 3) -> None:
        super().__init__()
        nf = n_features

        def up(cin: int, cout: int) -> nn.Sequential:
            conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False)
            return conv_bn_relu(conv, cout)

        self.layers = nn.Sequential(
            *[ResnetBlock(16 * nf) for _ in range(n_blocks)],
            up(16 * nf, 8 * nf),
            up(8 * nf, 4 * nf),
            up(4 * nf, 2 * nf),
            conv_bn_relu(nn.Conv2d(2 * nf, nf, (7, 1), padding=(3, 0), bias=False), nf),
            nn.Conv2d(nf, out_channels, (1, 7), padding=(0, 3)),
            nn.Tanh(),
        )

    def forward(self, x):  # noqa: D102
        return self.layers(x)
