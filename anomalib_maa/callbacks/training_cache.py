"""Decode and resize MAA's training images once per fit instead of once per step.

MAA takes its random crops and flips in the model, so a training item (the image at the model's input size) is the
same at every step. :class:`TrainingImageCache` wraps the training set in a
:class:`~anomalib_maa.data.cache.CachedDataset` when ``fit`` starts, reads every item once, and trains from
memory without loader workers (no worker start-up each epoch); the training
batches, and so the trained model, are the same as without it. At the end of the fit the dataset and the worker
count are put back and the memory is freed.

It stays out of the way when caching could change the result or does not fit: random augmentations on the
training set (they would be frozen), or items that would take more than ``max_bytes``. The default limit is the
environment variable ``ANOMALIB_MAA_TRAIN_CACHE_MB`` (MiB; ``0`` turns the cache off) or, without it, a quarter of
the memory available when the fit starts, at most 4 GiB.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_maa.data.cache import CachedDataset, deterministic

__all__ = ["ENV_LIMIT", "TrainingImageCache", "default_limit"]

logger = logging.getLogger(__name__)

_MAX_DEFAULT = 4 * 2**30
ENV_LIMIT = "ANOMALIB_MAA_TRAIN_CACHE_MB"
"""Environment variable with the default limit in MiB (``0``: no cache)."""


def _available_bytes() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not on every platform
        return _MAX_DEFAULT


def default_limit() -> int:
    """The cache limit in bytes when none is given: ``$ANOMALIB_MAA_TRAIN_CACHE_MB`` or a quarter of free memory.

    Raises:
        ValueError: If the environment variable is not a number of MiB.
    """
    value = os.environ.get(ENV_LIMIT, "").strip()
    if value:
        try:
            return int(float(value) * 2**20)
        except ValueError as error:
            msg = f"{ENV_LIMIT} must be a number of MiB (0 turns the training-image cache off), got {value!r}"
            raise ValueError(msg) from error
    return min(_MAX_DEFAULT, _available_bytes() // 4)


def _item_bytes(item: Any) -> int:
    return sum(
        int(value.numel() * value.element_size())
        for value in (getattr(item, "image", None), getattr(item, "gt_mask", None))
        if isinstance(value, torch.Tensor)
    )


class TrainingImageCache(Callback):
    """Keep the training items in memory for the time of a fit.

    Args:
        max_bytes: Largest size of the cached items; ``None``: :func:`default_limit`.

    Attributes:
        seconds: Time spent reading the items once (the last fit).
        cached: Whether the last fit trained from the cache.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.seconds = 0.0
        self.cached = False
        self._restore: tuple[Any, Any, int] | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Wrap the training set, read it once and train without loader workers (when that changes nothing)."""
        del pl_module
        self.cached = False
        datamodule = getattr(trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_data", None)
        if dataset is None or isinstance(dataset, CachedDataset) or not hasattr(dataset, "samples") or not len(dataset):
            return
        if not deterministic(getattr(dataset, "augmentations", None)):
            logger.info("Training images not cached: the training set has random augmentations.")
            return
        limit = self.max_bytes if self.max_bytes is not None else default_limit()
        start = time.perf_counter()
        first = dataset[0]
        needed = _item_bytes(first) * len(dataset)
        if needed > limit:
            logger.info(
                "Training images not cached: %d items would take %.0f MiB (limit %.0f MiB).",
                len(dataset),
                needed / 2**20,
                limit / 2**20,
            )
            return
        cached = CachedDataset(dataset)
        cached.store[cached.key(0)] = first
        for index in range(1, len(cached)):
            cached[index]  # read in this process: no shared-memory handles, no draw from the global RNG
        workers = int(getattr(datamodule, "num_workers", 0) or 0)
        self.seconds = time.perf_counter() - start
        self._restore = (datamodule, dataset, workers)
        datamodule.train_data = cached
        if hasattr(datamodule, "num_workers"):
            datamodule.num_workers = 0
        self.cached = True
        logger.info(
            "Training images cached: %d items, %.0f MiB, read in %.1f s.", len(cached), needed / 2**20, self.seconds
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Put the training set and the worker count back; free the items."""
        del trainer, pl_module
        self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Also put them back when the fit fails."""
        del trainer, pl_module, exception
        self._release()

    def _release(self) -> None:
        if self._restore is None:
            return
        datamodule, dataset, workers = self._restore
        self._restore = None
        datamodule.train_data = dataset
        if hasattr(datamodule, "num_workers"):
            datamodule.num_workers = workers
