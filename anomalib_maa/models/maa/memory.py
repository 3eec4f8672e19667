"""The auto-memory: a ConvLSTM cell whose state holds the group character of normal samples."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_maa.distributed import is_distributed, weighted_all_reduce_mean

MemoryMode = Literal["persistent", "zero", "none"]
"""``"none"`` (no cell at all, the ablation "without memory") is handled by the generator."""


class AutoMemory(nn.Module):
    """ConvLSTM cell between the two ResNet stacks of the generator (paper, §III-B).

    One 3x3 convolution over ``[h, z]`` gives the input, forget and output gates and the
    candidate; ``c' = f * c + i * g`` and ``h' = o * tanh(c')``. ``h'`` is the memory-coding
    passed on to the decoder.

    With ``mode="persistent"`` (default) the state ``(h, c)`` is kept in registered buffers: each
    training step replaces it by the batch mean of the new state (detached), so it accumulates
    the character of the defect-free training images across batches; evaluation reads it and never
    changes it. The buffers are saved in checkpoints and travel inside exported models. With
    ``mode="zero"`` every sample starts from a zero state (a plain gated convolution).

    Under Lightning's DDP strategies each rank sees its own share of every batch; the update is
    then all-reduced (weighted mean over the samples of all ranks), so every rank holds the same
    state after every step.

    Args:
        channels: Channels of the latent code ``z`` (and of ``h`` and ``c``).
        latent_size: Spatial size ``(H, W)`` of the latent code for the configured image size.
        mode: ``"persistent"`` or ``"zero"``.
    """

    def __init__(self, channels: int, latent_size: tuple[int, int], mode: MemoryMode = "persistent") -> None:
        super().__init__()
        if mode not in {"persistent", "zero"}:
            msg = f"Unknown memory mode {mode!r}: use 'persistent' or 'zero'"
            raise ValueError(msg)
        self.mode = mode
        self.gates = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)
        self.register_buffer("h", torch.zeros(1, channels, *latent_size))
        self.register_buffer("c", torch.zeros(1, channels, *latent_size))

    def _state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "zero":
            zeros = torch.zeros_like(z)
            return zeros, zeros
        # Clones: the training step overwrites the buffers in place after this forward pass.
        h, c = self.h.clone(), self.c.clone()
        if h.shape[-2:] != z.shape[-2:]:
            h = F.interpolate(h, size=z.shape[-2:], mode="bilinear", align_corners=False)
            c = F.interpolate(c, size=z.shape[-2:], mode="bilinear", align_corners=False)
        return h.expand_as(z), c.expand_as(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return the memory-coding ``h'`` for the latent code ``z`` (B, C, H, W)."""
        h, c = self._state(z)
        i, f, o, g = self.gates(torch.cat([h, z], dim=1)).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if self.training and self.mode == "persistent" and z.shape[-2:] == self.h.shape[-2:]:
            self.update_state(
                h_new.detach().mean(dim=0, keepdim=True),
                c_new.detach().mean(dim=0, keepdim=True),
                weight=z.shape[0],
            )
        return h_new

    @torch.no_grad()
    def update_state(self, h: torch.Tensor, c: torch.Tensor, weight: int = 1) -> None:
        """Replace the stored state with a batch aggregate, reduced across ranks when distributed.

        In a single process the state becomes ``(h, c)`` as given. When ``torch.distributed`` is
        initialised with more than one rank (Lightning's DDP strategies), every rank gets the mean
        over the samples of all ranks,
        ``sum_r(weight_r * h_r) / sum_r(weight_r)`` (one all-reduce per step), so all ranks hold
        the same state after every step, the one the checkpoint stores. This is a collective
        operation: every rank must reach it the same number of times.

        Args:
            h: Batch mean of the new hidden state, shaped like the buffer.
            c: Batch mean of the new cell state, shaped like the buffer.
            weight: Samples behind the means on this rank (the local batch size).
        """
        if is_distributed():
            h, c = weighted_all_reduce_mean([h.to(self.h.dtype), c.to(self.c.dtype)], weight)
        self.h.copy_(h)
        self.c.copy_(c)
