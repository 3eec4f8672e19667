"""Datasets whose items are decoded once and then served from memory.

MAA trains on random crops of the resized images, taken in the model (``training_step``), so a training item is
the same every epoch: decoding and resizing it again each step is wasted work (KolektorSDD's 500 x 1250 JPEGs
cost more than the model's step on two cores). :class:`CachedDataset` keeps each item the first time it is
read; :func:`deterministic` says whether a dataset's augmentations allow it (resizes only: random augmentations
would be frozen).

Example:
    >>> from torchvision.transforms.v2 import Compose, RandomHorizontalFlip, Resize
    >>> deterministic(Compose([Resize((8, 8))])), deterministic(Compose([RandomHorizontalFlip(), Resize((8, 8))]))
    (True, False)
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset
from torchvision.transforms.v2 import Compose, Normalize, Resize, Transform

__all__ = ["CachedDataset", "deterministic"]

_DETERMINISTIC = (Resize, Normalize)


def deterministic(augmentations: Transform | None) -> bool:
    """Whether ``augmentations`` give the same output every time: ``None``, resizes, normalisations, compositions.

    Args:
        augmentations: A dataset's augmentations.

    Returns:
        ``True`` when caching the items changes nothing.
    """
    if augmentations is None:
        return True
    if isinstance(augmentations, Compose):
        return all(deterministic(transform) for transform in augmentations.transforms)
    return isinstance(augmentations, _DETERMINISTIC)


class CachedDataset(Dataset):
    """A dataset whose items are read once and then served from a store in memory.

    Items are keyed by image path, mask path and the augmentations' description, so that one store can serve
    several datasets (the leaderboard shares one across its jobs) and a change of augmentations (anomalib sets
    the model's resize at setup) reads afresh. Everything else (``samples``, ``task``, ``collate_fn``,
    ``augmentations``, ...) is read from and written to the wrapped dataset.

    Args:
        dataset: The anomalib dataset to cache (it needs a ``samples`` table).
        store: Where items are kept; a new one when ``None``.
    """

    def __init__(self, dataset: Any, store: dict[tuple[str, str, str], Any] | None = None) -> None:
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "store", {} if store is None else store)

    def __len__(self) -> int:
        """Number of items of the wrapped dataset."""
        return len(self.dataset)

    def key(self, index: int) -> tuple[str, str, str]:
        """Key of item ``index`` in the store: image path, mask path, the augmentations' description."""
        row = self.dataset.samples.iloc[index]
        return (str(row.image_path), str(getattr(row, "mask_path", "")), repr(self.dataset.augmentations))

    def __getitem__(self, index: int) -> Any:
        """The wrapped dataset's item ``index``, decoded at most once per store."""
        key = self.key(index)
        item = self.store.get(key)
        if item is None:
            item = self.dataset[index]
            self.store[key] = item
        return item

    def __getattr__(self, name: str) -> Any:
        """Attributes other than the items are the wrapped dataset's."""
        if name in {"dataset", "store"}:  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Writes go to the wrapped dataset (anomalib sets ``augmentations`` at setup)."""
        setattr(self.dataset, name, value)
