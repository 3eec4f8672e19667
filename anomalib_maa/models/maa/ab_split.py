"""The seeded random split of the defect-free training images into sets A and B (Algorithm 1)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def split_ab(image_paths: Iterable[str], seed: int = 0) -> frozenset[str]:
    """Choose set A: a seeded random half of the training images; the rest is set B.

    The choice depends only on the set of paths and the seed, not on the order they are listed
    in, so every process of a distributed run and every re-run gets the same split.

    Args:
        image_paths: Paths of the defect-free training images.
        seed: Seed of the random choice.

    Returns:
        The paths in set A (the first ``ceil(n / 2)`` of a seeded permutation of the sorted paths).

    Raises:
        ValueError: If fewer than two distinct images are given.

    Example:
        >>> sorted(split_ab(["a.png", "b.png", "c.png", "d.png"], seed=0)).__len__()
        2
    """
    paths = sorted({str(path) for path in image_paths})
    if len(paths) < 2:
        msg = (
            f"MAA needs at least two defect-free training images to split into sets A and B, got {len(paths)}. "
            "Add more normal images to the training folder."
        )
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(paths), generator=generator).tolist()
    return frozenset(paths[i] for i in order[: (len(paths) + 1) // 2])
