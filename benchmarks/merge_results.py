"""Merge the results of one leaderboard output folder into another (e.g. seeds run in parallel).

Rows of ``--source`` replace rows of ``--into`` with the same job id; their score files and run
folders move along; ``results.csv/json`` and ``leaderboard.md`` of ``--into`` are rewritten.

Example:
    python benchmarks/leaderboard.py --config C.yaml --output results/a --seeds 0 1 &
    python benchmarks/leaderboard.py --config C.yaml --output results/b --seeds 2
    python benchmarks/merge_results.py --into results/a --source results/b --title "Leaderboard: name"
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from anomalib_maa.benchmark.report import read_rows
from anomalib_maa.benchmark.runner import _save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--into", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--title", default=None, help="leaderboard title (default: from the folder name)")
    args = parser.parse_args()
    incoming = read_rows(args.source)
    if not incoming:
        msg = f"No results in {args.source}"
        raise SystemExit(msg)
    jobs = {row["job_id"] for row in incoming}
    rows = [row for row in read_rows(args.into) if row["job_id"] not in jobs] + incoming
    for folder in ("scores", "runs"):
        for item in sorted((args.source / folder).glob("*")) if (args.source / folder).is_dir() else []:
            if not any(item.name.startswith(job) for job in jobs):
                continue
            target = args.into / folder / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            shutil.move(str(item), str(target))
    _save(rows, args.into, args.title or f"Leaderboard: {args.into.name}")
    print(f"{len(incoming)} rows of {len(jobs)} jobs merged into {args.into}")  # noqa: T201


if __name__ == "__main__":
    main()
