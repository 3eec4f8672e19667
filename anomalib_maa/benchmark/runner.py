"""The leaderboard runner: every model x datamodule x seed job through anomalib's ``Engine``.

Each job runs inside its own ``try``: a failure is recorded with its error (traceback in
``logs/<job_id>.log``) and the next job runs. Results are written after every job, so an
interrupted run loses at most the job in progress, and a re-run skips the jobs already finished
(``force=True`` runs them again; failed jobs are always retried).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from anomalib_maa.benchmark.cache import DatasetCache, clear_cache
from anomalib_maa.benchmark.collect import PeakMemory, ScoreCollector
from anomalib_maa.benchmark.config import BenchmarkConfig, Job
from anomalib_maa.benchmark.factory import build_datamodule, build_model
from anomalib_maa.benchmark.metrics import image_metrics, pixel_auroc
from anomalib_maa.benchmark.report import (
    MAIN_SCORE,
    plot_roc_curves,
    read_rows,
    render_leaderboard,
    score_file,
    write_scores,
    write_tables,
)

__all__ = ["DEFAULT_TRAINER", "run_job", "run_leaderboard"]

logger = logging.getLogger(__name__)

DEFAULT_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
"""Trainer arguments of every job unless the configuration overrides them."""

NAN = float("nan")


def _device_name(trainer_args: dict[str, Any]) -> str:
    if trainer_args.get("accelerator") in {"gpu", "cuda", "auto"} and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


def _threshold_text(model: Any) -> str:
    post = getattr(model, "post_processor", None)
    if post is None or post is False:
        return "none"
    gamma = getattr(post, "gamma", None)
    return type(post).__name__ + (f"(gamma={gamma:g})" if isinstance(gamma, int | float) else "")


def _load_average() -> float:
    """The machine's 1-minute load average (NaN where unavailable): timings on a shared machine need it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return NAN


def _len(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError:
        return 0


def _base_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "model": job.model.name,
        "preset": job.model.preset,
        "score": MAIN_SCORE,
        "dataset": job.data.name,
        "seed": job.seed,
        "weights": "",
        "status": "failed",
        "threads": torch.get_num_threads(),
        "load_1m": _load_average(),
        "finished_at": "",
        "error": "",
    }


def run_job(job: Job, output: Path, trainer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train and test one job; return its result rows (the main row, then any Table III rows).

    Args:
        job: The job.
        output: Output folder of the leaderboard (runs, scores and generated data go below it).
        trainer: Trainer arguments shared by all jobs (merged over :data:`DEFAULT_TRAINER`, under the
            model's own ``trainer`` arguments).

    Returns:
        Result rows with status ``ok``.

    Raises:
        Exception: Whatever building, training or testing raises (the caller records it).
    """
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    trainer_args = {**DEFAULT_TRAINER, **(trainer or {}), **job.model.trainer}
    run_dir = output / "runs" / job.job_id
    seed_everything(job.seed, workers=True)
    datamodule = build_datamodule(job.data, job.seed, output / "data")
    model, weights = build_model(job.model, job.seed)
    collector = ScoreCollector()
    callbacks: list[Any] = [collector]
    cache = DatasetCache() if job.data.cache else None
    if cache is not None:
        callbacks.append(cache)
    engine = Engine(default_root_dir=run_dir, callbacks=callbacks, **trainer_args)
    with PeakMemory() as memory:
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        data_s = cache.seconds if cache else 0.0
        fit_s = time.perf_counter() - start - data_s
        collector.expected_images = _len(getattr(datamodule, "test_data", None)) or None
        start = time.perf_counter()
        engine.test(model, datamodule=datamodule, verbose=False)
        test_s = time.perf_counter() - start - ((cache.seconds - data_s) if cache else 0.0)
        data_s = cache.seconds if cache else NAN
        variants = {}
        if job.model.score_variants:
            from anomalib_maa.benchmark.ablation import maa_score_variants

            variants = maa_score_variants(model, datamodule, job.model.score_variants)
    outputs = collector.outputs()
    common = {
        **_base_row(job),
        "status": "ok",
        "weights": weights,
        "fit_s": fit_s,
        "data_s": data_s,
        "peak_rss_mb": memory.peak_rss_mb,
        "peak_cuda_mb": memory.peak_cuda_mb,
        "n_train": _len(getattr(datamodule, "train_data", None)),
        "n_test": len(outputs.scores),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "device": _device_name(trainer_args),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rows = [
        {
            **common,
            **image_metrics(outputs.scores, outputs.labels, outputs.pred_labels),
            "pixel_auroc": pixel_auroc(outputs.maps, outputs.masks),
            "test_s": test_s,
            "test_images_per_s": len(outputs.scores) / collector.batch_seconds if collector.batch_seconds else NAN,
            "threshold": _threshold_text(model),
        }
    ]
    write_scores(
        score_file(output, job.job_id, MAIN_SCORE), outputs.paths, outputs.labels, outputs.scores, outputs.pred_labels
    )
    for variant, result in variants.items():
        seconds = result["seconds"]
        rows.append(
            {
                **common,
                **image_metrics(result["scores"], result["labels"], result["pred_labels"]),
                "score": variant,
                "pixel_auroc": NAN,
                "test_s": seconds,
                "test_images_per_s": len(result["scores"]) / seconds if seconds > 0 else NAN,
                "threshold": f"pauta(gamma={result['gamma']:g}, T={result['threshold']:.6g})",
            }
        )
        write_scores(
            score_file(output, job.job_id, variant),
            result["paths"],
            result["labels"],
            result["scores"],
            result["pred_labels"],
        )
    return rows


def _failure_row(job: Job, error: BaseException, output: Path) -> dict[str, Any]:
    log = output / "logs" / f"{job.job_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    message = f"{type(error).__name__}: {error}".replace("\n", " ")
    return {
        **_base_row(job),
        "error": message[:1000],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _cleanup(run_dir: Path, keep_checkpoints: bool) -> None:
    if not keep_checkpoints and run_dir.is_dir():
        for checkpoint in run_dir.rglob("*.ckpt"):
            checkpoint.unlink(missing_ok=True)
    gc.collect()


def _save(rows: list[dict[str, Any]], output: Path, title: str) -> None:
    write_tables(rows, output)
    (output / "leaderboard.md").write_text(render_leaderboard(rows, title), encoding="utf-8")


def run_leaderboard(
    config: BenchmarkConfig,
    output: str | Path,
    force: bool = False,
    progress: bool = True,
    job_runner: Callable[[Job, Path, dict[str, Any]], list[dict[str, Any]]] = run_job,
) -> list[dict[str, Any]]:
    """Run every job of a configuration and write the tables and figures.

    Args:
        config: The configuration.
        output: Output folder (created). Existing results there are reused unless ``force``.
        force: Run finished jobs again (their rows are replaced).
        progress: Show a progress bar (jobs done / total).
        job_runner: Function running one job (tests substitute it).

    Returns:
        All rows of ``results.json`` after the run.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run_jobs(config, output, force, progress, job_runner)
    finally:
        torch.set_num_threads(previous_threads)
        clear_cache()


def _run_jobs(
    config: BenchmarkConfig,
    output: Path,
    force: bool,
    progress: bool,
    job_runner: Callable[[Job, Path, dict[str, Any]], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    jobs = config.jobs()
    rows = read_rows(output)
    finished = {
        job_id
        for job_id in {row["job_id"] for row in rows}
        if all(row["status"] == "ok" for row in rows if row["job_id"] == job_id)
    }
    bar = tqdm(total=len(jobs), unit="job", desc=config.name, disable=not progress, dynamic_ncols=True)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    try:
        for job in jobs:
            if job.job_id in finished and not force:
                counts["skipped"] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
                continue
            bar.set_description(f"{config.name}: {job.job_id}")
            try:
                new_rows = job_runner(job, output, config.trainer)
                counts["ok"] += 1
            except Exception as error:  # noqa: BLE001  (a job's failure must not stop the others)
                logger.warning("Job %s failed: %s", job.job_id, error)
                new_rows = [_failure_row(job, error, output)]
                counts["failed"] += 1
            finally:
                _cleanup(output / "runs" / job.job_id, config.keep_checkpoints)
            rows = [row for row in rows if row["job_id"] != job.job_id] + new_rows
            _save(rows, output, f"Leaderboard: {config.name}")
            bar.set_postfix(counts, refresh=False)
            bar.update()
    finally:
        bar.close()
    _save(rows, output, f"Leaderboard: {config.name}")
    try:
        plot_roc_curves(rows, output)
    except Exception as error:  # noqa: BLE001  (figures are a bonus; the tables are written)
        logger.warning("Could not draw the ROC curves: %s", error)
    return rows


def summary(rows: list[dict[str, Any]]) -> str:
    """One line: jobs finished and failed, mean image AUROC per model (for logs)."""
    ok = [row for row in rows if row["status"] == "ok" and row["score"] == MAIN_SCORE]
    failed = {row["job_id"] for row in rows if row["status"] != "ok"}
    best = max(ok, key=lambda row: row["image_auroc"] if math.isfinite(row["image_auroc"]) else -1, default=None)
    text = f"{len({row['job_id'] for row in ok})} jobs finished, {len(failed)} failed"
    return text + (
        f"; best image AUROC {best['image_auroc']:.3f} ({best['model']} on {best['dataset']})" if best else ""
    )
