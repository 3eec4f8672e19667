"""Leaderboard runner: ``python benchmarks/leaderboard.py --config benchmarks/configs/<name>.yaml --output <dir>``.

See docs/benchmarks.md. The code lives in ``anomalib_maa.benchmark`` so that other entry points can call it.
"""

import sys

from anomalib_maa.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
