"""Results tables: ``results.csv``/``results.json``, ``leaderboard.md`` and ROC curves per dataset."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from anomalib_maa.benchmark.metrics import mean_sd, roc_points, vertical_average_roc

__all__ = [
    "COLUMNS",
    "format_mean_sd",
    "parse_leaderboard",
    "parse_mean_sd",
    "plot_roc_curves",
    "read_rows",
    "render_leaderboard",
    "write_scores",
    "write_tables",
]

COLUMNS = [
    "job_id",
    "model",
    "preset",
    "score",
    "dataset",
    "seed",
    "weights",
    "status",
    "image_auroc",
    "image_accuracy",
    "image_f1",
    "image_recall",
    "image_precision",
    "pixel_auroc",
    "fit_s",
    "test_s",
    "data_s",
    "test_images_per_s",
    "peak_rss_mb",
    "peak_cuda_mb",
    "n_train",
    "n_test",
    "threshold",
    "model_class",
    "device",
    "threads",
    "load_1m",
    "finished_at",
    "error",
]
"""Columns of ``results.csv`` and keys of each ``results.json`` row."""

MAIN_SCORE = "model"
"""``score`` of a job's main row (the model's own score); Table III rows name their variant."""

_RANK_HEADER = [
    "Rank",
    "Model",
    "Preset",
    "Weights",
    "Seeds",
    "Image AUROC",
    "F1",
    "Accuracy",
    "Recall",
    "Precision",
    "Pixel AUROC",
    "Fit s",
    "Test img/s",
    "Peak RSS MB",
]
_ABLATION_HEADER = ["Model", "Preset", "Score", "Seeds", "Image AUROC", "F1", "Accuracy", "Recall", "Precision"]
_METRIC_COLUMNS = {
    "Image AUROC": ("image_auroc", 3),
    "F1": ("image_f1", 3),
    "Accuracy": ("image_accuracy", 3),
    "Recall": ("image_recall", 3),
    "Precision": ("image_precision", 3),
    "Pixel AUROC": ("pixel_auroc", 3),
    "Fit s": ("fit_s", 1),
    "Test img/s": ("test_images_per_s", 1),
    "Peak RSS MB": ("peak_rss_mb", 0),
}
_PM = "±"


# --------------------------------------------------------------------------- files


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_tables(rows: list[dict[str, Any]], output: Path) -> None:
    """Write ``results.json`` and ``results.csv`` (one row per job and score).

    Args:
        rows: Result rows (keys of :data:`COLUMNS`).
        output: Output folder.
    """
    output.mkdir(parents=True, exist_ok=True)
    ordered = [{column: _clean(row.get(column)) for column in COLUMNS} for row in rows]
    tmp = output / "results.json.tmp"
    tmp.write_text(json.dumps(ordered, indent=2), encoding="utf-8")
    tmp.replace(output / "results.json")
    pd.DataFrame(ordered, columns=COLUMNS).to_csv(output / "results.csv", index=False)
    write_leaderboard_csv(rows, output / "leaderboard.csv")


LEADERBOARD_COLUMNS = {
    "dataset": "dataset",
    "model": "model",
    "preset": "preset",
    "seed": "seed",
    "image_auroc": "image_AUROC",
    "pixel_auroc": "pixel_AUROC",
    "fit_s": "fit_s",
    "test_images_per_s": "test_images_per_s",
    "n_train": "n_train",
    "n_test": "n_test",
    "weights": "weights",
    "threads": "threads",
    "load_1m": "load_1m",
    "finished_at": "finished_at",
}
"""Columns of ``leaderboard.csv`` (results.csv's name on the left)."""


def write_leaderboard_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write one row per finished (dataset, model, preset, seed): the models' own scores, no score variants.

    Args:
        rows: Result rows (keys of :data:`COLUMNS`).
        path: The CSV file.
    """
    main = [row for row in rows if row.get("status") == "ok" and row.get("score") in (None, "", "model")]
    table = pd.DataFrame(
        [{new: _clean(row.get(old)) for old, new in LEADERBOARD_COLUMNS.items()} for row in main],
        columns=list(LEADERBOARD_COLUMNS.values()),
    )
    table.sort_values(["dataset", "model", "preset", "seed"]).to_csv(path, index=False)


def read_rows(output: Path) -> list[dict[str, Any]]:
    """Rows of an existing ``results.json`` (empty when there is none)."""
    path = output / "results.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [
        {key: (float("nan") if value is None and key in _NUMERIC else value) for key, value in r.items()} for r in rows
    ]


_NUMERIC = {key for key, _ in _METRIC_COLUMNS.values()} | {"test_s", "data_s", "peak_cuda_mb", "load_1m"}


def score_file(output: Path, job_id: str, score: str) -> Path:
    """Where the per-image scores of one row are stored."""
    suffix = "" if score == MAIN_SCORE else f"__{score}"
    return output / "scores" / f"{job_id}{suffix}.csv"


def write_scores(path: Path, paths: list[str], labels: torch.Tensor, scores: torch.Tensor, pred: Any) -> None:
    """Write per-image scores (``image_path, gt_label, score, pred_label``) to a CSV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "image_path": paths if len(paths) == len(scores) else [""] * len(scores),
            "gt_label": labels.numpy(),
            "score": scores.double().numpy(),
            "pred_label": pred.numpy() if pred is not None else np.full(len(scores), np.nan),
        }
    )
    frame.to_csv(path, index=False)


# --------------------------------------------------------------------------- leaderboard


def format_mean_sd(values: list[float], digits: int) -> str:
    """``"0.912 ± 0.004"`` (one value: ``"0.912"``; none: ``"–"``)."""
    mean, sd = mean_sd(values)
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {_PM} {sd:.{digits}f}"


def parse_mean_sd(cell: str) -> tuple[float, float]:
    """Inverse of :func:`format_mean_sd`: ``(mean, sd)`` with NaN for missing parts."""
    cell = cell.strip()
    if cell in {"", "–", "-"}:
        return float("nan"), float("nan")
    mean, _, sd = cell.partition(_PM)
    return float(mean), float(sd) if sd.strip() else float("nan")


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row.get("preset") or "", row.get("score") or MAIN_SCORE)].append(row)
    return groups


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h == "Rank" else "---" for h in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in line) + " |" for line in lines]
    return out


def _seeds_cell(group: list[dict[str, Any]]) -> str:
    ok = sum(row["status"] == "ok" for row in group)
    return str(ok) if ok == len(group) else f"{ok}/{len(group)}"


def _metric_cells(group: list[dict[str, Any]], names: list[str]) -> list[str]:
    ok = [row for row in group if row["status"] == "ok"]
    cells = []
    for name in names:
        key, digits = _METRIC_COLUMNS[name]
        cells.append(format_mean_sd([float(row.get(key) if row.get(key) is not None else "nan") for row in ok], digits))
    return cells


def _sort_key(group: list[dict[str, Any]]) -> float:
    mean, _ = mean_sd([float(r["image_auroc"]) for r in group if r["status"] == "ok" and r["image_auroc"] is not None])
    return -mean if math.isfinite(mean) else math.inf


def render_leaderboard(rows: list[dict[str, Any]], title: str = "Leaderboard") -> str:
    """Markdown leaderboard: per dataset, models ranked by mean image AUROC (mean ± sd over seeds).

    Table III rows (``score`` other than ``model``) get their own table per dataset; failed jobs are
    listed with their errors.

    Args:
        rows: Result rows.
        title: Heading of the document.

    Returns:
        The markdown text.
    """
    lines = [f"# {title}", ""]
    lines.append(
        "Mean ± sample sd over seeds. Image and pixel AUROC from the raw scores and maps; F1, accuracy, "
        "recall (of defects) and precision from the labels of each model's post-processor. "
        "Fit s excludes filling the data cache (data_s in results.csv) where a datamodule has `cache: true`; "
        "Test img/s counts pre-processing and forward passes only (no data loading, no post-processing); "
        "Peak RSS is the runner process's resident memory during the job."
    )
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    for dataset in datasets:
        subset = [row for row in rows if row["dataset"] == dataset]
        groups = _groups(subset)
        main = [g for (_, _, score), g in groups.items() if score == MAIN_SCORE and any(r["status"] == "ok" for r in g)]
        main.sort(key=_sort_key)
        lines += ["", f"## {dataset}", ""]
        table = []
        for rank, group in enumerate(main, start=1):
            first = group[0]
            weights = sorted({str(r.get("weights") or "") for r in group})
            cells = [str(rank), first["model"], first.get("preset") or "", "; ".join(weights), _seeds_cell(group)]
            table.append(cells + _metric_cells(group, _RANK_HEADER[5:]))
        lines += _table(_RANK_HEADER, table) if table else ["No finished job."]
        variants = [g for (_, _, score), g in groups.items() if score != MAIN_SCORE]
        if variants:
            lines += ["", f"### Table III: MAA score ablation on {dataset} (same trained model per seed)", ""]
            table = []
            for group in variants:
                first = group[0]
                cells = [first["model"], first.get("preset") or "", first["score"], _seeds_cell(group)]
                table.append(cells + _metric_cells(group, _ABLATION_HEADER[4:]))
            lines += _table(_ABLATION_HEADER, table)
        failed = [row for row in subset if row["status"] != "ok"]
        if failed:
            lines += ["", "Failed jobs:", ""]
            lines += [f"- `{row['job_id']}`: {str(row.get('error') or '')[:300]}" for row in failed]
    return "\n".join(lines) + "\n"


def parse_leaderboard(text: str) -> dict[str, list[dict[str, str]]]:
    """Read the ranking tables of a leaderboard back (``{dataset: [row, ...]}`` in rank order).

    Args:
        text: Markdown written by :func:`render_leaderboard`.

    Returns:
        Per dataset, the rows of its ranking table as ``{header: cell}`` mappings.
    """
    tables: dict[str, list[dict[str, str]]] = {}
    dataset = None
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            dataset, header = line[3:].strip(), None
            tables[dataset] = []
            continue
        if line.startswith("#"):
            dataset = None if line.startswith("# ") or line.startswith("### ") else dataset
            continue
        if dataset is None or not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not re.fullmatch(r"-*:?-+:?", cells[0]):
            tables[dataset].append(dict(zip(header, cells, strict=False)))
    return tables


# --------------------------------------------------------------------------- ROC curves


def plot_roc_curves(rows: list[dict[str, Any]], output: Path) -> list[Path]:
    """One ROC figure per dataset (the paper's Fig. 10): each model's seeds averaged vertically.

    Args:
        rows: Result rows; their per-image scores are read from ``output/scores``.
        output: Output folder; figures are written as ``roc_<dataset>.png``.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    written = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        groups = _groups([r for r in rows if r["dataset"] == dataset and r["status"] == "ok"])
        figure, axis = plt.subplots(figsize=(6, 6))
        plotted = 0
        for (model, preset, score), group in sorted(groups.items(), key=lambda item: _sort_key(item[1])):
            curves = []
            for row in group:
                path = score_file(output, row["job_id"], score)
                if path.is_file():
                    frame = pd.read_csv(path)
                    curves.append(
                        roc_points(torch.tensor(frame["score"].values), torch.tensor(frame["gt_label"].values))
                    )
            grid, mean, sd = vertical_average_roc(curves)
            if not len(grid):
                continue
            label = model + (f" [{preset}]" if preset else "") + ("" if score == MAIN_SCORE else f" score={score}")
            auroc = format_mean_sd([float(r["image_auroc"]) for r in group], 3)
            line = axis.plot(
                grid, mean, label=f"{label} (AUROC {auroc})", linestyle="-" if score == MAIN_SCORE else ":"
            )
            if len(curves) > 1:
                axis.fill_between(grid, mean - sd, mean + sd, alpha=0.12, color=line[0].get_color())
            plotted += 1
        if plotted:
            axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
            axis.set(xlabel="False-positive rate", ylabel="True-positive rate", title=f"ROC: {dataset}")
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1.01)
            axis.legend(loc="lower right", fontsize=7)
            path = output / f"roc_{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset)}.png"
            figure.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
        plt.close(figure)
    return written
