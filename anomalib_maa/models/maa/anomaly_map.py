"""Localisation (paper, §III-G): local variance of the reconstruction residual, squared."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class AnomalyMapGenerator(nn.Module):
    """Anomaly map from the residual ``x - G(x)``.

    The residual is averaged over channels, its variance over a ``window x window`` neighbourhood
    is taken (``E[r^2] - E[r]^2`` with box filters, borders by reflection), and the variance is
    squared, which suppresses the diffuse residual of normal texture and keeps compact defects.

    Args:
        window: Side of the local window (odd).

    Example:
        >>> gen = AnomalyMapGenerator(window=7)
        >>> gen(torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, window: int = 7) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            msg = f"The localisation window must be a positive odd number, got {window}"
            raise ValueError(msg)
        self.window = window

    def forward(self, image: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Return the map ``(B, 1, H, W)`` at the resolution of ``image``."""
        residual = (image - reconstruction).mean(dim=1, keepdim=True)
        pad = self.window // 2
        padded = F.pad(residual, (pad, pad, pad, pad), mode="reflect") if pad else residual
        mean = F.avg_pool2d(padded, self.window, stride=1)
        mean_sq = F.avg_pool2d(padded.pow(2), self.window, stride=1)
        variance = (mean_sq - mean.pow(2)).clamp_min(0)
        return variance.pow(2)
