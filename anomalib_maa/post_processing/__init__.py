"""Post-processing for anomalib models: the Pauta threshold fitted on defect-free training images."""

from .pauta import PautaPostProcessor
from .report import normality_test, plot_score_histogram
from .rules import DEFAULT_GAMMA, METHODS, threshold_from_scores

__all__ = [
    "DEFAULT_GAMMA",
    "METHODS",
    "PautaPostProcessor",
    "normality_test",
    "plot_score_histogram",
    "threshold_from_scores",
]
