"""Where a training step of the CPU recipe goes, with MAA's training-image cache and without it (same run).

    python benchmarks/speed_training.py --data ksdd:../shared/data/KolektorSDD --steps 100 --repeats 2 \\
        --output results/speed_training

Trains ``configs/maa_cpu.yaml`` for ``--steps`` optimiser steps (Lightning's ``max_steps``: MAA takes two per
training batch, one per network) through anomalib's ``Engine`` (the README's path:
sizes derived from the images, the datamodule's own loader workers), alternating runs with the cache (the
default, :class:`~anomalib_maa.callbacks.TrainingImageCache`) and without it (``ANOMALIB_MAA_TRAIN_CACHE_MB=0``),
and reads Lightning's ``SimpleProfiler``: the time spent waiting for the next batch against the time in the
training step. The post-processor is left out (its pass over the training images is the same in both modes).
``--data`` is ``ksdd:ROOT`` (``anomalib_maa.data.Ksdd``, the paper's split) or ``folder:ROOT`` (an MVTec-style
tree: ``train/good``, ``test/good``, ``test/defect``, read with anomalib's ``Folder``). Writes
``speed_training.csv`` and ``speed_training.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from anomalib.engine import Engine
from lightning.pytorch.profilers import SimpleProfiler

from anomalib_maa import Maa
from anomalib_maa.callbacks.training_cache import ENV_LIMIT

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "mode", "run", "steps", "batches", "fit_s", "data_wait_s", "step_s", "cache_read_s", "ms_per_batch", "data_share",
)  # fmt: skip


def _datamodule(spec: str):
    kind, _, root = spec.partition(":")
    if kind == "ksdd":
        from anomalib_maa.data import Ksdd

        return Ksdd(root=root, train_batch_size=8)
    if kind == "folder":
        from anomalib.data import Folder

        return Folder(
            name=Path(root).name, root=root, normal_dir="train/good", abnormal_dir="test/defect",
            normal_test_dir="test/good", val_split_mode="none", train_batch_size=8,
        )  # fmt: skip
    msg = f"--data must be ksdd:ROOT or folder:ROOT, got {spec!r}"
    raise SystemExit(msg)


def _total(profiler: SimpleProfiler, fragment: str) -> float:
    return sum(sum(times) for action, times in profiler.recorded_durations.items() if fragment in action)


def run_once(spec: str, steps: int, cached: bool, out: Path) -> dict:
    """One fit of ``steps`` steps; seconds waiting for batches and in training steps."""
    if cached:
        os.environ.pop(ENV_LIMIT, None)
    else:
        os.environ[ENV_LIMIT] = "0"
    args = dict(yaml.safe_load((ROOT / "configs" / "maa_cpu.yaml").read_text())["model"]["init_args"])
    torch.manual_seed(0)
    model = Maa(**args, post_processor=False, visualizer=False, evaluator=False)
    profiler = SimpleProfiler(dirpath=out, filename="profile")  # its summary goes to a file, not stdout
    engine = Engine(
        accelerator="cpu", max_steps=steps, default_root_dir=out, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, profiler=profiler,
    )  # fmt: skip
    start = time.perf_counter()
    engine.fit(model, datamodule=_datamodule(spec))
    fit_s = time.perf_counter() - start
    cache = next((cb for cb in engine.trainer.callbacks if type(cb).__name__ == "TrainingImageCache"), None)
    data_wait = _total(profiler, "train_dataloader_next")
    step = _total(profiler, "run_training_batch")
    batches = sum(len(t) for action, t in profiler.recorded_durations.items() if "run_training_batch" in action)
    return {
        "mode": "cache" if cached else "no cache",
        "steps": steps,
        "fit_s": round(fit_s, 2),
        "data_wait_s": round(data_wait, 2),
        "step_s": round(step, 2),
        "cache_read_s": round(cache.seconds if cache is not None and cache.cached else 0.0, 2),
        "batches": batches,
        "ms_per_batch": round(1000 * (data_wait + step) / max(batches, 1), 1),
        "data_share": round(data_wait / max(data_wait + step, 1e-9), 3),
    }


def render(rows: list[dict], title: str) -> str:
    """Markdown: every run, then the medians per mode and their ratio."""
    lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[key]) for key in COLUMNS) + " |" for row in rows]
    medians = {
        mode: statistics.median(row["ms_per_batch"] for row in rows if row["mode"] == mode)
        for mode in ("no cache", "cache")
    }
    fits = {mode: round(statistics.median(row["fit_s"] for row in rows if row["mode"] == mode), 2) for mode in medians}
    lines += [
        "",
        f"Median ms per training batch (batch wait + step): no cache {medians['no cache']:.1f}, "
        f"cache {medians['cache']:.1f} "
        f"({medians['no cache'] / medians['cache']:.2f}x); median fit s {fits['no cache']} vs {fits['cache']} "
        f"({fits['no cache'] / fits['cache']:.2f}x).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Alternate cached and uncached fits and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ksdd:ROOT or folder:ROOT")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for cached in (False, True):
                row = run_once(args.data, args.steps, cached, Path(tmp) / f"{repeat}-{cached}")
                rows.append({**row, "run": repeat})
                print(row, flush=True)
    with (args.output / "speed_training.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    title = f"Training steps of the CPU recipe, {args.data}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}"
    text = render(rows, title)
    (args.output / "speed_training.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
