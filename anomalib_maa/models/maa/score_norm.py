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

``method="quantile"`` reads each tile instead as a share of its own training q95 (``QUANTILE``): an image scores
``max_t s_t / q95_t``, 1 where its worst tile reaches what 5 % of the training images' same tile exceed. It keeps the
raw scores' scale (positive, so the lognormal Pauta rule applies) and needs no floor.

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

QUANTILE = 0.95
"""The training quantile that ``method="quantile"`` divides each tile by."""

METHODS = ("zscore", "quantile")


def tile_norm_method(tile_norm: bool | str | None) -> str | None:
    """The method a ``tile_norm`` option names: ``True`` -> ``"zscore"``; ``False``, ``None``, ``"none"`` -> ``None``.

    Raises:
        ValueError: For an unknown name.

    Example:
        >>> tile_norm_method(True), tile_norm_method("quantile"), tile_norm_method("none")
        ('zscore', 'quantile', None)
    """
    if tile_norm is None or tile_norm is False or tile_norm == "none":
        return None
    if tile_norm is True:
        return "zscore"
    if tile_norm not in METHODS:
        msg = f"Unknown tile_norm {tile_norm!r}: use one of {', '.join(METHODS)}, 'none', True or False"
        raise ValueError(msg)
    return str(tile_norm)


class TileScoreNorm(nn.Module):
    """Per-tile scores read against defect-free images' same tile; an image scores its largest.

    ``method="zscore"``: robust z-scores of the log tile scores. ``method="quantile"``: each tile score divided by
    that tile's training q95. Until :meth:`fit` is called, the statistics are the identity (median 0, MAD 1; q95 1),
    so an image scores (the ``log`` of) its largest tile score, an order-preserving stand-in.

    Args:
        n_tiles: Tiles per image, in the order of anomalib's ``Tiler``.
        method: ``"zscore"`` (default) or ``"quantile"``.
    """

    center: torch.Tensor
    scale: torch.Tensor
    floor: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, n_tiles: int, method: str = "zscore") -> None:
        super().__init__()
        if n_tiles < 1:
            msg = f"TileScoreNorm needs at least one tile, got {n_tiles}"
            raise ValueError(msg)
        if method not in METHODS:
            msg = f"Unknown tile normalisation {method!r}: use one of {', '.join(METHODS)}"
            raise ValueError(msg)
        self.method = method
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
        """Set the per-tile statistics (median and MAD of the logs, or q95) from defect-free tile scores ``(N, T)``.

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
        if self.method == "quantile":
            self._fit_quantile(scores)
            return
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

    def _fit_quantile(self, scores: torch.Tensor) -> None:
        quantile = torch.quantile(scores, QUANTILE, dim=0)
        # A tile that is (nearly) always 0 on the training images gets the median q95 of the others (or 1).
        positive = quantile[quantile > 1e-12]
        pooled = positive.median() if positive.numel() else torch.ones((), dtype=quantile.dtype)
        self.center.zero_()
        self.scale.copy_(torch.where(quantile > 1e-12, quantile, pooled).to(self.scale))
        self.floor.fill_(0.0)
        self.fitted.fill_(True)

    def tile_z(self, tile_scores: torch.Tensor) -> torch.Tensor:
        """Normalised score of each tile, ``(B, T)``: robust z-score, or share of the training q95."""
        self._check(tile_scores)
        if self.method == "quantile":
            return tile_scores / self.scale.to(tile_scores.dtype)
        floor = self.floor.to(tile_scores.dtype)
        return ((tile_scores + floor).log() - self.center.to(tile_scores.dtype)) / self.scale.to(tile_scores.dtype)

    def forward(self, tile_scores: torch.Tensor) -> torch.Tensor:
        """Image scores ``(B,)``: the largest tile z-score of each image."""
        return self.tile_z(tile_scores).amax(dim=1)
