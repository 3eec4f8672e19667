"""The matmul-only FMD of exported graphs; it lives with the exact form in :mod:`anomalib_maa.metrics.fmd_polar`."""

from anomalib_maa.metrics.fmd_polar import (
    DEFAULT_LOWER,
    newton_schulz_schedule,
    polar_factor,
    polar_frechet_markov_distance,
)

__all__ = ["DEFAULT_LOWER", "newton_schulz_schedule", "polar_factor", "polar_frechet_markov_distance"]
