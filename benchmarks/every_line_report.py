"""Tables of the multi-dataset leaderboard (issue 13) from one or more leaderboard output folders.

Reads each folder's ``results.csv``, keeps the models' own scores (and MAA's score variants), and prints
per dataset the image and pixel AUROC as mean ± sd over seeds, with the number of seeds; also writes
the merged per-run rows as ``leaderboard.csv`` (dataset, model, preset, seed, image_AUROC, pixel_AUROC,
fit_s, ...) to ``--csv``.

    python benchmarks/every_line_report.py results/every_line_s0 results/every_line_s1 results/every_line_s2 \
        results/every_line_peers --csv docs/results/leaderboard.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from anomalib_maa.benchmark.report import read_rows, write_leaderboard_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--csv", type=Path, help="write the merged per-run leaderboard CSV here")
    args = parser.parse_args()
    rows = [row for folder in args.folders for row in read_rows(folder)]
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        write_leaderboard_csv(rows, args.csv)
    table = pd.DataFrame([row for row in rows if row.get("status") == "ok"])
    table["label"] = (
        table["model"] + " " + table["preset"] + table["score"].map(lambda s: "" if s == "model" else f" [{s}]")
    )
    for dataset, group in table.groupby("dataset", sort=False):
        print(f"\n### {dataset}\n")
        print("| model | seeds | image AUROC | pixel AUROC | fit s |")
        print("|---|---|---|---|---|")
        stats = group.groupby("label").agg(
            n=("seed", "count"),
            img=("image_auroc", "mean"),
            img_sd=("image_auroc", "std"),
            pix=("pixel_auroc", "mean"),
            pix_sd=("pixel_auroc", "std"),
            fit=("fit_s", "mean"),
        )
        for label, s in stats.sort_values("img", ascending=False).iterrows():
            img_sd = f" ± {s.img_sd:.3f}" if s.n > 1 else ""
            pix = "–" if pd.isna(s.pix) else f"{s.pix:.3f}" + (f" ± {s.pix_sd:.3f}" if s.n > 1 else "")
            print(f"| {label} | {int(s.n)} | {s.img:.3f}{img_sd} | {pix} | {s.fit:.0f} |")


if __name__ == "__main__":
    main()
