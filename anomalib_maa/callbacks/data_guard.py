"""Check the data of a run before the first batch, whatever datamodule and model it uses.

:class:`DataGuard` runs in ``setup``, after the datamodule has listed its samples and before any batch is read:

- **every image and mask** of the training, validation and test sets is decoded once
  (:func:`anomalib_maa.data.inputs.check_dataset`): an unreadable, missing or truncated file, a mask of another
  size than its image, or an image with other than 1 or 3 channels (CMYK; RGBA and gray + alpha only with
  ``drop_alpha=False``) stops the run with one :class:`~anomalib_maa.data.DatasetError` naming the file and the fix;
- **alpha channels** are dropped (RGBA read as RGB), as ``anomalib-maa predict`` drops them, and reported once;
- **16-bit images** (which anomalib's reader clips at 255) are read scaled by 65535 through
  :func:`anomalib_maa.io.read_image`, as the plugin's datamodules and ``anomalib-maa predict`` read them;
- **no validation set** (``val_split_mode="none"`` on anomalib's datamodules, which then have no ``val_data``):
  validation is switched off (``limit_val_batches=0``) instead of failing with
  ``AttributeError: 'Folder' object has no attribute 'val_data'``.

:class:`~anomalib_maa.Maa` adds it through ``configure_callbacks``; the ``anomalib-maa`` command adds it for every
other model (PaDiM, PatchCore, ...). In Python, pass ``Engine(callbacks=[DataGuard()])``.
"""

from __future__ import annotations

import logging
import time

from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_maa.data.inputs import check_dataset, describe_mix, use_scaling_reader

__all__ = ["DataGuard"]

logger = logging.getLogger(__name__)

_SPLITS = ("train_data", "val_data", "test_data")
_reported: set[str] = set()
"""Messages already logged in this process (``fit`` then ``test`` set up the same data twice)."""


def _log_once(message: str, key: str | None = None) -> None:
    key = message if key is None else key
    if key not in _reported:
        _reported.add(key)
        logger.info(message)


class DataGuard(Callback):
    """Check every file of the run's datasets once, read 16-bit images scaled, skip absent validation.

    Args:
        drop_alpha: Accept images with an alpha channel and drop the alpha, as ``anomalib-maa predict`` does.
            Defaults to ``True``; ``False`` refuses them with a message naming the first.

    Example:
        >>> from anomalib.engine import Engine
        >>> engine = Engine(callbacks=[DataGuard()])  # doctest: +SKIP
    """

    def __init__(self, drop_alpha: bool = True) -> None:
        self.drop_alpha = drop_alpha

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Switch off validation when there is none, then check the files of every split the datamodule holds."""
        del pl_module
        datamodule = getattr(trainer, "datamodule", None)
        if not isinstance(datamodule, AnomalibDataModule):
            return
        if stage == TrainerFn.FITTING:
            self._skip_missing_validation(trainer, datamodule)
        self._check_files(datamodule)

    @staticmethod
    def _skip_missing_validation(trainer: Trainer, datamodule: AnomalibDataModule) -> None:
        if getattr(datamodule, "val_data", None) is not None or trainer.limit_val_batches == 0:
            return
        trainer.limit_val_batches = 0
        _log_once(f"{datamodule.name} has no validation set (val_split_mode none): validation is skipped.")

    def _check_files(self, datamodule: AnomalibDataModule) -> None:
        start = time.perf_counter()
        n_images, wide, alpha, mixes = 0, 0, 0, []
        for split in _SPLITS:
            dataset = getattr(datamodule, split, None)
            if not isinstance(dataset, AnomalibDataset):
                continue
            summary = check_dataset(dataset, drop_alpha=self.drop_alpha)
            n_images += summary.n_images
            alpha += len(summary.alpha)
            mix = describe_mix(summary)
            if mix:
                mixes.append(f"{split.removesuffix('_data')}: {mix}")
            if summary.wide:
                wide += len(summary.wide)
                setattr(datamodule, split, use_scaling_reader(dataset))
        if not n_images:
            return
        seconds = time.perf_counter() - start
        checked = f"{datamodule.name}: checked {n_images} images and their masks"
        _log_once(f"{checked} ({seconds:.1f} s).", key=checked)
        if wide:
            _log_once(
                f"{datamodule.name}: {wide} images have 16-bit or 32-bit pixels; they are read scaled to [0, 1] "
                "(anomalib_maa.io.read_image, as anomalib-maa predict reads them), not clipped at 255."
            )
        if alpha:
            _log_once(
                f"{datamodule.name}: {alpha} images have an alpha channel; it is dropped (read as RGB), as "
                "anomalib-maa predict drops it."
            )
        for mix in mixes:
            _log_once(f"{datamodule.name} {mix}.")
