"""Augmenting defect-free training images: random flips and tile-sized crops (options of Maa)."""

from __future__ import annotations

import torch


def random_flips(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right and, independently, top-bottom, each with probability 1/2.

    Surfaces such as commutators, rails and machined metal look as normal flipped as unflipped,
    so the flips show the generator more normal variety at no cost. Draws from torch's global
    generator unless one is given, so a seeded run stays reproducible.

    Args:
        images: Batch ``(B, C, H, W)``.
        generator: Optional random generator.

    Returns:
        A batch of the same shape.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2).repeat(64, 1, 1, 1)
        >>> flipped = random_flips(x, torch.Generator().manual_seed(0))
        >>> sorted({tuple(img.flatten().tolist()) for img in flipped})
        [(0.0, 1.0, 2.0, 3.0), (1.0, 0.0, 3.0, 2.0), (2.0, 3.0, 0.0, 1.0), (3.0, 2.0, 1.0, 0.0)]
    """
    draws = torch.rand(2, images.shape[0], generator=generator).to(images.device)
    shape = (-1, 1, 1, 1)
    images = torch.where((draws[0] < 0.5).view(shape), images.flip(-1), images)  # noqa: PLR2004
    return torch.where((draws[1] < 0.5).view(shape), images.flip(-2), images)  # noqa: PLR2004


def random_crops(images: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut one crop of ``size`` at a random position from each image.

    Args:
        images: Batch ``(B, C, H, W)`` with ``H >= size[0]`` and ``W >= size[1]``.
        size: Crop ``(height, width)``.
        generator: Optional random generator (default: torch's global one, so seeded runs repeat).

    Returns:
        Crops ``(B, C, size[0], size[1])``.

    Example:
        >>> random_crops(torch.zeros(3, 1, 64, 160), (32, 32)).shape
        torch.Size([3, 1, 32, 32])
    """
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    tops = torch.randint(0, height - size[0] + 1, (images.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, width - size[1] + 1, (images.shape[0],), generator=generator).tolist()
    return torch.stack(
        [
            image[:, top : top + size[0], left : left + size[1]]
            for image, top, left in zip(images, tops, lefts, strict=True)
        ]
    )
