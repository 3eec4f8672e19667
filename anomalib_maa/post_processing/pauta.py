"""Pauta-criterion post-processor: a threshold fitted on defect-free training images only.

anomalib's default :class:`~anomalib.post_processing.PostProcessor` tunes an F1-optimal threshold
on validation images that must contain defects. :class:`PautaPostProcessor` instead models the
anomaly scores of the defect-free *training* images as a normal distribution N(μ, σ²) and labels
an image defective when its score exceeds ``T = μ + γσ`` (the Pauta, or 3-sigma, criterion), or,
with ``false_alarm_rate=α``, uses ``γ = Φ⁻¹(1 − α)``. The same rule over all anomaly-map pixels of
the training images gives the pixel threshold. See ``docs/thresholds.md``.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib.data import Batch, InferenceBatch
from anomalib.post_processing import PostProcessor
from lightning import LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from anomalib_maa.distributed import broadcast_module_state
from anomalib_maa.errors import InputError
from anomalib_maa.post_processing.report import json_safe, normality_test, plot_score_histogram, threshold_rule
from anomalib_maa.post_processing.rules import (
    DEFAULT_GAMMA,
    METHODS,
    RULES,
    check_gamma,
    empirical_threshold,
    gamma_from_false_alarm_rate,
    log_statistics,
    lognormal_threshold,
    normal_threshold,
    quantile_grid_threshold,
    tail_probability,
)
from anomalib_maa.post_processing.scoring import (
    N_QUANTILES,
    PixelAccumulator,
    ensure_memory_bank_fitted,
    eval_mode,
    gather_normal_scores,
    is_last_epoch,
    score_normal_images,
    statistics_loader,
)

__all__ = ["DEFAULT_GAMMA", "PautaPostProcessor"]

logger = logging.getLogger(__name__)

_SOURCES = ("train", "val")
_REPORT_JSON = "pauta_threshold.json"
_REPORT_PNG = "pauta_histogram.png"


class PautaPostProcessor(PostProcessor):
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
            enable_normalization=enable_normalization,
            enable_thresholding=enable_thresholding,
            enable_threshold_matching=False,
        )
        if gamma is not None and false_alarm_rate is not None:
            msg = (
                f"Give either gamma ({gamma}) or false_alarm_rate ({false_alarm_rate}), not both: "
                "false_alarm_rate=α sets gamma = Φ⁻¹(1 − α)."
            )
            raise InputError(msg)
        self._gamma = DEFAULT_GAMMA
        self._false_alarm_rate: float | None = None
        self._method = _check_choice("method", method or "normal", METHODS)
        self._stats_source = _check_choice("stats_source", stats_source, _SOURCES)
        # Options the user chose explicitly; they win over values restored from a checkpoint.
        self._explicit: set[str] = set()
        if false_alarm_rate is not None:
            self._set_rule(gamma=None, false_alarm_rate=false_alarm_rate)
            self._explicit.add("gamma")
        elif gamma is not None:
            self._set_rule(gamma=gamma, false_alarm_rate=None)
            self._explicit.add("gamma")
        if method is not None:
            self._explicit.add("method")
        self.results_dir = Path(results_dir) if results_dir is not None else None
        self.save_report = save_report

        nan = float("nan")
        self.register_buffer("image_mean", torch.tensor(nan))
        self.register_buffer("image_std", torch.tensor(nan))
        self.register_buffer("pixel_mean", torch.tensor(nan))
        self.register_buffer("pixel_std", torch.tensor(nan))
        self.register_buffer("train_scores", torch.empty(0))
        self.register_buffer("pixel_quantiles", torch.full((N_QUANTILES,), nan))
        self.image_mean: torch.Tensor
        self.image_std: torch.Tensor
        self.pixel_mean: torch.Tensor
        self.pixel_std: torch.Tensor
        self.train_scores: torch.Tensor
        self.pixel_quantiles: torch.Tensor

        self.report: dict[str, Any] = {}
        self._fitted_at_step: int | None = None
        self._saved_during_fit = False
        self._checkpoint_is_stale = False
        self._test_scores: list[torch.Tensor] = []
        self._test_labels: list[torch.Tensor] = []

    # ------------------------------------------------------------------ threshold rule

    @property
    def gamma(self) -> float:
        """γ in ``T = μ + γσ``; setting it clears ``false_alarm_rate`` and moves the thresholds."""
        return self._gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self.set_gamma(gamma=value)

    @property
    def false_alarm_rate(self) -> float | None:
        """Target false-alarm rate α, or ``None`` when γ was given directly."""
        return self._false_alarm_rate

    @false_alarm_rate.setter
    def false_alarm_rate(self, value: float | None) -> None:
        if value is None:
            self._false_alarm_rate = None
            self._explicit.add("gamma")
            self._update_thresholds()
            return
        self.set_gamma(false_alarm_rate=value)

    @property
    def method(self) -> str:
        """``"normal"`` (``μ + γσ``) or ``"empirical"`` (quantile of the training scores)."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = _check_choice("method", value, METHODS)
        self._explicit.add("method")
        self._update_thresholds()

    @property
    def stats_source(self) -> str:
        """Where the statistics come from: ``"train"`` or ``"val"`` (normal images only)."""
        return self._stats_source

    @stats_source.setter
    def stats_source(self, value: str) -> None:
        self._stats_source = _check_choice("stats_source", value, _SOURCES)

    @property
    def tail_probability(self) -> float:
        """α used by the rule: ``false_alarm_rate`` if given, else ``1 − Φ(γ)``."""
        return tail_probability(self._gamma, self._false_alarm_rate)

    @property
    def is_fitted(self) -> bool:
        """Whether the image statistics have been computed (or loaded)."""
        return bool(torch.isfinite(self.image_mean).item())

    def set_gamma(self, gamma: float | None = None, *, false_alarm_rate: float | None = None) -> None:
        """Change γ (or α) and recompute both thresholds from the stored statistics.

        Args:
            gamma: New γ.
            false_alarm_rate: New target false-alarm rate α (sets ``γ = Φ⁻¹(1 − α)``).

        Raises:
            ValueError: If both or neither are given, or a value is out of range.

        Example:
            >>> post_processor = PautaPostProcessor()
            >>> post_processor.set_gamma(false_alarm_rate=0.01)
            >>> round(post_processor.gamma, 4)
            2.3263
        """
        if (gamma is None) == (false_alarm_rate is None):
            msg = "set_gamma needs exactly one of gamma or false_alarm_rate."
            raise ValueError(msg)
        self._set_rule(gamma=gamma, false_alarm_rate=false_alarm_rate)
        self._explicit.add("gamma")
        self._update_thresholds()

    def _set_rule(self, gamma: float | None, false_alarm_rate: float | None) -> None:
        if false_alarm_rate is not None:
            self._gamma = gamma_from_false_alarm_rate(false_alarm_rate)
            self._false_alarm_rate = float(false_alarm_rate)
        else:
            self._gamma = check_gamma(gamma)  # type: ignore[arg-type]
            self._false_alarm_rate = None

    # ------------------------------------------------------------------ checkpoint config

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        return (*super()._checkpoint_config_keys, "gamma", "false_alarm_rate", "method", "stats_source")

    def load_checkpoint_config(self, config: dict[str, Any]) -> None:
        """Restore the options saved in a checkpoint, except those chosen explicitly.

        ``gamma``/``false_alarm_rate`` and ``method`` passed to the constructor (or set before
        loading) win over the checkpoint's, so a trained checkpoint can be tested with a new γ.

        Args:
            config: Plain-data configuration from :meth:`checkpoint_config`.
        """
        for key in ("enable_normalization", "enable_thresholding", "image_sensitivity", "pixel_sensitivity"):
            if key in config:
                setattr(self, key, config[key])
        if "gamma" not in self._explicit and ("gamma" in config or "false_alarm_rate" in config):
            alpha = config.get("false_alarm_rate")
            if alpha is not None:
                self._set_rule(gamma=None, false_alarm_rate=alpha)
            elif config.get("gamma") is not None:
                self._set_rule(gamma=config["gamma"], false_alarm_rate=None)
        if "method" not in self._explicit and config.get("method") in METHODS:
            self._method = config["method"]
        if config.get("stats_source") in _SOURCES:
            self._stats_source = config["stats_source"]
        self._update_thresholds()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Resize the variable-length ``train_scores`` buffer, load, then recompute the thresholds."""
        key = prefix + "train_scores"
        incoming = state_dict.get(key)
        if isinstance(incoming, torch.Tensor) and incoming.shape != self.train_scores.shape:
            with torch.inference_mode(False):
                self.train_scores = self.train_scores.new_empty(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._update_thresholds()

    # ------------------------------------------------------------------ statistics

    def fit_scores(
        self,
        image_scores: torch.Tensor | np.ndarray,
        anomaly_maps: torch.Tensor | np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Set the statistics from anomaly scores of defect-free images (no Lightning needed).

        Args:
            image_scores: Raw image scores, shape ``(N,)``.
            anomaly_maps: Raw anomaly maps of the same images (any shape with ``N`` first), or
                ``None`` for image-level models.

        Returns:
            The report dict (also kept in :attr:`report`).
        """
        scores = _to_numpy(image_scores)
        pixel = PixelAccumulator()
        if anomaly_maps is not None:
            pixel.update(torch.as_tensor(anomaly_maps))
        report = self._set_statistics(scores, pixel)
        self._warn_if_not_normal()
        return report

    def _set_statistics(self, scores: np.ndarray, pixel: PixelAccumulator) -> dict[str, Any]:
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            msg = "No finite anomaly scores of defect-free images to fit the Pauta threshold on."
            raise RuntimeError(msg)
        nan = float("nan")
        std = float(np.std(scores, ddof=1)) if scores.size > 1 else 0.0
        with torch.inference_mode(False), torch.no_grad():
            device = self.image_mean.device
            self.image_mean.copy_(torch.tensor(float(np.mean(scores))))
            self.image_std.copy_(torch.tensor(std))
            self.image_min.copy_(torch.tensor(float(scores.min())))
            self.image_max.copy_(torch.tensor(float(scores.max())))
            self.train_scores = torch.as_tensor(scores, dtype=torch.float32).to(device)
            mean, std_pixel, quantiles, low, high = pixel.result()
            self.pixel_mean.copy_(torch.tensor(mean if mean is not None else nan))
            self.pixel_std.copy_(torch.tensor(std_pixel if std_pixel is not None else nan))
            self.pixel_min.copy_(torch.tensor(low if low is not None else nan))
            self.pixel_max.copy_(torch.tensor(high if high is not None else nan))
            if quantiles is not None:
                self.pixel_quantiles.copy_(torch.as_tensor(quantiles, dtype=torch.float32))
            else:
                self.pixel_quantiles.fill_(nan)
        self._update_thresholds()
        return self.build_report()

    def _update_thresholds(self) -> None:
        """Recompute both threshold buffers from the statistics and the current rule."""
        if not hasattr(self, "pixel_quantiles"):  # called before the buffers exist
            return
        scores = self.train_scores.detach().cpu().double().numpy()
        if self._method == "empirical":
            image = empirical_threshold(scores, self.tail_probability)
            pixel = quantile_grid_threshold(self.pixel_quantiles.detach().cpu().double().numpy(), self.tail_probability)
        else:
            pixel = normal_threshold(_value(self.pixel_mean), _value(self.pixel_std), self._gamma)
            if self._method == "lognormal":
                image = lognormal_threshold(scores, self._gamma)
            else:
                image = normal_threshold(_value(self.image_mean), _value(self.image_std), self._gamma)
        with torch.inference_mode(False), torch.no_grad():
            self._image_threshold.copy_(torch.tensor(image))
            self._pixel_threshold.copy_(torch.tensor(pixel))

    def build_report(self) -> dict[str, Any]:
        """Summarise the fitted statistics, the rule and the normality test as plain data.

        Returns:
            The report dict (also kept in :attr:`report`); NaN values are ``None``.
        """
        scores = self.train_scores.detach().cpu().double().numpy()
        threshold = _item(self._image_threshold)
        logs = self._method == "lognormal" and scores.size > 0 and bool((scores > 0).all())
        normality = normality_test(np.log(scores) if logs else scores)
        log_stats = log_statistics(scores) if self._method == "lognormal" else None
        report: dict[str, Any] = {
            "rule": RULES[self._method],
            "threshold_rule": threshold_rule(self._method, self._gamma, threshold, self.tail_probability),
            "method": self._method,
            "stats_source": self._stats_source,
            "gamma": self._gamma,
            "false_alarm_rate": self._false_alarm_rate,
            "tail_probability": self.tail_probability,
            "n_images": int(scores.size),
            "image": {
                "mean": _item(self.image_mean),
                "std": _item(self.image_std),
                "threshold": threshold,
                "min": _item(self.image_min),
                "max": _item(self.image_max),
                "train_false_alarm_rate": (
                    float(np.mean(scores > threshold)) if scores.size and threshold is not None else None
                ),
                **({"log_mean": log_stats[0], "log_std": log_stats[1]} if log_stats else {}),
            },
            "pixel": {
                "mean": _item(self.pixel_mean),
                "std": _item(self.pixel_std),
                "threshold": _item(self._pixel_threshold),
                "min": _item(self.pixel_min),
                "max": _item(self.pixel_max),
            },
            "normality": {
                **normality,
                "of": "log scores" if logs else "scores",
                "normal_at_0.05": None if normality["test"] is None else bool(normality["p_value"] >= 0.05),
            },
        }
        self.report = json_safe(report)
        return self.report

    def _warn_if_not_normal(self) -> None:
        normality = self.report.get("normality", {})
        p_value = normality.get("p_value")
        if p_value is not None and p_value < 0.05:
            msg = (
                f"Normality of the {normality['n']} defect-free scores is rejected by "
                f"{normality['test']} (p = {p_value:.3g} < 0.05, {normality.get('of', 'scores')}): the false-alarm "
                f"rate implied by gamma = {self._gamma:.3g} may be off. Consider method='lognormal' (positive "
                "scores spread over orders of magnitude) or method='empirical'."
            )
            if self._method in {"normal", "lognormal"}:
                warnings.warn(msg, UserWarning, stacklevel=2)
            logger.warning(msg)

    # ------------------------------------------------------------------ scoring with the model

    def fit_from_model(
        self,
        pl_module: LightningModule,
        trainer: Trainer | None = None,
        dataloader: DataLoader | None = None,
    ) -> dict[str, Any]:
        """Score defect-free images with the model in eval mode and set the statistics.

        Memory-bank models (PaDiM, PatchCore) are fitted first through their guarded ``fit()``.
        Without ``dataloader`` the images come from the trainer's datamodule (``train_data`` or
        ``val_data`` following :attr:`stats_source`) read in order with the test-time
        augmentations, or from the trainer's dataloaders. Only images with ``gt_label == 0`` are
        used. The model's pre-processing transform is applied here, as at test time.

        Under a distributed strategy (DDP) and without ``dataloader``, every rank must call this
        (the trainer hooks do): rank 0's model state is broadcast, each rank scores a disjoint
        contiguous shard of the images, and the scores are gathered, so every rank gets the
        statistics a single process would compute from the checkpoint. See ``docs/scaling.md``.

        Args:
            pl_module: The anomalib module whose ``model`` produces the scores.
            trainer: The trainer (for the datamodule, dataloaders and the report folder).
            dataloader: Explicit dataloader of defect-free images (overrides the trainer's data).

        Returns:
            The report dict.
        """
        ensure_memory_bank_fitted(pl_module)
        with ExitStack() as stack:
            stack.enter_context(eval_mode(pl_module))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.no_grad())
            loader = dataloader
            if loader is None:
                # Distributed (no-ops otherwise): score with rank 0's weights and buffers, the
                # checkpoint's; each rank scores its own contiguous shard, then all are gathered.
                broadcast_module_state(getattr(pl_module, "model", pl_module))
                loader = stack.enter_context(statistics_loader(self._stats_source, trainer, pl_module, shard=True))
            scores, pixel = score_normal_images(pl_module, loader)
            if dataloader is None:
                scores, pixel = gather_normal_scores(scores, pixel)
        report = self._set_statistics(scores, pixel)
        self._log(trainer)
        self._warn_if_not_normal()
        if trainer is not None and self.save_report:
            self.write_report(trainer)
        return report

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Fail early when ``stats_source="val"`` but the datamodule has no validation split."""
        del pl_module
        if stage == TrainerFn.FITTING and self._stats_source == "val":
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
        self._test_scores, self._test_labels = [], []

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
        self._test_scores, self._test_labels = [], []
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
        score = outputs.pred_score
        if score is None and outputs.anomaly_map is not None:
            score = torch.amax(outputs.anomaly_map.flatten(1), dim=1)
        if score is not None and outputs.gt_label is not None:
            self._test_scores.append(score.detach().reshape(-1).float().cpu())
            self._test_labels.append(torch.as_tensor(outputs.gt_label).detach().reshape(-1).cpu())
        self.post_process_batch(outputs)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Rewrite the report and the histogram with the test scores by class."""
        del pl_module
        if self.save_report and self.is_fitted:
            self.write_report(trainer)

    # ------------------------------------------------------------------ applying the thresholds

    def forward(self, predictions: InferenceBatch) -> InferenceBatch:
        """Normalise and threshold raw predictions (the exported graph's last step).

        Args:
            predictions: Raw model output with ``pred_score`` and/or ``anomaly_map``.

        Returns:
            The batch with normalised scores and maps, labels and masks.
        """
        pred_score, pred_label, anomaly_map, pred_mask = self._process(predictions.pred_score, predictions.anomaly_map)
        return InferenceBatch(
            pred_label=pred_label, pred_score=pred_score, pred_mask=pred_mask, anomaly_map=anomaly_map
        )

    def post_process_batch(self, batch: Batch) -> None:
        """Normalise and threshold a Lightning batch in place, with the same code as :meth:`forward`.

        Args:
            batch: Batch with raw ``pred_score`` and/or ``anomaly_map``.
        """
        if batch.pred_score is None and batch.anomaly_map is None:
            return
        pred_score, pred_label, anomaly_map, pred_mask = self._process(batch.pred_score, batch.anomaly_map)
        batch.pred_score = pred_score
        batch.anomaly_map = anomaly_map
        if self.enable_thresholding:
            batch.pred_label = pred_label
            if pred_mask is not None:
                batch.pred_mask = pred_mask

    def _process(
        self,
        pred_score: torch.Tensor | None,
        anomaly_map: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        if pred_score is None and anomaly_map is None:
            msg = "At least one of pred_score or anomaly_map must be provided."
            raise ValueError(msg)
        if pred_score is None:
            pred_score = torch.amax(anomaly_map, dim=(-2, -1)).reshape(anomaly_map.shape[0])  # type: ignore[union-attr]
        pred_label = pred_mask = None
        if self.enable_thresholding:
            # "& ~isnan": OpenVINO evaluates x > NaN as true; unfitted models must label nothing there either.
            pred_label = (pred_score > self._image_threshold) & ~torch.isnan(self._image_threshold)
            pred_mask = None
            if anomaly_map is not None:
                pred_mask = (anomaly_map > self._pixel_threshold) & ~torch.isnan(self._pixel_threshold)
        if self.enable_normalization:
            pred_score = self._squash(pred_score, self._image_threshold, self.image_std)
            if anomaly_map is not None:
                anomaly_map = self._squash(anomaly_map, self._pixel_threshold, self.pixel_std)
        return pred_score, pred_label, anomaly_map, pred_mask

    @staticmethod
    def _squash(values: torch.Tensor, threshold: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Map ``values`` into (0, 1), ``threshold`` to 0.5, strictly increasing, without clamping.

        ``0.5 + 0.5·z/(1 + |z|)`` with ``z = (values − threshold)/scale``. Values pass through
        unchanged while the threshold is NaN (not fitted). Export-friendly: no data-dependent
        Python branches.
        """
        safe_scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
        z = (values - threshold) / safe_scale
        # Same as 0.5 + 0.5·z/(1+|z|), written without cancellation: below the threshold the
        # result is 0.5/(1+|z|), which keeps float32's relative precision for small values.
        lower = 0.5 / (1.0 + z.abs())
        squashed = torch.where(z < 0, lower, 1.0 - lower)
        return torch.where(torch.isnan(threshold), values, squashed)

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        """The image threshold after normalisation: 0.5."""
        return torch.tensor(0.5)

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        """The pixel threshold after normalisation: 0.5."""
        return torch.tensor(0.5)

    # ------------------------------------------------------------------ reporting

    def _log(self, trainer: Trainer | None) -> None:
        report = self.report
        image, normality = report["image"], report["normality"]
        log_part = f" mu_log={image['log_mean']:.6g} sigma_log={image['log_std']:.6g}" if "log_mean" in image else ""
        logger.info(
            "Pauta threshold from %d defect-free %s images: %s (T=%.6g; mu=%.6g sigma=%.6g%s; pixel T=%s); "
            "normality %s p=%s",
            report["n_images"],
            self._stats_source,
            report["threshold_rule"],
            image["threshold"],
            image["mean"],
            image["std"],
            log_part,
            report["pixel"]["threshold"],
            normality["test"],
            normality["p_value"],
        )
        if trainer is None:
            return
        metrics = {
            "pauta/mu": image["mean"],
            "pauta/sigma": image["std"],
            "pauta/gamma": self._gamma,
            "pauta/threshold": image["threshold"],
            "pauta/normality_p": normality["p_value"],
        }
        metrics = {key: float(value) for key, value in metrics.items() if value is not None}
        for lightning_logger in getattr(trainer, "loggers", []) or []:
            try:
                lightning_logger.log_metrics(metrics, step=trainer.global_step)
            except Exception:  # noqa: BLE001 - a logger failure must not break training
                logger.debug("Could not log Pauta statistics to %s", type(lightning_logger).__name__)

    def results_folder(self, trainer: Trainer | None) -> Path:
        """Folder for the report: ``results_dir`` or the trainer's ``default_root_dir``."""
        if self.results_dir is not None:
            return self.results_dir
        if trainer is not None and getattr(trainer, "default_root_dir", None):
            return Path(trainer.default_root_dir)
        return Path.cwd()

    def write_report(self, trainer: Trainer | None = None, folder: str | Path | None = None) -> Path:
        """Write ``pauta_threshold.json`` and ``pauta_histogram.png``.

        Adds the test scores by class (and the false-alarm rate and recall at the threshold)
        when a test run collected them.

        Args:
            trainer: Trainer used to find the run folder.
            folder: Explicit folder; overrides :meth:`results_folder`.

        Returns:
            The path of the JSON file.
        """
        if trainer is not None and getattr(trainer, "global_rank", 0) != 0:
            return Path()
        report = self.build_report()
        test_scores = test_labels = None
        if self._test_scores and report["image"]["threshold"] is not None:
            test_scores = torch.cat(self._test_scores).double().numpy()
            test_labels = torch.cat(self._test_labels).numpy().astype(bool)
            raw_threshold = report["image"]["threshold"]
            normal, defective = test_scores[~test_labels], test_scores[test_labels]
            report["test"] = json_safe(
                {
                    "n_normal": int(normal.size),
                    "n_defective": int(defective.size),
                    "false_alarm_rate": float(np.mean(normal > raw_threshold)) if normal.size else None,
                    "recall": float(np.mean(defective > raw_threshold)) if defective.size else None,
                }
            )
        self.report = report
        out = Path(folder) if folder is not None else self.results_folder(trainer)
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / _REPORT_JSON
        json_path.write_text(json.dumps(report, indent=2))
        plot_score_histogram(
            self.train_scores.detach().cpu().double().numpy(),
            mean=report["image"]["mean"],
            std=report["image"]["std"],
            threshold=report["image"]["threshold"],
            gamma=self._gamma,
            p_value=report["normality"]["p_value"],
            path=out / _REPORT_PNG,
            test_scores=test_scores,
            test_labels=test_labels,
            rule=report["threshold_rule"],
            log_stats=(report["image"]["log_mean"], report["image"]["log_std"])
            if "log_mean" in report["image"]
            else None,
        )
        logger.info("Pauta report written to %s", json_path)
        return json_path


# ---------------------------------------------------------------------- helpers


def _value(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().cpu())


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
        raise InputError(msg)
    return value


def _to_numpy(values: torch.Tensor | np.ndarray | Iterable[float]) -> np.ndarray:
    return torch.as_tensor(values).detach().double().cpu().reshape(-1).numpy()


def _item(tensor: torch.Tensor) -> float | None:
    value = float(tensor.detach().cpu().item())
    return value if math.isfinite(value) else None
