"""What the Pauta post-processor reports about its fit: the report dict, the log line, the warning, the files.

``pauta_threshold.json`` and ``pauta_histogram.png`` (paper Fig. 6) go to the run folder after the statistics are
fitted and again after testing, then with the test scores by class (:class:`TestScores`). The plot and the
normality test are :mod:`anomalib_maa.post_processing.report`'s.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib.data import Batch
from anomalib.post_processing import PostProcessor
from lightning import Trainer

from anomalib_maa.post_processing.report import json_safe, normality_test, plot_score_histogram, threshold_rule
from anomalib_maa.post_processing.rules import RULES, log_statistics

__all__ = ["REPORT_JSON", "REPORT_PNG", "TestScores", "build_report", "log_report", "warn_if_not_normal", "write_files"]

logger = logging.getLogger(__name__)

REPORT_JSON = "pauta_threshold.json"
REPORT_PNG = "pauta_histogram.png"


def _item(tensor: torch.Tensor) -> float | None:
    value = float(tensor.detach().cpu().item())
    return value if math.isfinite(value) else None


def build_report(post: PostProcessor) -> dict[str, Any]:
    """The fitted statistics, the rule and the normality test of a Pauta post-processor as data (NaN: ``None``)."""
    scores = post.train_scores.detach().cpu().double().numpy()
    threshold = _item(post.image_threshold)
    method = post.method
    logs = method == "lognormal" and scores.size > 0 and bool((scores > 0).all())
    normality = normality_test(np.log(scores) if logs else scores)
    log_stats = log_statistics(scores) if method == "lognormal" else None
    report: dict[str, Any] = {
        "rule": RULES[method],
        "threshold_rule": threshold_rule(method, post.gamma, threshold, post.tail_probability),
        "method": method,
        "stats_source": post.stats_source,
        "gamma": post.gamma,
        "false_alarm_rate": post.false_alarm_rate,
        "tail_probability": post.tail_probability,
        "n_images": int(scores.size),
        "image": {
            "mean": _item(post.image_mean),
            "std": _item(post.image_std),
            "threshold": threshold,
            "min": _item(post.image_min),
            "max": _item(post.image_max),
            "train_false_alarm_rate": (
                float(np.mean(scores > threshold)) if scores.size and threshold is not None else None
            ),
            **({"log_mean": log_stats[0], "log_std": log_stats[1]} if log_stats else {}),
        },
        "pixel": {
            "mean": _item(post.pixel_mean),
            "std": _item(post.pixel_std),
            "threshold": _item(post.pixel_threshold),
            "min": _item(post.pixel_min),
            "max": _item(post.pixel_max),
        },
        "normality": {
            **normality,
            "of": "log scores" if logs else "scores",
            "normal_at_0.05": None if normality["test"] is None else bool(normality["p_value"] >= 0.05),
        },
    }
    return json_safe(report)


def warn_if_not_normal(report: dict[str, Any], gamma: float, method: str) -> None:
    """Warn (and log) when the normality test rejects the scores a parametric rule assumes normal."""
    normality = report.get("normality", {})
    p_value = normality.get("p_value")
    if p_value is not None and p_value < 0.05:
        msg = (
            f"Normality of the {normality['n']} defect-free scores is rejected by "
            f"{normality['test']} (p = {p_value:.3g} < 0.05, {normality.get('of', 'scores')}): the false-alarm "
            f"rate implied by gamma = {gamma:.3g} may be off. Consider method='lognormal' (positive "
            "scores spread over orders of magnitude) or method='empirical'."
        )
        if method in {"normal", "lognormal"}:
            warnings.warn(msg, UserWarning, stacklevel=4)
        logger.warning(msg)


def log_report(report: dict[str, Any], trainer: Trainer | None, stats_source: str, gamma: float) -> None:
    """One log line for the fit, and ``pauta/*`` metrics to the trainer's loggers."""
    image, normality = report["image"], report["normality"]
    log_part = f" mu_log={image['log_mean']:.6g} sigma_log={image['log_std']:.6g}" if "log_mean" in image else ""
    logger.info(
        "Pauta threshold from %d defect-free %s images: %s (T=%.6g; mu=%.6g sigma=%.6g%s; pixel T=%s); "
        "normality %s p=%s",
        report["n_images"],
        stats_source,
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
        "pauta/gamma": gamma,
        "pauta/threshold": image["threshold"],
        "pauta/normality_p": normality["p_value"],
    }
    metrics = {key: float(value) for key, value in metrics.items() if value is not None}
    for lightning_logger in getattr(trainer, "loggers", []) or []:
        try:
            lightning_logger.log_metrics(metrics, step=trainer.global_step)
        except Exception:  # noqa: BLE001 - a logger failure must not break training
            logger.debug("Could not log Pauta statistics to %s", type(lightning_logger).__name__)


class TestScores:
    """Raw test scores and labels collected batch by batch, for the report's false-alarm rate and recall."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def reset(self) -> None:
        """Forget the scores of an earlier test run."""
        self.scores, self.labels = [], []

    def add(self, outputs: Batch) -> None:
        """Keep a test batch's raw scores (or the maxima of its maps) and labels, before normalisation."""
        score = outputs.pred_score
        if score is None and outputs.anomaly_map is not None:
            score = torch.amax(outputs.anomaly_map.flatten(1), dim=1)
        if score is not None and outputs.gt_label is not None:
            self.scores.append(score.detach().reshape(-1).float().cpu())
            self.labels.append(torch.as_tensor(outputs.gt_label).detach().reshape(-1).cpu())

    def summary(self, threshold: float | None) -> tuple[dict[str, Any] | None, np.ndarray | None, np.ndarray | None]:
        """``(report section, scores, labels)`` at the raw threshold; ``None`` without scores or threshold."""
        if not self.scores or threshold is None:
            return None, None, None
        scores = torch.cat(self.scores).double().numpy()
        labels = torch.cat(self.labels).numpy().astype(bool)
        normal, defective = scores[~labels], scores[labels]
        section = {
            "n_normal": int(normal.size),
            "n_defective": int(defective.size),
            "false_alarm_rate": float(np.mean(normal > threshold)) if normal.size else None,
            "recall": float(np.mean(defective > threshold)) if defective.size else None,
        }
        return json_safe(section), scores, labels


def write_files(
    report: dict[str, Any],
    train_scores: np.ndarray,
    folder: Path,
    test_scores: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> Path:
    """Write ``pauta_threshold.json`` and ``pauta_histogram.png`` into ``folder``; return the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / REPORT_JSON
    json_path.write_text(json.dumps(report, indent=2))
    image = report["image"]
    plot_score_histogram(
        train_scores,
        mean=image["mean"],
        std=image["std"],
        threshold=image["threshold"],
        gamma=report["gamma"],
        p_value=report["normality"]["p_value"],
        path=folder / REPORT_PNG,
        test_scores=test_scores,
        test_labels=test_labels,
        rule=report["threshold_rule"],
        log_stats=(image["log_mean"], image["log_std"]) if "log_mean" in image else None,
    )
    logger.info("Pauta report written to %s", json_path)
    return json_path
