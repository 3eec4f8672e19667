"""Reporting for the Pauta threshold: normality test, JSON-safe data, and the histogram (paper Fig. 6).

The plot uses matplotlib's object API with the Agg canvas, so the global backend is never changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from anomalib_maa.post_processing.rules import log_statistics

__all__ = ["json_safe", "log_statistics", "normality_test", "plot_score_histogram", "threshold_rule"]


def threshold_rule(method: str, gamma: float, threshold: float | None, tail_probability: float) -> str:
    """The rule that gave the image threshold, with its value, as the legend, the log and the JSON state it.

    Args:
        method: ``"normal"``, ``"lognormal"`` or ``"empirical"``.
        gamma: ``γ`` of the rule.
        threshold: The threshold ``T`` (raw score units), ``None`` before fitting.
        tail_probability: ``α`` of the empirical rule (its quantile is ``1 − α``).

    Returns:
        E.g. ``"T = exp(μ_log + 3σ_log) = 0.2152"``.

    Example:
        >>> threshold_rule("normal", 3.0, 0.20651, 0.00135)
        'T = μ + 3σ = 0.2065'
    """
    if method == "lognormal":
        rule = f"T = exp(μ_log + {gamma:.3g}σ_log)"
    elif method == "empirical":
        rule = f"T = {100 * (1 - tail_probability):.4g} % quantile of the training scores"
    else:
        rule = f"T = μ + {gamma:.3g}σ"
    return f"{rule} = {threshold:.4g}" if threshold is not None else f"{rule} (not fitted)"


def plot_score_histogram(
    train_scores: np.ndarray,
    mean: float | None,
    std: float | None,
    threshold: float | None,
    gamma: float,
    path: str | Path,
    p_value: float | None = None,
    test_scores: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    rule: str | None = None,
    log_stats: tuple[float, float] | None = None,
) -> Path:
    """Save a PNG histogram of training scores, the fitted distribution, ``μ`` and the threshold.

    Args:
        train_scores: Raw scores of the defect-free images the statistics came from.
        mean: ``μ`` of those scores.
        std: ``σ`` of those scores.
        threshold: Image threshold ``T`` (raw score units).
        gamma: ``γ`` used for ``T``, for the legend.
        path: PNG file to write.
        p_value: p-value of the normality test, for the title.
        test_scores: Raw test scores, drawn by class when given with ``test_labels``.
        test_labels: Boolean test labels (``True`` = defective).
        rule: Legend of the threshold line (:func:`threshold_rule`); defaults to the normal rule ``μ + γσ``.
        log_stats: ``(μ_log, σ_log)`` of the log scores: the log-normal fit is drawn instead of the normal one.

    Returns:
        The PNG path.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> scores = np.random.default_rng(0).normal(1.0, 0.1, 50)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "hist.png"
        >>> plot_score_histogram(scores, 1.0, 0.1, 1.3, 3.0, out).exists()
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)

    train_scores = np.asarray(train_scores, dtype=float)
    pools = [train_scores]
    if test_scores is not None and test_labels is not None:
        pools.append(np.asarray(test_scores, dtype=float))
    values = np.concatenate([pool[np.isfinite(pool)] for pool in pools]) if pools else np.empty(0)
    if threshold is not None:
        values = np.append(values, threshold)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)

    axes.hist(train_scores, bins=bins, density=True, alpha=0.55, color="tab:blue", label="training (defect-free)")
    if test_scores is not None and test_labels is not None:
        test_scores = np.asarray(test_scores, dtype=float)
        test_labels = np.asarray(test_labels, dtype=bool)
        if (~test_labels).any():
            axes.hist(
                test_scores[~test_labels],
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.6,
                color="tab:green",
                label="test normal",
            )
        if test_labels.any():
            axes.hist(
                test_scores[test_labels],
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.6,
                color="tab:red",
                label="test defective",
            )
    if log_stats is not None and log_stats[1] > 0:
        grid = np.linspace(max(low, 1e-12), high, 400)
        log_mean, log_std = log_stats
        axes.plot(
            grid,
            stats.lognorm.pdf(grid, s=log_std, scale=np.exp(log_mean)),
            color="black",
            linewidth=1.2,
            label=f"log-normal fit (μ_log = {log_mean:.4g}, σ_log = {log_std:.3g})",
        )
    elif mean is not None and std is not None and std > 0:
        grid = np.linspace(low, high, 400)
        axes.plot(
            grid,
            stats.norm.pdf(grid, mean, std),
            color="black",
            linewidth=1.2,
            label=f"normal fit N({mean:.4g}, {std:.3g}²)",
        )
    if mean is not None:
        axes.axvline(mean, color="tab:gray", linestyle="--", linewidth=1.2, label="μ")
    if threshold is not None:
        label = rule if rule is not None else threshold_rule("normal", gamma, threshold, 0.0)
        axes.axvline(threshold, color="tab:red", linewidth=1.8, label=label)

    title = "Pauta threshold on defect-free scores"
    if p_value is not None and np.isfinite(p_value):
        title += f" (normality p = {p_value:.3g})"
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("density")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def normality_test(scores: Iterable[float] | np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Test whether scores look normally distributed.

    Uses D'Agostino–Pearson's K² test (:func:`scipy.stats.normaltest`) for 20 or more scores, where
    its kurtosis term is valid, and Shapiro–Wilk (:func:`scipy.stats.shapiro`) for 3 to 19 scores.

    Args:
        scores: One-dimensional anomaly scores.

    Returns:
        A dict with ``test`` (``"dagostino_pearson"``, ``"shapiro_wilk"`` or ``None`` when the test
        cannot run: fewer than 3 scores or all equal), ``statistic``, ``p_value`` and ``n``.

    Example:
        >>> import numpy as np
        >>> result = normality_test(np.random.default_rng(0).normal(size=200))
        >>> result["test"], result["p_value"] > 0.05
        ('dagostino_pearson', True)
    """
    values = np.asarray(torch.as_tensor(scores).detach().cpu().double().flatten().numpy())
    values = values[np.isfinite(values)]
    n = int(values.size)
    result: dict[str, Any] = {"test": None, "statistic": float("nan"), "p_value": float("nan"), "n": n}
    if n < 3 or float(np.ptp(values)) == 0.0:
        return result
    if n >= 20:
        statistic, p_value = stats.normaltest(values)
        result["test"] = "dagostino_pearson"
    else:
        statistic, p_value = stats.shapiro(values)
        result["test"] = "shapiro_wilk"
    result["statistic"] = float(statistic)
    result["p_value"] = float(p_value)
    return result


def json_safe(value: Any) -> Any:
    """Plain JSON data: NaN/inf become ``None``, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value
