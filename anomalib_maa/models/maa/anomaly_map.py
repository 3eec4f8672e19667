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
        residual = image - reconstruction
        if residual.shape[1] != 1:
            residual = residual.mean(dim=1, keepdim=True)
        pad = self.window // 2
        if not pad:
            return torch.zeros_like(residual)  # the variance over one pixel
        padded = F.pad(residual, (pad, pad, pad, pad), mode="reflect")
        area = self.window * self.window
        mean = _box_sum(padded, self.window) / area
        mean_sq = _box_sum(padded * padded, self.window) / area
        variance = (mean_sq - mean * mean).clamp_min(0)
        return variance * variance


def _window_sum(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Sums of ``window`` consecutive entries along ``dim`` (valid part only), by shifted-slice additions.

    Partial sums of 1, 2, 4, ... entries are combined (binary decomposition of ``window``), so a
    window of 7 costs 4 additions per entry; the result has ``size - window + 1`` entries along ``dim``.
    Plain elementwise additions of slices: any dtype, any device, exports to ONNX.
    """
    out_len = x.shape[dim] - window + 1
    total, offset = None, 0
    block, width = x, 1
    remaining = window
    while remaining:
        if remaining & 1:
            part = block.narrow(dim, offset, out_len)
            total = part if total is None else total + part
            offset += width
        remaining >>= 1
        if remaining:
            length = block.shape[dim] - width
            block = block.narrow(dim, 0, length) + block.narrow(dim, width, length)
            width *= 2
    return total


def _box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over ``window x window`` neighbourhoods of ``(B, C, H, W)`` maps, valid part (separable)."""
    return _window_sum(_window_sum(x, window, -1), window, -2)
