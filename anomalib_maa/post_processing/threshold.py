"""The Pauta threshold as post-processor state: the rule, the fitted statistics as buffers, and their application.

:class:`PautaThreshold` holds what a checkpoint or an exported graph carries (μ, σ, the training scores, the pixel
quantiles, the two thresholds) and applies it with the same code in ``forward`` (export) and ``post_process_batch``.
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.data import Batch, InferenceBatch
from anomalib.post_processing import PostProcessor

from anomalib_maa.errors import InputError
from anomalib_maa.post_processing.normalize import apply_thresholds
from anomalib_maa.post_processing.pixels import N_QUANTILES
from anomalib_maa.post_processing.rules import (
    DEFAULT_GAMMA,
    METHODS,
    check_choice,
    check_gamma,
    empirical_threshold,
    gamma_from_false_alarm_rate,
    lognormal_threshold,
    normal_threshold,
    quantile_grid_threshold,
    tail_probability,
)

__all__ = ["SOURCES", "PautaThreshold"]

SOURCES = ("train", "val")
"""Where the statistics come from: the training images or the normal images of the validation split."""


class PautaThreshold(PostProcessor):
    """The rule, the statistics as buffers, the thresholds and their application.

    The base of :class:`~anomalib_maa.post_processing.PautaPostProcessor` (whose docstring has the arguments); not
    meant to be used alone: fitting the statistics and the Lightning hooks are the subclass's.
    """

    def __init__(
        self,
        gamma: float | None = None,
        false_alarm_rate: float | None = None,
        method: str | None = None,
        stats_source: str = "train",
        enable_normalization: bool = True,
        enable_thresholding: bool = True,
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
        self._method = check_choice("method", method or "normal", METHODS)
        self._stats_source = check_choice("stats_source", stats_source, SOURCES)
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
        """``"normal"`` (``μ + γσ``), ``"lognormal"`` (the same on log scores) or ``"empirical"`` (a quantile)."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice("method", value, METHODS)
        self._explicit.add("method")
        self._update_thresholds()

    @property
    def stats_source(self) -> str:
        """Where the statistics come from: ``"train"`` or ``"val"`` (normal images only)."""
        return self._stats_source

    @stats_source.setter
    def stats_source(self, value: str) -> None:
        self._stats_source = check_choice("stats_source", value, SOURCES)

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
        if config.get("stats_source") in SOURCES:
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
        return apply_thresholds(
            pred_score,
            anomaly_map,
            thresholds=(self._image_threshold, self._pixel_threshold),
            scales=(self.image_std, self.pixel_std),
            threshold=self.enable_thresholding,
            normalize=self.enable_normalization,
        )

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        """The image threshold after normalisation: 0.5."""
        return torch.tensor(0.5)

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        """The pixel threshold after normalisation: 0.5."""
        return torch.tensor(0.5)


def _value(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().cpu())
