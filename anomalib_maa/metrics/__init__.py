"""Metrics: the Fréchet Markov Distance and the paper's Table II metrics."""

from .evaluation import Accuracy, Precision, Recall, table2_evaluator
from .fmd import FmdMethod, frechet_markov_distance, gaussian_statistics

__all__ = [
    "Accuracy",
    "FmdMethod",
    "Precision",
    "Recall",
    "frechet_markov_distance",
    "gaussian_statistics",
    "table2_evaluator",
]
