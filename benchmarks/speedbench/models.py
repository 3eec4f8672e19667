"""Models and inference variants timed by :mod:`speedbench.measure`.

Every measurement of inference runs in a fresh process (:func:`inference_worker`), so that its
peak resident memory belongs to one model only.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from anomalib_maa.deploy.optimize import fold_batchnorm

__all__ = ["INFERENCE_SPECS", "inference_worker", "maa_stage_times", "median_time"]

INFERENCE_SPECS: dict[str, dict[str, Any]] = {
    "MAA paper (n_features=16)": {"kind": "maa", "n_features": 16, "feature_layer": 4},
    "MAA CPU preset (n_features=4)": {"kind": "maa", "n_features": 4, "feature_layer": 3},
    "PaDiM-ResNet18": {"kind": "padim"},
    "PatchCore-WRN50": {"kind": "patchcore"},
}
"""The models of the inference table (random weights: speed does not depend on them)."""

STAGED_VARIANT = "inference_mode+channels_last+bn_folded"
"""The MAA variant whose time is broken down into stages."""

PATCHCORE_BANK = 24_900
"""Memory-bank rows for PatchCore: 10 % coreset of KSDD's 243 training images x 32 x 32 patches."""


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_time(function: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        function()
        _synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _build(spec: dict[str, Any], image_size: int, batch: int) -> nn.Module:
    """A torch model ready for inference (eval mode, statistics in place)."""
    kind = spec["kind"]
    if kind == "maa":
        from anomalib_maa import MaaModel

        return MaaModel(
            (image_size, image_size), n_features=spec["n_features"], feature_layer=spec["feature_layer"]
        ).eval()
    if kind == "padim":
        from anomalib.models import Padim

        model = Padim(backbone="resnet18", pre_trained=False, evaluator=False, visualizer=False).model
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(batch, 3, image_size, image_size))
        model.fit()
        return model.eval()
    if kind == "patchcore":
        from anomalib.models import Patchcore

        model = Patchcore(pre_trained=False, evaluator=False, visualizer=False).model.eval()
        with torch.no_grad():
            model.train()
            dim = model(torch.randn(1, 3, image_size, image_size)).shape[-1]
            model.eval()
        model.memory_bank = torch.randn(PATCHCORE_BANK, dim)
        return model
    msg = f"Unknown model kind {kind!r}"
    raise ValueError(msg)


def _variants(spec: dict[str, Any]) -> list[str]:
    if spec["kind"] == "maa":
        return [
            "no_grad",
            "inference_mode",
            "inference_mode+channels_last",
            "inference_mode+bn_folded",
            "inference_mode+channels_last+bn_folded",
        ]
    return ["inference_mode"]


def _prepare(model: nn.Module, variant: str) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager], bool]:
    channels_last = "channels_last" in variant
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if "bn_folded" in variant:
        model = fold_batchnorm(model)
    context = torch.no_grad if variant.startswith("no_grad") else torch.inference_mode
    return model, context, channels_last


def inference_worker(
    name: str, image_size: int, batch: int, repeats: int, threads: int, queue: Any, device: str = "cpu"
) -> None:
    """Time one model's inference in this (fresh) process and put the result rows on ``queue``.

    Rows: one per inference variant, with ``images_per_s`` (median), ``peak_rss_mb`` (this process
    while timing), ``model_rss_mb`` (the increase over the process's memory before the model was built)
    and, on CUDA, ``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``).
    """
    try:
        import anomalib.models  # noqa: F401  (imports before the baseline: it measures the model alone)

        import anomalib_maa  # noqa: F401
        from anomalib_maa.benchmark.collect import PeakMemory, rss_bytes

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        spec = INFERENCE_SPECS[name]
        baseline = (rss_bytes() or 0) / 2**20
        rows = []
        for variant in _variants(spec):
            model, context, channels_last = _prepare(_build(spec, image_size, batch).to(device), variant)
            images = (torch.rand(batch, 3, image_size, image_size) * 2 - 1).to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)

            def run(model: nn.Module = model, context: Any = context, images: torch.Tensor = images) -> None:
                with context():
                    model(images)

            with PeakMemory(interval=0.01) as memory:
                median, times = median_time(run, repeats)
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "images_per_s": batch / median,
                    "batch_s": median,
                    "batch_s_all": times,
                    "peak_rss_mb": memory.peak_rss_mb,
                    "model_rss_mb": memory.peak_rss_mb - baseline,
                    "peak_cuda_mb": memory.peak_cuda_mb,
                    "device": device,
                }
            )
            if spec["kind"] == "maa" and variant == STAGED_VARIANT:
                rows[-1]["stages"] = maa_stage_times(model, images, repeats)
            del model
        queue.put(rows)
    except Exception as error:  # noqa: BLE001  (reported as a failed row by the parent)
        queue.put([{"model": name, "variant": "error", "error": f"{type(error).__name__}: {error}"}])


@torch.inference_mode()
def maa_stage_times(model: nn.Module, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per batch of MAA's inference stages: generator, discriminator (both f(x)), FMD, map."""
    from anomalib_maa.metrics.fmd import frechet_markov_distance

    reconstruction = model.generator(images)
    f_input = model.discriminator.markov_features(images)
    f_reconstruction = model.discriminator.markov_features(reconstruction)
    stages = {
        "generator": lambda: model.generator(images),
        "discriminator": lambda: (
            model.discriminator.markov_features(images),
            model.discriminator.markov_features(reconstruction),
        ),
        "fmd": lambda: frechet_markov_distance(f_input, f_reconstruction, method=model.fmd_method),
        "anomaly_map": lambda: model.anomaly_map_generator(images, reconstruction),
        "total": lambda: model(images),
    }
    return {stage: median_time(function, repeats)[0] for stage, function in stages.items()}
