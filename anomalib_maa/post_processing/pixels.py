"""Pixel statistics of anomaly maps, streamed and mergeable across ranks (the pixel Pauta threshold's input)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["MAX_PIXELS_PER_IMAGE", "N_QUANTILES", "PixelAccumulator"]

N_QUANTILES = 10001
"""Size of the stored pixel quantile grid (levels 0, 1e-4, ..., 1)."""
MAX_PIXELS_PER_IMAGE = 16384
"""Pixels sampled per image for the quantile grid; mean and std use every pixel."""


class PixelAccumulator:
    """Streams anomaly-map pixels: exact mean/std from float64 sums, and a sampled quantile grid.

    Example:
        >>> accumulator = PixelAccumulator()
        >>> accumulator.update(torch.ones(2, 1, 4, 4))
        >>> accumulator.result()[0]
        1.0
    """

    def __init__(self, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.samples: list[np.ndarray] = []
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, maps: torch.Tensor) -> None:
        """Add a batch of maps (first dimension: images); non-finite values are skipped."""
        if maps.numel() == 0:
            return
        n_images = maps.shape[0] if maps.dim() > 2 else 1
        values = maps.detach().double().cpu().reshape(-1)
        values = values[torch.isfinite(values)]
        if values.numel() == 0:
            return
        self.count += values.numel()
        self.total += float(values.sum())
        self.total_sq += float((values * values).sum())
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        budget = MAX_PIXELS_PER_IMAGE * n_images
        if values.numel() > budget:
            values = values[torch.randperm(values.numel(), generator=self.generator)[:budget]]
        self.samples.append(values.numpy())

    def result(self) -> tuple[float | None, float | None, np.ndarray | None, float | None, float | None]:
        """Return ``(mean, std with ddof=1, quantile grid, min, max)``, all ``None`` when empty."""
        if self.count == 0:
            return None, None, None, None, None
        mean = self.total / self.count
        variance = max(self.total_sq / self.count - mean * mean, 0.0)
        if self.count > 1:
            variance *= self.count / (self.count - 1)
        quantiles = np.quantile(np.concatenate(self.samples), np.linspace(0.0, 1.0, N_QUANTILES))
        return mean, math.sqrt(variance), quantiles, self.low, self.high

    def state(self) -> dict[str, Any]:
        """The accumulated sums, extremes and samples as plain picklable data (for gathering)."""
        return {
            "count": self.count,
            "total": self.total,
            "total_sq": self.total_sq,
            "low": self.low,
            "high": self.high,
            "samples": self.samples,
        }

    @classmethod
    def merged(cls, states: Iterable[dict[str, Any]]) -> PixelAccumulator:
        """One accumulator over several :meth:`state` dicts, samples concatenated in the given order.

        Example:
            >>> parts = [PixelAccumulator(), PixelAccumulator()]
            >>> parts[0].update(torch.zeros(1, 1, 2, 2)); parts[1].update(torch.full((1, 1, 2, 2), 2.0))
            >>> PixelAccumulator.merged(part.state() for part in parts).result()[0]
            1.0
        """
        accumulator = cls()
        for state in states:
            accumulator.count += state["count"]
            accumulator.total += state["total"]
            accumulator.total_sq += state["total_sq"]
            accumulator.low = min(accumulator.low, state["low"])
            accumulator.high = max(accumulator.high, state["high"])
            accumulator.samples.extend(state["samples"])
        return accumulator
