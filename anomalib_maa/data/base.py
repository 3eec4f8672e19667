"""Base datamodule applying the paper's protocol, and the dataset class it serves.

A subclass only says how to list its samples (:meth:`ProtocolDataModule._collect_samples`); this base applies
:func:`~anomalib_maa.data.protocol.protocol_split`, builds the anomalib datasets and leaves validation to
anomalib's ``val_split_mode`` machinery.

Validation defaults to ``"none"``. anomalib 2.7's ``AnomalibDataModule.val_dataloader`` then fails with
``AttributeError: ... has no attribute 'val_data'`` unless the trainer runs with ``limit_val_batches=0``; this
base returns an empty list instead, which Lightning treats as "no validation" (it logs a one-line warning
"Total length of `list` across ranks is zero"), so ``Engine.fit`` works with no extra trainer argument.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from pathlib import Path

import torch
from anomalib import TaskType
from anomalib.data.dataclasses import DatasetItem, ImageItem
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, TestSplitMode, ValSplitMode, read_mask
from pandas import DataFrame
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask

from anomalib_maa.data.checks import DatasetError, require_dir
from anomalib_maa.data.protocol import TEST, TRAIN, check_train_ratio, protocol_split
from anomalib_maa.io import read_image

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ["key", "image_path", "mask_path", "label", "label_index"]


def default_num_workers(limit: int = 4) -> int:
    """Dataloader workers sized to the machine: the usable CPU count, at most ``limit``.

    anomalib's datamodules default to 8 workers, which on a two-core machine made testing four times slower.

    Args:
        limit: Upper bound. Defaults to ``4``.

    Returns:
        ``min(limit, usable CPUs)``.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        cpus = os.cpu_count() or 1
    return max(0, min(limit, cpus))


class SampleDataset(AnomalibDataset):
    """anomalib dataset over a ready samples table.

    Args:
        samples: Rows with ``image_path``, ``mask_path`` (``""`` when none), ``label_index`` and ``split``.
        task: ``"segmentation"`` when masks are served, else ``"classification"``.
        name: Dataset name shown by anomalib.
        augmentations: Augmentations applied to every item. Defaults to ``None``.
    """

    def __init__(self, samples: DataFrame, task: str, name: str, augmentations: Transform | None = None) -> None:
        super().__init__(augmentations=augmentations)
        self._name = name
        samples = samples.reset_index(drop=True)
        samples.attrs = {"task": task}
        self.samples = samples

    @property
    def name(self) -> str:
        """Name of the dataset."""
        return self._name

    def __getitem__(self, index: int) -> DatasetItem:
        """Return one item, as anomalib's dataset does, but read with :func:`anomalib_maa.io.read_image`.

        anomalib's reader clips 16-bit grayscale images at 255; this one scales them to [0, 1].

        Args:
            index: Row of the samples table.

        Returns:
            The image item (image, mask for segmentation, label, paths).
        """
        row = self.samples.iloc[index]
        image = read_image(row.image_path)
        gt_mask = None
        if self.task == TaskType.SEGMENTATION:
            if row.label_index == LabelName.NORMAL:
                gt_mask = Mask(torch.zeros(image.shape[-2:])).to(torch.uint8)
            elif row.label_index == LabelName.ABNORMAL:
                gt_mask = read_mask(row.mask_path, as_tensor=True)
        if self.augmentations:
            if self.task == TaskType.CLASSIFICATION:
                image = self.augmentations(image)
            elif self.task == TaskType.SEGMENTATION:
                mask = gt_mask if gt_mask is not None else Mask(torch.zeros(image.shape[-2:])).to(torch.uint8)
                image, mask = self.augmentations(image, mask)
                gt_mask = mask if gt_mask is not None else None
        gt_label = None if row.label_index == LabelName.UNKNOWN else torch.tensor(row.label_index)
        return ImageItem(
            image=image,
            gt_mask=gt_mask,
            gt_label=gt_label,
            image_path=row.image_path,
            mask_path=row.mask_path,
        )


class ProtocolDataModule(AnomalibDataModule):
    """anomalib datamodule whose train/test split follows the paper's protocol.

    Args:
        root: Dataset root folder.
        train_ratio: Fraction of the defect-free images used for training. Defaults to ``0.7``.
        seed: Seed of the split (and of anomalib's validation splits). Defaults to ``42``.
        train_batch_size: Training batch size. Defaults to ``32``.
        eval_batch_size: Validation and test batch size. Defaults to ``32``.
        num_workers: Dataloader workers; ``None`` sizes them to the machine (:func:`default_num_workers`).
        train_augmentations: Augmentations for training images. Defaults to ``None``.
        val_augmentations: Augmentations for validation images. Defaults to ``None``.
        test_augmentations: Augmentations for test images. Defaults to ``None``.
        augmentations: Augmentations for any stage without its own. Defaults to ``None``.
        val_split_mode: anomalib validation mode: ``none`` (default; the Pauta threshold needs no validation),
            ``same_as_test``, ``from_test``, ``from_train``, ``synthetic``, or ``from_dir`` where the dataset
            has a validation folder.
        val_split_ratio: Fraction taken for validation by ``from_test``, ``from_train`` and ``synthetic``.
            Defaults to ``0.5``.
    """

    has_val_dir: bool = False
    """Whether the dataset layout has a validation folder (needed by ``val_split_mode="from_dir"``)."""

    def __init__(
        self,
        root: str | Path,
        train_ratio: float = 0.7,
        seed: int | None = 42,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int | None = None,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        val_split_mode: ValSplitMode | str = ValSplitMode.NONE,
        val_split_ratio: float = 0.5,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=default_num_workers() if num_workers is None else num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            test_split_mode=TestSplitMode.FROM_DIR,
            seed=seed,
        )
        self.root = Path(root)
        self.train_ratio = check_train_ratio(train_ratio)
        if self.val_split_mode == ValSplitMode.FROM_DIR and not self.has_val_dir:
            msg = (
                f"{self.name} has no validation folder, so val_split_mode='from_dir' cannot work; use 'none', "
                "'same_as_test', 'from_test', 'from_train' or 'synthetic'"
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _collect_samples(self) -> DataFrame:
        """List and check every sample of the dataset.

        Returns:
            One row per image with the columns :data:`SAMPLE_COLUMNS`; ``key`` is unique and independent of
            where the dataset lies (e.g. the path relative to the root); ``mask_path`` is ``""`` without mask.
        """

    def _collect_val_samples(self) -> DataFrame:
        """List the samples of the validation folder (only for layouts with ``has_val_dir``).

        Returns:
            Rows as in :meth:`_collect_samples`.
        """
        raise NotImplementedError

    def _missing_root_hint(self) -> str:
        """Sentence telling the user where to put the data; shown when the root is missing."""
        return "See docs/datasets.md for where to get the data and how to lay it out."

    # ------------------------------------------------------------------ anomalib / Lightning hooks
    def _check_root(self) -> Path:
        """Return the root, or raise ``FileNotFoundError`` with the hint when it is missing."""
        return require_dir(self.root, f"{self.name} dataset root", self._missing_root_hint())

    def prepare_data(self) -> None:
        """Fail at once, with a hint, when the dataset root is missing (no download)."""
        self._check_root()

    def _setup(self, _stage: str | None = None) -> None:
        """Collect and check the samples, then build the protocol's train and test sets."""
        samples = protocol_split(self._collect_samples(), self.train_ratio, self.seed)
        task = "segmentation" if (samples["mask_path"] != "").any() else "classification"
        self.train_data = self._dataset(samples[samples["split"] == TRAIN], task)
        self.test_data = self._dataset(samples[samples["split"] == TEST], task)
        if self.val_split_mode == ValSplitMode.FROM_DIR:
            val_samples = self._collect_val_samples().assign(split="val")
            unmasked = val_samples[(val_samples["label_index"] == 1) & (val_samples["mask_path"] == "")]
            if task == "segmentation" and not unmasked.empty:
                first = unmasked["image_path"].iloc[0]
                msg = f"Defective validation image {first} has no mask, but the dataset has masks"
                raise DatasetError(msg)
            self.val_data = self._dataset(val_samples, task)
        logger.info(
            "%s: %d training images, %d test images (%d defective)",
            self.name,
            len(self.train_data),
            len(self.test_data),
            int((samples["label_index"] == 1).sum()),
        )

    def _dataset(self, samples: DataFrame, task: str) -> SampleDataset:
        """Wrap a samples table in an anomalib dataset."""
        return SampleDataset(samples, task=task, name=self.name)

    def val_dataloader(self) -> list:  # type: ignore[override]
        """Return the validation dataloader, or an empty list (Lightning skips validation) when mode is none."""
        if self.val_split_mode == ValSplitMode.NONE:
            return []
        return super().val_dataloader()
