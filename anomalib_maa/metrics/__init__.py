"""Metrics: the Fréchet Markov Distance and the paper's Table II metrics."""

from .evaluation import Accuracy, Precision, Recall, table2_evaluator
from .fmd import FmdMethod, frechet_markov_distance
from .fmd_polar import polar_frechet_markov_distance
from .gaussian import gaussian_statistics

__all__ = [
    "Accuracy",
    "FmdMethod",
    "Precision",
    "Recall",
    "frechet_markov_distance",
    "gaussian_statistics",
    "polar_frechet_markov_distance",
    "table2_evaluator",
]
