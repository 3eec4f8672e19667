"""Pauta-criterion post-processor: a threshold fitted on defect-free training images only.

anomalib's default :class:`~anomalib.post_processing.PostProcessor` tunes an F1-optimal threshold
on validation images that must contain defects. :class:`PautaPostProcessor` instead models the
anomaly scores of the defect-free *training* images as a normal distribution N(μ, σ²) and labels
an image defective when its score exceeds ``T = μ + γσ`` (the Pauta, or 3-sigma, criterion), or,
with ``false_alarm_rate=α``, uses ``γ = Φ⁻¹(1 − α)``. The same rule over all anomaly-map pixels of
the training images gives the pixel threshold. See ``docs/thresholds.md``.

One job a module: the rules (:mod:`.rules`), the state as buffers and its application, the same code in
``forward`` (export) and in the test hooks (:mod:`.threshold`, :mod:`.normalize`), fitting and reporting
(:mod:`.fitting`, :mod:`.pauta_report`, :mod:`.report`), scoring the training normals (:mod:`.scoring`,
:mod:`.pixels`); this module holds when each happens in a Lightning run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from anomalib.data import Batch
from lightning import LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_maa.post_processing.fitting import PautaFit
from anomalib_maa.post_processing.rules import DEFAULT_GAMMA
from anomalib_maa.post_processing.scoring import is_last_epoch

__all__ = ["DEFAULT_GAMMA", "PautaPostProcessor"]

logger = logging.getLogger(__name__)


class PautaPostProcessor(PautaFit):
    """Threshold ``T = μ + γσ`` fitted on the anomaly scores of defect-free training images.

    After the last training epoch the post-processor scores the defect-free training images (or a
    held-out normal validation split, ``stats_source="val"``) with the model in eval mode, using
    the test-time pre-processing, and stores the mean ``μ``, the standard deviation ``σ``
    (``ddof=1``) and the thresholds as buffers, so they travel in checkpoints and exported models.
    No validation set is needed, and defective validation images are never used.

    Scores are normalised with ``0.5 + 0.5·z/(1+|z|)``, ``z = (x - T)/σ``: strictly increasing,
    the threshold maps to 0.5, values stay inside (0, 1) without clamping, so rankings (AUROC) are
    unchanged. Anomaly maps are normalised the same way with the pixel threshold and pixel ``σ``.
    Labels and masks compare the raw values with ``T``.

    ``γ`` can be changed on a trained model without retraining (``post_processor.gamma = 2``,
    :meth:`set_gamma`, or ``--model.post_processor.gamma 2`` on the CLI); the thresholds are
    recomputed from the stored ``μ`` and ``σ``. A value passed explicitly to the constructor or
    set afterwards wins over the value stored in a checkpoint that is loaded later.

    Args:
        gamma: Multiple of ``σ`` above ``μ``. ``0`` favours recall of defects; ``2`` to ``3``
            favour few false alarms. Defaults to ``None``: :data:`DEFAULT_GAMMA` (3.0, the
            Pauta criterion) unless ``false_alarm_rate`` is given.
        false_alarm_rate: Target false-alarm rate ``α`` on defect-free images, in (0, 1); sets
            ``γ = Φ⁻¹(1 − α)``. Mutually exclusive with ``gamma``.
        method: ``"normal"`` (``T = μ + γσ``), ``"lognormal"`` (the same rule on the logarithm of
            the scores, ``T = exp(μ_log + γσ_log)``, for positive scores spread over orders of
            magnitude, such as FMDs; the pixel threshold keeps the normal rule) or ``"empirical"``
            (``T`` = the ``1 − α`` quantile of the training scores, with ``α = false_alarm_rate``
            or ``1 − Φ(γ)``), for when the normality test rejects the normal model. Defaults to
            ``None``: ``"normal"`` unless a loaded checkpoint says otherwise.
        stats_source: ``"train"`` (the training images) or ``"val"`` (the normal images of the
            validation split, e.g. ``val_split_mode="from_train"``; anomalous ones are skipped).
        enable_normalization: Normalise scores and maps so that the thresholds map to 0.5.
        enable_thresholding: Set ``pred_label`` and ``pred_mask``.
        results_dir: Folder for ``pauta_threshold.json`` and ``pauta_histogram.png``. Defaults to
            the trainer's ``default_root_dir`` (the run folder under ``Engine``).
        save_report: Write the JSON report and the histogram PNG.

    Raises:
        ValueError: If both ``gamma`` and ``false_alarm_rate`` are given, or an option is invalid.

    Example:
        >>> from anomalib.models import Padim
        >>> model = Padim(pre_trained=False, post_processor=PautaPostProcessor(gamma=2.0))
        >>> PautaPostProcessor(false_alarm_rate=0.05).gamma  # doctest: +ELLIPSIS
        1.6448536...
    """

    def __init__(
        self,
        gamma: float | None = None,
        false_alarm_rate: float | None = None,
        method: str | None = None,
        stats_source: str = "train",
        enable_normalization: bool = True,
        enable_thresholding: bool = True,
        results_dir: str | Path | None = None,
        save_report: bool = True,
    ) -> None:
        super().__init__(
            gamma=gamma,
            false_alarm_rate=false_alarm_rate,
            method=method,
            stats_source=stats_source,
            enable_normalization=enable_normalization,
            enable_thresholding=enable_thresholding,
            results_dir=results_dir,
            save_report=save_report,
        )
        self._fitted_at_step: int | None = None
        self._saved_during_fit = False
        self._checkpoint_is_stale = False

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fail early when ``stats_source="val"`` but the datamodule has no validation split."""
        del pl_module
        if stage == TrainerFn.FITTING and self.stats_source == "val":
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is not None and getattr(datamodule, "val_data", None) is None:
                msg = (
                    "PautaPostProcessor(stats_source='val') needs a validation split of normal images, "
                    "e.g. val_split_mode='from_train'; this datamodule has none."
                )
                raise ValueError(msg)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reset the per-fit bookkeeping."""
        del trainer, pl_module
        self._fitted_at_step = None
        self._saved_during_fit = False
        self._checkpoint_is_stale = False
        self._test_scores.reset()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit the statistics before each validation of the last epoch.

        Memory-bank models are fitted first (their own ``on_validation_start`` runs after the
        callbacks'). When ``ModelCheckpoint`` saves at ``on_validation_end`` (``val_check_interval``
        other than 1.0 or ``check_val_every_n_epoch`` other than 1), that save comes before
        ``on_train_epoch_end``, so the statistics must exist by then.
        """
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and is_last_epoch(trainer):
            self._fit_during_training(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit the statistics after the last epoch unless a validation at this step already did.

        Runs before the module's own ``on_train_epoch_end`` (where memory-bank models would fit,
        hence the guarded ``fit()`` first) and before ``ModelCheckpoint`` saves there: Lightning
        calls monitoring callbacks after the module's hook (``fit_loop.py`` ``on_advance_end``).
        This is where the checkpoint is written without validation, and with validation at the
        default ``val_check_interval=1.0``.
        """
        if self._fitted_at_step != trainer.global_step and is_last_epoch(trainer):
            self._fit_during_training(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Remember that the latest checkpoint of this fit holds the latest statistics."""
        del pl_module, checkpoint
        if trainer.state.fn == TrainerFn.FITTING:
            self._saved_during_fit = True
            self._checkpoint_is_stale = False

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fallback when training ended without a last-epoch hook, or a checkpoint came first.

        Happens with early stopping, for example. The statistics are computed if still missing,
        and each ``ModelCheckpoint`` without a monitored metric (whose file holds the final
        weights) is rewritten so that it contains them.
        """
        if self._fitted_at_step is None:
            self._fit_during_training(trainer, pl_module)
        if not self._checkpoint_is_stale:
            return
        for callback in getattr(trainer, "checkpoint_callbacks", []):
            path = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
            if getattr(callback, "monitor", None) is None and path and Path(path).exists():
                logger.info("Rewriting %s with the Pauta statistics.", path)
                trainer.save_checkpoint(path)

    def _fit_during_training(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fit_from_model(pl_module, trainer)
        self._fitted_at_step = trainer.global_step
        # a checkpoint written earlier in this fit now lacks these statistics
        self._checkpoint_is_stale = self._saved_during_fit

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing: the thresholds never come from validation batches."""
        del args, kwargs

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Do nothing: the base class would overwrite the thresholds with F1/min-max values."""
        del trainer, pl_module

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Warn when testing without statistics and reset the collected test scores."""
        del trainer, pl_module
        self._test_scores.reset()
        if not self.is_fitted:
            logger.warning("PautaPostProcessor has no statistics: fit the model or load a trained checkpoint.")

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Batch,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Keep the raw scores for the report, then normalise and label the batch."""
        del trainer, pl_module, args, kwargs
        self._test_scores.add(outputs)
        self.post_process_batch(outputs)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Rewrite the report and the histogram with the test scores by class."""
        del pl_module
        if self.save_report and self.is_fitted:
            self.write_report(trainer)
