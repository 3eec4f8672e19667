"""Command line of the leaderboard runner.

``python benchmarks/leaderboard.py --config benchmarks/configs/smoke.yaml --output results/smoke``
(or ``python -m anomalib_maa.benchmark.cli ...``). Writes ``results.csv``, ``results.json``,
``leaderboard.md`` and ``roc_<dataset>.png`` to the output folder; ``--force`` re-runs finished jobs.
Exits with status 1 when a job failed (after running all the others).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="Leaderboard YAML (benchmarks/configs/*.yaml)")
    parser.add_argument("--output", required=True, type=Path, help="Output folder")
    parser.add_argument("--force", action="store_true", help="Run jobs again even when results exist")
    parser.add_argument("--threads", type=int, help="torch CPU threads (overrides the configuration's `threads`)")
    parser.add_argument("--seeds", type=int, nargs="+", help="Run only these seeds (overrides the configuration's)")
    parser.add_argument("--presets", nargs="+", help="Run only the models with these presets")
    parser.add_argument("--datasets", nargs="+", help="Run only the datamodules with these names")
    parser.add_argument("--keep-checkpoints", action="store_true", help="Keep every job's checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar")
    parser.add_argument("--verbose", action="store_true", help="Keep Lightning's and anomalib's info logs")
    parser.add_argument("--allow-failures", action="store_true", help="Exit with status 0 even when a job failed")
    return parser


def _quiet() -> None:
    import lightning.pytorch  # noqa: F401  (Lightning sets its loggers' levels when imported: import first)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "anomalib", "anomalib_maa"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a leaderboard; return the exit status (1 when a job failed, unless ``--allow-failures``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet()
    from anomalib_maa.benchmark.config import load_config
    from anomalib_maa.benchmark.runner import run_leaderboard, summary

    config = load_config(args.config)
    if args.threads:
        config = dataclasses.replace(config, threads=args.threads)
    if args.seeds:
        config = dataclasses.replace(config, seeds=tuple(args.seeds))
    for option, field, key in (("presets", "models", "preset"), ("datasets", "datamodules", "name")):
        wanted = getattr(args, option)
        if not wanted:
            continue
        kept = tuple(item for item in getattr(config, field) if getattr(item, key) in wanted)
        if not kept:
            print(f"No entry of {args.config} `{field}` has a {key} among {wanted}", file=sys.stderr)  # noqa: T201
            return 2
        config = dataclasses.replace(config, **{field: kept})
    if args.keep_checkpoints:
        config = dataclasses.replace(config, keep_checkpoints=True)
    rows = run_leaderboard(config, args.output, force=args.force, progress=not args.no_progress)
    print(summary(rows))  # noqa: T201
    print(f"Leaderboard: {(args.output / 'leaderboard.md').resolve()}")  # noqa: T201
    failed = any(row["status"] != "ok" for row in rows)
    return 1 if failed and not args.allow_failures else 0


if __name__ == "__main__":
    sys.exit(main())
