"""Synthetic local defects on defect-free training images, for teaching the generator to heal them.

The paper credits the memory with rebuilding a defective input as a normal one, but nothing in
its objective asks for that: trained on defect-free images only, the generator learns to rebuild
whatever it is shown, defects included (``docs/results.md`` measures it). With ``heal_prob > 0``
:class:`~anomalib_maa.Maa` feeds the generator some set-A images with small synthetic defects and
asks for the clean image back (the paired reconstruction term), so that it learns to replace what
does not belong to the normal surface. The defects are deliberately generic, not shaped after any
dataset: a few blobs (ellipses, rectangles or thin strokes, 1-12 % of the side) filled with the
inverted image, a random grey level, or the content of another place of the same image.

Example:
    >>> x = torch.zeros(4, 1, 64, 64)
    >>> corrupted, mask = synthetic_defects(x, prob=1.0, generator=torch.Generator().manual_seed(0))
    >>> corrupted.shape, bool(mask.any())
    (torch.Size([4, 1, 64, 64]), True)
"""

from __future__ import annotations

import math

import torch

__all__ = ["synthetic_defects"]


def _blob_masks(count: int, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` random blob masks ``(count, H, W)``: ellipses, rectangles and thin strokes."""
    rand = torch.rand(count, 8, generator=generator)
    side = min(height, width)
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    cy = (rand[:, 0] * height).view(-1, 1, 1)
    cx = (rand[:, 1] * width).view(-1, 1, 1)
    ry = (0.01 + 0.11 * rand[:, 2]) * side / 2 + 1
    rx = (0.01 + 0.11 * rand[:, 3]) * side / 2 + 1
    angle = (rand[:, 4] * math.pi).view(-1, 1, 1)
    dy, dx = ys - cy, xs - cx
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    kind = rand[:, 5]
    ellipse = (u / rx.view(-1, 1, 1)) ** 2 + (v / ry.view(-1, 1, 1)) ** 2 <= 1
    rectangle = (u.abs() <= rx.view(-1, 1, 1)) & (v.abs() <= ry.view(-1, 1, 1))
    length = (0.1 + 0.3 * rand[:, 6]).view(-1, 1, 1) * side
    thickness = (1 + 2 * rand[:, 7]).view(-1, 1, 1)
    stroke = (u.abs() <= length / 2) & (v.abs() <= thickness / 2)
    return torch.where(
        (kind < 1 / 3).view(-1, 1, 1), ellipse, torch.where((kind < 2 / 3).view(-1, 1, 1), rectangle, stroke)
    )


def synthetic_defects(
    images: torch.Tensor,
    prob: float = 0.5,
    max_blobs: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint small synthetic defects on a random share of a batch of images in [-1, 1].

    Args:
        images: Batch ``(B, C, H, W)``, values in [-1, 1].
        prob: Probability that an image gets defects (1 to ``max_blobs`` blobs).
        max_blobs: Most blobs per image.
        generator: Random generator (default: torch's global one, so seeded runs repeat).

    Returns:
        ``(corrupted, mask)``: the corrupted batch and the ``(B, 1, H, W)`` boolean defect mask
        (all false for untouched images).
    """
    batch, channels, height, width = images.shape
    device = images.device
    draws = torch.rand(batch, 3, generator=generator)
    chosen = draws[:, 0] < prob
    n_blobs = 1 + (draws[:, 1] * max_blobs).long().clamp(max=max_blobs - 1)
    masks = _blob_masks(batch * max_blobs, height, width, generator).view(batch, max_blobs, height, width)
    keep = torch.arange(max_blobs).view(1, -1) < n_blobs.view(-1, 1)
    mask = (masks & keep.view(batch, max_blobs, 1, 1)).any(dim=1) & chosen.view(-1, 1, 1)
    mask = mask.unsqueeze(1).to(device)
    fill_kind = torch.rand(batch, generator=generator).view(-1, 1, 1, 1).to(device)
    grey = (torch.rand(batch, channels, 1, 1, generator=generator) * 2 - 1).to(device)
    shifts = (
        int(torch.randint(height // 4, max(height // 4 + 1, 3 * height // 4), (1,), generator=generator)),
        int(torch.randint(width // 4, max(width // 4 + 1, 3 * width // 4), (1,), generator=generator)),
    )
    elsewhere = images.roll(shifts, dims=(-2, -1))
    fill = torch.where(fill_kind < 1 / 3, -images, torch.where(fill_kind < 2 / 3, grey.expand_as(images), elsewhere))
    return torch.where(mask, fill, images), mask
