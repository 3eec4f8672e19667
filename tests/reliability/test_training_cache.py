"""MAA's training images read once per fit (TrainingImageCache): same weights, restored datamodule, bad cases."""

from __future__ import annotations

import logging

import pytest
import torch
from reliability_helpers import fit_maa, max_state_difference, single_thread
from torchvision.transforms.v2 import ColorJitter, Compose, Normalize, RandomHorizontalFlip, Resize

from anomalib_maa.callbacks import TrainingImageCache, training_cache
from anomalib_maa.data.cache import CachedDataset, deterministic
from anomalib_maa.utils.sample_data import folder_datamodule


def _cache_of(run) -> TrainingImageCache:
    return next(cb for cb in run.engine.trainer.callbacks if isinstance(cb, TrainingImageCache))


def test_only_resizes_and_normalisations_are_deterministic():
    assert deterministic(None) and deterministic(Compose([Resize((8, 8)), Normalize([0.5] * 3, [0.5] * 3)]))
    assert not deterministic(Compose([Resize((8, 8)), RandomHorizontalFlip()]))
    assert not deterministic(ColorJitter(brightness=0.2))


def test_cached_training_gives_the_same_weights_and_restores_the_datamodule(runs, tiny_root, tmp_path, monkeypatch):
    datamodule = folder_datamodule(tiny_root, batch_size=4, num_workers=1)
    with single_thread():
        cached = fit_maa(tmp_path / "cached", None, datamodule=datamodule, epochs=1)
    cache = _cache_of(cached)
    assert cache.cached and cache.seconds > 0
    assert not isinstance(datamodule.train_data, CachedDataset) and datamodule.num_workers == 1  # put back
    monkeypatch.setenv(training_cache.ENV_LIMIT, "0")  # the cache turned off: reads every step
    with single_thread():
        plain = fit_maa(tmp_path / "plain", None, datamodule=folder_datamodule(tiny_root, batch_size=4), epochs=1)
    assert not _cache_of(plain).cached
    assert max_state_difference(cached.model, plain.model) == 0.0
    assert max_state_difference(cached.model, runs.a.model) <= 1e-6  # and the same as the reference run
    torch.testing.assert_close(cached.engine.trainer.callback_metrics, plain.engine.trainer.callback_metrics)


def test_random_augmentations_are_not_cached(tiny_root, tmp_path, caplog):
    datamodule = folder_datamodule(tiny_root, batch_size=4, train_augmentations=RandomHorizontalFlip())
    with caplog.at_level(logging.INFO, logger=training_cache.__name__), single_thread():
        run = fit_maa(tmp_path, None, datamodule=datamodule, epochs=1)
    assert not _cache_of(run).cached
    assert "not cached: the training set has random augmentations" in caplog.text


def test_a_cache_over_its_memory_limit_is_skipped_with_the_sizes(tiny_root, tmp_path, caplog):
    datamodule = folder_datamodule(tiny_root, batch_size=4)
    callback = TrainingImageCache(max_bytes=1)
    datamodule.setup()

    class _Trainer:
        pass

    trainer = _Trainer()
    trainer.datamodule = datamodule
    with caplog.at_level(logging.INFO, logger=training_cache.__name__):
        callback.on_fit_start(trainer, None)
    assert not callback.cached and not isinstance(datamodule.train_data, CachedDataset)
    assert "would take" in caplog.text and "limit" in caplog.text
    callback = TrainingImageCache()
    callback.on_fit_start(trainer, None)
    assert callback.cached and isinstance(datamodule.train_data, CachedDataset)
    first = datamodule.train_data[0]
    assert datamodule.train_data[0] is first and len(datamodule.train_data.store) == len(datamodule.train_data)
    callback.on_exception(trainer, None, RuntimeError("boom"))  # a failed fit puts the dataset back too
    assert not isinstance(datamodule.train_data, CachedDataset)


def test_the_environment_limit_is_read_in_mib_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(training_cache.ENV_LIMIT, "1.5")
    assert training_cache.default_limit() == int(1.5 * 2**20)
    monkeypatch.setenv(training_cache.ENV_LIMIT, "lots")
    with pytest.raises(ValueError, match="ANOMALIB_MAA_TRAIN_CACHE_MB must be a number of MiB"):
        training_cache.default_limit()
    monkeypatch.delenv(training_cache.ENV_LIMIT)
    assert 0 < training_cache.default_limit() <= 4 * 2**30
