"""Fréchet Markov Distance (FMD), the MAA paper's anomaly score (§III-D, eq. 7).

The Markov encoder f(x) of the discriminator is a (C, H, W) feature map. Read as a matrix of
N = H·W patch positions by C features, it is fitted with a Gaussian per image, and the score is
the Fréchet distance between the Gaussians of the input and of its reconstruction::

    FMD = |mu_i - mu_r|^2 + Tr(S_i + S_r - 2 (S_i S_r)^(1/2))

Two batched methods are provided:

* ``"eigh"`` (exact, the default), in float64. With ``N > C`` (more patches than features) the
  covariance S_i is factored by Cholesky, ``S_i = L Lᵀ``; ``S_i S_r`` is similar to the symmetric
  PSD ``Lᵀ S_r L``, so Tr((S_i S_r)^½) is the sum of the square roots of its eigenvalues
  (``eigvalsh``, no eigenvectors, clamped at zero). Features whose centred column is exactly zero in
  the input or the reconstruction (dead ReLU channels, constant channels) contribute nothing to the
  trace (it is the nuclear norm of ``A Bᵀ``, ``AᵀA = S_i``, ``BᵀB = S_r``): they are dropped (when
  dead in every image of the batch) or decoupled (a unit diagonal in S_i, zeros in S_r), so that
  the Cholesky factor exists; an image whose covariance is still singular (rank below ``C`` for
  another reason) falls back to a symmetric square root of S_i by ``eigh``. With ``N <= C`` the
  nonzero eigenvalues of S_i S_r are the squared singular values of the ``N x N`` cross-Gram
  matrix ``Ci Crᵀ / (N - 1)``, which is cheaper. float32 is not used: float32 covariance products
  move the distance by up to about 1e-6 relative (measured, ``docs/benchmarks.md``).
* ``"polar"``: matmuls only, float32-safe, what ONNX / OpenVINO exports compute
  (:func:`anomalib_maa.metrics.fmd_polar.polar_frechet_markov_distance`, ``docs/deployment.md``).

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

from anomalib_maa.metrics.fmd_polar import polar_frechet_markov_distance
from anomalib_maa.metrics.gaussian import gaussian_statistics

FmdMethod = Literal["eigh", "polar"]

__all__ = ["FmdMethod", "feature_windows", "frechet_markov_distance", "gaussian_statistics", "local_maximum"]


def _sqrt_psd_eigh(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of symmetric PSD matrices (eigenvalues clamped at 0)."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp_min(0).sqrt().unsqueeze(-2)) @ eigvecs.transpose(-1, -2)


def _sum_sqrt_eigvalsh(matrix: torch.Tensor) -> torch.Tensor:
    """Sum of the square roots of the eigenvalues (clamped at 0) of symmetric PSD matrices.

    Only the lower triangle is read (``eigvalsh``), so a product that is symmetric up to round-off
    needs no explicit symmetrisation.
    """
    return torch.linalg.eigvalsh(matrix).clamp_min(0).sqrt().sum(dim=-1)


def _trace_sqrt_cross_gram(ci: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """``Tr((Ciᵀ Ci Crᵀ Cr)^½)`` for ``N <= C``: the nuclear norm of the ``N x N`` matrix ``Ci Crᵀ``.

    Its squared singular values, the eigenvalues of ``cross crossᵀ`` (symmetric PSD), are the nonzero
    eigenvalues of the ``C x C`` product.
    """
    cross = ci @ cr.transpose(1, 2)
    return _sum_sqrt_eigvalsh(cross @ cross.transpose(1, 2))


_BLOCK = 128
"""Block side of the C x C products, which skip the blocks that symmetry or triangularity make known."""


def _blocks(c: int) -> list[slice]:
    """Split ``range(c)`` into blocks of about :data:`_BLOCK` (one block below ``2 * _BLOCK``)."""
    count = max(1, c // _BLOCK)
    edges = [round(i * c / count) for i in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(edges[:-1], edges[1:], strict=True)]


def _gram(rows: torch.Tensor) -> torch.Tensor:
    """Symmetric ``x xᵀ`` of ``(B, C, N)`` rows, computing the blocks on and below the diagonal only."""
    blocks = _blocks(rows.shape[-2])
    if len(blocks) == 1:
        return rows @ rows.transpose(-1, -2)
    gram = torch.empty(rows.shape[:-1] + (rows.shape[-2],), dtype=rows.dtype, device=rows.device)
    for i, bi in enumerate(blocks):
        for bj in blocks[: i + 1]:
            gram[..., bi, bj] = block = rows[..., bi, :] @ rows[..., bj, :].transpose(-1, -2)
            gram[..., bj, bi] = block.transpose(-1, -2)
    return gram


def _congruence_lower(factor: torch.Tensor, symmetric: torch.Tensor) -> torch.Tensor:
    """``Lᵀ S L`` for lower-triangular ``L`` and symmetric ``S``; only the lower triangle is valid.

    In blocks, the zero blocks of ``L`` and the upper blocks of the (symmetric) result are skipped,
    about half the work of two full products. The upper blocks are zero (``eigvalsh`` reads the lower).
    """
    blocks = _blocks(factor.shape[-1])
    if len(blocks) == 1:
        return factor.transpose(-1, -2) @ (symmetric @ factor)
    product = torch.empty_like(symmetric)  # S L: block column j sums over the block rows k >= j of L
    for j, bj in enumerate(blocks):
        product[..., bj] = sum(symmetric[..., bk] @ factor[..., bk, bj] for bk in blocks[j:])
    out = torch.zeros_like(symmetric)  # (Lᵀ S L)[i, j] = sum over k >= i of L[k, i]ᵀ (S L)[k, j], for j <= i
    for i, bi in enumerate(blocks):
        stop = bi.stop
        out[..., bi, :stop] = sum(factor[..., bk, bi].transpose(-1, -2) @ product[..., bk, :stop] for bk in blocks[i:])
    return out


def _trace_sqrt_gram_product(g_i: torch.Tensor, g_r: torch.Tensor) -> torch.Tensor:
    """``Tr((G_i G_r)^½)`` for symmetric PSD ``(B, C, C)`` Gram matrices ``G = Cᵀ C`` of centred patches.

    ``G_i = L Lᵀ`` (Cholesky) makes ``G_i G_r`` similar to the symmetric PSD ``Lᵀ G_r L``; one
    ``eigvalsh`` gives the trace. Features with a zero diagonal entry in ``G_i`` or ``G_r`` (exactly
    constant in the input or the reconstruction) contribute nothing (see the module docstring): they
    are removed (dead in every image) or decoupled (unit diagonal in ``G_i``, zero row and column in
    ``G_r``) first. Images whose ``G_i`` is still singular fall back to ``R = G_i^½`` by ``eigh`` and
    ``Tr((R G_r R)^½)``, exact for singular matrices too.
    """
    diag_i, diag_r = g_i.diagonal(dim1=-2, dim2=-1), g_r.diagonal(dim1=-2, dim2=-1)
    live = (diag_i > 0) & (diag_r > 0)  # a diagonal entry of C^T C is 0 only for a zero column
    keep = live.any(dim=0)
    if not bool(keep.all()):  # dead in every image: drop the feature (exact, and cheaper)
        index = keep.nonzero().squeeze(-1)
        g_i = g_i.index_select(-1, index).index_select(-2, index)
        g_r = g_r.index_select(-1, index).index_select(-2, index)
        live = live[:, index]
    if not bool(live.all()):  # dead in some images only
        pair = live.unsqueeze(-1) & live.unsqueeze(-2)
        g_i = torch.where(pair, g_i, 0.0) + torch.diag_embed((~live).to(g_i.dtype))
        g_r = torch.where(pair, g_r, 0.0)
    factor, info = torch.linalg.cholesky_ex(g_i)
    cross = _sum_sqrt_eigvalsh(_congruence_lower(factor, g_r))
    failed = info != 0
    if bool(failed.any()):  # singular for another reason (e.g. duplicated features)
        root_i = _sqrt_psd_eigh(g_i[failed])
        cross = cross.clone()
        cross[failed] = _sum_sqrt_eigvalsh(root_i @ g_r[failed] @ root_i)
    return cross


def frechet_markov_distance(
    f_input: torch.Tensor,
    f_reconstruction: torch.Tensor,
    method: FmdMethod = "eigh",
) -> torch.Tensor:
    """Fréchet distance between the patch Gaussians of two batches of feature maps.

    Args:
        f_input: Markov features of the inputs, shape ``(B, C, H, W)``.
        f_reconstruction: Markov features of the reconstructions, same shape.
        method: ``"eigh"`` (exact, float64; Cholesky and ``eigvalsh``, see the module docstring) or
            ``"polar"`` (matmuls only, float32-safe; the form of ONNX / OpenVINO exports).

    Returns:
        The distance per image, shape ``(B,)``, in the dtype of ``f_input``; never negative.

    Raises:
        ValueError: If the shapes differ or are not 4-D, or ``method`` is unknown.
    """
    if f_input.shape != f_reconstruction.shape:
        msg = f"FMD needs feature maps of equal shape, got {tuple(f_input.shape)} and {tuple(f_reconstruction.shape)}"
        raise ValueError(msg)
    if method == "polar":
        return polar_frechet_markov_distance(f_input, f_reconstruction)
    if method != "eigh":
        msg = f"Unknown FMD method {method!r}: use 'eigh' (exact) or 'polar' (matmul-only, for exports)"
        raise ValueError(msg)
    out_dtype = f_input.dtype
    # float64 throughout: float32 covariance products alone move the distance by ~1e-6 relative.
    # One float64 copy and one pass of statistics for both maps.
    both = torch.empty((2 * f_input.shape[0], *f_input.shape[1:]), dtype=torch.float64, device=f_input.device)
    both[: f_input.shape[0]].copy_(f_input)
    both[f_input.shape[0] :].copy_(f_reconstruction)
    mu, centred = gaussian_statistics(both)
    (mu_i, mu_r), (ci, cr) = mu.chunk(2), centred.chunk(2)
    n, c = ci.shape[1], ci.shape[2]
    mean_term = (mu_i - mu_r).pow(2).sum(dim=-1)
    # Everything on the unscaled Gram matrices G = C^T C = (N - 1) S; Tr((S_i S_r)^½) = Tr((G_i G_r)^½) / (N - 1).
    if n <= c:
        # The centred patches have rank <= N - 1 < C, so S_i is singular; the N x N route is cheaper.
        traces = ci.pow(2).sum(dim=(1, 2)) + cr.pow(2).sum(dim=(1, 2))
        cross = _trace_sqrt_cross_gram(ci, cr)
    else:
        g_i, g_r = _gram(centred.transpose(1, 2)).chunk(2)
        traces = g_i.diagonal(dim1=-2, dim2=-1).sum(dim=-1) + g_r.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
        cross = _trace_sqrt_gram_product(g_i, g_r)
    # Tr(S_i + S_r - 2 (S_i S_r)^½), from the Gram matrices.
    cov_term = (traces - 2 * cross) / max(n - 1, 1)
    return (mean_term + cov_term).clamp_min(0).to(out_dtype)


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
