"""Per-image test outputs of any anomalib model, and the peak memory of a job.

:class:`ScoreCollector` is a Lightning callback given to the ``Engine``. Trainer callbacks run
before the model's own callbacks (pre-processor, post-processor, evaluator), so at
``on_test_batch_end`` it sees the *raw* scores and anomaly maps of the model, before any
normalisation (anomalib's default normalisation clamps to [0, 1] and creates ties). The labels the
post-processor sets afterwards on the same batch object are read at the next batch and at the end
of the epoch.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["PeakMemory", "ScoreCollector", "TestOutputs"]

MAX_PIXELS = 1 << 24
"""Pixels kept for the pixel AUROC; larger test sets are subsampled on a regular grid."""


@dataclass
class TestOutputs:
    """Per-image outputs of a test run (CPU tensors)."""

    scores: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    labels: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    pred_labels: torch.Tensor | None = None
    paths: list[str] = field(default_factory=list)
    maps: torch.Tensor | None = None
    masks: torch.Tensor | None = None


class ScoreCollector(Callback):
    """Collect raw image scores, labels, predicted labels and (subsampled) anomaly maps at test time.

    It also sums the time from each test batch's start to the model's output
    (:attr:`batch_seconds`): pre-processing and forward pass, without data loading and
    post-processing. Images per second at test are computed from it.

    Args:
        max_pixels: Upper bound on the pixels kept for the pixel AUROC over the whole test set.
        expected_images: Test-set size, used to choose the pixel subsampling stride up front.
    """

    def __init__(self, max_pixels: int = MAX_PIXELS, expected_images: int | None = None) -> None:
        self.max_pixels = max_pixels
        self.expected_images = expected_images
        self.reset()

    def reset(self) -> None:
        """Forget everything collected."""
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._pred_labels: list[torch.Tensor | None] = []
        self._paths: list[str] = []
        self._maps: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []
        self._pending: Any = None
        self._batch_start: float | None = None
        self.batch_seconds = 0.0

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        del trainer, pl_module
        self.reset()

    def _stride(self, height: int, width: int) -> int:
        images = self.expected_images or 1
        stride = 1
        while images * ((height + stride - 1) // stride) * ((width + stride - 1) // stride) > self.max_pixels:
            stride += 1
        return stride

    def _harvest(self) -> None:
        """Read the labels the post-processor set on the previous batch."""
        if self._pending is not None:
            label = getattr(self._pending, "pred_label", None)
            self._pred_labels.append(None if label is None else label.detach().flatten().long().cpu())
            self._pending = None

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        """Read the previous batch's labels; start timing this batch (pre-processing + model)."""
        del args, kwargs
        self._harvest()
        self._batch_start = time.perf_counter()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Copy the raw outputs of the batch; keep a reference to read the labels later."""
        del trainer, pl_module, batch_idx, dataloader_idx
        if self._batch_start is not None:
            self.batch_seconds += time.perf_counter() - self._batch_start
            self._batch_start = None
        result = outputs if getattr(outputs, "pred_score", None) is not None else batch
        score = result.pred_score
        if score is None:
            msg = "The model returned no pred_score at test time"
            raise ValueError(msg)
        self._scores.append(score.detach().flatten().float().cpu().clone())
        self._labels.append(batch.gt_label.detach().flatten().long().cpu())
        self._paths.extend(str(path) for path in (batch.image_path or []))
        anomaly_map, mask = getattr(result, "anomaly_map", None), getattr(batch, "gt_mask", None)
        if anomaly_map is not None and mask is not None:
            anomaly_map = anomaly_map.detach().float().cpu().reshape(len(score), *anomaly_map.shape[-2:])
            mask = mask.detach().cpu().reshape(len(score), *mask.shape[-2:])
            if mask.shape[-2:] != anomaly_map.shape[-2:]:
                mask = torch.nn.functional.interpolate(mask[:, None].float(), anomaly_map.shape[-2:], mode="nearest")[
                    :, 0
                ]
            stride = self._stride(*anomaly_map.shape[-2:])
            self._maps.append(anomaly_map[:, ::stride, ::stride].clone())
            self._masks.append(mask[:, ::stride, ::stride].bool())
        self._pending = result

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        del trainer, pl_module
        self._harvest()

    def outputs(self) -> TestOutputs:
        """Everything collected so far, concatenated."""
        self._harvest()
        pred_labels = None
        if self._pred_labels and all(label is not None for label in self._pred_labels):
            pred_labels = torch.cat(self._pred_labels)  # type: ignore[arg-type]
        maps = masks = None
        if self._maps and len({m.shape[-2:] for m in self._maps}) == 1:
            maps, masks = torch.cat(self._maps), torch.cat(self._masks)
        return TestOutputs(
            scores=torch.cat(self._scores) if self._scores else torch.empty(0),
            labels=torch.cat(self._labels) if self._labels else torch.empty(0, dtype=torch.long),
            pred_labels=pred_labels,
            paths=list(self._paths),
            maps=maps,
            masks=masks,
        )


def rss_bytes() -> int | None:
    """Resident memory of this process now (Linux), or ``None``."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Context manager sampling this process's resident memory (and CUDA peak) while it is open.

    Example:
        >>> with PeakMemory(interval=0.01) as memory:
        ...     data = bytearray(10_000_000)
        >>> memory.peak_rss_mb > 0
        True
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss_mb = float("nan")
        self.peak_cuda_mb = float("nan")
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, rss_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        self._peak = rss_bytes() or 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, rss_bytes() or 0)
        if self._peak:
            self.peak_rss_mb = self._peak / 2**20
        else:  # no /proc: the process's lifetime peak is the best available
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if torch.cuda.is_available():
            self.peak_cuda_mb = torch.cuda.max_memory_allocated() / 2**20
