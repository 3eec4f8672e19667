"""The leaderboard's metrics, computed the same way for every model from its per-image outputs.

Image AUROC and pixel AUROC use the raw scores and anomaly maps, on any scale, computed by
torchmetrics' ``binary_auroc`` (what anomalib's ``AUROC`` metric wraps; ties count one half) on the
scores' ranks scaled into (0, 1]: torchmetrics treats values outside [0, 1] as logits and applies a
sigmoid, which would saturate raw PaDiM/PatchCore scores into ties; the ranks keep order and ties.
Accuracy, F1, recall of defects and precision use the labels set by the model's post-processor (NaN when it sets none).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics.functional.classification import binary_auroc

__all__ = ["auroc", "image_metrics", "label_metrics", "pixel_auroc", "roc_points", "vertical_average_roc"]

NAN = float("nan")


def auroc(scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> float:
    """Area under the ROC curve of raw scores (torchmetrics on their ranks; ties count one half).

    Args:
        scores: Scores on any scale (higher = more anomalous).
        targets: Binary labels (1 = anomalous).

    Returns:
        The AUROC, or NaN when one class is missing.

    Example:
        >>> auroc(torch.tensor([300.0, 500.0, 400.0, 400.0]), torch.tensor([0, 1, 0, 1]))
        0.875
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(targets).ravel().astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN  # AUROC needs both classes
    ranks = torch.from_numpy(rankdata(values) / values.size)  # in (0, 1]: no sigmoid, same order and ties
    return float(binary_auroc(ranks, torch.from_numpy(positive).long()))


def label_metrics(pred_labels: torch.Tensor | None, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, F1, recall (of defects) and precision of binary predictions.

    Args:
        pred_labels: Predicted labels (1 = defective), or ``None``.
        labels: Ground-truth labels.

    Returns:
        ``image_accuracy``, ``image_f1``, ``image_recall``, ``image_precision``; zero divisions give 0,
        missing predictions NaN.

    Example:
        >>> label_metrics(torch.tensor([1, 0, 1, 0]), torch.tensor([1, 1, 0, 0]))["image_f1"]
        0.5
    """
    keys = ("image_accuracy", "image_f1", "image_recall", "image_precision")
    if pred_labels is None or pred_labels.numel() != labels.numel() or labels.numel() == 0:
        return dict.fromkeys(keys, NAN)
    pred, true = pred_labels.bool(), labels.bool()
    tp = float((pred & true).sum())
    fp = float((pred & ~true).sum())
    fn = float((~pred & true).sum())
    accuracy = float((pred == true).float().mean())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return dict(zip(keys, (accuracy, f1, recall, precision), strict=True))


def image_metrics(scores: torch.Tensor, labels: torch.Tensor, pred_labels: torch.Tensor | None) -> dict[str, float]:
    """Image AUROC on raw scores plus :func:`label_metrics`."""
    return {"image_auroc": auroc(scores, labels), **label_metrics(pred_labels, labels)}


def pixel_auroc(maps: torch.Tensor | None, masks: torch.Tensor | None) -> float:
    """Pixel AUROC over all (kept) pixels of the test set; NaN without maps, masks or defect pixels."""
    if maps is None or masks is None or maps.numel() == 0:
        return NAN
    values, targets = maps.flatten().double(), masks.flatten().bool()
    finite = torch.isfinite(values)
    return auroc(values[finite].numpy(), targets[finite].numpy())


def roc_points(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve, one point per distinct score, from (0, 0) to (1, 1).

    Returns:
        ``(fpr, tpr)``; empty arrays when one class is missing.

    Example:
        >>> fpr, tpr = roc_points(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(labels).ravel().astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-values, kind="mergesort")
    values, positive = values[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(values)), values.size - 1]  # last index of each distinct score
    tps = np.cumsum(positive)[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def vertical_average_roc(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 201) -> tuple[np.ndarray, ...]:
    """Mean and standard deviation of several ROC curves' TPR on a common FPR grid.

    Args:
        curves: ``(fpr, tpr)`` pairs (e.g. one per seed).
        points: Grid size.

    Returns:
        ``(grid, mean_tpr, sd_tpr)``; empty arrays when no curve is usable.
    """
    curves = [(fpr, tpr) for fpr, tpr in curves if len(fpr)]
    if not curves:
        return np.empty(0), np.empty(0), np.empty(0)
    grid = np.linspace(0, 1, points)
    tprs = np.stack([np.interp(grid, fpr, tpr) for fpr, tpr in curves])
    sd = tprs.std(axis=0, ddof=1) if len(tprs) > 1 else np.zeros(points)
    return grid, tprs.mean(axis=0), sd


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN when none; sd NaN for one)."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return NAN, NAN
    mean = float(np.mean(finite))
    return mean, float(np.std(finite, ddof=1)) if len(finite) > 1 else NAN
