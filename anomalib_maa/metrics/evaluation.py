"""The paper's Table II metrics as anomalib metrics, and MAA's default evaluator.

The wrappers are defined at module level (not with ``create_anomalib_metric``) so that a model
holding them can be pickled by ``export(..., "torch")``.
"""

from __future__ import annotations

from anomalib.metrics import AUROC, AnomalibMetric, Evaluator, F1Score
from torchmetrics.classification import BinaryAccuracy, BinaryPrecision, BinaryRecall

__all__ = ["Accuracy", "Precision", "Recall", "table2_evaluator"]


class Accuracy(AnomalibMetric, BinaryAccuracy):  # type: ignore[misc]
    """Binary accuracy over anomalib batches (fields ``pred_label``, ``gt_label``)."""


class Recall(AnomalibMetric, BinaryRecall):  # type: ignore[misc]
    """Recall of defective samples over anomalib batches."""


class Precision(AnomalibMetric, BinaryPrecision):  # type: ignore[misc]
    """Precision of the defective predictions over anomalib batches."""


def table2_evaluator() -> Evaluator:
    """Evaluator with the paper's Table II metrics plus pixel AUROC.

    Image level: ``image_AUROC`` (on scores), ``image_F1Score``, ``image_Accuracy``,
    ``image_Recall`` (of defective images) and ``image_Precision`` (on labels); pixel level:
    ``pixel_AUROC`` on the anomaly maps, computed where ground-truth masks exist.

    Returns:
        An :class:`~anomalib.metrics.Evaluator` with the metrics as test metrics.
    """
    label_fields = ["pred_label", "gt_label"]
    test_metrics = [
        AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
        F1Score(fields=label_fields, prefix="image_"),
        Accuracy(fields=label_fields, prefix="image_"),
        Recall(fields=label_fields, prefix="image_"),
        Precision(fields=label_fields, prefix="image_"),
        AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
    ]
    return Evaluator(test_metrics=test_metrics)
