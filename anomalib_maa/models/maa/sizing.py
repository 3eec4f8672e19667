"""Sizes derived from the training images: model input size, tile grid, channels and training length.

MAA works on tiles of a fixed side (128 pixels in the CPU preset): the generator and the
discriminator never see more than a tile, so the input size only decides how many tiles an image
is cut into. The rule, the same for every dataset:

* keep the images' aspect ratio (median height and width of the training images);
* scale down (never up) so that the image holds at most ``max_pixels`` pixels
  (``640 * 256``: KolektorSDD's 1250 x 500 strips become 640 x 256, ten tiles);
* round each side to a whole number of tiles (at least one: an image smaller than a tile is enlarged to one);
* grayscale (one channel) when every training image is single-channel, or RGB with equal channels;
* train for about ``train_steps`` optimiser steps, whatever the number of images
  (``epochs = ceil(train_steps / steps per epoch)``), so that a large dataset does not take
  proportionally longer and a small one still trains enough.

Example:
    >>> derive_image_size([(1250, 500), (1262, 500)], tile=128)
    (640, 256)
    >>> derive_image_size([(640, 640)], tile=128)
    (384, 384)
    >>> derive_image_size([(100, 90)], tile=128)
    (128, 128)
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_TILE = (128, 128)
"""Tile side when the input size is derived from the data (the CPU preset's)."""

MAX_PIXELS = 640 * 256
"""Largest model input, in pixels (KolektorSDD at half its native resolution)."""

_SINGLE_CHANNEL_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA"}
_SAMPLE = 256  # images whose headers are read (a seeded sample of larger sets)
_DECODE_SAMPLE = 16  # RGB images decoded to check for equal channels


@dataclass(frozen=True)
class DerivedSizes:
    """Sizes derived from a set of training images.

    Args:
        image_size: Model input ``(height, width)``, a whole number of tiles.
        in_channels: 1 (grayscale) or 3.
        native_size: Median ``(height, width)`` of the images.
    """

    image_size: tuple[int, int]
    in_channels: int
    native_size: tuple[int, int]


def derive_image_size(
    sizes: Sequence[tuple[int, int]],
    tile: int | Sequence[int] = 128,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """Model input size for images of the given ``(height, width)`` sizes.

    Args:
        sizes: ``(height, width)`` of the training images.
        tile: Tile side (or ``(height, width)``).
        max_pixels: Largest input area; larger images are scaled down, aspect kept.

    Returns:
        ``(height, width)``, each a positive multiple of the tile side.

    Raises:
        ValueError: If ``sizes`` is empty.
    """
    if not sizes:
        msg = "No training images to derive the model input size from"
        raise ValueError(msg)
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    height = float(np.median([size[0] for size in sizes]))
    width = float(np.median([size[1] for size in sizes]))
    scale = min(1.0, math.sqrt(max_pixels / (height * width)))
    return (
        max(1, math.floor(height * scale / tile_h + 0.5)) * tile_h,  # halves round up
        max(1, math.floor(width * scale / tile_w + 0.5)) * tile_w,
    )


def _is_gray_rgb(path: str) -> bool:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return bool((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all())


def derive_sizes(
    image_paths: Sequence[str | Path],
    tile: int | Sequence[int] = 128,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> DerivedSizes:
    """Input size and channel count for a set of training images (reads headers, decodes a few).

    Args:
        image_paths: The training images.
        tile: Tile side (or ``(height, width)``).
        max_pixels: Largest input area.
        seed: Seed of the sample read from large sets.

    Returns:
        The derived sizes.

    Raises:
        ValueError: If no path is given.
    """
    paths = [str(path) for path in image_paths]
    if not paths:
        msg = "No training images to derive the model input size from"
        raise ValueError(msg)
    if len(paths) > _SAMPLE:
        paths = random.Random(seed).sample(sorted(paths), _SAMPLE)
    sizes, rgb = [], []
    single = True
    for path in paths:
        with Image.open(path) as image:
            sizes.append((image.height, image.width))
            if image.mode not in _SINGLE_CHANNEL_MODES:
                rgb.append(path)
    if rgb:
        single = all(_is_gray_rgb(path) for path in rgb[:_DECODE_SAMPLE])
    native = (int(np.median([s[0] for s in sizes])), int(np.median([s[1] for s in sizes])))
    return DerivedSizes(derive_image_size(sizes, tile, max_pixels), 1 if single else 3, native)


def derive_epochs(n_images: int, batch_size: int, train_steps: int, drop_last: bool = False) -> int:
    """Epochs that give about ``train_steps`` optimiser steps.

    Args:
        n_images: Training images.
        batch_size: Training batch size.
        train_steps: Wanted optimiser steps (one generator and one discriminator update each).
        drop_last: Whether the loader drops the last incomplete batch.

    Returns:
        At least one epoch.

    Example:
        >>> derive_epochs(243, 8, 3000)
        97
    """
    per_epoch = n_images // batch_size if drop_last else math.ceil(n_images / batch_size)
    return max(1, math.ceil(train_steps / max(1, per_epoch)))


def as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from one int or a pair.

    Raises:
        ValueError: If ``image_size`` is neither.
    """
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(side) for side in image_size)
    if len(size) != 2:  # noqa: PLR2004
        msg = f"image_size must be an int or (height, width), got {image_size}"
        raise ValueError(msg)
    return size  # type: ignore[return-value]
