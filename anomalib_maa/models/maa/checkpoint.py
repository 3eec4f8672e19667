"""What loading older MAA checkpoints and state dicts needs: legacy hyper-parameters, missing tile statistics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from anomalib.utils.serialization import anomalib_safe_globals

__all__ = ["legacy_threshold_kwargs", "with_unfitted_tile_norm"]

logger = logging.getLogger(__name__)

PREFIX = "model.score_norm."


def legacy_threshold_kwargs(
    checkpoint_path: str | Path,
    kwargs: dict[str, Any],
    hparams_key: str,
    safe_globals: list[Any],
) -> dict[str, Any]:
    """``kwargs`` for ``load_from_checkpoint``, with ``gamma=None`` for checkpoints trained with a false-alarm rate.

    ``Maa`` once took ``false_alarm_rate`` and ``threshold_method`` next to ``gamma``; checkpoints of then hold them
    as hyper-parameters, which loading drops (the post-processor restores both from its own stored configuration).
    Those written before ``gamma`` and ``false_alarm_rate`` were mutually exclusive also hold ``gamma=3.0``: passed
    on, it would override the rate, so it becomes ``None`` and the rate wins, as it did when they were trained.
    A ``gamma`` the caller gives is kept.
    """
    if "gamma" in kwargs:
        return kwargs
    with anomalib_safe_globals(extra=safe_globals):
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=kwargs.get("weights_only", True))
    hparams = checkpoint.get(hparams_key) or {}
    if hparams.get("gamma") is not None and hparams.get("false_alarm_rate") is not None:
        return {**kwargs, "gamma": None}
    return kwargs


def with_unfitted_tile_norm(state_dict: Any, norm: torch.nn.Module | None) -> Any:
    """Fit a state dict to the model's tile statistics ``norm`` (its ``score_norm``, or ``None`` without tile_norm).

    Weights saved without tile statistics get the model's own, unfitted ones (the Pauta fit sets them); a model
    built without ``tile_norm`` drops the statistics of a checkpoint that has them.
    """
    if norm is None:
        return {key: value for key, value in state_dict.items() if not key.startswith(PREFIX)}
    if any(key.startswith(PREFIX) for key in state_dict):
        return state_dict
    logger.info("The weights carry no tile statistics (trained without tile_norm): they start unfitted.")
    return {**state_dict, **{f"{PREFIX}{key}": value for key, value in norm.state_dict().items()}}
