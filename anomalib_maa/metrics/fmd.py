"""Fréchet Markov Distance (FMD), the MAA paper's anomaly score (§III-D, eq. 7).

The Markov encoder f(x) of the discriminator is a (C, H, W) feature map. Read as a matrix of
N = H·W patch positions by C features, it is fitted with a Gaussian per image, and the score is
the Fréchet distance between the Gaussians of the input and of its reconstruction::

    FMD = |mu_i - mu_r|^2 + Tr(S_i + S_r - 2 (S_i S_r)^(1/2))

Two batched paths are provided:

* ``"eigh"`` (exact): float64, Tr((S_i S_r)^½) = Tr((R S_r R)^½) with R = S_i^½ taken from a
  symmetric eigendecomposition, eigenvalues clamped at zero. When N < C the nonzero eigenvalues
  of S_i S_r are those of the N x N cross-Gram matrix, which is cheaper.
* ``"newton_schulz"``: matmuls only (exports to ONNX): the same quantities, with each square
  root taken by a fixed number of coupled Newton–Schulz iterations on the Frobenius-normalised
  matrix (one square root of the N x N cross-Gram matrix when N < C, else R = S_i^½ and the root
  of R S_r R). Float64: in float32 the round-off of rank-deficient covariances makes the
  iteration diverge.

Example:
    >>> import torch
    >>> from anomalib_maa import frechet_markov_distance
    >>> a, b = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    >>> frechet_markov_distance(a, b).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

FmdMethod = Literal["eigh", "newton_schulz"]

__all__ = ["FmdMethod", "feature_windows", "frechet_markov_distance", "gaussian_statistics", "local_maximum"]


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
    patches = features.flatten(2).transpose(1, 2)  # (B, N, C)
    mean = patches.mean(dim=1)
    return mean, patches - mean.unsqueeze(1)


def _covariance(centred: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance ``(B, C, C)`` of centred patches ``(B, N, C)``."""
    n = centred.shape[1]
    return centred.transpose(1, 2) @ centred / max(n - 1, 1)


def _sqrt_psd_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Square root of symmetric PSD matrices and its eigenvalues (clamped at 0)."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    root = eigvals.clamp_min(0).sqrt()
    return (eigvecs * root.unsqueeze(-2)) @ eigvecs.transpose(-1, -2), root


def _trace_sqrt_product_eigh(ci: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """Tr((S_i S_r)^½) exactly, from centred patches (B, N, C), in float64."""
    n, c = ci.shape[1], ci.shape[2]
    denom = max(n - 1, 1)
    if n < c:
        # S_i S_r = Ci^T Ci Cr^T Cr / d^2 shares its nonzero eigenvalues with (Ci Cr^T)(Cr Ci^T)/d^2:
        # the trace of the square root is the sum of the singular values of Ci Cr^T / d.
        cross = ci @ cr.transpose(1, 2) / denom
        return torch.linalg.svdvals(cross).sum(dim=-1)
    s_i, s_r = _covariance(ci), _covariance(cr)
    root_i, _ = _sqrt_psd_eigh(s_i)
    inner = root_i @ s_r @ root_i
    inner = (inner + inner.transpose(-1, -2)) / 2
    return torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum(dim=-1)


def _sqrt_newton_schulz(matrix: torch.Tensor, iterations: int) -> torch.Tensor:
    """Square root of symmetric PSD matrices by the coupled Newton–Schulz iteration (matmuls only)."""
    c = matrix.shape[-1]
    eye = torch.eye(c, dtype=matrix.dtype, device=matrix.device).expand_as(matrix)
    # Frobenius normalisation keeps the spectrum in (0, 1], where the iteration converges.
    norm = matrix.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    y = matrix / norm
    z = eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    return y * norm.sqrt()


def _trace_sqrt_product_newton_schulz(ci: torch.Tensor, cr: torch.Tensor, iterations: int) -> torch.Tensor:
    """Tr((S_i S_r)^½) with matmuls only, from centred patches (B, N, C)."""
    n, c = ci.shape[1], ci.shape[2]
    if n < c:
        cross = ci @ cr.transpose(1, 2) / max(n - 1, 1)
        inner = cross @ cross.transpose(1, 2)
    else:
        root_i = _sqrt_newton_schulz(_covariance(ci), iterations)
        inner = root_i @ _covariance(cr) @ root_i
        inner = (inner + inner.transpose(-1, -2)) / 2
    root = _sqrt_newton_schulz(inner, iterations)
    return root.diagonal(dim1=-2, dim2=-1).sum(dim=-1)


def frechet_markov_distance(
    f_input: torch.Tensor,
    f_reconstruction: torch.Tensor,
    method: FmdMethod = "eigh",
    iterations: int = 25,
) -> torch.Tensor:
    """Fréchet distance between the patch Gaussians of two batches of feature maps.

    Args:
        f_input: Markov features of the inputs, shape ``(B, C, H, W)``.
        f_reconstruction: Markov features of the reconstructions, same shape.
        method: ``"eigh"`` (exact) or ``"newton_schulz"`` (matmuls only, exportable to ONNX).
            Both work in float64.
        iterations: Newton–Schulz iterations (ignored by ``"eigh"``).

    Returns:
        The distance per image, shape ``(B,)``, in the dtype of ``f_input``; never negative.

    Raises:
        ValueError: If the shapes differ or are not 4-D, or ``method`` is unknown.
    """
    if f_input.shape != f_reconstruction.shape:
        msg = f"FMD needs feature maps of equal shape, got {tuple(f_input.shape)} and {tuple(f_reconstruction.shape)}"
        raise ValueError(msg)
    out_dtype = f_input.dtype
    if method not in {"eigh", "newton_schulz"}:
        msg = f"Unknown FMD method {method!r}: use 'eigh' or 'newton_schulz'"
        raise ValueError(msg)
    # float64 throughout: the covariances of centred patches are rank-deficient, and in float32
    # round-off gives them slightly negative eigenvalues, on which Newton-Schulz diverges.
    mu_i, ci = gaussian_statistics(f_input.to(torch.float64))
    mu_r, cr = gaussian_statistics(f_reconstruction.to(torch.float64))
    denom = max(ci.shape[1] - 1, 1)
    mean_term = (mu_i - mu_r).pow(2).sum(dim=-1)
    # Tr(S) is the sum of squared centred entries over (N - 1): no C x C matrix needed.
    trace_term = (ci.pow(2).sum(dim=(1, 2)) + cr.pow(2).sum(dim=(1, 2))) / denom
    if method == "eigh":
        cross_term = _trace_sqrt_product_eigh(ci, cr)
    else:
        cross_term = _trace_sqrt_product_newton_schulz(ci, cr, iterations)
    return (mean_term + trace_term - 2 * cross_term).clamp_min(0).to(out_dtype)


def feature_windows(features: torch.Tensor, window: int, stride: int = 1) -> torch.Tensor:
    """Cut feature maps into overlapping windows of ``window x window`` patches.

    Args:
        features: Feature maps ``(B, C, H, W)``; ``H`` and ``W`` at least ``window``.
        window: Side of a window, in patches.
        stride: Step between windows.

    Returns:
        ``(B * L, C, window * window, 1)`` feature maps, the ``L`` windows of each image in order,
        ready for :func:`frechet_markov_distance` (``F.unfold``, which exports to ONNX).

    Raises:
        ValueError: If the map is smaller than one window.
    """
    b, c, h, w = features.shape
    if window < 1 or window > min(h, w):
        msg = f"A window of {window} patches does not fit a {h}x{w} feature map"
        raise ValueError(msg)
    cols = torch.nn.functional.unfold(features, kernel_size=window, stride=stride)  # (B, C*w*w, L)
    cols = cols.reshape(b, c, window * window, -1).permute(0, 3, 1, 2)  # (B, L, C, w*w)
    return cols.reshape(-1, c, window * window, 1)


def local_maximum(
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    f_input: torch.Tensor,
    f_reconstruction: torch.Tensor,
    window: int,
    stride: int = 1,
) -> torch.Tensor:
    """Largest distance over local windows of the Markov features ("local FMD").

    The whole-image FMD compares statistics of all ``N`` patches, which a defect covering a few
    of them barely moves; applied to windows of ``window x window`` patches and maximised over
    the windows, the same distance sees a small defect at full weight.

    Args:
        distance: Batched distance between feature maps, e.g. :func:`frechet_markov_distance`.
        f_input: Markov features of the inputs ``(B, C, H, W)``.
        f_reconstruction: Those of the reconstructions, same shape.
        window: Window side in patches.
        stride: Step between windows.

    Returns:
        The maximum over each image's windows, shape ``(B,)``.

    Example:
        >>> a = torch.zeros(1, 4, 6, 6)
        >>> b = a.clone()
        >>> b[0, :, 1, 1] = 1.0  # one patch differs
        >>> local_maximum(frechet_markov_distance, a, b, window=3) > frechet_markov_distance(a, b)
        tensor([True])
    """
    batch = f_input.shape[0]
    scores = distance(feature_windows(f_input, window, stride), feature_windows(f_reconstruction, window, stride))
    return scores.reshape(batch, -1).amax(dim=1)
