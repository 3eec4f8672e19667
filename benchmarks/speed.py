"""Speed and memory benchmark: ``python benchmarks/speed.py --output <dir>`` (see docs/benchmarks.md)."""

import sys

from speedbench.measure import main

if __name__ == "__main__":
    sys.exit(main())
