"""The auto-memory: a ConvLSTM cell whose state holds the group character of normal samples."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

MemoryMode = Literal["persistent", "zero"]


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
            self.update_state(h_new.detach().mean(dim=0, keepdim=True), c_new.detach().mean(dim=0, keepdim=True))
        return h_new

    @torch.no_grad()
    def update_state(self, h: torch.Tensor, c: torch.Tensor) -> None:
        """Replace the stored state with a batch aggregate (a hook point for distributed reduction)."""
        self.h.copy_(h)
        self.c.copy_(c)
