"""PyTorch model of MAA: generator with auto-memory, Markov discriminator, FMD score, anomaly map."""

from __future__ import annotations

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_maa.deploy.fmd import polar_frechet_markov_distance
from anomalib_maa.metrics.fmd import FmdMethod, frechet_markov_distance

from .anomaly_map import AnomalyMapGenerator
from .components import Decoder, Encoder
from .discriminator import MarkovDiscriminator
from .memory import AutoMemory, MemoryMode


class Generator(nn.Module):
    """Encoder -> ResNet blocks -> auto-memory -> ResNet blocks -> decoder (paper, Table I).

    Args:
        image_size: Input size ``(H, W)``; both must be multiples of 8.
        in_channels: Image channels.
        n_features: First encoder width (16 in Table I; the latent has ``16 * n_features`` channels).
        memory: ``"persistent"`` (state kept across batches) or ``"zero"`` (per-sample zero state).
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        in_channels: int = 3,
        n_features: int = 16,
        memory: MemoryMode = "persistent",
    ) -> None:
        super().__init__()
        height, width = image_size
        if height % 8 or width % 8:
            msg = f"MAA's image_size must be a multiple of 8 on both sides (three stride-2 stages), got {image_size}"
            raise ValueError(msg)
        latent = 16 * n_features
        self.encoder = Encoder(in_channels, n_features)
        self.memory = AutoMemory(latent, (height // 8, width // 8), memory)
        self.decoder = Decoder(in_channels, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` (values in [-1, 1]) as a normal sample."""
        return self.decoder(self.memory(self.encoder(x)))


def init_weights(module: nn.Module) -> None:
    """Paper initialisation: conv weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class MaaModel(nn.Module):
    """Memory-augmented adversarial autoencoder.

    In training mode :meth:`forward` returns the reconstruction. In eval mode it returns an
    :class:`~anomalib.data.InferenceBatch` with ``pred_score`` (the FMD between the Markov
    features of the input and of its reconstruction, shape ``(B,)``) and ``anomaly_map``
    (residual local variance, ``(B, 1, H, W)`` at input resolution).

    Args:
        image_size: Input size ``(H, W)``, multiples of 8.
        in_channels: Image channels (3, or 1 for grayscale lines).
        n_features: Generator width; the discriminator's first width is ``4 * n_features``
            (16 -> 64, as in the paper), so one argument scales the whole model.
        memory: ``"persistent"`` or ``"zero"`` auto-memory state.
        feature_layer: Discriminator layer (1-4) that feeds the Markov encoder f(x).
        fmd_method: ``"eigh"`` (exact) or ``"newton_schulz"`` (matmul-only, exportable); ``"polar"``
            (matmul-only and float32-safe) is what ONNX/OpenVINO exports compute (``docs/deployment.md``).
        map_window: Window of the local-variance anomaly map.

    Example:
        >>> model = MaaModel((64, 64), n_features=4).eval()
        >>> out = model(torch.rand(2, 3, 64, 64) * 2 - 1)
        >>> out.pred_score.shape, out.anomaly_map.shape
        (torch.Size([2]), torch.Size([2, 1, 64, 64]))
    """

    def __init__(
        self,
        image_size: tuple[int, int] = (256, 256),
        in_channels: int = 3,
        n_features: int = 16,
        memory: MemoryMode = "persistent",
        feature_layer: int = 4,
        fmd_method: FmdMethod = "eigh",
        map_window: int = 7,
    ) -> None:
        super().__init__()
        self.generator = Generator(tuple(image_size), in_channels, n_features, memory)
        self.discriminator = MarkovDiscriminator(in_channels, 4 * n_features, feature_layer)
        self.anomaly_map_generator = AnomalyMapGenerator(map_window)
        self.fmd_method = fmd_method
        self.in_channels = in_channels
        self.apply(init_weights)

    def match_channels(self, image: torch.Tensor) -> torch.Tensor:
        """Average RGB input to one channel for a grayscale model; otherwise return it unchanged.

        Raises:
            ValueError: If the image has a channel count the model cannot use.
        """
        channels = image.shape[1]
        if channels == self.in_channels:
            return image
        if self.in_channels == 1 and channels == 3:  # noqa: PLR2004
            return image.mean(dim=1, keepdim=True)
        msg = f"MAA was built for {self.in_channels}-channel images, got {channels} channels ({tuple(image.shape)})"
        raise ValueError(msg)

    def forward(self, image: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Reconstruct (training) or score (eval) a batch of images in [-1, 1]."""
        image = self.match_channels(image)
        reconstruction = self.generator(image)
        if self.training:
            return reconstruction
        f_input = self.discriminator.markov_features(image)
        f_reconstruction = self.discriminator.markov_features(reconstruction)
        if self.fmd_method == "polar":  # matmul-only and float32-safe: the exported graphs' FMD
            score = polar_frechet_markov_distance(f_input, f_reconstruction)
        else:
            score = frechet_markov_distance(f_input, f_reconstruction, method=self.fmd_method)
        anomaly_map = self.anomaly_map_generator(image, reconstruction)
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)
