"""PyTorch model of MAA: generator with auto-memory, Markov discriminator, FMD score, anomaly map."""

from __future__ import annotations

from typing import Literal

import torch
from anomalib.data import InferenceBatch
from anomalib.data.utils.tiler import Tiler
from torch import nn

from anomalib_maa.metrics.fmd import FmdMethod, frechet_markov_distance, local_maximum

from .anomaly_map import AnomalyMapGenerator
from .components import Decoder, Encoder
from .discriminator import MarkovDiscriminator
from .memory import AutoMemory, MemoryMode
from .score_norm import TileScoreNorm, tile_norm_method

ScoreMode = Literal["fmd", "local_fmd", "map_max"]


class Generator(nn.Module):
    """Encoder -> ResNet blocks -> auto-memory -> ResNet blocks -> decoder (paper, Table I).

    Args:
        image_size: Input size ``(H, W)``; both must be multiples of 8.
        in_channels: Image channels.
        n_features: First encoder width (16 in Table I; the latent has ``16 * n_features`` channels).
        memory: ``"persistent"`` (state kept across batches), ``"zero"`` (per-sample zero state) or
            ``"none"`` (no memory cell: the ResNet stacks meet directly, the paper's ablation).
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
        self.memory = nn.Identity() if memory == "none" else AutoMemory(latent, (height // 8, width // 8), memory)
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
    features of the input and of its reconstruction, shape ``(B,)``; with ``score="local_fmd"``
    the largest FMD over windows of ``score_window x score_window`` patches) and ``anomaly_map``
    (residual local variance, ``(B, 1, H, W)`` at input resolution).

    Args:
        image_size: Input size ``(H, W)``, multiples of 8.
        in_channels: Image channels (3, or 1 for grayscale lines).
        n_features: Generator width; the discriminator's first width is ``4 * n_features``
            (16 -> 64, as in the paper), so one argument scales the whole model.
        memory: ``"persistent"``, ``"zero"`` or ``"none"`` (no memory cell) auto-memory.
        feature_layer: Discriminator layer (1-4) that feeds the Markov encoder f(x).
        fmd_method: ``"eigh"`` (exact: Cholesky + eigenvalues, the default) or ``"polar"``
            (matmul-only and float32-safe) is what ONNX/OpenVINO exports compute (``docs/deployment.md``).
        map_window: Window of the local-variance anomaly map.
        score: ``"fmd"`` (the paper's whole-image FMD) or ``"local_fmd"`` (maximum FMD over
            overlapping windows of Markov patches, which small defects move far more; see
            ``docs/results.md``) or ``"map_max"`` (the largest value of the anomaly map: the residual's
            local variance, which finds small defects that a Gaussian over all patches dilutes).
        score_window: Window side, in Markov patches, of ``"local_fmd"``.
        tile_size: Side ``(H, W)`` of the tiles the generator and discriminator work on, or ``None``
            for whole images. ``image_size`` must be a whole number of tiles; in eval mode an image
            is cut into non-overlapping tiles (anomalib's ``Tiler``), its score is the largest tile
            score and its anomaly map is put back together. Training feeds random tile-sized crops
            (:class:`~anomalib_maa.Maa`), so a model sees near-native resolution at the cost of a tile.
        tile_norm: Read each tile's score against the defect-free training images' scores of the same tile
            (:class:`~anomalib_maa.models.maa.score_norm.TileScoreNorm`) and score an image by its largest:
            ``"zscore"`` (or ``True``: robust z-score of the log score), ``"quantile"`` (the score over the tile's
            training q95), ``False``/``"none"`` (raw). The statistics are fitted with :meth:`fit_tile_norm`
            (the Pauta post-processor does it when it scores the training images); the anomaly map is unchanged.

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
        score: ScoreMode = "fmd",
        score_window: int = 3,
        tile_size: tuple[int, int] | None = None,
        tile_norm: bool | str = False,
    ) -> None:
        super().__init__()
        norm_method = tile_norm_method(tile_norm)
        image_size = tuple(image_size)
        tile_size = tuple(tile_size) if tile_size is not None else image_size
        if any(side % tile for side, tile in zip(image_size, tile_size, strict=True)):
            msg = f"image_size {image_size} must be a whole number of tiles of {tile_size}"
            raise ValueError(msg)
        if score not in {"fmd", "local_fmd", "map_max"}:
            msg = f"Unknown MAA score {score!r}: use 'fmd' (whole image, the paper's), 'local_fmd' or 'map_max'"
            raise ValueError(msg)
        self.generator = Generator(tile_size, in_channels, n_features, memory)
        self.image_size, self.tile_size = image_size, tile_size
        self.tiler = Tiler(tile_size=tile_size, stride=tile_size) if tile_size != image_size else None
        self.discriminator = MarkovDiscriminator(in_channels, 4 * n_features, feature_layer)
        self.anomaly_map_generator = AnomalyMapGenerator(map_window)
        self.fmd_method = fmd_method
        self.score = score
        self.score_window = score_window
        self.in_channels = in_channels
        self.score_norm = TileScoreNorm(self.n_tiles, norm_method) if norm_method else None
        self.apply(init_weights)

    @property
    def n_tiles(self) -> int:
        """Tiles per image (1 without tiling)."""
        if self.tiler is None:
            return 1
        (height, width), (tile_h, tile_w) = self.image_size, self.tile_size
        stride_h, stride_w = self.tiler.stride_h, self.tiler.stride_w
        return ((height - tile_h) // stride_h + 1) * ((width - tile_w) // stride_w + 1)

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

    def fmd(self, f_input: torch.Tensor, f_reconstruction: torch.Tensor) -> torch.Tensor:
        """FMD per image with the model's method (``"polar"``: the matmul-only float32 form of exports)."""
        return frechet_markov_distance(f_input, f_reconstruction, method=self.fmd_method)

    def forward(self, image: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Reconstruct (training) or score (eval) a batch of images in [-1, 1]."""
        if self.training:
            image = self.match_channels(image)
            if self.tiler is None:
                return self.generator(image)
            return self.tiler.untile(self.generator(self.tiler.tile(image)))
        tile_scores, anomaly_map = self.tile_scores(image)
        score = self.score_norm(tile_scores) if self.score_norm is not None else tile_scores.amax(dim=1)
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)

    def tile_scores(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw score of every tile ``(B, T)`` and the anomaly map ``(B, 1, H, W)`` of images in [-1, 1] (eval).

        Without tiling ``T`` is 1. An image's raw score is its largest tile score.
        """
        image = self.match_channels(image)
        batch_size = image.shape[0]
        if self.tiler is not None:
            image = self.tiler.tile(image)
        reconstruction = self.generator(image)
        anomaly_map = self.anomaly_map_generator(image, reconstruction)
        if self.score == "map_max":
            score = anomaly_map.flatten(1).amax(dim=1)
        else:
            f_input = self.discriminator.markov_features(image)
            f_reconstruction = self.discriminator.markov_features(reconstruction)
            if self.score == "local_fmd":
                score = local_maximum(self.fmd, f_input, f_reconstruction, self.score_window)
            else:
                score = self.fmd(f_input, f_reconstruction)
        if self.tiler is not None:
            anomaly_map = self.tiler.untile(anomaly_map)
        return score.reshape(batch_size, -1), anomaly_map

    def fit_tile_norm(self, tile_scores: torch.Tensor) -> None:
        """Fit the per-tile statistics to the raw tile scores ``(N, T)`` of defect-free images.

        Raises:
            RuntimeError: If the model was built without ``tile_norm``.
        """
        if self.score_norm is None:
            msg = "This MAA model was built with tile_norm=False: it has no tile statistics to fit"
            raise RuntimeError(msg)
        self.score_norm.fit(tile_scores)
