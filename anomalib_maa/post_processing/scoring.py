"""Scoring defect-free images with a model outside Lightning's loops, as at test time.

Used by :class:`~anomalib_maa.post_processing.PautaPostProcessor` from inside trainer hooks: the
images are read in order with the test-time dataset augmentations (no random augmentation), the
model's pre-processing transform is applied here (anomalib's ``PreProcessor`` only applies it in
``on_*_batch_start``), and the model runs in eval mode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from anomalib.models.components.base.memory_bank_module import MemoryBankMixin
from lightning import LightningModule, Trainer
from torch.utils.data import DataLoader, Subset

from anomalib_maa.distributed import (
    all_gather_objects,
    broadcast_module_state,
    contiguous_shard,
    rank_and_world_size,
)
from anomalib_maa.post_processing.pixels import N_QUANTILES, PixelAccumulator

__all__ = [
    "N_QUANTILES",
    "PixelAccumulator",
    "eval_mode",
    "fit_tile_statistics",
    "gather_normal_scores",
    "is_last_epoch",
    "score_normal_images",
    "score_normals",
    "statistics_loader",
    "tile_normalised_model",
]

logger = logging.getLogger(__name__)


def score_normal_images(pl_module: LightningModule, loader: Iterable[Any]) -> tuple[np.ndarray, PixelAccumulator]:
    """Raw image scores and pixel statistics of the normal (``gt_label == 0``) images of a loader.

    Call under ``torch.no_grad()`` with the module in eval mode (see :func:`eval_mode`).

    Args:
        pl_module: anomalib module; its ``pre_processor.transform`` and ``model`` are used.
        loader: Batches with an ``image`` field (and optionally ``gt_label``).

    Returns:
        Float64 scores and a :class:`PixelAccumulator` over the anomaly maps. For a model with per-tile
        statistics (:func:`tile_normalised_model`) the scores are its raw tile scores, shape ``(N, T)``:
        :func:`score_normals` fits the statistics to them and turns them into image scores.
    """
    transform = getattr(getattr(pl_module, "pre_processor", None), "transform", None)
    tiled = tile_normalised_model(pl_module)
    collected: list[np.ndarray] = []
    pixel = PixelAccumulator()
    for batch in loader:
        images = batch.image if hasattr(batch, "image") else batch["image"]
        labels = getattr(batch, "gt_label", None)
        images = images.to(pl_module.device)
        if transform is not None:
            images = transform(images)
        if tiled is not None:
            score, anomaly_map = tiled.tile_scores(images)
        else:
            output = pl_module.model(images)
            anomaly_map = getattr(output, "anomaly_map", None)
            score = getattr(output, "pred_score", None)
            if score is None and anomaly_map is not None:
                score = torch.amax(anomaly_map.flatten(1), dim=1)
            if score is None:
                msg = "The model returned neither pred_score nor anomaly_map in eval mode."
                raise RuntimeError(msg)
            score = score.reshape(-1)
        keep = torch.ones(score.shape[0], dtype=torch.bool, device=score.device)
        if labels is not None:
            keep = torch.as_tensor(labels, device=score.device).reshape(-1) == 0
        collected.append(score[keep].detach().double().cpu().numpy())
        if anomaly_map is not None:
            pixel.update(anomaly_map[keep.to(anomaly_map.device)])
    scores = np.concatenate(collected) if collected else np.empty(0)
    return scores, pixel


def tile_normalised_model(pl_module: LightningModule) -> torch.nn.Module | None:
    """The module's torch model when it scores tiles against fitted per-tile statistics, else ``None``.

    Such a model (MAA with ``tile_norm``) has a ``score_norm`` module, ``tile_scores(images)`` giving the raw
    tile scores ``(B, T)`` and the anomaly map, and ``fit_tile_norm(tile_scores)``.
    """
    model = getattr(pl_module, "model", None)
    if getattr(model, "score_norm", None) is None or not callable(getattr(model, "tile_scores", None)):
        return None
    return model


def fit_tile_statistics(pl_module: LightningModule, tile_scores: np.ndarray) -> np.ndarray:
    """Fit a tile-normalised model's statistics to the normal images' raw tile scores; return image scores.

    Args:
        pl_module: Module whose model :func:`tile_normalised_model` accepts.
        tile_scores: Raw tile scores ``(N, T)`` of the defect-free images (all ranks').

    Returns:
        Float64 image scores ``(N,)``, as the fitted model gives them.
    """
    model = tile_normalised_model(pl_module)
    if model is None:
        msg = f"{type(pl_module).__name__} has no per-tile score statistics to fit"
        raise RuntimeError(msg)
    raw = torch.as_tensor(np.asarray(tile_scores, dtype=np.float64).reshape(len(tile_scores), -1))
    model.fit_tile_norm(raw)
    return model.score_norm(raw.to(model.score_norm.center.device)).double().cpu().numpy()


def score_normals(
    pl_module: LightningModule,
    trainer: Trainer | None,
    source: str,
    dataloader: DataLoader | None = None,
) -> tuple[np.ndarray, PixelAccumulator]:
    """Scores and pixel statistics of defect-free images, the model in eval mode, as at test time.

    Memory-bank models are fitted first. Without ``dataloader`` the images are ``source``'s (``"train"`` or
    ``"val"``) of the trainer's datamodule, read in order with the test-time augmentations; in a distributed run
    rank 0's model state is broadcast, each rank scores its contiguous shard, and the shards are gathered, so
    every rank gets what one process would. Collective then: every rank must call it.

    Returns:
        Float64 scores and a :class:`PixelAccumulator`.
    """
    ensure_memory_bank_fitted(pl_module)
    with ExitStack() as stack:
        stack.enter_context(eval_mode(pl_module))
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.no_grad())
        if dataloader is not None:
            scores, pixel = score_normal_images(pl_module, dataloader)
        else:
            # Score with rank 0's weights and buffers, the checkpoint's (no-ops in a single process).
            broadcast_module_state(getattr(pl_module, "model", pl_module))
            loader = stack.enter_context(statistics_loader(source, trainer, pl_module, shard=True))
            scores, pixel = gather_normal_scores(*score_normal_images(pl_module, loader))
        if tile_normalised_model(pl_module) is not None and np.size(scores):  # raw tile scores: fit, then score
            scores = fit_tile_statistics(pl_module, scores)
        return scores, pixel


def gather_normal_scores(scores: np.ndarray, pixel: PixelAccumulator) -> tuple[np.ndarray, PixelAccumulator]:
    """Join every rank's scores and pixel statistics, in rank order (unchanged in a single process).

    Meant for the output of :func:`score_normal_images` over a ``statistics_loader(..., shard=True)``:
    the shards are contiguous, so rank order is the dataset order and the result equals a single
    process scoring the whole set (the sums differ only in float64 rounding). Collective: every
    rank must call it.

    Args:
        scores: This rank's scores.
        pixel: This rank's pixel accumulator.

    Returns:
        All ranks' scores and one merged accumulator, identical on every rank.
    """
    gathered = all_gather_objects((scores, pixel.state()))
    if len(gathered) == 1:
        return scores, pixel
    shape = (-1, *np.shape(scores)[1:])  # image scores (N,) or tile scores (N, T)
    merged_scores = np.concatenate([np.asarray(part, dtype=np.float64).reshape(shape) for part, _ in gathered])
    return merged_scores, PixelAccumulator.merged(state for _, state in gathered)


@contextmanager
def statistics_loader(
    source: str,
    trainer: Trainer | None,
    pl_module: LightningModule,
    shard: bool = False,
) -> Iterator[DataLoader]:
    """An ordered loader over the training (``"train"``) or validation (``"val"``) images.

    Takes the datamodule's ``train_data``/``val_data`` (or the trainer's dataloaders' datasets),
    swaps in the test-time dataset augmentations for the duration, and reads without shuffling.

    With ``shard=True`` in a distributed run, each rank reads only its contiguous share of the
    images (:func:`~anomalib_maa.distributed.contiguous_shard`: each image on exactly one rank, no
    ``DistributedSampler`` padding); join the results with :func:`gather_normal_scores`. In a
    single process ``shard`` changes nothing.

    Raises:
        RuntimeError: If no such dataset can be found.
    """
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    attribute = "train_data" if source == "train" else "val_data"
    dataset = getattr(datamodule, attribute, None)
    collate_fn = getattr(datamodule, "external_collate_fn", None)
    batch_size = getattr(datamodule, "eval_batch_size", 32)
    num_workers = getattr(datamodule, "num_workers", 0)
    if dataset is None and trainer is not None:
        loaders = trainer.train_dataloader if source == "train" else trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
        if isinstance(loader, DataLoader):
            dataset, collate_fn = loader.dataset, loader.collate_fn
            batch_size = loader.batch_size or batch_size
    if dataset is None:
        msg = f"PautaPostProcessor(stats_source={source!r}) found no {attribute} to score; pass a datamodule."
        raise RuntimeError(msg)
    split_mode = getattr(datamodule, "val_split_mode", None)
    if source == "val" and split_mode is not None and str(getattr(split_mode, "value", split_mode)) != "from_train":
        logger.warning("stats_source='val' with val_split_mode=%s: only its normal images are used.", split_mode)
    has_augmentations = hasattr(dataset, "augmentations")
    saved = dataset.augmentations if has_augmentations else None
    if has_augmentations:
        dataset.augmentations = eval_augmentations(datamodule, pl_module)
    rank, world_size = rank_and_world_size() if shard else (0, 1)
    subset = Subset(dataset, contiguous_shard(len(dataset), rank, world_size)) if world_size > 1 else dataset
    try:
        yield DataLoader(
            subset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_fn or getattr(dataset, "collate_fn", None),
        )
    finally:
        if has_augmentations:
            dataset.augmentations = saved


def eval_augmentations(datamodule: Any, pl_module: LightningModule) -> Any:
    """Test-time dataset augmentations: the test subset's, else the model's resize, else none."""
    test_data = getattr(datamodule, "test_data", None)
    if test_data is not None and hasattr(test_data, "augmentations"):
        return test_data.augmentations
    from anomalib.data.transforms.utils import extract_transforms_by_type
    from torchvision.transforms.v2 import Compose, Resize

    transform = getattr(getattr(pl_module, "pre_processor", None), "transform", None)
    resizes = extract_transforms_by_type(transform, Resize) if transform is not None else []
    if not resizes:
        return None
    return resizes[0] if len(resizes) == 1 else Compose(resizes)


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own mode (frozen parts stay so)."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


def ensure_memory_bank_fitted(pl_module: LightningModule) -> None:
    """Run a memory-bank model's guarded ``fit()``, as its own hooks would, only earlier.

    PaDiM and PatchCore fit in their ``on_train_epoch_end``/``on_validation_start``, which
    Lightning calls after the callbacks' hooks of the same name.
    """
    if isinstance(pl_module, MemoryBankMixin) and not bool(pl_module._is_fitted):
        pl_module.fit()
        pl_module._is_fitted = torch.tensor([True], device=pl_module.device)


def is_last_epoch(trainer: Trainer) -> bool:
    """Whether the current epoch is the last of this fit (max_epochs, max_steps or a stop request)."""
    if trainer.should_stop:
        return True
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs:
        return True
    max_steps = trainer.max_steps
    return max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps
