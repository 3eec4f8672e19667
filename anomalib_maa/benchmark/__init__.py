"""Benchmarks: a leaderboard runner for any anomalib model (MAA, PaDiM, PatchCore, GANomaly, ...).

anomalib's own benchmark pipeline refuses external models, loses every result when one job fails
and passes no trainer arguments; this runner builds on anomalib's ``Engine`` instead.

* :func:`run_leaderboard` runs a :class:`BenchmarkConfig` (see :mod:`anomalib_maa.benchmark.config`).
* :func:`main` is the command line (``python benchmarks/leaderboard.py --config ... --output ...``).
* The speed benchmark (FMD, inference, training) is research tooling outside the package: ``benchmarks/speedbench``.

Example:
    >>> from anomalib_maa.benchmark import parse_config
    >>> config = parse_config({"models": ["padim"], "datamodules": [{"kind": "sample"}], "seeds": [0, 1]})
    >>> [job.job_id for job in config.jobs()]
    ['padim__sample__seed0', 'padim__sample__seed1']
"""

from anomalib_maa.benchmark.config import BenchmarkConfig, ConfigError, Job, load_config, parse_config
from anomalib_maa.benchmark.report import parse_leaderboard, render_leaderboard
from anomalib_maa.benchmark.runner import run_job, run_leaderboard

__all__ = [
    "BenchmarkConfig",
    "ConfigError",
    "Job",
    "load_config",
    "main",
    "parse_config",
    "parse_leaderboard",
    "render_leaderboard",
    "run_job",
    "run_leaderboard",
]


def main(argv: list[str] | None = None) -> int:
    """Command line of the leaderboard runner (see :mod:`anomalib_maa.benchmark.cli`)."""
    from anomalib_maa.benchmark.cli import main as cli_main

    return cli_main(argv)
