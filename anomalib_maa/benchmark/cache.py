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

from anomalib_maa.data.cache import CachedDataset

__all__ = ["CachedDataset", "DatasetCache", "cache_size", "clear_cache"]

_CACHE: dict[tuple[str, str, str], Any] = {}


def clear_cache() -> None:
    """Drop every cached item."""
    _CACHE.clear()


def cache_size() -> int:
    """Number of cached items."""
    return len(_CACHE)


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
                    dataset = CachedDataset(dataset, _CACHE)
                    setattr(datamodule, name, dataset)
                for index in range(len(dataset)):
                    dataset[index]
        self.seconds += time.perf_counter() - start
