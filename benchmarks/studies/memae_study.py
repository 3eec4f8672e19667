"""MAA with an addressed memory after the auto-memory (MemAE's form), for the leaderboard (issue 13).

The paper credits the ConvLSTM memory with rebuilding a defective input as a normal one, but nothing stops its
decoder from rebuilding anything it is given. MemAE (Gong et al., 2019) constrains it: every latent position is
replaced by a sparse convex combination of a bank of learned memory items (cosine addressing, softmax, hard
shrinkage at ``1 / n_items``, renormalised), so the decoder can only rebuild what the items hold. Here the bank
follows MAA's ConvLSTM cell, which stays as the paper has it. A study class, not a package option: a leaderboard
config names it as ``model: memae_study.MaaMemAE`` with ``benchmarks/studies`` on ``PYTHONPATH``.

    PYTHONPATH=benchmarks/studies python benchmarks/leaderboard.py \
        --config benchmarks/configs/every_line_study.yaml --presets cpu-memae ...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_maa import Maa


class AddressedMemory(nn.Module):
    """MemAE's memory: each position of ``z`` (B, C, H, W) rebuilt from ``n_items`` learned items of C values."""

    def __init__(self, channels: int, n_items: int = 256) -> None:
        super().__init__()
        bound = 1 / channels**0.5
        self.items = nn.Parameter(torch.empty(n_items, channels).uniform_(-bound, bound))
        self.shrink = 1 / n_items

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = z.shape
        query = z.permute(0, 2, 3, 1).reshape(-1, channels)
        weights = torch.softmax(F.normalize(query, dim=1) @ F.normalize(self.items, dim=1).T, dim=1)
        shifted = weights - self.shrink
        weights = F.relu(shifted) * weights / (shifted.abs() + 1e-12)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
        out = weights @ self.items
        return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class MaaMemAE(Maa):
    """:class:`~anomalib_maa.Maa` whose generator passes the ConvLSTM's memory-coding through an addressed memory.

    Args:
        n_items: Memory items.
        **kwargs: :class:`~anomalib_maa.Maa`'s arguments.
    """

    def __init__(self, n_items: int = 256, **kwargs) -> None:
        self.n_items = n_items
        super().__init__(**kwargs)

    def _build(self, image_size, tile_size, in_channels) -> None:
        super()._build(image_size, tile_size, in_channels)
        generator = self.model.generator
        channels = generator.encoder.layers[-1].block[-1].num_features
        generator.memory = nn.Sequential(generator.memory, AddressedMemory(channels, self.n_items))
