"""Markdown report of the rows :mod:`speedbench.measure` measures (FMD, inference, stages, training)."""

from __future__ import annotations

from typing import Any

from speedbench.models import STAGED_VARIANT

__all__ = ["render_speed"]


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], lines: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_fmt(cell) for cell in line) + " |" for line in lines]


def render_speed(rows: list[dict[str, Any]], info: dict[str, Any], title: str = "Speed and memory") -> str:
    """Markdown report: machine, FMD, inference, MAA stage shares and training tables."""
    lines = [f"# {title}", "", "Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()), ""]
    fmd = [row for row in rows if row["section"] == "fmd"]
    if fmd:
        lines += ["## FMD (exact: float64; export form: float32; timed round-robin in one process)", ""]
        lines += _table(
            [
                "Feature map",
                "Batch",
                "Method",
                "Device",
                "ms / call",
                "ms / image",
                "Speed-up vs scipy",
                "Max rel. diff. vs scipy",
            ],
            [
                [
                    r["feature map"],
                    r["batch"],
                    r["method"],
                    r["device"],
                    1000 * r["s_per_call"],
                    1000 * r["s_per_image"],
                    r["speedup_vs_scipy"],
                    r["rel_diff_vs_scipy"],
                ]
                for r in fmd
            ],
        )
    share = [row for row in rows if row["section"] == "map_share"]
    if share:
        lines += ["", "## Anomaly map and FMD in MAA's inference (random weights, timed round-robin)", ""]
        lines += _table(
            ["Model", "Stage", "Device", "ms / batch", "% of forward"],
            [
                [r["model"], r["stage"], r["device"], 1000 * r["s_per_batch"], 100 * r["share_of_forward"]]
                for r in share
            ],
        )
    inference = [row for row in rows if row["section"] == "inference"]
    if inference:
        size, batch = inference[0]["image_size"], inference[0]["batch"]
        lines += ["", f"## Inference at {size}x{size}, batch {batch} (random weights)", ""]
        lines += _table(
            ["Model", "Variant", "Device", "Images / s", "s / batch", "Peak RSS MB", "Model + act. MB", "Peak CUDA MB"],
            [
                [
                    r["model"],
                    r["variant"],
                    r["device"],
                    r["images_per_s"],
                    r["batch_s"],
                    round(r["peak_rss_mb"]),
                    round(r["model_rss_mb"]),
                    "–" if r["peak_cuda_mb"] != r["peak_cuda_mb"] else round(r["peak_cuda_mb"]),
                ]
                if r["variant"] != "error"
                else [r["model"], "error", "", r["error"], "", "", "", ""]
                for r in inference
            ],
        )
        staged = [r for r in inference if "stages" in r]
        if staged:
            lines += ["", f"### Where MAA's inference time goes ({STAGED_VARIANT})", ""]
            table = []
            for r in staged:
                stages = r["stages"]
                total = stages["total"]
                table += [[r["model"], s, 1000 * t, 100 * t / total] for s, t in stages.items() if s != "total"]
                table.append([r["model"], "total (model forward)", 1000 * total, 100.0])
            lines += _table(["Model", "Stage", "ms / batch", "% of total"], table)
    training = [row for row in rows if row["section"] == "training"]
    if training:
        lines += ["", "## Training (anomalib Engine)", ""]
        lines += _table(
            ["Preset", "Device", "s / epoch / 100 images"],
            [[r["preset"], r["device"], r["s_per_epoch_per_100_images"]] for r in training],
        )
    return "\n".join(lines) + "\n"
