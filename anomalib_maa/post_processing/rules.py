"""The Pauta threshold rules, written once: the post-processor, the ablation and the γ table all call these.

* ``"normal"``: ``T = μ + γσ`` of the defect-free scores (σ with ``ddof=1``), the paper's Pauta criterion;
* ``"lognormal"``: the same rule on the logarithm of the scores, ``T = exp(μ_log + γσ_log)``;
* ``"empirical"``: ``T`` = the ``1 − α`` quantile of the scores, ``α = false_alarm_rate`` or ``1 − Φ(γ)``.

``false_alarm_rate=α`` sets ``γ = Φ⁻¹(1 − α)``. See ``docs/thresholds.md``.

Example:
    >>> import numpy as np
    >>> scores = np.array([1.0, 2.0, 3.0, 4.0])
    >>> round(threshold_from_scores(scores, "normal", gamma=3.0), 4)
    6.3730
    >>> round(threshold_from_scores(scores, "empirical", gamma=3.0, false_alarm_rate=0.25), 4)
    3.25
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from anomalib_maa.errors import InputError

__all__ = [
    "DEFAULT_GAMMA",
    "METHODS",
    "RULES",
    "check_choice",
    "check_gamma",
    "empirical_threshold",
    "fit_statistics",
    "gamma_from_false_alarm_rate",
    "log_statistics",
    "lognormal_threshold",
    "normal_threshold",
    "quantile_grid_threshold",
    "tail_probability",
    "threshold_from_scores",
]

DEFAULT_GAMMA = 3.0
"""γ when neither ``gamma`` nor ``false_alarm_rate`` is given: the classical Pauta (3σ) criterion."""

METHODS = ("normal", "lognormal", "empirical")
"""The rules, by name."""

RULES = {
    "normal": "mu + gamma * sigma",
    "lognormal": "exp(mu_log + gamma * sigma_log) of the log scores",
    "empirical": "empirical (1 - alpha) quantile",
}
"""Each rule in words, as the report states it."""


def gamma_from_false_alarm_rate(false_alarm_rate: float) -> float:
    """``γ = Φ⁻¹(1 − α)``.

    Raises:
        InputError: If ``α`` is not strictly between 0 and 1.
    """
    alpha = float(false_alarm_rate)
    if not 0.0 < alpha < 1.0:
        msg = f"false_alarm_rate must lie strictly between 0 and 1 (e.g. 0.01 for 1 %), got {false_alarm_rate}."
        raise InputError(msg)
    return float(stats.norm.ppf(1.0 - alpha))


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices`` (a rule's ``method``, a ``stats_source``).

    Raises:
        InputError: Naming the option and its choices otherwise.
    """
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
        raise InputError(msg)
    return value


def check_gamma(gamma: float) -> float:
    """Return ``γ`` as a float.

    Raises:
        InputError: If it is negative or not finite.
    """
    value = float(gamma)
    if not math.isfinite(value) or value < 0:
        msg = (
            f"gamma must be a finite number >= 0 (T = mu + gamma * sigma; 3 is the Pauta rule), got {gamma}: "
            "a negative gamma puts the threshold below the mean of defect-free scores."
        )
        raise InputError(msg)
    return value


def tail_probability(gamma: float, false_alarm_rate: float | None = None) -> float:
    """``α`` of a rule: ``false_alarm_rate`` if given, else ``1 − Φ(γ)``."""
    if false_alarm_rate is not None:
        return float(false_alarm_rate)
    return float(stats.norm.sf(gamma))


def fit_statistics(scores: np.ndarray) -> tuple[float, float]:
    """``(μ, σ)`` of the scores (``ddof=1``; σ = 0 for one score), as the post-processor's float32 buffers hold them."""
    mean = float(np.float32(np.mean(scores)))
    std = float(np.float32(np.std(scores, ddof=1))) if scores.size > 1 else 0.0
    return mean, std


def log_statistics(scores: np.ndarray) -> tuple[float, float] | None:
    """Mean and standard deviation (``ddof=1``) of the logarithm of positive scores.

    Args:
        scores: Raw scores.

    Returns:
        ``(μ_log, σ_log)``, or ``None`` when there are no scores or one is zero or negative (no logarithm).
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0 or (scores <= 0).any():
        return None
    logs = np.log(scores)
    return float(np.mean(logs)), float(np.std(logs, ddof=1)) if logs.size > 1 else 0.0


def normal_threshold(mean: float, std: float, gamma: float) -> float:
    """``μ + γσ`` (NaN when the statistics are NaN, i.e. not fitted)."""
    return float(mean) + gamma * float(std)


def lognormal_threshold(scores: np.ndarray, gamma: float) -> float:
    """``exp(μ + γσ)`` of ``log(scores)``; NaN before fitting.

    Raises:
        ValueError: If a score is zero or negative (no logarithm).
    """
    if scores.size == 0:
        return float("nan")
    if (scores <= 0).any():
        msg = (
            f"method='lognormal' needs positive scores, but {int((scores <= 0).sum())} of the {scores.size} "
            f"defect-free scores are <= 0 (min {scores.min():.4g}); use method='normal' or 'empirical'"
        )
        raise ValueError(msg)
    mean, std = log_statistics(scores)  # type: ignore[misc]
    return float(np.exp(mean + gamma * std))


def empirical_threshold(scores: np.ndarray, tail: float) -> float:
    """The ``1 − tail`` quantile of the scores (linear interpolation); NaN without scores."""
    return float(np.quantile(scores, 1.0 - tail)) if scores.size else float("nan")


def quantile_grid_threshold(grid: np.ndarray, tail: float) -> float:
    """The ``1 − tail`` quantile read off evenly spaced quantiles (the pixel rule); NaN when the grid is not set."""
    levels = np.linspace(0.0, 1.0, grid.size)
    return float(np.interp(1.0 - tail, levels, grid)) if np.isfinite(grid).all() else float("nan")


def threshold_from_scores(
    scores: np.ndarray,
    method: str,
    gamma: float,
    false_alarm_rate: float | None = None,
) -> float:
    """The image threshold of a rule, from the raw scores of defect-free images (what the post-processor fits).

    Args:
        scores: Raw scores of defect-free images; non-finite ones are ignored.
        method: ``"normal"``, ``"lognormal"`` or ``"empirical"``.
        gamma: ``γ`` of the rule.
        false_alarm_rate: ``α`` of the empirical rule; ``None`` uses ``1 − Φ(γ)``.

    Returns:
        The threshold ``T`` in score units.

    Raises:
        ValueError: For an unknown method, or non-positive scores under ``"lognormal"``.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if method == "normal":
        return normal_threshold(*fit_statistics(values), gamma) if values.size else float("nan")
    if method == "lognormal":
        return lognormal_threshold(values, gamma)
    if method == "empirical":
        return empirical_threshold(values, tail_probability(gamma, false_alarm_rate))
    msg = f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}."
    raise ValueError(msg)
