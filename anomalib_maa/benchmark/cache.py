"""In-memory cache of dataset items, shared by all jobs of a leaderboard run.

Decoding KolektorSDD's 500 x 1250 JPEGs and resizing them took about 16 s per pass over the
243 training images on two busy cores, every epoch, for every model and seed. With ``cache: true``
on a datamodule, each item (after its augmentations, i.e. the model's resize) is kept in memory
the first time it is read and served from there afterwards, by every later epoch and job that
reads the same file with the same transforms.

Only for deterministic augmentations (resizing): random augmentations would be frozen. The cache
lives in the main process, so the data loaders of a cached datamodule run without workers.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import Dataset

__all__ = ["CachedDataset", "DatasetCache", "cache_size", "clear_cache"]

_CACHE: dict[tuple[str, str, str], Any] = {}


def clear_cache() -> None:
    """Drop every cached item."""
    _CACHE.clear()


def cache_size() -> int:
    """Number of cached items."""
    return len(_CACHE)


class CachedDataset(Dataset):
    """A dataset whose items are read once and then served from the process-wide cache.

    Items are keyed by image path, mask path and the augmentations' description, so every job of a
    run that reads the same file with the same transforms shares one decoded item. Everything else
    (``samples``, ``task``, ``collate_fn``, ``augmentations``, ...) is read from and written to the wrapped
    dataset.

    Args:
        dataset: The anomalib dataset to cache (it needs a ``samples`` table).
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        """Number of items of the wrapped dataset."""
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        """The wrapped dataset's item ``index``, decoded at most once per process."""
        row = self.dataset.samples.iloc[index]
        key = (str(row.image_path), str(getattr(row, "mask_path", "")), repr(self.dataset.augmentations))
        item = _CACHE.get(key)
        if item is None:
            item = self.dataset[index]
            _CACHE[key] = item
        return item

    def __getattr__(self, name: str) -> Any:
        """Attributes other than the items are the wrapped dataset's."""
        if name == "dataset":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Writes other than ``dataset`` go to the wrapped dataset (anomalib sets ``augmentations`` at setup)."""
        if name == "dataset":
            super().__setattr__(name, value)
        else:
            setattr(self.dataset, name, value)


class DatasetCache(Callback):
    """Callback that routes the datamodule's datasets through the process-wide item cache.

    At each ``setup`` it also reads every item once (filling the cache where it is cold) and adds
    the time this took to :attr:`seconds`, so that the runner can keep data decoding out of the
    fit and test times.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """After the datamodule's ``setup``: wrap its datasets in :class:`CachedDataset`, no workers, warm the cache."""
        del pl_module, stage
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None:
            return
        if hasattr(datamodule, "num_workers"):
            datamodule.num_workers = 0
        start = time.perf_counter()
        for name in ("train_data", "val_data", "test_data"):
            dataset = getattr(datamodule, name, None)
            if dataset is not None and hasattr(dataset, "samples"):
                if not isinstance(dataset, CachedDataset):
                    dataset = CachedDataset(dataset)
                    setattr(datamodule, name, dataset)
                for index in range(len(dataset)):
                    dataset[index]
        self.seconds += time.perf_counter() - start
