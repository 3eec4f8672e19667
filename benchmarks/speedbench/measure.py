"""Speed and memory of MAA against PaDiM and PatchCore, measured side by side in one run.

``python benchmarks/speed.py --output results/speed`` writes ``speed.md`` and ``speed.csv``:

* FMD per image: a scipy ``sqrtm`` reference (the classic FID formula), the exact ``"eigh"`` method
  (Cholesky + ``eigvalsh``, float64) and the matmul-only export form (``"polar"``, float32), timed
  round-robin in one process (so that load changes hit all alike), for the paper's feature map
  (512 channels x 31 x 31 patches, one image) and the CPU preset's (64 channels x 16 x 16 of one
  128 x 128 tile; also the 40 tiles of one batch of 4 images at 640 x 256).
* Anomaly-map share: the CPU preset's model (640 x 256 grayscale in 128 x 128 tiles, n_features 4,
  feature layer 3, batch 4): the forward pass and the anomaly map (and the FMD) of its tiles, round-robin.
* Inference at 256 x 256, batch 4 (the paper's Table IV setting): images/s and peak memory for MAA
  at paper size and CPU preset, PaDiM-ResNet18 and PatchCore-WRN50 (random weights), each in a fresh
  process; MAA also with ``torch.inference_mode``, channels-last and batch-norm folding, and the
  share of its time in the generator, the discriminator, the FMD and the anomaly map.
* Training: seconds per epoch per 100 images for the MAA presets, through anomalib's ``Engine``.

Every figure is the median of several repetitions after a warm-up; ratios compare figures of the
same run. The machine, the thread count and the load average (the machine may be shared) are
recorded with the results. The device is CUDA when ``torch.cuda.is_available()`` (``--device`` overrides);
scipy always runs on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from speedbench.models import INFERENCE_SPECS, inference_worker
from speedbench.report import render_speed

__all__ = ["fmd_rows", "inference_rows", "machine_info", "main", "map_share_rows", "training_rows"]

FMD_SHAPES = {
    "paper (512 ch x 31x31)": (1, 512, 31, 31),
    "CPU preset (64 ch x 16x16)": (1, 64, 16, 16),
    "CPU preset batch (40 tiles x 64 ch x 16x16)": (40, 64, 16, 16),
}
"""Feature maps ``(batch, channels, height, width)`` of the FMD table."""
CPU_PRESET = {"image_size": (640, 256), "tile_size": (128, 128), "in_channels": 1, "n_features": 4, "feature_layer": 3}
"""The CPU preset's model (``configs/maa_cpu.yaml``) for the anomaly-map share."""
PAPER_PRESET = {"image_size": (256, 256), "tile_size": None, "in_channels": 3, "n_features": 16, "feature_layer": 4}
"""The paper-size model (256 x 256 RGB, n_features 16, feature layer 4) for the FMD share."""
TRAIN_PRESETS = {
    "MAA paper (256 px, n_features=16, batch 8)": {"size": 256, "n_features": 16, "feature_layer": 4, "batch": 8},
    "MAA CPU preset (128 px, n_features=4, batch 32)": {"size": 128, "n_features": 4, "feature_layer": 3, "batch": 32},
}


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, threads, versions and the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": cores,
        "torch_threads": threads,
        "torch": torch.__version__,
        "scipy": _version("scipy"),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "load_avg": " / ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
    }


# --------------------------------------------------------------------------- FMD


def _scipy_fmd(f_input: np.ndarray, f_reconstruction: np.ndarray) -> float:
    """The classic FID formula with ``scipy.linalg.sqrtm`` on one image's (C, H, W) feature maps."""
    from scipy import linalg

    a = f_input.reshape(f_input.shape[0], -1).T.astype(np.float64)
    b = f_reconstruction.reshape(f_reconstruction.shape[0], -1).T.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sigma_a @ sigma_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * np.real(covmean)))


def _blas_threads(threads: int) -> contextlib.AbstractContextManager:
    """Limit numpy/scipy's BLAS to ``threads`` (as torch) when threadpoolctl is installed, for a fair reference."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_times(
    functions: dict[str, Any], repeats: int, warmup: int = 1, device: str = "cpu"
) -> dict[str, tuple[float, list[float]]]:
    """Median seconds of each ``function()`` timed round-robin (A B C A B C ...), so drift hits all alike."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            _sync(device)
            start = time.perf_counter()
            function()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(values), values) for name, values in times.items()}


def fmd_rows(
    repeats: int, shapes: dict[str, tuple[int, int, int, int]] = FMD_SHAPES, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Seconds per call of each FMD path (one batch of ``shape``), speed-up over scipy and relative difference.

    Feature maps are random ReLU-like maps (the reconstruction's correlated with the input's; no dead
    channels, which the exact path would drop). The three paths are timed round-robin in this process.
    The torch paths run on ``device``; scipy always on the CPU, image by image.
    """
    from anomalib_maa.metrics.fmd import frechet_markov_distance
    from anomalib_maa.metrics.fmd_polar import polar_frechet_markov_distance

    rows = []
    generator = torch.Generator().manual_seed(0)
    for label, shape in shapes.items():
        f_input = torch.randn(shape, generator=generator).relu()
        f_reconstruction = (0.8 * f_input + 0.2 * torch.randn(shape, generator=generator)).relu()
        np_input, np_reconstruction = f_input.numpy(), f_reconstruction.numpy()
        on_device = f_input.to(device), f_reconstruction.to(device)

        def scipy_path(a: np.ndarray = np_input, b: np.ndarray = np_reconstruction) -> np.ndarray:
            return np.array([_scipy_fmd(x, y) for x, y in zip(a, b, strict=True)])

        paths = {
            "scipy sqrtm": scipy_path,
            "exact (eigh)": partial(frechet_markov_distance, *on_device, method="eigh"),
            "export (polar, float32)": partial(polar_frechet_markov_distance, *on_device),
        }
        with torch.inference_mode(), _blas_threads(torch.get_num_threads()):
            reference = scipy_path()
            values = {
                name: np.asarray(function() if name == "scipy sqrtm" else function().double().cpu())
                for name, function in paths.items()
            }
            timed = interleaved_times(paths, repeats, device=device)
        scipy_s = timed["scipy sqrtm"][0]
        for name, (median, times) in timed.items():
            rows.append(
                {
                    "section": "fmd",
                    "feature map": label,
                    "batch": shape[0],
                    "method": name,
                    "device": "cpu" if name == "scipy sqrtm" else device,
                    "s_per_call": median,
                    "s_per_image": median / shape[0],
                    "min_s": min(times),
                    "speedup_vs_scipy": scipy_s / median,
                    "rel_diff_vs_scipy": float(
                        np.max(np.abs(values[name] - reference) / np.maximum(np.abs(reference), 1e-12))
                    ),
                }
            )
    return rows


# --------------------------------------------------------------------------- anomaly-map share


def map_share_rows(
    repeats: int, batch: int = 4, device: str = "cpu", spec: dict[str, Any] = CPU_PRESET, name: str = "MAA CPU preset"
) -> list[dict[str, Any]]:
    """Share of a MAA model's inference (``MaaModel.forward``, eval) spent in the anomaly map and in the FMD.

    The forward pass, the anomaly map of its tiles and the FMD of their Markov features are timed
    round-robin (random weights: the time does not depend on them).
    """
    from anomalib_maa import MaaModel

    torch.manual_seed(0)
    model = MaaModel(**spec).eval().to(device)
    images = (torch.rand(batch, spec["in_channels"], *spec["image_size"]) * 2 - 1).to(device)
    with torch.inference_mode():
        tiles = model.tiler.tile(images) if model.tiler is not None else images
        reconstruction = model.generator(tiles)
        f_input = model.discriminator.markov_features(tiles)
        f_reconstruction = model.discriminator.markov_features(reconstruction)
        timed = interleaved_times(
            {
                "forward": lambda: model(images),
                "anomaly_map": lambda: model.anomaly_map_generator(tiles, reconstruction),
                "fmd": lambda: model.fmd(f_input, f_reconstruction),
            },
            repeats,
            device=device,
        )
    total = timed["forward"][0]
    height, width = spec["image_size"]
    tiled = f" in {tiles.shape[-2]}x{tiles.shape[-1]} tiles" if model.tiler is not None else ""
    label = f"{name}, {height}x{width}{tiled}, {spec['in_channels']} ch, n_features {spec['n_features']}, batch {batch}"
    return [
        {
            "section": "map_share",
            "model": label,
            "stage": stage,
            "device": device,
            "s_per_batch": median,
            "share_of_forward": median / total,
        }
        for stage, (median, _) in timed.items()
    ]


# --------------------------------------------------------------------------- inference


def inference_rows(
    image_size: int,
    batch: int,
    repeats: int,
    threads: int,
    models: Sequence[str] | None = None,
    device: str = "cpu",
) -> list:
    """Run :func:`~speedbench.models.inference_worker` for each model in a fresh process."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in models or INFERENCE_SPECS:
        queue = context.Queue()
        arguments = (name, image_size, batch, repeats, threads, queue, device)
        process = context.Process(target=inference_worker, args=arguments)
        process.start()
        try:
            result = queue.get(timeout=1800)
        except Exception as error:  # noqa: BLE001
            result = [{"model": name, "variant": "error", "error": f"no result: {error}"}]
        process.join()
        for row in result:
            rows.append({"section": "inference", "image_size": image_size, "batch": batch, "threads": threads, **row})
    return rows


# --------------------------------------------------------------------------- training


def training_rows(
    steps: int, threads: int, presets: dict[str, dict[str, Any]] = TRAIN_PRESETS, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Seconds per epoch per 100 images: (fit with 1 + ``steps`` batches) minus (fit with 1 batch).

    Subtracting the one-batch fit removes the Lightning set-up and the first step (warm-up). The
    post-processor is off, so no scoring pass is timed.
    """
    import logging

    from anomalib.engine import Engine

    from anomalib_maa import Maa
    from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, preset in presets.items():
            batch = preset["batch"]
            root = make_sample_dataset(
                Path(tmp) / label[:8], n_train=batch * (steps + 1), n_test_good=2, n_test_defect=2, size=preset["size"]
            )
            times = []
            for batches in (1, 1 + steps):
                datamodule = folder_datamodule(root, batch_size=batch)
                model = Maa(
                    image_size=preset["size"],
                    n_features=preset["n_features"],
                    feature_layer=preset["feature_layer"],
                    max_epochs=1,
                    post_processor=False,
                    evaluator=False,
                    visualizer=False,
                )
                engine = Engine(
                    default_root_dir=Path(tmp) / "runs",
                    accelerator="gpu" if device.startswith("cuda") else "cpu",
                    devices=1,
                    logger=False,
                    limit_train_batches=batches,
                    limit_val_batches=0,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                )
                start = time.perf_counter()
                engine.fit(model, datamodule=datamodule)
                times.append(time.perf_counter() - start)
            per_image = (times[1] - times[0]) / (steps * batch)
            rows.append(
                {
                    "section": "training",
                    "preset": label,
                    "device": device,
                    "s_per_epoch_per_100_images": 100 * per_image,
                    "steps": steps,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python benchmarks/speed.py --output DIR [--repeats N] [--threads T] [--quick]``."""
    parser = argparse.ArgumentParser(prog="speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=5, help="Timed repetitions after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--train-steps", type=int, default=3, help="Timed training batches per preset")
    parser.add_argument("--skip", nargs="*", default=[], choices=["fmd", "map", "inference", "training"])
    parser.add_argument("--quick", action="store_true", help="Small sizes, 1 repetition (tests, CI)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda; default cuda when available (scipy's reference always runs on the CPU)",
    )
    parser.add_argument("--title", default="Speed and memory")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    if "fmd" not in args.skip:
        shapes = {"tiny (16 ch x 8x8)": (2, 16, 8, 8)} if args.quick else FMD_SHAPES
        rows += fmd_rows(1 if args.quick else args.repeats, shapes, args.device)
    if "map" not in args.skip:
        spec = {**CPU_PRESET, "image_size": (64, 32), "tile_size": (32, 32)} if args.quick else CPU_PRESET
        rows += map_share_rows(1 if args.quick else args.repeats, device=args.device, spec=spec)
        if not args.quick:
            rows += map_share_rows(args.repeats, device=args.device, spec=PAPER_PRESET, name="MAA paper size")
    if "inference" not in args.skip:
        models = ["MAA CPU preset (n_features=4)"] if args.quick else None
        size, repeats = (64, 1) if args.quick else (256, args.repeats)
        rows += inference_rows(size, 4, repeats, args.threads, models, args.device)
    if "training" not in args.skip:
        presets = (
            {"MAA tiny (32 px)": {"size": 32, "n_features": 2, "feature_layer": 3, "batch": 4}}
            if args.quick
            else TRAIN_PRESETS
        )
        rows += training_rows(1 if args.quick else args.train_steps, args.threads, presets, args.device)
    info["load_avg_end"] = machine_info(args.threads)["load_avg"]
    info["total_s"] = f"{time.perf_counter() - started:.0f}"
    args.output.mkdir(parents=True, exist_ok=True)
    flat = [
        {**{k: v for k, v in row.items() if k not in {"stages", "batch_s_all"}}, **_stage_columns(row)} for row in rows
    ]
    frame = pd.DataFrame(flat).assign(**{f"machine_{k}": str(v) for k, v in info.items()})
    frame.to_csv(args.output / "speed.csv", index=False)  # first: the figures survive a report bug
    (args.output / "speed.md").write_text(render_speed(rows, info, args.title), encoding="utf-8")
    print((args.output / "speed.md").read_text(encoding="utf-8"))  # noqa: T201
    return 0


def _stage_columns(row: dict[str, Any]) -> dict[str, Any]:
    stages = row.get("stages") or {}
    columns = {f"stage_{name}_s": value for name, value in stages.items()}
    if "batch_s_all" in row:
        columns["batch_s_spread"] = statistics.pstdev(row["batch_s_all"]) if len(row["batch_s_all"]) > 1 else 0.0
    return columns
