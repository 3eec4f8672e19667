"""A matmul-only Fréchet Markov Distance that stays accurate in float32, for exported graphs.

ONNX has no eigendecomposition, and OpenVINO's CPU plugin runs float64 graphs in float32 (or in
bfloat16 unless told otherwise), so the exported FMD must be both matmul-only and float32-safe.
A float64 Newton–Schulz square root of the covariances (the package's former ``"newton_schulz"``
method, removed) is neither once converted: it squares the covariance condition numbers, diverges
on the slightly negative eigenvalues that float32 round-off gives rank-deficient covariances, and
subtracts two large traces to get a small distance. This module computes the same distance differently.

For any factors ``A``, ``B`` with the same number of rows and ``AᵀA = S_i``, ``BᵀB = S_r``,
``Tr((S_i S_r)^½) = ‖A Bᵀ‖_*`` (nuclear norm), so the covariance part of the Fréchet distance is an
orthogonal Procrustes residual::

    Tr(S_i + S_r - 2 (S_i S_r)^½) = min_Q ‖A - Q B‖²_F,   Q = polar factor of A Bᵀ

* With ``N <= C`` (fewer patches than features) ``A``, ``B`` are the centred patch matrices divided
  by ``sqrt(N - 1)`` and ``Q`` is ``N x N``.
* With ``N > C`` the ``C x C`` factors ``H_A = U_Aᵀ A`` (``U_A`` = polar factor of ``A``) replace
  them; ``H_Aᵀ H_A = AᵀA`` without forming the covariance, so no condition number is squared.
  The polar factors of ``A`` and ``B`` (singular values: square roots of the covariance
  eigenvalues) are resolved down to ``sqrt(lower)``, that of ``A Bᵀ`` down to ``lower``.

Every polar factor comes from the Newton–Schulz iteration ``X <- 1.5 X - 0.5 X XᵀX`` with the
Chen–Chow scaling for singular values down to ``lower`` (relative to the Frobenius norm), a fixed
schedule computed here in Python, so the graph is a constant chain of matmuls. The distance is
the sum of squares of the residual, never a difference of traces, so float32 round-off is not
amplified by cancellation. Measured against the float64 ``eigh`` path (``docs/deployment.md``):
relative error at most about 1e-5 in float32, also for reconstructions so close that the traces
are 1e5 times the distance (where that float64 Newton–Schulz form was off by up to 400 %).

Example:
    >>> import torch
    >>> from anomalib_maa.metrics.fmd import frechet_markov_distance
    >>> a, b = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    >>> exact = frechet_markov_distance(a.double(), b.double(), method="eigh")
    >>> bool(torch.allclose(polar_frechet_markov_distance(a, b).double(), exact, rtol=1e-4))
    True
"""

from __future__ import annotations

import math

import torch

from anomalib_maa.metrics.gaussian import gaussian_statistics

__all__ = ["DEFAULT_LOWER", "newton_schulz_schedule", "polar_factor", "polar_frechet_markov_distance"]

DEFAULT_LOWER = 1e-6
"""Smallest singular value (relative to the Frobenius norm) that the polar iteration resolves."""

_SQRT3 = math.sqrt(3.0)


def newton_schulz_schedule(lower: float = DEFAULT_LOWER, extra: int = 2, max_steps: int = 60) -> list[float]:
    """Scaling factors ``alpha_k`` of the scaled Newton–Schulz polar iteration.

    Step ``k`` maps every singular value ``s`` to ``f(alpha_k s)`` with ``f(y) = 1.5 y - 0.5 y³``.
    ``alpha_k`` is Chen and Chow's choice for singular values known to lie in ``[l_k, 1]``: it
    equalises ``f`` at both ends, so the lower bound grows by about 2.6 per step instead of 1.5,
    and values never exceed 1. ``alpha`` stays below ``sqrt(3)`` by a margin, so round-off can
    not flip a singular value's sign. ``extra`` unscaled steps finish the quadratic convergence.

    Args:
        lower: Lower bound of the singular values of the Frobenius-normalised input.
        extra: Unscaled steps appended once the bound reaches 1.
        max_steps: Cap on the scaled steps.

    Returns:
        The factors, one per step.

    Example:
        >>> len(newton_schulz_schedule(1e-6))
        20
    """
    if not 0.0 < lower < 1.0:
        msg = f"lower must lie in (0, 1), got {lower}"
        raise ValueError(msg)
    alphas: list[float] = []
    bound = lower
    while bound < 1.0 - 2.0**-20 and len(alphas) < max_steps:
        alpha = min(math.sqrt(3.0 / (1.0 + bound + bound * bound)), _SQRT3 * (1.0 - 1e-3))
        y = alpha * bound
        bound = min(1.0, 1.5 * y - 0.5 * y**3)
        alphas.append(alpha)
    return alphas + [1.0] * extra


def polar_factor(matrix: torch.Tensor, lower: float = DEFAULT_LOWER) -> torch.Tensor:
    """Orthogonal polar factor ``U Vᵀ`` of a batch of matrices ``U Σ Vᵀ``, with matmuls only.

    Singular values below ``lower`` times the Frobenius norm converge only partly; their
    directions carry correspondingly little weight in the Procrustes residual.

    Args:
        matrix: Matrices ``(..., m, n)``.
        lower: See :func:`newton_schulz_schedule`.

    Returns:
        The polar factor, same shape.
    """
    tiny = torch.finfo(matrix.dtype).tiny
    norm = matrix.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt().clamp_min(tiny)
    x = matrix / norm
    tall = matrix.shape[-2] >= matrix.shape[-1]
    for alpha in newton_schulz_schedule(lower):
        if alpha != 1.0:
            x = alpha * x
        # The Gram matrix on the smaller side keeps each step at m * n * min(m, n) operations.
        cubic = x @ (x.transpose(-2, -1) @ x) if tall else (x @ x.transpose(-2, -1)) @ x
        x = 1.5 * x - 0.5 * cubic
    return x


def polar_frechet_markov_distance(
    f_input: torch.Tensor,
    f_reconstruction: torch.Tensor,
    lower: float = DEFAULT_LOWER,
) -> torch.Tensor:
    """FMD between the patch Gaussians of two batches of feature maps (matmul-only, float32-safe).

    The same quantity as :func:`anomalib_maa.frechet_markov_distance`, computed as
    ``|mu_i - mu_r|² + min_Q ‖A - Q B‖²_F`` (see the module docstring). Runs in the input's
    dtype (half precision is raised to float32), with a graph of matmuls and elementwise
    operations only, so it exports to ONNX and runs in OpenVINO.

    Args:
        f_input: Markov features of the inputs, ``(B, C, H, W)``.
        f_reconstruction: Markov features of the reconstructions, same shape.
        lower: See :func:`newton_schulz_schedule`.

    Returns:
        The distance per image, ``(B,)``, in the dtype of ``f_input``; never negative.

    Raises:
        ValueError: If the shapes differ or are not 4-D.
    """
    if f_input.shape != f_reconstruction.shape:
        msg = f"FMD needs feature maps of equal shape, got {tuple(f_input.shape)} and {tuple(f_reconstruction.shape)}"
        raise ValueError(msg)
    out_dtype = f_input.dtype
    dtype = out_dtype if out_dtype in {torch.float32, torch.float64} else torch.float32
    mu_i, ci = gaussian_statistics(f_input.to(dtype))
    mu_r, cr = gaussian_statistics(f_reconstruction.to(dtype))
    n, c = ci.shape[1], ci.shape[2]
    scale = 1.0 / math.sqrt(max(n - 1, 1))
    a, b = ci * scale, cr * scale  # AᵀA = S_i, BᵀB = S_r
    if n > c:
        # C x C factors without forming the covariances: H = Uᵀ A with U the polar factor of A.
        # The singular values of A are the square roots of S_i's eigenvalues, and those of A Bᵀ
        # their products: sqrt(lower) here resolves what `lower` resolves below.
        both = torch.cat([a, b], dim=0)
        factors = polar_factor(both, math.sqrt(lower)).transpose(1, 2) @ both
        a, b = factors[: a.shape[0]], factors[a.shape[0] :]
    rotation = polar_factor(a @ b.transpose(1, 2), lower)
    residual = a - rotation @ b
    distance = (mu_i - mu_r).pow(2).sum(dim=-1) + residual.pow(2).sum(dim=(1, 2))
    return distance.to(out_dtype)
