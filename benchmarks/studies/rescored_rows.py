"""Leaderboard rows of MAA models re-read with another score, from ``tile_norm.py``'s output (issue 13).

A score option that does not touch training (``tile_norm``) gives, on the checkpoints a leaderboard run kept,
exactly what a new run of the changed recipe would give (same weights; the test re-read by the package's own
fit path). This writes those rows next to the run's own: for each study row, the leaderboard row of the same
dataset and seed with ``image_AUROC`` replaced, ``preset`` renamed and ``run`` saying where the figure comes from.

    python benchmarks/studies/rescored_rows.py --study results/studies/quantile.json \
        --leaderboard results/el/A/leaderboard.csv results/el/B/leaderboard.csv --preset cpu \
        --raw-preset cpu-rawmax --run "trained in run X, re-read with tile_norm=quantile" --output rows.csv
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd


def main() -> None:
    """Write the leaderboard rows with the re-read image AUROC (and the run's own rows under ``--raw-preset``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="JSON written by benchmarks/studies/tile_norm.py")
    parser.add_argument("--leaderboard", type=Path, nargs="+", required=True, help="leaderboard.csv files")
    parser.add_argument("--preset", default="cpu", help="preset name of the re-read rows")
    parser.add_argument("--raw-preset", default=None, help="rename the run's own MAA rows to this preset")
    parser.add_argument("--run", required=True, help="text of the re-read rows' run column")
    parser.add_argument("--raw-run", default="", help="text of the run's own rows' run column")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    board = pd.concat([pd.read_csv(path) for path in args.leaderboard], ignore_index=True)
    board["run"] = args.raw_run
    rows = []
    for study in json.loads(args.study.read_text()):
        match = re.search(r"Maa-cpu__([^_/]+)__seed(\d+)", study["checkpoint"])
        if match is None:
            msg = f"Cannot tell dataset and seed from {study['checkpoint']}"
            raise SystemExit(msg)
        dataset, seed = match.group(1), int(match.group(2))
        source = board[(board["model"] == "Maa") & (board["dataset"] == dataset) & (board["seed"] == seed)]
        if len(source) != 1:
            msg = f"{len(source)} leaderboard rows for Maa on {dataset} seed {seed}"
            raise SystemExit(msg)
        gap = abs(float(source["image_AUROC"].iloc[0]) - float(study["raw"]))
        if gap > 5e-3:  # more than a few near-tied pairs apart: another checkpoint or another split
            msg = f"{dataset} seed {seed}: the study's raw AUROC {study['raw']} is not the run's; wrong checkpoint?"
            raise SystemExit(msg)
        if gap > 1e-6:
            run_auroc = float(source["image_AUROC"].iloc[0])
            print(f"{dataset} seed {seed}: raw AUROC {study['raw']:.6f} here, {run_auroc:.6f} in the run")
        row = source.iloc[0].to_dict()
        rows.append({**row, "preset": args.preset, "image_AUROC": study["tile_norm"], "run": args.run})
    if args.raw_preset:
        board.loc[board["model"] == "Maa", "preset"] = args.raw_preset
    table = pd.concat([board, pd.DataFrame(rows)], ignore_index=True)
    table.sort_values(["dataset", "model", "preset", "seed"]).to_csv(args.output, index=False)
    print(table.groupby(["dataset", "model", "preset"])["image_AUROC"].agg(["mean", "std", "count"]).round(3))


if __name__ == "__main__":
    main()
