"""The defect-free training images, their seeded random split into sets A and B (Algorithm 1), and the A/B batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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


def training_image_paths(trainer: Any) -> list[str]:
    """The defect-free training images of a trainer's datamodule (or of its training dataloader's dataset).

    Args:
        trainer: The Lightning trainer fitting MAA.

    Returns:
        The image paths, as strings.

    Raises:
        ValueError: If the dataset has no image paths, or holds defective images.
    """
    datamodule = getattr(trainer, "datamodule", None)
    dataset = getattr(datamodule, "train_data", None)
    if dataset is None:
        dataset = getattr(trainer.train_dataloader, "dataset", None)
    samples = getattr(dataset, "samples", None)
    if samples is None or "image_path" not in samples:
        msg = "MAA needs an anomalib dataset with image paths to split the training images into sets A and B"
        raise ValueError(msg)
    if "label_index" in samples and (samples["label_index"] != 0).any():
        bad = samples.loc[samples["label_index"] != 0, "image_path"].head(3).tolist()
        msg = f"MAA trains on defect-free images only, but the training set holds defective images, e.g. {bad}"
        raise ValueError(msg)
    return samples["image_path"].astype(str).tolist()


class ABBatches:
    """Splits each training batch into its set-A and set-B images, one B image per A image.

    Set-B images are cycled when the batch holds fewer B than A images. When the batch holds none of one
    set, that set's images from the previous batch stand in; on the very first batch, the other set's
    images shifted by one (so every step, and every DDP rank, updates). The images last seen are kept in
    checkpoints (:meth:`state`), so that a resumed fit continues exactly.

    Example:
        >>> batches = ABBatches()
        >>> batches.start(["a.png", "b.png"], seed=0)
        >>> x_a, x_b = batches.split(torch.zeros(2, 1, 4, 4), ["a.png", "b.png"])
        >>> x_a.shape[0], x_b.shape[0]
        (1, 1)
    """

    def __init__(self) -> None:
        self.set_a: frozenset[str] | None = None
        self.last_seen: dict[str, torch.Tensor] = {}

    def start(
        self, image_paths: Iterable[str], seed: int, resumed: dict[str, torch.Tensor] | None = None, device: Any = None
    ) -> None:
        """Draw set A (:func:`split_ab`) and start from the images a resumed fit saw last (none for a new fit)."""
        self.set_a = split_ab(image_paths, seed)
        self.last_seen = {key: value.to(device) for key, value in (resumed or {}).items()}

    def split(self, image: torch.Tensor, image_paths: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_a, x_b)`` of equal length from a batch and its images' paths.

        Raises:
            RuntimeError: If :meth:`start` was not called (the model is trained outside a Lightning fit).
        """
        if self.set_a is None:
            msg = "The A/B split is made in on_fit_start; train MAA through a Lightning Trainer or anomalib Engine"
            raise RuntimeError(msg)
        in_a = torch.tensor([str(path) in self.set_a for path in image_paths], device=image.device)
        images = {"a": image[in_a], "b": image[~in_a]}
        for key, other in (("a", "b"), ("b", "a")):
            if len(images[key]):
                self.last_seen[key] = images[key].detach()
            else:
                images[key] = self.last_seen.get(key, images[other].roll(1, dims=0))
        x_a, x_b = images["a"], images["b"]
        return x_a, x_b[torch.arange(len(x_a), device=x_b.device) % len(x_b)]

    def state(self) -> dict[str, torch.Tensor]:
        """The images last seen of each set, on the CPU (for a checkpoint)."""
        return {key: value.detach().cpu().clone() for key, value in self.last_seen.items()}
