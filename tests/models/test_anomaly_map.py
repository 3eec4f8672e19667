"""The anomaly map (separable shifted-slice box filter) against the avg-pool implementation it replaced."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_maa.models.maa.anomaly_map import AnomalyMapGenerator, _window_sum


def reference_map(image: torch.Tensor, reconstruction: torch.Tensor, window: int) -> torch.Tensor:
    """The former implementation: channel mean, reflect padding, two k x k ``avg_pool2d``, variance squared."""
    residual = (image - reconstruction).mean(dim=1, keepdim=True)
    pad = window // 2
    padded = F.pad(residual, (pad, pad, pad, pad), mode="reflect") if pad else residual
    mean = F.avg_pool2d(padded, window, stride=1)
    mean_sq = F.avg_pool2d(padded.pow(2), window, stride=1)
    return (mean_sq - mean.pow(2)).clamp_min(0).pow(2)


@pytest.mark.parametrize("window", [1, 3, 5, 7, 9, 11, 15])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 1, 17, 40), (1, 2, 16, 9)])
def test_matches_the_avg_pool_reference(window, shape):
    if window // 2 >= min(shape[-2:]):
        pytest.skip("reflection padding needs the map to be larger than the half window")
    generator = torch.Generator().manual_seed(window)
    image, reconstruction = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    generator_map = AnomalyMapGenerator(window)
    # float64: the same values up to round-off
    got64 = generator_map(image.double(), reconstruction.double())
    torch.testing.assert_close(
        got64, reference_map(image.double(), reconstruction.double(), window), rtol=1e-10, atol=0
    )
    # float32: within 1e-6 of the map's maximum for the windows in use (7 by default); for larger
    # windows both sum more terms in float32, and neither is farther from the float64 value than twice the other
    got, expected = generator_map(image, reconstruction), reference_map(image, reconstruction, window)
    assert got.shape == expected.shape == (shape[0], 1, *shape[2:])
    assert got.dtype == torch.float32
    scale = max(expected.abs().max().item(), 1e-30)
    if window <= 11:  # noqa: PLR2004
        assert (got - expected).abs().max().item() <= 1e-6 * scale
    truth = got64.float()
    assert (got - truth).abs().max().item() <= 2 * (expected - truth).abs().max().item() + 1e-7 * scale


@pytest.mark.parametrize("window", [1, 2, 3, 6, 7, 8, 13])
def test_window_sum_is_a_sliding_sum(window):
    x = torch.arange(20, dtype=torch.float64).reshape(1, 20) ** 2
    expected = torch.stack([x[0, i : i + window].sum() for i in range(20 - window + 1)]).unsqueeze(0)
    torch.testing.assert_close(_window_sum(x, window, dim=-1), expected)


def test_constant_residual_gives_a_zero_map():
    image = torch.full((1, 3, 16, 16), 0.5)
    assert AnomalyMapGenerator(7)(image, torch.zeros_like(image)).abs().max() == 0
