"""Post-processing for anomalib models: the Pauta threshold fitted on defect-free training images."""

from .pauta import DEFAULT_GAMMA, PautaPostProcessor
from .report import normality_test, plot_score_histogram

__all__ = ["DEFAULT_GAMMA", "PautaPostProcessor", "normality_test", "plot_score_histogram"]
