"""The patch Gaussian of a feature map, shared by both forms of the Fréchet Markov Distance."""

from __future__ import annotations

import torch

__all__ = ["gaussian_statistics"]


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and centred patch matrix of a batch of feature maps.

    Args:
        features: Feature maps of shape ``(B, C, H, W)``.

    Returns:
        The mean ``(B, C)`` and the centred patches ``(B, N, C)`` with ``N = H * W``.
    """
    if features.dim() != 4:
        msg = f"FMD expects feature maps of shape (B, C, H, W), got {tuple(features.shape)}"
        raise ValueError(msg)
    # Centred in the (B, C, N) layout of the maps (contiguous, cache-friendly), returned transposed.
    patches = features.flatten(2)  # (B, C, N)
    mean = patches.mean(dim=2)
    return mean, (patches - mean.unsqueeze(2)).transpose(1, 2)
