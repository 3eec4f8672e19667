"""Per-tile score normalisation: each tile's score read against the defect-free training images' own spread.

An image is scored by its worst tile. Tiles at different positions of a line's images do not spread alike:
the ends of a KolektorSDD strip or the copper-dense regions of a PCB give larger scores on defect-free images
than the middle does, so the raw worst tile is often a normal tile that is merely busy. :class:`TileScoreNorm`
keeps, per tile position, the median and the spread (median absolute deviation, MAD) of the log tile scores of
the defect-free training images, and scores an image by the largest robust z-score
``(log(s_t + floor) - median_t) / MAD_t`` over its tiles.

The logarithm makes the spread of scores that range over orders of magnitude comparable between tiles; the
``floor`` (a hundredth of the median training tile score) keeps empty tiles, whose score is 0, from sending the
logarithm to minus infinity; median and MAD, unlike mean and standard deviation, are not moved by the few
training tiles with a far larger score (``docs/results.md`` measures both).

Example:
    >>> norm = TileScoreNorm(n_tiles=2)
    >>> normal = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    >>> norm.fit(normal)
    >>> norm(torch.tensor([[2.0, 20.0], [2.0, 80.0]])).round(decimals=2)
    tensor([0.0000, 1.3500])
"""

from __future__ import annotations

import torch
from torch import nn

MAD_TO_SIGMA = 1.4826
"""MAD of a normal distribution times this is its standard deviation."""

FLOOR_SHARE = 0.01
"""The floor added before the logarithm, as a share of the median training tile score."""


class TileScoreNorm(nn.Module):
    """Robust per-tile z-scores of log tile scores, fitted to defect-free images; an image scores its largest.

    Until :meth:`fit` is called, the statistics are the identity (median 0, MAD 1), so an image scores
    ``log`` of its largest tile score, an order-preserving stand-in.

    Args:
        n_tiles: Tiles per image, in the order of anomalib's ``Tiler``.
    """

    center: torch.Tensor
    scale: torch.Tensor
    floor: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, n_tiles: int) -> None:
        super().__init__()
        if n_tiles < 1:
            msg = f"TileScoreNorm needs at least one tile, got {n_tiles}"
            raise ValueError(msg)
        self.register_buffer("center", torch.zeros(n_tiles))
        self.register_buffer("scale", torch.ones(n_tiles))
        self.register_buffer("floor", torch.tensor(1e-12))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def n_tiles(self) -> int:
        """Tiles per image."""
        return int(self.center.numel())

    def _check(self, tile_scores: torch.Tensor) -> None:
        if tile_scores.ndim != 2 or tile_scores.shape[1] != self.n_tiles:  # noqa: PLR2004
            msg = f"Expected tile scores of shape (images, {self.n_tiles}), got {tuple(tile_scores.shape)}"
            raise ValueError(msg)

    @torch.no_grad()
    def fit(self, tile_scores: torch.Tensor) -> None:
        """Set the per-tile median and MAD from the tile scores ``(N, T)`` of defect-free images.

        Raises:
            ValueError: If the shape does not match, no image is given, or a score is NaN or negative.
        """
        self._check(tile_scores)
        scores = tile_scores.detach().double()
        if scores.shape[0] == 0:
            msg = "TileScoreNorm.fit needs the tile scores of at least one defect-free image, got none"
            raise ValueError(msg)
        if not torch.isfinite(scores).all() or (scores < 0).any():
            bad = int((~torch.isfinite(scores) | (scores < 0)).sum())
            msg = f"TileScoreNorm.fit got {bad} NaN, infinite or negative tile scores of {scores.numel()}"
            raise ValueError(msg)
        floor = (FLOOR_SHARE * scores.median()).clamp_min(1e-12)
        logs = (scores + floor).log()
        center = logs.median(dim=0).values
        mad = (logs - center).abs().median(dim=0).values * MAD_TO_SIGMA
        # A tile whose training scores are (nearly) all equal gets the pooled spread, not a division by ~0.
        pooled = ((logs - center).abs().median() * MAD_TO_SIGMA).clamp_min(1e-6)
        scale = torch.where(mad > 1e-6, mad, pooled)
        self.center.copy_(center.to(self.center))
        self.scale.copy_(scale.to(self.scale))
        self.floor.copy_(floor.to(self.floor))
        self.fitted.fill_(True)

    def tile_z(self, tile_scores: torch.Tensor) -> torch.Tensor:
        """Robust z-score of each tile, ``(B, T)``."""
        self._check(tile_scores)
        floor = self.floor.to(tile_scores.dtype)
        return ((tile_scores + floor).log() - self.center.to(tile_scores.dtype)) / self.scale.to(tile_scores.dtype)

    def forward(self, tile_scores: torch.Tensor) -> torch.Tensor:
        """Image scores ``(B,)``: the largest tile z-score of each image."""
        return self.tile_z(tile_scores).amax(dim=1)
