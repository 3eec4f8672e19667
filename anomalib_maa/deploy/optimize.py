"""Inference-only rewrites of a trained model that keep its values: batch norm folded, channels-last memory.

Both are what made MAA's CPU inference fastest in ``benchmarks/speed.py`` (``docs/benchmarks.md``): oneDNN runs
convolutions on channels-last tensors faster, and a folded batch norm is one pass over the activations less. They
change float32 rounding only. The ONNX and OpenVINO exports fold batch norm themselves.

Example:
    >>> from torch import nn
    >>> block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> x = torch.randn(1, 3, 8, 8)
    >>> before = block(x)
    >>> torch.allclose(fold_batchnorm(block)(x), before, atol=1e-5), type(block[1]).__name__
    (True, 'Identity')
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "optimize_for_inference"]


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``BatchNorm2d`` that directly follows a convolution in an ``nn.Sequential``, in place.

    The convolution gets the folded weights and bias and the batch norm becomes ``nn.Identity``; the statistics
    are the running ones, so the module must be meant for eval mode only.

    Args:
        module: The module (changed in place).

    Returns:
        ``module``.
    """
    for child in list(module.modules()):
        if not isinstance(child, nn.Sequential):
            continue
        for index in range(len(child) - 1):
            conv, norm = child[index], child[index + 1]
            if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) and isinstance(norm, nn.BatchNorm2d):
                child[index] = fuse_conv_bn_eval(
                    conv.eval(), norm.eval(), transpose=isinstance(conv, nn.ConvTranspose2d)
                )
                child[index + 1] = nn.Identity()
    return module


def optimize_for_inference(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode, fold its batch norms and move its weights to channels-last, in place.

    Feed it ``images.contiguous(memory_format=torch.channels_last)``: the convolutions then stay channels-last.

    Args:
        module: A trained model meant for inference only (not to be trained or saved again).

    Returns:
        ``module``.
    """
    module.eval()
    fold_batchnorm(module)
    return module.to(memory_format=torch.channels_last)
