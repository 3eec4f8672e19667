"""Moved to ``benchmarks/studies/ksdd_study.py`` (studies live outside the product); this path still runs it."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("studies") / "ksdd_study.py"), run_name="__main__")
